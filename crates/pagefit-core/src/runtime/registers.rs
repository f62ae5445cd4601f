//! What the decoders share: sign extension, what each register is known to
//! hold, and their tests' helpers.

#[cfg(test)]
use crate::runtime::guard::{Insn, Op};

/// Sign-extends the low `bits` bits of `value`.
pub(crate) fn sign_extend(value: u64, bits: u32) -> u64 {
    let shift = 64 - bits;
    (((value << shift) as i64) >> shift) as u64
}

/// What each of 32 general registers is known to hold (a page address, a
/// TOC-relative high part, a constant).
#[derive(Default)]
pub(crate) struct Registers([Option<u64>; 32]);

impl Registers {
    pub(crate) fn set(&mut self, reg: u32, value: u64) {
        self.0[reg as usize & 31] = Some(value);
    }
    pub(crate) fn get(&self, reg: u32) -> Option<u64> {
        self.0[reg as usize & 31]
    }
    pub(crate) fn clear(&mut self, reg: u32) {
        self.0[reg as usize & 31] = None;
    }
}

/// For decoder tests: `words` as little-endian bytes.
#[cfg(test)]
pub(crate) fn little_endian(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// For decoder tests: what `decode` makes of `bytes` at `vaddr`.
#[cfg(test)]
pub(crate) fn decoded(decode: impl Fn(&[u8], u64, &mut dyn FnMut(Insn)), bytes: &[u8], vaddr: u64) -> Vec<Op> {
    let mut out = Vec::new();
    decode(bytes, vaddr, &mut |i| out.push(i.op));
    out
}

#[cfg(test)]
mod tests {
    use super::sign_extend;

    #[test]
    fn sign_extension() {
        assert_eq!(sign_extend(0x7ffff, 19), u64::MAX);
        assert_eq!(sign_extend(0x3ffff, 19), 0x3ffff);
        assert_eq!(sign_extend(0xfffb, 16) as i64, -5);
    }
}

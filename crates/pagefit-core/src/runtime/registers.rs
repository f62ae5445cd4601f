//! What the decoders share: sign extension, and what each register is known to hold.

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

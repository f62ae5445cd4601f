//! The initial process stack the kernel hands a new program: argc, argv,
//! envp and the auxiliary vector, with the strings they point at.
//!
//! [`build_stack`] is pure: it lays out the bytes for a stack whose top is at
//! a given address, and [`parse_stack`] reads such bytes back (the tests use
//! it, and so can the loader to check its own work). The layout is the one
//! `fs/binfmt_elf.c` `create_elf_tables` makes for little-endian programs,
//! its words as wide as the program's addresses (8 bytes for ELF64 x86_64,
//! aarch64 and ppc64le, 4 for ELF32 armhf): from the top down, an end
//! marker of one word, the strings, the 16 random bytes, padding to 16
//! bytes, then the auxv, envp, argv and argc, with the stack pointer
//! pointing at argc, 16-byte aligned.
//!
//! ```
//! use pagefit_core::elf::ElfClass;
//! use pagefit_core::run::stack::{auxv, build_stack, parse_stack, StackRequest};
//! let args = [b"prog".to_vec(), b"-v".to_vec()];
//! let env = [b"HOME=/root".to_vec()];
//! let request = StackRequest { class: ElfClass::Elf64, args: &args, env: &env, execfn: b"/usr/bin/prog",
//!     platform: Some(b"x86_64"), random: [7; 16], auxv: &[(auxv::AT_PAGESZ, 16384)] };
//! let stack = build_stack(&request, 0x7fff_0000_0000).unwrap();
//! assert_eq!(stack.sp % 16, 0);
//! let parsed = parse_stack(&stack.bytes, stack.base, stack.sp, ElfClass::Elf64).unwrap();
//! assert_eq!(parsed.args, args);
//! assert_eq!(parsed.aux(auxv::AT_PAGESZ), Some(16384));
//! ```

/// Auxiliary vector tags (`include/uapi/linux/auxvec.h`, `elf.h`).
pub mod auxv {
    /// End of the vector.
    pub const AT_NULL: u64 = 0;
    /// Address of the program headers.
    pub const AT_PHDR: u64 = 3;
    /// Size of one program header.
    pub const AT_PHENT: u64 = 4;
    /// Number of program headers.
    pub const AT_PHNUM: u64 = 5;
    /// The page size.
    pub const AT_PAGESZ: u64 = 6;
    /// Load address of the interpreter.
    pub const AT_BASE: u64 = 7;
    /// Flags (0).
    pub const AT_FLAGS: u64 = 8;
    /// The program's entry point.
    pub const AT_ENTRY: u64 = 9;
    /// Real user id.
    pub const AT_UID: u64 = 11;
    /// Effective user id.
    pub const AT_EUID: u64 = 12;
    /// Real group id.
    pub const AT_GID: u64 = 13;
    /// Effective group id.
    pub const AT_EGID: u64 = 14;
    /// Address of the platform string.
    pub const AT_PLATFORM: u64 = 15;
    /// CPU capabilities.
    pub const AT_HWCAP: u64 = 16;
    /// Clock ticks per second.
    pub const AT_CLKTCK: u64 = 17;
    /// Secure mode (setuid and friends).
    pub const AT_SECURE: u64 = 23;
    /// Address of 16 random bytes.
    pub const AT_RANDOM: u64 = 25;
    /// More CPU capabilities.
    pub const AT_HWCAP2: u64 = 26;
    /// The rseq features the kernel supports (the area size they need).
    pub const AT_RSEQ_FEATURE_SIZE: u64 = 27;
    /// The alignment an rseq area needs.
    pub const AT_RSEQ_ALIGN: u64 = 28;
    /// Address of the executed file name.
    pub const AT_EXECFN: u64 = 31;
    /// Address of the vDSO's ELF header.
    pub const AT_SYSINFO_EHDR: u64 = 33;
    /// Minimal signal stack size.
    pub const AT_MINSIGSTKSZ: u64 = 51;
}

use crate::elf::ElfClass;
use crate::predict::memory::AddrRange;

/// What goes on the stack.
#[derive(Clone, Debug)]
pub struct StackRequest<'a> {
    /// The program's class, which sets the width of every word.
    pub class: ElfClass,
    /// argv strings, without their NUL.
    pub args: &'a [Vec<u8>],
    /// Environment strings (`NAME=value`), without their NUL.
    pub env: &'a [Vec<u8>],
    /// The executed file name (AT_EXECFN points at it).
    pub execfn: &'a [u8],
    /// The platform string (AT_PLATFORM), when the host has one.
    pub platform: Option<&'a [u8]>,
    /// The bytes AT_RANDOM points at (the libc's stack protector and pointer guard).
    pub random: [u8; 16],
    /// Entries with plain values, in order. The builder adds AT_PLATFORM,
    /// AT_EXECFN and AT_RANDOM (which point into the stack) and AT_NULL.
    pub auxv: &'a [(u64, u64)],
}

/// A laid-out stack: `bytes` belong at address `base`, and end at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImage {
    /// The stack contents from `base` to the top.
    pub bytes: Vec<u8>,
    /// The address of `bytes[0]`; equal to `sp`.
    pub base: u64,
    /// The initial stack pointer: the address of argc, 16-byte aligned.
    pub sp: u64,
    /// Where the argument strings lie (what `/proc/pid/cmdline` shows).
    pub arg_strings: AddrRange,
    /// Where the environment strings lie (what `/proc/pid/environ` shows).
    pub env_strings: AddrRange,
}

/// Why a stack could not be laid out or read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackError(pub String);

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StackError {}

/// Lays out the initial stack for a stack whose highest byte is just below `top`.
pub fn build_stack(request: &StackRequest<'_>, top: u64) -> Result<StackImage, StackError> {
    let overflow = || StackError("the arguments and environment do not fit below the stack top".into());
    let word = request.class.word_bytes();
    // Strings and blobs, from the top down; each remembers its address.
    let mut blobs: Vec<(u64, &[u8])> = Vec::new();
    let mut cursor = top.checked_sub(word as u64).ok_or_else(overflow)?;
    let put = |bytes: &[u8], nul: bool, cursor: &mut u64| -> Result<u64, StackError> {
        let len = bytes.len() as u64 + u64::from(nul);
        *cursor = cursor.checked_sub(len).ok_or_else(overflow)?;
        Ok(*cursor)
    };
    let execfn_at = put(request.execfn, true, &mut cursor)?;
    blobs.push((execfn_at, request.execfn));
    let mut env_at = Vec::with_capacity(request.env.len());
    for var in request.env.iter().rev() {
        let at = put(var, true, &mut cursor)?;
        blobs.push((at, var));
        env_at.push(at);
    }
    env_at.reverse();
    let env_start = cursor;
    let mut arg_at = Vec::with_capacity(request.args.len());
    for arg in request.args.iter().rev() {
        let at = put(arg, true, &mut cursor)?;
        blobs.push((at, arg));
        arg_at.push(at);
    }
    arg_at.reverse();
    let platform_at = match request.platform {
        Some(platform) => {
            let at = put(platform, true, &mut cursor)?;
            blobs.push((at, platform));
            Some(at)
        }
        None => None,
    };
    let random_at = put(&request.random, false, &mut cursor)?;
    blobs.push((random_at, &request.random));

    let mut auxv: Vec<(u64, u64)> = request.auxv.to_vec();
    if let Some(at) = platform_at {
        auxv.push((auxv::AT_PLATFORM, at));
    }
    auxv.push((auxv::AT_RANDOM, random_at));
    auxv.push((auxv::AT_EXECFN, execfn_at));
    auxv.push((auxv::AT_NULL, 0));
    let words = 1 + (request.args.len() as u64 + 1) + (request.env.len() as u64 + 1) + 2 * auxv.len() as u64;
    let table_bytes = words.checked_mul(word as u64).ok_or_else(overflow)?;
    let sp = cursor.checked_sub(table_bytes).ok_or_else(overflow)? & !15;

    let mut bytes = vec![0u8; usize::try_from(top - sp).map_err(|_| overflow())?];
    let index = |address: u64| (address - sp) as usize;
    for (at, blob) in &blobs {
        bytes[index(*at)..index(*at) + blob.len()].copy_from_slice(blob);
    }
    let mut table: Vec<u64> = Vec::with_capacity(words as usize);
    table.push(request.args.len() as u64);
    table.extend(&arg_at);
    table.push(0);
    table.extend(&env_at);
    table.push(0);
    for (tag, value) in &auxv {
        table.extend([*tag, *value]);
    }
    for (slot, value) in bytes.chunks_exact_mut(word).zip(&table) {
        match request.class {
            ElfClass::Elf32 => {
                let value =
                    u32::try_from(*value).map_err(|_| StackError(format!("{value:#x} does not fit a 32-bit program's stack word")))?;
                slot.copy_from_slice(&value.to_le_bytes());
            }
            ElfClass::Elf64 => slot.copy_from_slice(&value.to_le_bytes()),
        }
    }
    // Arguments lie just below the environment, which lies just below execfn.
    let arg_strings = AddrRange::new(arg_at.first().copied().unwrap_or(env_start), env_start);
    let env_strings = AddrRange::new(env_start, execfn_at);
    Ok(StackImage { bytes, base: sp, sp, arg_strings, env_strings })
}

/// A stack read back: what the program's `_start` will see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedStack {
    /// argv strings.
    pub args: Vec<Vec<u8>>,
    /// Environment strings.
    pub env: Vec<Vec<u8>>,
    /// The auxv entries before AT_NULL.
    pub auxv: Vec<(u64, u64)>,
}

impl ParsedStack {
    /// The value of the first auxv entry with `tag`.
    pub fn aux(&self, tag: u64) -> Option<u64> {
        self.auxv.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }
}

/// Reads a stack laid out by [`build_stack`] (or by the kernel) from `bytes`
/// at address `base`, with the stack pointer at `sp`, for a program of `class`.
pub fn parse_stack(bytes: &[u8], base: u64, sp: u64, class: ElfClass) -> Result<ParsedStack, StackError> {
    let bad = |what: &str, at: u64| StackError(format!("{what} at {at:#x} is outside the stack"));
    let width = class.word_bytes();
    let word = |address: u64| -> Result<u64, StackError> {
        let start = address.checked_sub(base).and_then(|o| usize::try_from(o).ok()).ok_or_else(|| bad("word", address))?;
        let slice = bytes.get(start..start.saturating_add(width)).ok_or_else(|| bad("word", address))?;
        let mut little_endian = [0u8; 8];
        little_endian[..width].copy_from_slice(slice);
        Ok(u64::from_le_bytes(little_endian))
    };
    let width = width as u64;
    let string = |address: u64| -> Result<Vec<u8>, StackError> {
        let start = address.checked_sub(base).and_then(|o| usize::try_from(o).ok()).ok_or_else(|| bad("string", address))?;
        let rest = bytes.get(start..).ok_or_else(|| bad("string", address))?;
        let len = rest.iter().position(|b| *b == 0).ok_or_else(|| bad("unterminated string", address))?;
        Ok(rest[..len].to_vec())
    };
    let argc = word(sp)?;
    let mut at = sp + width;
    let mut args = Vec::new();
    for _ in 0..argc {
        args.push(string(word(at)?)?);
        at += width;
    }
    if word(at)? != 0 {
        return Err(StackError(format!("argv[argc] at {at:#x} is not NULL")));
    }
    at += width;
    let mut env = Vec::new();
    loop {
        let pointer = word(at)?;
        at += width;
        if pointer == 0 {
            break;
        }
        env.push(string(pointer)?);
    }
    let mut auxv = Vec::new();
    loop {
        let (tag, value) = (word(at)?, word(at + width)?);
        at += 2 * width;
        if tag == auxv::AT_NULL {
            break;
        }
        auxv.push((tag, value));
    }
    Ok(ParsedStack { args, env, auxv })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_stack_parses_back_with_every_auxv_entry() {
        let args = [b"/bin/true".to_vec(), b"--version".to_vec(), Vec::new()];
        let env = [b"PATH=/usr/bin".to_vec(), b"LANG=C.UTF-8".to_vec()];
        let plain = [
            (auxv::AT_SYSINFO_EHDR, 0x7fff_f7fc_1000),
            (auxv::AT_MINSIGSTKSZ, 3376),
            (auxv::AT_HWCAP, 0x178bfbff),
            (auxv::AT_PAGESZ, 65536),
            (auxv::AT_CLKTCK, 100),
            (auxv::AT_PHDR, 0x5555_5555_4040),
            (auxv::AT_PHENT, 56),
            (auxv::AT_PHNUM, 13),
            (auxv::AT_BASE, 0x7fff_f7fc_3000),
            (auxv::AT_FLAGS, 0),
            (auxv::AT_ENTRY, 0x5555_5555_6040),
            (auxv::AT_UID, 1000),
            (auxv::AT_EUID, 1000),
            (auxv::AT_GID, 100),
            (auxv::AT_EGID, 100),
            (auxv::AT_SECURE, 0),
            (auxv::AT_HWCAP2, 2),
        ];
        let random: [u8; 16] = std::array::from_fn(|i| i as u8 * 3 + 1);
        let request = StackRequest {
            class: ElfClass::Elf64,
            args: &args,
            env: &env,
            execfn: b"/bin/true",
            platform: Some(b"x86_64"),
            random,
            auxv: &plain,
        };
        let top = 0x7fff_ffff_f000;
        let stack = build_stack(&request, top).unwrap();
        assert_eq!(stack.sp % 16, 0, "the ABI wants a 16-byte aligned stack at entry");
        assert_eq!(stack.base + stack.bytes.len() as u64, top);
        assert_eq!(stack.arg_strings.len(), b"/bin/true\0--version\0\0".len() as u64);
        assert_eq!(stack.env_strings.len(), b"PATH=/usr/bin\0LANG=C.UTF-8\0".len() as u64);
        let parsed = parse_stack(&stack.bytes, stack.base, stack.sp, ElfClass::Elf64).unwrap();
        assert_eq!(parsed.args, args);
        assert_eq!(parsed.env, env);
        assert_eq!(&parsed.auxv[..plain.len()], &plain);
        let string_at = |address: u64| {
            let start = (address - stack.base) as usize;
            let end = start + stack.bytes[start..].iter().position(|b| *b == 0).unwrap();
            stack.bytes[start..end].to_vec()
        };
        assert_eq!(string_at(parsed.aux(auxv::AT_EXECFN).unwrap()), b"/bin/true");
        assert_eq!(string_at(parsed.aux(auxv::AT_PLATFORM).unwrap()), b"x86_64");
        let random_at = (parsed.aux(auxv::AT_RANDOM).unwrap() - stack.base) as usize;
        assert_eq!(stack.bytes[random_at..random_at + 16], random);
        // Nothing is written in the end marker below the top.
        assert_eq!(stack.bytes[stack.bytes.len() - 8..], [0; 8]);
    }

    #[test]
    fn a_32_bit_stack_has_4_byte_words_laid_out_as_the_kernel_does() {
        let args = [b"a".to_vec(), b"bc".to_vec()];
        let env = [b"E=1".to_vec()];
        let request = StackRequest {
            class: ElfClass::Elf32,
            args: &args,
            env: &env,
            execfn: b"x",
            platform: Some(b"v8l"),
            random: [0x11; 16],
            auxv: &[(auxv::AT_PAGESZ, 16384)],
        };
        let stack = build_stack(&request, 0x1000_0000).unwrap();
        // From the top down: a 4-byte end marker, "x", "E=1", "bc", "a",
        // "v8l", the random bytes at 0xfffffdd; 16 words of table below
        // them end at 0xfffff9d, rounded down to 16: sp = 0xfffff90.
        let table: [u32; 16] = [
            2,
            0x0fff_fff1,
            0x0fff_fff3,
            0, // argc, argv, NULL
            0x0fff_fff6,
            0, // envp, NULL
            6,
            16384, // AT_PAGESZ
            15,
            0x0fff_ffed, // AT_PLATFORM
            25,
            0x0fff_ffdd, // AT_RANDOM
            31,
            0x0fff_fffa, // AT_EXECFN
            0,
            0, // AT_NULL
        ];
        let mut expected: Vec<u8> = table.iter().flat_map(|word| word.to_le_bytes()).collect();
        expected.extend([0; 13]);
        expected.extend([0x11; 16]);
        expected.extend(b"v8l\0a\0bc\0E=1\0x\0\0\0\0\0");
        assert_eq!(stack.sp, 0x0fff_ff90);
        assert_eq!(stack.base, stack.sp);
        assert_eq!(stack.bytes, expected);
        assert_eq!(stack.arg_strings, AddrRange::new(0x0fff_fff1, 0x0fff_fff6));
        assert_eq!(stack.env_strings, AddrRange::new(0x0fff_fff6, 0x0fff_fffa));
        let parsed = parse_stack(&stack.bytes, stack.base, stack.sp, ElfClass::Elf32).unwrap();
        assert_eq!((&parsed.args[..], &parsed.env[..]), (&args[..], &env[..]));
        assert_eq!(parsed.aux(auxv::AT_PAGESZ), Some(16384));
    }

    #[test]
    fn a_32_bit_stack_refuses_values_wider_than_its_words() {
        let request = StackRequest {
            class: ElfClass::Elf32,
            args: &[],
            env: &[],
            execfn: b"x",
            platform: None,
            random: [0; 16],
            auxv: &[(auxv::AT_HWCAP, 1 << 32)],
        };
        assert!(build_stack(&request, 0x1000_0000).is_err());
        let fitting = StackRequest { auxv: &[(auxv::AT_HWCAP, u64::from(u32::MAX))], ..request };
        assert!(build_stack(&fitting, 0x1000_0000).is_ok());
    }

    #[test]
    fn an_empty_argv_and_no_platform_still_make_a_valid_stack() {
        let request =
            StackRequest { class: ElfClass::Elf64, args: &[], env: &[], execfn: b"x", platform: None, random: [0; 16], auxv: &[] };
        let stack = build_stack(&request, 0x10000).unwrap();
        let parsed = parse_stack(&stack.bytes, stack.base, stack.sp, ElfClass::Elf64).unwrap();
        assert!(parsed.args.is_empty() && parsed.env.is_empty());
        assert_eq!(parsed.aux(auxv::AT_PLATFORM), None);
        assert!(parsed.aux(auxv::AT_RANDOM).is_some());
    }

    #[test]
    fn a_stack_that_does_not_fit_is_an_error() {
        let args = [vec![b'a'; 100]];
        let request =
            StackRequest { class: ElfClass::Elf64, args: &args, env: &[], execfn: b"x", platform: None, random: [0; 16], auxv: &[] };
        assert!(build_stack(&request, 64).is_err());
        assert!(parse_stack(&[0; 8], 0x1000, 0x1000, ElfClass::Elf64).is_err());
    }
}

//! The address-sized fields of the ELF structures rebase rewrites, for
//! either class: where they sit in a dynamic entry, a relocation, a symbol
//! or a RELR word, and how they are read and written. Both rebase (through
//! the dynamic section) and its proof (through the section headers) lay
//! structures out with it; what they change stays their own.

use object::elf;
use object::Endianness;

/// ppc64's TOC pointer points this far past the start of `.got`, whose
/// first word holds it (the ELFv2 ABI).
pub(crate) const PPC64_TOC_BIAS: u64 = 0x8000;

/// ELFCLASS32 or ELFCLASS64 fields, in the file's byte order.
#[derive(Clone, Copy)]
pub(crate) struct Words {
    wide: bool,
    endian: Endianness,
}

impl Words {
    pub(crate) fn new(wide: bool, endian: Endianness) -> Words {
        Words { wide, endian }
    }

    /// Bytes in an address (`ElfN_Addr`).
    pub(crate) fn size(self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    /// The bits an address has: arithmetic on addresses wraps there.
    pub(crate) fn mask(self) -> u64 {
        if self.wide {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// The address-sized value at `at` in `bytes`; `None` past the end.
    pub(crate) fn get(self, bytes: &[u8], at: u64) -> Option<u64> {
        let start = usize::try_from(at).ok()?;
        let field = bytes.get(start..start.checked_add(self.size() as usize)?)?;
        let mut buffer = [0u8; 8];
        let value = if self.wide {
            buffer.copy_from_slice(field);
            if self.endian == Endianness::Little {
                u64::from_le_bytes(buffer)
            } else {
                u64::from_be_bytes(buffer)
            }
        } else {
            let mut narrow = [0u8; 4];
            narrow.copy_from_slice(field);
            u64::from(if self.endian == Endianness::Little { u32::from_le_bytes(narrow) } else { u32::from_be_bytes(narrow) })
        };
        Some(value)
    }

    /// Writes `value` at `at`; a value that does not fit the class is an error.
    pub(crate) fn put(self, bytes: &mut [u8], at: u64, value: u64) -> Result<(), String> {
        let encoded = self.encode(value)?;
        let start = usize::try_from(at).map_err(|_| format!("offset {at:#x} is out of range"))?;
        let field = bytes.get_mut(start..start + encoded.len()).ok_or_else(|| format!("offset {at:#x} is past the table's end"))?;
        field.copy_from_slice(&encoded);
        Ok(())
    }

    /// `value` as the file stores an address.
    pub(crate) fn encode(self, value: u64) -> Result<Vec<u8>, String> {
        Ok(match (self.wide, self.endian) {
            (true, Endianness::Little) => value.to_le_bytes().to_vec(),
            (true, Endianness::Big) => value.to_be_bytes().to_vec(),
            (false, endian) => {
                let narrow = u32::try_from(value).map_err(|_| format!("{value:#x} does not fit a 32-bit address"))?;
                if endian == Endianness::Little { narrow.to_le_bytes() } else { narrow.to_be_bytes() }.to_vec()
            }
        })
    }

    /// Bytes in a dynamic entry (`d_tag`, `d_val`).
    pub(crate) fn dynamic_entry_size(self) -> u64 {
        2 * self.size()
    }

    /// Bytes in a relocation: `r_offset`, `r_info` and, for RELA, `r_addend`.
    pub(crate) fn relocation_size(self, explicit_addend: bool) -> u64 {
        if explicit_addend {
            3 * self.size()
        } else {
            2 * self.size()
        }
    }

    /// `r_info`'s symbol index and type.
    pub(crate) fn symbol_and_type(self, info: u64) -> (u64, u32) {
        if self.wide {
            (info >> 32, info as u32)
        } else {
            (info >> 8, (info & 0xff) as u32)
        }
    }

    /// Bytes in a symbol.
    pub(crate) fn symbol_size(self) -> u64 {
        if self.wide {
            24
        } else {
            16
        }
    }

    /// Where `st_value` sits in a symbol.
    pub(crate) fn symbol_value_at(self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    /// A symbol's section index and whether it is a TLS symbol (whose value
    /// is an offset in the TLS block, not an address).
    pub(crate) fn symbol_section_and_tls(self, symbol: &[u8]) -> Option<(u16, bool)> {
        let (info_at, shndx_at) = if self.wide { (4, 6) } else { (12, 14) };
        let info = *symbol.get(info_at)?;
        let shndx: [u8; 2] = symbol.get(shndx_at..shndx_at + 2)?.try_into().ok()?;
        let shndx = if self.endian == Endianness::Little { u16::from_le_bytes(shndx) } else { u16::from_be_bytes(shndx) };
        Some((shndx, info & 0xf == elf::STT_TLS.0))
    }

    /// Addresses one RELR bitmap word covers after its first bit.
    pub(crate) fn relr_bitmap_bits(self) -> u64 {
        self.size() * 8 - 1
    }
}

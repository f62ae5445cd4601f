//! `$ORIGIN` for a program started by a userspace loader.
//!
//! glibc's ld.so takes the main program's `$ORIGIN` from `/proc/self/exe`,
//! which stays the loader's own executable: the kernel refuses
//! `PR_SET_MM_EXE_FILE` while the old executable is mapped. The loader can
//! still give ld.so the answer execve would have: it expands `$ORIGIN` in the
//! program's DT_RPATH and DT_RUNPATH itself, writes the expanded string
//! somewhere in memory, and points the entry's `d_val` (an offset from
//! DT_STRTAB, which ld.so does not bound) at it. The entries keep their
//! kind, so the search order stays the one the program was linked for.

use serde::Serialize;

use crate::elf::DynamicInfo;

/// One DT_RPATH or DT_RUNPATH entry with `$ORIGIN` expanded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OriginExpansion {
    /// `DT_RPATH` or `DT_RUNPATH`.
    pub entry: &'static str,
    /// The link-time address of the entry's `d_val`.
    pub value_vaddr: u64,
    /// DT_STRTAB's link-time address, which `d_val` counts from.
    pub string_table_vaddr: u64,
    /// The string as linked.
    pub original: String,
    /// The string with every `$ORIGIN` / `${ORIGIN}` replaced.
    pub expanded: String,
}

impl OriginExpansion {
    /// The `d_val` that points ld.so at `string_address`, for a program
    /// loaded with `bias`: the offset from the relocated DT_STRTAB, modulo 2^64
    /// as ld.so's pointer addition wraps.
    pub fn value_for(&self, string_address: u64, bias: u64) -> u64 {
        string_address.wrapping_sub(self.string_table_vaddr.wrapping_add(bias))
    }
}

/// The search-path entries of `dynamic` that mention `$ORIGIN`, expanded
/// for a program in directory `origin` (as ld.so would: the directory of
/// the canonical path of the executable). `$LIB` and `$PLATFORM` are left to
/// ld.so, which knows them without `/proc/self/exe`.
pub fn expand_origin(dynamic: &DynamicInfo, origin: &str) -> Vec<OriginExpansion> {
    let Some(string_table_vaddr) = dynamic.string_table_vaddr else { return Vec::new() };
    dynamic
        .search_path_entries
        .iter()
        .filter_map(|entry| {
            let expanded = expand(&entry.text, origin)?;
            let name = if entry.tag == object::elf::DT_RPATH { "DT_RPATH" } else { "DT_RUNPATH" };
            Some(OriginExpansion {
                entry: name,
                value_vaddr: entry.value_vaddr,
                string_table_vaddr,
                original: entry.text.clone(),
                expanded,
            })
        })
        .collect()
}

/// `text` with each `$ORIGIN` and `${ORIGIN}` replaced by `origin`, or
/// `None` when it has none. Like ld.so, `$ORIGIN` must not run on into a
/// longer name (`$ORIGINAL` is not it).
fn expand(text: &str, origin: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + origin.len());
    let mut rest = text;
    let mut replaced = false;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let token_len = if after.starts_with("{ORIGIN}") {
            Some("{ORIGIN}".len())
        } else if after.strip_prefix("ORIGIN").is_some_and(|tail| !tail.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')) {
            Some("ORIGIN".len())
        } else {
            None
        };
        match token_len {
            Some(len) => {
                out.push_str(origin);
                rest = &after[len..];
                replaced = true;
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    replaced.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::SearchPathEntry;

    #[test]
    fn origin_is_expanded_where_ld_so_would_and_nowhere_else() {
        let origin = "/opt/app/bin";
        assert_eq!(expand("$ORIGIN/lib", origin).as_deref(), Some("/opt/app/bin/lib"));
        assert_eq!(expand("${ORIGIN}/../lib:$ORIGIN", origin).as_deref(), Some("/opt/app/bin/../lib:/opt/app/bin"));
        assert_eq!(expand("/usr/$LIB:$ORIGIN/x", origin).as_deref(), Some("/usr/$LIB:/opt/app/bin/x"));
        assert_eq!(expand("$ORIGINAL/lib", origin), None);
        assert_eq!(expand("/usr/lib:$PLATFORM", origin), None);
        assert_eq!(expand("$", origin), None);
    }

    #[test]
    fn entries_keep_their_kind_and_the_new_offset_wraps_like_a_pointer() {
        let dynamic = DynamicInfo {
            string_table_vaddr: Some(0x4a8),
            search_path_entries: vec![
                SearchPathEntry { tag: object::elf::DT_RUNPATH, value_vaddr: 0x3df8, text: "$ORIGIN/lib".into() },
                SearchPathEntry { tag: object::elf::DT_RPATH, value_vaddr: 0x3e08, text: "/usr/local/lib".into() },
            ],
            ..DynamicInfo::default()
        };
        let expansions = expand_origin(&dynamic, "/t/fx");
        assert_eq!(expansions.len(), 1);
        let runpath = &expansions[0];
        assert_eq!((runpath.entry, runpath.value_vaddr, runpath.expanded.as_str()), ("DT_RUNPATH", 0x3df8, "/t/fx/lib"));
        let bias = 0x5555_5555_4000;
        // A string below the string table: ld.so's `strtab + d_val` must still land on it.
        let below = 0x1000;
        assert_eq!((0x4a8u64 + bias).wrapping_add(runpath.value_for(below, bias)), below);
        assert!(expand_origin(&DynamicInfo { string_table_vaddr: None, ..dynamic }, "/t").is_empty());
    }
}

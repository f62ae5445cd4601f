//! What the kernel told pagefit about the host, to pass on where it stays true.

use std::io;

use pagefit_core::run::stack::auxv;

/// The host's auxiliary vector.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostAuxv {
    entries: Vec<(u64, u64)>,
}

impl HostAuxv {
    /// Reads this process's auxv (`/proc/self/auxv` before Linux 6.4).
    pub(crate) fn read() -> io::Result<HostAuxv> {
        let bytes = match crate::sys::auxv_bytes() {
            Some(bytes) => bytes,
            None => std::fs::read("/proc/self/auxv")?,
        };
        let words: Vec<u64> = bytes.chunks_exact(8).map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default())).collect();
        let entries = words.chunks_exact(2).map(|pair| (pair[0], pair[1])).take_while(|(tag, _)| *tag != auxv::AT_NULL).collect();
        Ok(HostAuxv { entries })
    }

    /// The value for `tag`, or 0 when the kernel did not give one.
    pub(crate) fn value(&self, tag: u64) -> u64 {
        self.entries.iter().find(|(t, _)| *t == tag).map_or(0, |(_, v)| *v)
    }

    /// The platform string (`x86_64`, `aarch64`), copied from where AT_PLATFORM points.
    pub(crate) fn platform(&self) -> Option<Vec<u8>> {
        crate::sys::host_string(self.value(auxv::AT_PLATFORM) as usize)
    }
}

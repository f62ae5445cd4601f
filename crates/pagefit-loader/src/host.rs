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
        // Two words per entry, each as wide as this process's pointers.
        let words: Vec<u64> =
            bytes.chunks_exact(size_of::<usize>()).map(|w| usize::from_ne_bytes(w.try_into().unwrap_or_default()) as u64).collect();
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

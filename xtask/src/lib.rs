//! Project automation for pagefit. `cargo xtask realkernel` boots real 4K,
//! 16K (aarch64, which also runs armhf programs) and 64K (ppc64le) Linux
//! kernels, runs every fixture on them and compares what happened with
//! pagefit's predictions.

pub mod agreement;
pub mod android;
pub mod artifacts;
pub mod corpus;
pub mod fixproof;
pub mod fixrun;
pub mod realkernel;
pub mod realworld;
pub mod rootproof;
pub mod runproof;
pub mod runtimeproof;
pub mod setup;
pub mod vm;

/// A target architecture, run on a large-page Debian kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// arm64, with a 16K kernel.
    Aarch64,
    /// ppc64el, with a 64K kernel.
    Ppc64le,
    /// 32-bit armhf programs on the arm64 kernels (CONFIG_COMPAT; QEMU's
    /// `-cpu max` runs AArch32 at EL0): the Raspberry Pi 5 case.
    Armhf,
}

impl Arch {
    /// All, in the order they run.
    pub const ALL: [Arch; 3] = [Arch::Aarch64, Arch::Ppc64le, Arch::Armhf];

    /// The name fixtures/build.sh and `uname -m` use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
            Arch::Armhf => "armhf",
        }
    }

    /// Debian's architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "ppc64el",
            Arch::Armhf => "armhf",
        }
    }

    /// The GNU triple of the cross toolchain.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-linux-gnu",
            Arch::Ppc64le => "powerpc64le-linux-gnu",
            Arch::Armhf => "arm-linux-gnueabihf",
        }
    }

    /// Rust's target triple, to build pagefit itself for the VM.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Ppc64le => "powerpc64le-unknown-linux-gnu",
            Arch::Armhf => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// Where Debian's cross glibc for this architecture lives.
    pub fn sysroot(self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/usr/{}", self.triple()))
    }

    /// Where PT_INTERP names the dynamic linker: its directory under the
    /// root and its file name.
    pub fn interpreter(self) -> (&'static str, &'static str) {
        match self {
            Arch::Aarch64 => ("lib", "ld-linux-aarch64.so.1"),
            Arch::Ppc64le => ("lib64", "ld64.so.2"),
            Arch::Armhf => ("lib", "ld-linux-armhf.so.3"),
        }
    }

    /// The architecture of the kernel (and of the VM's busybox and pagefit).
    pub fn kernel_arch(self) -> Arch {
        match self {
            Arch::Armhf => Arch::Aarch64,
            other => other,
        }
    }

    /// Whether fixtures/jemalloc/build.sh builds jemalloc programs for it.
    pub fn has_jemalloc_fixtures(self) -> bool {
        self != Arch::Armhf
    }

    /// The page size of this architecture's large-page kernel.
    pub fn big_page(self) -> &'static str {
        match self {
            Arch::Aarch64 | Arch::Armhf => "16k",
            Arch::Ppc64le => "64k",
        }
    }

    /// The kernels booted for this architecture: the 4K baseline first.
    pub fn page_sizes(self) -> [&'static str; 2] {
        ["4k", self.big_page()]
    }

    /// Parses `aarch64`, `ppc64le` or `armhf`.
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }
}

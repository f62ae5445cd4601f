//! Project automation for pagefit. `cargo xtask realkernel` boots real 4K,
//! 16K (aarch64) and 64K (ppc64le) Linux kernels, runs every fixture on them
//! and compares what happened with pagefit's predictions.

pub mod agreement;
pub mod corpus;
pub mod fixproof;
pub mod realkernel;
pub mod realworld;
pub mod runproof;
pub mod runtimeproof;
pub mod setup;
pub mod vm;

/// A target architecture with a large-page Debian kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// arm64, with a 16K kernel.
    Aarch64,
    /// ppc64el, with a 64K kernel.
    Ppc64le,
}

impl Arch {
    /// Both, in the order they run.
    pub const ALL: [Arch; 2] = [Arch::Aarch64, Arch::Ppc64le];

    /// The name fixtures/build.sh and `uname -m` use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
        }
    }

    /// Debian's architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Aarch64 => "arm64",
            Arch::Ppc64le => "ppc64el",
        }
    }

    /// The GNU triple of the cross toolchain.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-linux-gnu",
            Arch::Ppc64le => "powerpc64le-linux-gnu",
        }
    }

    /// Rust's target triple, to build pagefit itself for the VM.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Ppc64le => "powerpc64le-unknown-linux-gnu",
        }
    }

    /// Where Debian's cross glibc for this architecture lives.
    pub fn sysroot(self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/usr/{}", self.triple()))
    }

    /// The page size of this architecture's large-page kernel.
    pub fn big_page(self) -> &'static str {
        match self {
            Arch::Aarch64 => "16k",
            Arch::Ppc64le => "64k",
        }
    }

    /// The kernels booted for this architecture: the 4K baseline first.
    pub fn page_sizes(self) -> [&'static str; 2] {
        ["4k", self.big_page()]
    }

    /// Parses `aarch64` or `ppc64le`.
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }
}

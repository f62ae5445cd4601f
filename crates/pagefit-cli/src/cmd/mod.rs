//! One module per command: each takes its parsed arguments (`crate::args`)
//! and returns the exit status.

pub mod binfmt;
pub mod check;
pub mod explain;
pub mod fat;
pub mod fix;
pub mod fix_dep;
pub mod run;

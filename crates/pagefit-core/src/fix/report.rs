//! What `pagefit fix` did, as data: the typed answer of the fix API, which
//! the CLI renders (text or JSON) and other callers read directly.

use serde::{Deserialize, Serialize};

use crate::fix::plan::{PermissionCost, Refusal, RewritePlan, Strategy};
use crate::fix::proof::ComparedBytes;
use crate::page::PageSize;

/// What happened, in the order a script asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixStatus {
    /// Written and proven.
    Fixed,
    /// Nothing to do: the input is already ok at P (copied to the output unchanged).
    AlreadyOk,
    /// `--dry-run`: the plan, nothing written.
    Planned,
    /// No strategy applies (or `--no-wx` refused the only one that does).
    Refused,
    /// The written file did not pass the proof and was deleted.
    VerificationFailed,
    /// A FatELF record `--record` did not select: copied unchanged.
    NotSelected,
    /// A FatELF record fixed and proven, but not written because another
    /// record was refused or failed its proof.
    NotWritten,
    /// `--closure`: a library from outside the program's tree that is ok at
    /// P, left where it is.
    Kept,
}

impl FixStatus {
    /// Refused or failed: nothing may be written.
    pub fn is_failure(self) -> bool {
        matches!(self, FixStatus::Refused | FixStatus::VerificationFailed)
    }

    /// The kebab-case name text and JSON use.
    pub fn name(self) -> &'static str {
        match self {
            FixStatus::Fixed => "fixed",
            FixStatus::AlreadyOk => "already-ok",
            FixStatus::Planned => "planned",
            FixStatus::Refused => "refused",
            FixStatus::VerificationFailed => "verification-failed",
            FixStatus::NotSelected => "not-selected",
            FixStatus::NotWritten => "not-written",
            FixStatus::Kept => "kept",
        }
    }

    /// The output is usable as the input at P: fixed, or already ok.
    pub fn is_usable(self) -> bool {
        matches!(self, FixStatus::Fixed | FixStatus::AlreadyOk)
    }
}

/// `pagefit fix --format json` (for a FatELF file, one per record).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FixReport {
    /// The input, as the user named it.
    pub path: String,
    /// Where the result was written.
    pub output: Option<String>,
    /// FatELF only: `recordN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// FatELF only: the record's target after the fix (version 2: with its
    /// largest ok page size, measured on the fixed file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The page size the result loads at.
    pub page_size: PageSize,
    /// What happened.
    pub status: FixStatus,
    /// The strategy that fixed it.
    pub strategy: Option<Strategy>,
    /// How far rebase moved every address (0 otherwise).
    pub delta: u64,
    /// Why it was refused or failed verification.
    pub reason: Option<String>,
    /// For a refusal the input itself must change for: what to do instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// Permissions gained or RELRO protection given up.
    pub costs: Vec<PermissionCost>,
    /// What the user should know besides the costs.
    pub warnings: Vec<String>,
    /// Strategies that did not apply, and why.
    pub refused: Vec<Refusal>,
    /// Some output segment is both writable and executable.
    pub writable_executable: bool,
    /// The loaders the output was proven `ok` under.
    pub loaders: Vec<String>,
    /// What the proof compared.
    pub verified: Option<ComparedBytes>,
    /// `--dry-run`: the plan (for users; not read back).
    #[serde(default, skip_deserializing)]
    pub plan: Option<RewritePlan>,
}

impl FixReport {
    /// A report on `path` that says nothing was done yet.
    pub fn new(path: &str, page_size: PageSize) -> FixReport {
        FixReport {
            path: path.to_string(),
            output: None,
            record: None,
            target: None,
            page_size,
            status: FixStatus::Refused,
            strategy: None,
            delta: 0,
            reason: None,
            remedy: None,
            costs: Vec::new(),
            warnings: Vec::new(),
            refused: Vec::new(),
            writable_executable: false,
            loaders: Vec::new(),
            verified: None,
            plan: None,
        }
    }
}

/// What happened to one object of a closure (`pagefit fix --closure`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClosureObjectFix {
    /// Its file name.
    pub name: String,
    /// Where the program loads it from.
    pub input: String,
    /// Where its copy is, if the output directory holds one.
    pub output: Option<String>,
    /// What happened.
    pub status: FixStatus,
    /// The strategy that fixed it.
    pub strategy: Option<Strategy>,
    /// Why it was refused.
    pub reason: Option<String>,
}

/// `pagefit fix --closure BIN --out DIR --format json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClosureFixReport {
    /// The program.
    pub program: String,
    /// The output directory.
    pub out: String,
    /// The page size the closure loads at.
    pub page_size: PageSize,
    /// Every object of the closure, in load order.
    pub objects: Vec<ClosureObjectFix>,
    /// The script that runs the program with DIR/lib first, when one was needed.
    pub launcher: Option<String>,
    /// Whether the closure resolved from DIR is ok at P.
    pub proven: bool,
    /// Why not, in words.
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::FixStatus;

    #[test]
    fn status_names_are_the_json_names() {
        use FixStatus::*;
        for status in [Fixed, AlreadyOk, Planned, Refused, VerificationFailed, NotSelected, NotWritten, Kept] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.name());
        }
    }
}

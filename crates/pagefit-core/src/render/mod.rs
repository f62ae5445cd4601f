//! Every renderer of findings and reports: text and JSON ([`report`]) and
//! SARIF 2.1.0 ([`sarif`]). Each renders data the other layers produce.

pub mod fix;
pub mod report;
pub mod sarif;

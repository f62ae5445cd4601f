//! SARIF 2.1.0, the format code-scanning tools read: one rule per
//! [`FindingKind`], one result per finding of each (file, page size, loader),
//! located at the file and, for archive members, the member inside it.

use serde_json::{json, Value};

use crate::predict::check::FileReport;
use crate::predict::effect::Severity;
use crate::predict::finding::FindingKind;
use crate::render::report::InputError;

/// The OASIS schema the log declares.
const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The SARIF log for `reports` and the inputs that could not be analysed.
pub fn sarif_log(reports: &[FileReport], errors: &[InputError]) -> Value {
    let rules: Vec<Value> = FindingKind::ALL
        .iter()
        .map(|kind| {
            json!({
                "id": kind.name(),
                "name": kind.name(),
                "shortDescription": { "text": kind.summary() },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let mut results = Vec::new();
    for report in reports {
        for result in &report.results {
            for finding in &result.findings {
                let level = match (finding.severity, report.required) {
                    (_, false) | (Severity::Info, _) => "note",
                    (Severity::Degraded, _) => "warning",
                    (Severity::Broken | Severity::Rejected, _) => "error",
                };
                let rule_index = FindingKind::ALL.iter().position(|k| *k == finding.kind).unwrap_or(0);
                let mut text = format!(
                    "{} at {} under {}: {}: {}",
                    report.path,
                    result.page_size,
                    result.loader,
                    result.outcome.name(),
                    finding.message
                );
                if let Some(message) = &result.message {
                    text.push_str(&format!(" ({message})"));
                }
                let mut result = json!({
                    "ruleId": finding.kind.name(),
                    "ruleIndex": rule_index,
                    "level": level,
                    "message": { "text": text },
                    "locations": [location(&report.path)],
                    "properties": {
                        "pageSize": result.page_size.bytes(),
                        "loader": result.loader.name(),
                        "outcome": result.outcome.name(),
                        "required": report.required,
                        "segments": finding.segments,
                        "sections": finding.sections,
                    },
                });
                if let Some(owners) = &report.owners {
                    result["properties"]["owners"] = json!(owners);
                }
                results.push(result);
            }
        }
    }
    let notifications: Vec<Value> = errors
        .iter()
        .map(|error| json!({ "level": "error", "message": { "text": format!("{}: {}", error.path, error.message) }, "locations": [location(&error.path)] }))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "pagefit",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            } },
            "invocations": [{ "executionSuccessful": errors.is_empty(), "toolExecutionNotifications": notifications }],
            "results": results,
        }],
    })
}

/// The file as a physical location and, for `archive!/member` paths, the
/// member as a logical one.
fn location(path: &str) -> Value {
    let (file, member) = match path.split_once('!') {
        Some((file, member)) => (file, Some(member.trim_start_matches('/'))),
        None => (path, None),
    };
    let mut location = json!({ "physicalLocation": { "artifactLocation": { "uri": file_uri(file) } } });
    if let Some(member) = member {
        location["logicalLocations"] = json!([{ "name": member, "fullyQualifiedName": path, "kind": "module" }]);
    }
    location
}

/// A URI reference for a path: relative paths stay relative, absolute ones
/// become `file://` URIs; anything outside RFC 3986's unreserved set is escaped.
fn file_uri(path: &str) -> String {
    let mut uri = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        uri.push_str("file://");
    }
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(file_uri("lib/libfoo.so"), "lib/libfoo.so");
        assert_eq!(file_uri("/usr/lib/a b+c.so"), "file:///usr/lib/a%20b%2Bc.so");
    }

    #[test]
    fn members_are_logical_locations_inside_their_archive() {
        let location = location("app.apk!/lib/arm64-v8a/libfoo.so");
        assert_eq!(location["physicalLocation"]["artifactLocation"]["uri"], "app.apk");
        assert_eq!(location["logicalLocations"][0]["name"], "lib/arm64-v8a/libfoo.so");
    }
}

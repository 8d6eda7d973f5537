//! Rendering a [`ScanReport`]: human text, JSON and SARIF 2.1.0.

use crate::finding::ScanReport;

mod sarif;
mod text;

pub use sarif::to_sarif;
pub use text::to_text;

/// Version of the JSON report layout; bumped on incompatible changes.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// The report as JSON: `{"schema_version", "verdict", "scanned", "findings", "files": [...]}`.
pub fn to_json(report: &ScanReport) -> serde_json::Value {
    serde_json::json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "tool": "nnguard",
        "verdict": report.verdict(),
        "scanned": report.scanned(),
        "findings": report.finding_count(),
        "files": report.files,
    })
}

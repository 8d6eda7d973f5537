//! The registry of scanner rules.
//!
//! Every finding the scanner reports names one [`Rule`]. Rules are grouped by the format they
//! inspect, one file per format, and each rule is documented as *What it flags*, *Why it is
//! dangerous*, *Example* and *References*. [`ALL`] lists every rule once; it feeds the SARIF
//! rule table and the documentation test that keeps codes unique.

pub mod file;
pub mod npy;
pub mod onnx;
pub mod pickle;
pub mod safetensors;
pub mod tar;
pub mod zip;

use serde::Serialize;

/// How bad a finding is, from the point of view of someone about to load the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no direct risk on its own.
    Low,
    /// The file is malformed or unusual in a way loaders may disagree about.
    Medium,
    /// Loading the file may run code or read outside the model, or the scanner could not prove
    /// it safe.
    High,
    /// Loading the file runs code that is known to be able to take over the process.
    Critical,
}

impl Severity {
    /// The SARIF `level` for this severity.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Low => "note",
            Severity::Medium => "warning",
            Severity::High | Severity::Critical => "error",
        }
    }

    /// The `security-severity` score (0–10) code-scanning dashboards use to rank results.
    pub fn security_score(self) -> &'static str {
        match self {
            Severity::Low => "2.0",
            Severity::Medium => "5.0",
            Severity::High => "8.0",
            Severity::Critical => "9.8",
        }
    }

    /// Lower-case name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scanner rule: a stable code, a name that says what it flags, and its default severity.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// Stable code, e.g. `NNG101`; never reused for another rule.
    pub code: &'static str,
    /// Name of what is flagged, e.g. `PickleGlobalNotAllowed`.
    pub name: &'static str,
    /// Severity used when a finding does not set its own.
    pub severity: Severity,
    /// One sentence for reports and the SARIF rule table.
    pub summary: &'static str,
    /// What to do about it.
    pub help: &'static str,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}

impl Eq for Rule {}

/// Every rule, in code order.
pub const ALL: &[&Rule] = &[
    &file::FILE_FORMAT_UNRECOGNIZED,
    &file::SCAN_LIMIT_EXCEEDED,
    &file::NESTING_TOO_DEEP,
    &pickle::PICKLE_GLOBAL_NOT_ALLOWED,
    &pickle::PICKLE_PARSE_ERROR,
    &pickle::PICKLE_UNKNOWN_OPCODE,
    &pickle::PICKLE_MEMO_INCONSISTENT,
    &pickle::PICKLE_TRAILING_DATA,
    &pickle::PICKLE_FRAME_LENGTH_MISMATCH,
    &pickle::PICKLE_CALL_TARGET_NOT_GLOBAL,
    &pickle::PICKLE_EXTENSION_CODE,
    &pickle::PICKLE_EXPANSION_BOMB,
    &pickle::PICKLE_NESTED_PICKLE,
    &pickle::TORCH_LEGACY_STORAGE_MISMATCH,
    &pickle::TORCH_STORAGE_MISMATCH,
    &zip::ZIP_ARCHIVE_INVALID,
    &zip::ZIP_ENTRY_ESCAPES_ROOT,
    &zip::ZIP_ENTRY_ENCRYPTED,
    &zip::ZIP_CRC_MISMATCH,
    &zip::ZIP_COMPRESSION_RATIO,
    &zip::ZIP_TOO_MANY_ENTRIES,
    &zip::ZIP_ENTRY_IS_LINK,
    &zip::ZIP_DUPLICATE_ENTRY,
    &tar::TAR_ARCHIVE_INVALID,
    &tar::TAR_ENTRY_ESCAPES_ROOT,
    &tar::TAR_ENTRY_IS_LINK,
    &npy::NPY_OBJECT_ARRAY,
    &npy::NPY_HEADER_INVALID,
    &npy::NPY_DATA_SIZE_MISMATCH,
    &onnx::ONNX_PARSE_ERROR,
    &onnx::ONNX_EXTERNAL_DATA_ESCAPES,
    &onnx::ONNX_EXTERNAL_DATA_LINK,
    &onnx::ONNX_CUSTOM_OP_DOMAIN,
    &safetensors::SAFETENSORS_HEADER_TOO_LARGE,
    &safetensors::SAFETENSORS_HEADER_INVALID,
    &safetensors::SAFETENSORS_UNKNOWN_DTYPE,
    &safetensors::SAFETENSORS_SHAPE_OVERFLOW,
    &safetensors::SAFETENSORS_SIZE_MISMATCH,
    &safetensors::SAFETENSORS_OFFSETS_OVERLAP,
    &safetensors::SAFETENSORS_OFFSETS_GAP,
    &safetensors::SAFETENSORS_OFFSET_OUT_OF_BOUNDS,
    &safetensors::SAFETENSORS_DUPLICATE_KEY,
];

/// Looks a rule up by code (`NNG101`) or name (`PickleGlobalNotAllowed`).
pub fn find(code_or_name: &str) -> Option<&'static Rule> {
    ALL.iter()
        .copied()
        .find(|r| r.code == code_or_name || r.name == code_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_names_are_unique() {
        let codes: HashSet<_> = ALL.iter().map(|r| r.code).collect();
        let names: HashSet<_> = ALL.iter().map(|r| r.name).collect();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn every_rule_has_summary_and_help() {
        for rule in ALL {
            assert!(
                rule.code.starts_with("NNG") && rule.code.len() == 6,
                "{}",
                rule.code
            );
            assert!(
                !rule.summary.is_empty() && !rule.help.is_empty(),
                "{}",
                rule.name
            );
        }
    }

    #[test]
    fn find_by_code_and_name() {
        assert_eq!(find("NNG101"), Some(&pickle::PICKLE_GLOBAL_NOT_ALLOWED));
        assert_eq!(
            find("ZipEntryEscapesRoot"),
            Some(&zip::ZIP_ENTRY_ESCAPES_ROOT)
        );
        assert_eq!(find("nope"), None);
    }
}

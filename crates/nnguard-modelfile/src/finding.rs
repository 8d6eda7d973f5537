//! What a scan reports: findings with their location, per file and for a whole run.

use crate::rules::{Rule, Severity};
use serde::Serialize;

/// Where in a file a finding is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Archive entries from the outside in, e.g. `["archive/data.pkl"]`, or
    /// `["weights.npz", "arr_0.npy"]`; empty for the file itself. A pickle unpickled by another
    /// pickle appears as `pickle.loads@OFFSET`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<String>,
    /// Byte offset within the innermost entry (or the file), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Location {
    /// The entry chain joined with `!`, or `None` for the file itself.
    pub fn entry_path(&self) -> Option<String> {
        if self.entry.is_empty() {
            None
        } else {
            Some(self.entry.join("!"))
        }
    }
}

/// One thing the scanner flags.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule that flags it.
    #[serde(serialize_with = "serialize_rule")]
    pub rule: &'static Rule,
    /// Severity of this occurrence (may be above the rule's default, e.g. `os.system`).
    pub severity: Severity,
    /// What was found, naming the import, call, entry or field.
    pub message: String,
    /// Where it was found.
    pub location: Location,
}

fn serialize_rule<S: serde::Serializer>(rule: &&'static Rule, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Rule", 2)?;
    st.serialize_field("code", rule.code)?;
    st.serialize_field("name", rule.name)?;
    st.end()
}

/// The formats the scanner recognises by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One or more raw pickles.
    Pickle,
    /// A PyTorch checkpoint in the zip format (torch ≥ 1.6).
    TorchZip,
    /// A PyTorch checkpoint in the legacy stacked-pickle format (torch < 1.6).
    TorchLegacy,
    /// A tar archive (PyTorch's format before 0.4, or any tar).
    Tar,
    /// A zip archive that is not a PyTorch checkpoint (`.npz` included).
    Zip,
    /// A NumPy `.npy` array.
    Npy,
    /// An ONNX model.
    Onnx,
    /// A safetensors file.
    Safetensors,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Pickle => "pickle",
            Format::TorchZip => "pytorch zip",
            Format::TorchLegacy => "pytorch legacy",
            Format::Tar => "tar",
            Format::Zip => "zip",
            Format::Npy => "npy",
            Format::Onnx => "onnx",
            Format::Safetensors => "safetensors",
        })
    }
}

/// The outcome of scanning one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The path as given or found while walking a directory.
    pub path: String,
    /// The format found by content; `None` when the file was skipped or unreadable.
    pub format: Option<Format>,
    /// Bytes of the file.
    pub bytes: u64,
    /// Findings, in the order found.
    pub findings: Vec<Finding>,
    /// Why the file could not be scanned (I/O error), if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the file is in no model format and was not named like a model (it is not
    /// counted as scanned).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

impl FileReport {
    /// A report for a file that could not be read.
    pub fn failed(path: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            format: None,
            bytes: 0,
            findings: Vec::new(),
            error: Some(error.into()),
            skipped: false,
        }
    }

    /// The most severe finding's severity, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// How a whole scan ended, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No file was scanned (exit 3).
    NothingScanned,
    /// Every scanned file is clean (exit 0).
    Clean,
    /// At least one finding (exit 1).
    Findings,
    /// At least one file could not be read (exit 2).
    Error,
}

/// The outcome of scanning every path given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// One report per file, in the order found.
    pub files: Vec<FileReport>,
}

impl ScanReport {
    /// Files actually scanned (not skipped, not failed).
    pub fn scanned(&self) -> usize {
        self.files
            .iter()
            .filter(|f| !f.skipped && f.error.is_none())
            .count()
    }

    /// Number of findings over all files.
    pub fn finding_count(&self) -> usize {
        self.files.iter().map(|f| f.findings.len()).sum()
    }

    /// The worst result: an unreadable file beats a finding, which beats clean.
    pub fn verdict(&self) -> Verdict {
        if self.files.iter().any(|f| f.error.is_some()) {
            Verdict::Error
        } else if self.finding_count() > 0 {
            Verdict::Findings
        } else if self.scanned() == 0 {
            Verdict::NothingScanned
        } else {
            Verdict::Clean
        }
    }
}

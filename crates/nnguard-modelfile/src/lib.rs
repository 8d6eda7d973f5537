//! Model-file scanning for nnguard.
//!
//! A PyTorch checkpoint is a pickle program: loading an untrusted one runs its code. This
//! crate inspects model files *without executing or importing anything*:
//!
//! - formats are recognised by content: raw pickles (protocols 0–5, several in a row),
//!   PyTorch zip, tar and legacy stacked-pickle checkpoints, NumPy `.npy`/`.npz`, ONNX and
//!   safetensors, nested in archives or not;
//! - pickles run in a non-executing VM ([`pickle`]) that checks every import against an
//!   allowlist of tensor-rebuilding callables and **fails closed**: an unknown import, a parse
//!   error, an unknown opcode, a memo inconsistency or trailing data is a finding;
//! - every resource is bounded by a named limit ([`limits`]); reaching one is a finding;
//! - findings name a [`rules::Rule`], a severity, the archive entry and the byte offset, and
//!   render as text, JSON or SARIF 2.1.0 ([`report`]);
//! - [`convert`] turns a PyTorch checkpoint into safetensors through the same reader.
//!
//! ```
//! use nnguard_modelfile::Scanner;
//!
//! // `os.system("echo hi")` in protocol 0, as a hostile checkpoint would carry it.
//! let report = Scanner::new().scan_bytes("model.pkl", b"cos\nsystem\n(S'echo hi'\ntR.");
//! assert_eq!(report.findings.len(), 1);
//! assert_eq!(report.findings[0].rule.name, "PickleGlobalNotAllowed");
//! assert_eq!(report.findings[0].location.offset, Some(0));
//! ```

pub mod convert;
mod error;
mod finding;
pub mod limits;
pub mod pickle;
pub mod report;
pub mod rules;
mod scan;
pub mod torch;

pub use error::{ModelFileError, Result};
pub use finding::{FileReport, Finding, Format, Location, ScanReport, Verdict};
pub use limits::Limits;
pub use rules::{Rule, Severity};
pub use scan::{NpyHeader, Scanner, parse_npy_header, scan_paths};

/// The subset of `onnx.proto` messages the scanner decodes, for tools and tests that build
/// models.
pub mod onnx {
    pub use crate::scan::onnx::{
        AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        SparseTensorProto, StringStringEntryProto, TensorProto,
    };
}

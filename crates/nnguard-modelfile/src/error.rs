//! The error type of this crate.

use std::path::PathBuf;

/// Why an operation of this crate failed. Problems *in* a scanned file are findings, not
/// errors; errors are for what stops the work itself (I/O, conversion refusals).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelFileError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Conversion refused because the scan reported findings.
    #[error(
        "{path}: refusing to convert, the scan reported {count} finding(s) (first: {first}); pass --force to convert anyway"
    )]
    HasFindings {
        /// The input file.
        path: PathBuf,
        /// How many findings.
        count: usize,
        /// The first finding's rule name and message.
        first: String,
    },
    /// The input is not a checkpoint this crate can convert.
    #[error("{path}: cannot convert: {reason}")]
    NotConvertible {
        /// The input file.
        path: PathBuf,
        /// What is missing or unsupported.
        reason: String,
    },
    /// A tensor of the checkpoint is inconsistent (bad dtype, shape, stride, storage bounds).
    #[error("{path}: tensor {tensor:?}: {reason}")]
    BadTensor {
        /// The input file.
        path: PathBuf,
        /// The tensor's name in the output.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the safetensors output failed.
    #[error("{path}: cannot write safetensors: {reason}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = ModelFileError> = std::result::Result<T, E>;

//! The one error type of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while finding, reading or checking a data set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A path that should be a file is a directory (or the reverse).
    #[error("{path}: expected {expected}")]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What was expected there ("a file", "a directory").
        expected: &'static str,
    },
    /// A file's leading magic number is not the one its format requires.
    #[error(
        "{path}: bad magic number 0x{found:08x} (expected 0x{expected:08x}); is this an {format} file?"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The format that was expected.
        format: &'static str,
        /// The magic number read.
        found: u32,
        /// The magic number expected.
        expected: u32,
    },
    /// A file is shorter than its header says.
    #[error("{path}: truncated: header promises {expected} bytes of data, file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes promised.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// A file has bytes after the data its header describes.
    #[error("{path}: {extra} unexpected bytes after the data")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Number of extra bytes.
        extra: u64,
    },
    /// A file's content is malformed in a way that has no more specific variant.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Image and label files disagree on the number of records.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Records in the image file.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Records in the label file.
        n_labels: usize,
    },
    /// A label is not a valid class index.
    #[error(
        "{path}: label {label} at record {index} is out of range (the data set has {num_classes} classes)"
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Record index.
        index: usize,
        /// The label found.
        label: i64,
        /// Number of classes.
        num_classes: usize,
    },
    /// A pixel value is NaN, infinite, or outside `[0, 1]`.
    #[error(
        "{path}: value {value} at element {index} is outside [0, 1] (scale images to [0, 1] or store them as uint8)"
    )]
    ValueOutOfRange {
        /// The file.
        path: PathBuf,
        /// Flat element index.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A well-known data set is not installed.
    #[error("{name} not found (looked in {searched}); {hint}")]
    NotInstalled {
        /// The data set's name.
        name: &'static str,
        /// The directories that were searched.
        searched: String,
        /// How to install it.
        hint: &'static str,
    },
    /// A `--data` argument could not be understood.
    #[error("--data {spec:?}: {reason}")]
    BadSpec {
        /// The argument.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A data set is empty where records are required.
    #[error("{name}: the data set is empty")]
    Empty {
        /// The data set's name.
        name: String,
    },
    /// A data manifest cannot be used: not JSON, another schema, a newer schema version,
    /// or a field that does not parse.
    #[error("{path}: {reason}")]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Signing a manifest, or reading its key or signature, failed.
    #[error("{path}: {error}")]
    Signing {
        /// The manifest, key or signature file concerned.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as a source).
        error: nnguard_signing::SigningError,
    },
    /// A validation setting has a value that cannot work.
    #[error("{name}: {reason}")]
    InvalidOption {
        /// The setting (as the command-line flag that sets it).
        name: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

//! The one error type of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A file's format is not one nnguard reads as a model.
    #[error("{path}: unknown model format (expected .onnx or .safetensors)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A safetensors file is malformed (truncated, bad header, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    BadSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weights file lacks a tensor the architecture needs.
    #[error("{path}: tensor {name:?} is missing (the {arch} architecture needs it)")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// A tensor's shape differs from what the architecture expects.
    #[error(
        "{path}: tensor {name:?} has shape {found:?}, but the {arch} architecture expects {expected:?}"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The architecture.
        arch: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// A tensor is stored with a dtype nnguard does not load.
    #[error("{path}: tensor {name:?} has dtype {dtype}; expected F32")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// The JSON sidecar beside a weights file is missing or malformed.
    #[error("{path}: {reason}")]
    BadSidecar {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An ONNX file could not be parsed.
    #[error("{path}: not a valid ONNX model: {reason}")]
    BadOnnx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An ONNX graph uses an operator nnguard does not evaluate.
    #[error("{path}: unsupported ONNX op {op:?} in node {node:?} (supported: {supported})")]
    UnsupportedOp {
        /// The file.
        path: PathBuf,
        /// The operator type.
        op: String,
        /// The node's name.
        node: String,
        /// The supported operators, comma separated.
        supported: String,
    },
    /// An ONNX node has an attribute or input nnguard cannot honour.
    #[error("{path}: node {node:?} ({op}): {reason}")]
    BadNode {
        /// The file.
        path: PathBuf,
        /// The node's name.
        node: String,
        /// The operator type.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// An ONNX model imports an operator set outside the supported range.
    #[error(
        "{path}: ONNX opset {found} of domain {domain:?} is not supported (supported: {min}..={max})"
    )]
    UnsupportedOpset {
        /// The file.
        path: PathBuf,
        /// The domain.
        domain: String,
        /// The opset version found.
        found: i64,
        /// Lowest supported version.
        min: i64,
        /// Highest supported version.
        max: i64,
    },
    /// An input batch does not fit the model.
    #[error("input shape {found:?} does not fit the model, which expects {expected:?} per image")]
    InputShape {
        /// The model's per-image shape (C, H, W).
        expected: [usize; 3],
        /// The shape given.
        found: Vec<usize>,
    },
    /// A requested intermediate layer does not exist.
    #[error("no layer named {name:?} (available: {available})")]
    UnknownLayer {
        /// The requested name.
        name: String,
        /// The available layer names, comma separated.
        available: String,
    },
    /// An architecture name is not one of the built-ins.
    #[error("unknown architecture {name:?} (expected mlp, cnn or resnet8)")]
    UnknownArch {
        /// The name given.
        name: String,
    },
    /// A parameter is outside its valid range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter (as its command-line flag where there is one).
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A numeric failure while running or training a model (NaN, divergence).
    #[error("{0}")]
    Eval(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error,
        }
    }
}

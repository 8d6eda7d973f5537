//! The one error type of the certification crate.

use nnguard_model::ModelError;

/// Everything that can go wrong while configuring or running a certifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// A parameter is invalid; `flag` is its command-line name (`--sigma`, `--n0`, ...).
    #[error("{flag}: {reason}")]
    Config {
        /// The flag (or parameter) at fault.
        flag: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// An ONNX graph contains an operator the bound propagation cannot handle.
    #[error("{method} does not support ONNX op {op:?} in node {node:?}{detail}")]
    UnsupportedOp {
        /// `IBP` or `CROWN`.
        method: &'static str,
        /// The ONNX operator type.
        op: String,
        /// The node's name.
        node: String,
        /// Why, when the op is supported in other forms (starts with `: `), or empty.
        detail: String,
    },
    /// A built-in network contains a layer the bound propagation cannot handle.
    #[error("{method} does not support layer {layer:?} of the built-in {arch} network: {reason}")]
    UnsupportedLayer {
        /// `IBP` or `CROWN`.
        method: &'static str,
        /// The architecture name.
        arch: String,
        /// The layer's name.
        layer: String,
        /// What is unsupported.
        reason: String,
    },
    /// Images do not have the shape the model expects.
    #[error("images of {found} values do not fit the model's input shape {expected:?}")]
    InputShape {
        /// The model's per-image shape.
        expected: [usize; 3],
        /// Number of values given.
        found: usize,
    },
    /// The model failed or produced something unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl CertifyError {
    /// A configuration error for `flag`.
    pub fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            flag,
            reason: reason.into(),
        }
    }
}

//! The one error type of the defence crate.

use nnguard_attack::AttackError;
use nnguard_model::ModelError;

/// Everything that can go wrong while building or running a defence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefenseError {
    /// A parameter is outside its valid range; `flag` names the command-line flag.
    #[error("invalid {flag}: {reason}")]
    InvalidConfig {
        /// The flag (or parameter) at fault.
        flag: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A transform or detector does not fit the model's input shape.
    #[error("{what} does not fit inputs of shape {shape:?}: {reason}")]
    ShapeMismatch {
        /// The transform or detector.
        what: String,
        /// The per-image input shape (C, H, W).
        shape: [usize; 3],
        /// Why it does not fit.
        reason: String,
    },
    /// A defence needs a layer or operation the model does not offer.
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// The defence.
        what: String,
        /// What is missing (the operation or layer, by name).
        reason: String,
    },
    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(Box<ModelError>),
    /// An attack used by a defence failed.
    #[error(transparent)]
    Attack(Box<AttackError>),
    /// An image codec failed.
    #[error("{codec}: {reason}")]
    Codec {
        /// The codec (`jpeg`).
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl DefenseError {
    /// An invalid parameter, by flag.
    pub fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        DefenseError::InvalidConfig {
            flag,
            reason: reason.into(),
        }
    }
}

impl From<ModelError> for DefenseError {
    fn from(e: ModelError) -> Self {
        DefenseError::Model(Box::new(e))
    }
}

impl From<AttackError> for DefenseError {
    fn from(e: AttackError) -> Self {
        DefenseError::Attack(Box::new(e))
    }
}

impl From<DefenseError> for ModelError {
    /// Lets a [`TrainObjective`](nnguard_model::train::TrainObjective) report a defence error
    /// through the training loop.
    fn from(e: DefenseError) -> Self {
        match e {
            DefenseError::Model(m) => *m,
            DefenseError::InvalidConfig { flag, reason } => {
                ModelError::InvalidParameter { name: flag, reason }
            }
            other => ModelError::Eval(other.to_string()),
        }
    }
}

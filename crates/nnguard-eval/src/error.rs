//! The one error type of the evaluation crate.

use std::path::PathBuf;

use nnguard_attack::AttackError;
use nnguard_model::ModelError;

use crate::report::Report;

/// Everything that can go wrong while configuring or running an evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A parameter is invalid; `flag` is its command-line name (`--eps`, `--shard`, ...).
    #[error("invalid {flag}: {reason}")]
    InvalidConfig {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// An attack failed to build or run.
    #[error(transparent)]
    Attack(#[from] AttackError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A report or reference file is not what it should be.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Partial reports that cannot be merged.
    #[error("cannot merge reports: {reason}")]
    Merge {
        /// Why.
        reason: String,
    },
    /// The evaluation stopped part way; `partial` holds everything finished before the
    /// failure so that it is not lost.
    #[error("evaluation stopped after {done} of {total} inputs: {source}")]
    Interrupted {
        /// The cause.
        source: Box<EvalError>,
        /// Inputs whose results are in `partial`.
        done: usize,
        /// Inputs the evaluation was asked for.
        total: usize,
        /// The report of the finished inputs (marked incomplete).
        partial: Box<Report>,
    },
}

impl EvalError {
    /// Shorthand for [`EvalError::InvalidConfig`].
    pub fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        EvalError::InvalidConfig {
            flag,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`EvalError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
}

//! The one error type of the attack crate.

use nnguard_model::ModelError;

/// Everything that can go wrong while building or running an attack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttackError {
    /// A parameter is invalid; `flag` is its command-line name (`--eps`, `--steps`, ...).
    #[error("invalid {flag}: {reason}")]
    InvalidConfig {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// An attack needs something the model or the inputs do not offer.
    #[error("{attack} cannot run: {reason}")]
    Unsupported {
        /// The attack.
        attack: String,
        /// Why.
        reason: String,
    },
    /// An input's query budget is spent.
    #[error("query budget of {budget} exhausted for input {row}")]
    BudgetExhausted {
        /// The input's row in the batch.
        row: usize,
        /// Its budget.
        budget: u64,
    },
    /// The oracle answers labels only and the attack asked for scores.
    #[error("the oracle answers labels only; {attack} needs scores")]
    ScoresUnavailable {
        /// The attack.
        attack: String,
    },
    /// A remote model failed to answer.
    #[error("remote model {url}: {reason}")]
    Remote {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl AttackError {
    /// Shorthand for [`AttackError::InvalidConfig`].
    pub fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        AttackError::InvalidConfig {
            flag,
            reason: reason.into(),
        }
    }

    /// Checks a count setting (steps, restarts, queries, ...): zero is rejected by `flag`.
    pub fn at_least_one(flag: &'static str, value: u64) -> Result<(), Self> {
        if value == 0 {
            Err(Self::config(flag, "must be at least 1"))
        } else {
            Ok(())
        }
    }
}

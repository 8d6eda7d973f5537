//! Attacks on neural networks.
//!
//! - [`evasion`]: adversarial examples, white-box ([`Differentiable`](nnguard_model::Differentiable)
//!   models) and black-box ([`Oracle`] only), behind [`EvasionAttack`].
//! - [`Tracker`]: the harness's record of the best adversarial example per input; attacks
//!   offer candidates, the tracker projects, scores and keeps them, and a final re-query
//!   decides success.
//! - [`Oracle`]/[`QueryOracle`]: query-only access with per-input budgets.
//! - [`RemoteScorer`]: a model served over the Open Inference Protocol v2, with timeouts
//!   and a rate limit.

pub mod error;
pub mod evasion;
pub mod norm;
pub mod oracle;
pub mod remote;
pub mod steps;
pub mod tracker;

pub use error::AttackError;
pub use evasion::{AttackContext, EvasionAttack};
pub use norm::{Norm, Threat};
pub use oracle::{Oracle, QueryOracle, Reveal, Scorer};
pub use remote::{RemoteOptions, RemoteScorer};
pub use tracker::{Tracker, TrackerResult};

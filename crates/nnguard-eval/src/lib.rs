//! Robustness evaluation that checks itself.
//!
//! - [`evaluate`]: runs an attack or an ensemble ([`plan`]) on a data set in batches, only
//!   on correctly classified inputs, keeping the per-input worst case; every result is
//!   re-queried and checked against the threat model by the harness.
//! - [`checks`]: the validity checks whose verdicts accompany every robust accuracy.
//! - [`adapt`]: wrappers the harness applies when a check finds a problem (EOT,
//!   log-probabilities, SPSA) and BPDA for known preprocessing.
//! - [`Report`]: schema-versioned JSON, merged exactly across shards ([`Shard`]); [`html`]
//!   renders it as one self-contained page.

pub mod adapt;
pub mod checks;
pub mod error;
pub mod harness;
pub mod html;
pub mod images;
pub mod plan;
pub mod report;
pub mod shard;

pub use checks::{CheckResult, Status};
pub use error::EvalError;
pub use harness::{EvalConfig, EvalInputs, Progress, Reference, Subject, evaluate};
pub use plan::{AttackSpec, fast_ensemble, parse_attacks, standard_ensemble};
pub use report::{Report, SCHEMA, write_atomic};
pub use shard::Shard;

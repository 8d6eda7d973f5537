//! Defences against evasion attacks.
//!
//! - [`training`]: robust training objectives for `nnguard train --defense ...` (PGD-AT,
//!   TRADES, fast FGSM-AT, Gaussian noise, defensive distillation, IBP).
//! - [`transform`]: input transformations in front of any model ([`transform::Transformed`]),
//!   attacked through BPDA and EOT.
//! - [`detect`]: detectors of adversarial inputs (feature squeezing, Mahalanobis, a learned
//!   detector) with calibrated thresholds.
//! - [`ensemble`]: the mean of several models' logits, attacked as one model.
//! - [`defended`]: a defended model from command-line flags.
//!
//! Every defence is evaluated by `nnguard eval` with adaptive attacks; a defence that only
//! hides gradients is reported as gradient masking, not as robustness (Athalye, Carlini and
//! Wagner 2018, "Obfuscated Gradients Give a False Sense of Security").

pub mod defended;
pub mod detect;
pub mod ensemble;
pub mod error;
pub mod training;
pub mod transform;

pub use defended::{Defended, DefenseSpec, defend};
pub use ensemble::Ensemble;
pub use error::DefenseError;
pub use transform::{GradientMode, InputTransform, Transformed};

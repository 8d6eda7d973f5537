//! Certified robustness for nnguard.
//!
//! - [`smoothing`]: randomized smoothing (Cohen et al. 2019), PREDICT and CERTIFY with an
//!   L2 radius that holds with probability 1 − α, and the certified-accuracy curve.
//! - [`bounds`]: interval bound propagation (Gowal et al. 2018) and CROWN linear bounds
//!   (Zhang et al. 2018) for ReLU networks in an L∞ ball, giving verified accuracy.
//! - [`Certifier`]: per-input certificates (class or abstain, radius, norm, confidence)
//!   from any of them.
//! - [`stats`]: the normal quantile, Clopper–Pearson bounds and binomial test behind them.
//!
//! Every certifier works in pixel space: the model's normalisation is part of what is
//! certified.

pub mod bounds;
pub mod certificate;
pub mod error;
pub mod smoothing;
pub mod stats;

pub use bounds::{BoundMethod, BoundNet, Verifier, VerifierConfig};
pub use certificate::{CertNorm, Certificate, Certifier};
pub use error::CertifyError;
pub use smoothing::{Smoothing, SmoothingConfig};

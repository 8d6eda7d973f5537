//! Data sets for nnguard.
//!
//! Every loader returns a [`Dataset`]: images as `f32` in `[0, 1]`, laid out NCHW, with
//! integer labels. Sources are named on the command line (`fashion-mnist`, `mnist`,
//! `bundled`, `idx:DIR`, `cifar10:DIR`, `npy:X.npy,Y.npy`) and parsed into a
//! [`DataSource`]. Every file is treated as untrusted: sizes are checked against the bytes
//! actually present before anything is allocated, and every problem is a [`DataError`] that
//! names the file.

mod batch;
mod bundled;
mod check;
mod cifar;
mod dataset;
mod error;
mod idx;
pub mod manifest;
mod npy;
mod source;
pub mod validate;

pub use batch::{BatchOrder, Batches};
pub use check::{CheckConfig, CheckReport, Checker, SplitSummary};
pub use dataset::{Dataset, Split};
pub use error::DataError;
pub use manifest::{DataManifest, SplitSelection};
pub use source::{DataSource, FASHION_MNIST_CLASSES, MNIST_CLASSES};

/// Result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

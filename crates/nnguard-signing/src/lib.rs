//! Model signing and verification, compatible with the OpenSSF model-signing format.
//!
//! A model (a directory or a single file) is hashed into a [`Manifest`] of SHA-256 digests,
//! one per file or per shard, leaving out git metadata and refusing symbolic links by
//! default. The manifest becomes an in-toto [`Statement`] with predicate type
//! `https://model_signing/signature/v1.0`, whose subject digest is the SHA-256 of the
//! concatenated resource digests; the statement is signed into a DSSE [`Envelope`] inside a
//! Sigstore [`Bundle`]. Keys are ECDSA P-256 in PEM, as in the `key` method of the Python
//! `model_signing` tool (PyPI `model-signing`), so signatures made by either tool verify
//! with the other.
//!
//! ```
//! use nnguard_signing::{HashOptions, NoProgress, SigningKey, VerifyOptions, sign_model, verify_model};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x02")?;
//! let key = SigningKey::generate();
//! let signed = sign_model(dir.path(), &key, &HashOptions::default(), &NoProgress)?;
//! let verification = verify_model(
//!     dir.path(),
//!     &signed.bundle,
//!     &key.verifying_key(),
//!     &VerifyOptions::default(),
//!     &NoProgress,
//! )?;
//! assert!(verification.is_verified());
//!
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x03")?;
//! let verification = verify_model(
//!     dir.path(),
//!     &signed.bundle,
//!     &key.verifying_key(),
//!     &VerifyOptions::default(),
//!     &NoProgress,
//! )?;
//! assert_eq!(verification.findings.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Other documents (data-set manifests, any JSON) are signed with the same keys and format
//! through [`Bundle::sign`] or [`Statement::sign`], and checked with [`Bundle::verify`] or
//! [`Statement::verify`].

pub mod bundle;
pub mod dsse;
mod error;
pub mod hashing;
pub mod key;
pub mod manifest;
mod model;
pub mod statement;

pub use bundle::Bundle;
pub use dsse::Envelope;
pub use error::{Result, SigningError};
pub use hashing::{HashOptions, NoProgress, Progress, hash_model};
pub use key::{SigningKey, VerifyingKey, write_key_pair};
pub use manifest::{MODEL_SIGNING_PREDICATE_TYPE, Manifest, Method};
pub use model::{
    Finding, SignedModel, Verification, VerifyOptions, path_inside_model, sign_model, verify_model,
};
pub use statement::Statement;

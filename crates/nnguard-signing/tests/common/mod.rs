//! Helpers shared by the integration tests: fixture paths, keys and model copies.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nnguard_signing::{Bundle, SigningKey, VerifyingKey};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn testdata() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("testdata")
}

pub fn fixture_model() -> PathBuf {
    testdata().join("model")
}

pub fn python_bundle(name: &str) -> Result<Bundle, nnguard_signing::SigningError> {
    Bundle::read(&testdata().join("python-signed").join(name))
}

/// The committed test-only private key (it signs nothing but these fixtures).
pub fn test_signing_key() -> Result<SigningKey, nnguard_signing::SigningError> {
    SigningKey::from_pem_file(&testdata().join("keys/test-only-private-key.pem"))
}

pub fn test_public_key() -> Result<VerifyingKey, nnguard_signing::SigningError> {
    VerifyingKey::from_pem_file(&testdata().join("keys/test-only-public-key.pem"))
}

pub fn other_public_key() -> Result<VerifyingKey, nnguard_signing::SigningError> {
    VerifyingKey::from_pem_file(&testdata().join("keys/other-public-key.pem"))
}

/// Copies the fixture model into a fresh temporary directory, as `<tmp>/model`.
pub fn copy_of_fixture_model() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("model");
    copy_dir(&fixture_model(), &dest)?;
    Ok((tmp, dest))
}

pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

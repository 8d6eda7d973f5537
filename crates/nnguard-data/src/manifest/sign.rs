//! Signing a manifest file and checking its signature, with the keys and format used for
//! models.
//!
//! The manifest is signed as a one-file model in the OpenSSF model-signing format (a
//! Sigstore bundle with a DSSE envelope over an in-toto statement), so
//! `nnguard verify manifest.json --signature manifest.json.sig --key KEY.pub.pem` and the
//! Python `model_signing verify key` accept it too. Renaming the manifest keeps the
//! signature valid; changing one byte of it does not.

use std::path::{Path, PathBuf};

use nnguard_signing::{
    Bundle, HashOptions, SigningKey, VerifyOptions, VerifyingKey, sign_model, verify_model,
};

use crate::{DataError, Result};

/// The outcome of checking a manifest's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The manifest is exactly what the key's owner signed.
    Verified {
        /// The hint (SHA-256 of the public key PEM) of the key that verified it.
        key_hint: String,
    },
    /// The signature does not verify: a wrong key, an altered manifest or signature.
    Failed {
        /// Why, in words.
        reason: String,
    },
}

/// Where a manifest's signature goes by default: beside it, with `.sig` appended
/// (`manifest.json` → `manifest.json.sig`).
pub fn default_signature_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs the manifest file at `manifest` with `key` and writes the bundle to `signature`
/// (atomically).
pub fn sign_manifest(manifest: &Path, key: &SigningKey, signature: &Path) -> Result<()> {
    let signed = sign_model(
        manifest,
        key,
        &HashOptions::default(),
        &nnguard_signing::NoProgress,
    )
    .map_err(|error| DataError::Signing {
        path: manifest.into(),
        error,
    })?;
    signed
        .bundle
        .write(signature)
        .map_err(|error| DataError::Signing {
            path: signature.into(),
            error,
        })
}

/// Checks the bundle at `signature` against the manifest file at `manifest` and `key`.
///
/// A signature that does not verify is a [`SignatureCheck::Failed`]; a signature file that
/// cannot be read or parsed is an error.
pub fn verify_manifest_signature(
    manifest: &Path,
    signature: &Path,
    key: &VerifyingKey,
) -> Result<SignatureCheck> {
    let bundle = Bundle::read(signature).map_err(|error| DataError::Signing {
        path: signature.into(),
        error,
    })?;
    match verify_model(
        manifest,
        &bundle,
        key,
        &VerifyOptions::default(),
        &nnguard_signing::NoProgress,
    ) {
        Ok(v) if v.is_verified() => Ok(SignatureCheck::Verified {
            key_hint: key.hint(),
        }),
        Ok(v) => Ok(SignatureCheck::Failed {
            reason: format!(
                "{} does not match its signature: {}",
                manifest.display(),
                v.findings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
        Err(e) if e.is_verification_failure() => Ok(SignatureCheck::Failed {
            reason: e.to_string(),
        }),
        Err(error) => Err(DataError::Signing {
            path: signature.into(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_manifest_verifies_and_fails_after_an_edit_or_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("m.json");
        std::fs::write(&manifest, b"{\"schema\":\"x\"}\n").unwrap();
        let key = SigningKey::generate();
        let sig = default_signature_path(&manifest);
        assert_eq!(sig, dir.path().join("m.json.sig"));
        sign_manifest(&manifest, &key, &sig).unwrap();
        assert!(matches!(
            verify_manifest_signature(&manifest, &sig, &key.verifying_key()).unwrap(),
            SignatureCheck::Verified { .. }
        ));

        let other = SigningKey::generate().verifying_key();
        let SignatureCheck::Failed { reason } =
            verify_manifest_signature(&manifest, &sig, &other).unwrap()
        else {
            panic!("another key verified the manifest");
        };
        assert!(reason.contains("wrong key"), "{reason}");

        std::fs::write(&manifest, b"{\"schema\":\"y\"}\n").unwrap();
        assert!(matches!(
            verify_manifest_signature(&manifest, &sig, &key.verifying_key()).unwrap(),
            SignatureCheck::Failed { .. }
        ));

        std::fs::write(&sig, b"not json").unwrap();
        assert!(matches!(
            verify_manifest_signature(&manifest, &sig, &key.verifying_key()),
            Err(DataError::Signing { .. })
        ));
    }
}

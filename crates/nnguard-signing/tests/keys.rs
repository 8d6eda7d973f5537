//! Key files as OpenSSL and `model_signing` users have them, and key pairs written by
//! `write_key_pair`.

mod common;

use common::{TestResult, testdata};
use nnguard_signing::{SigningError, SigningKey, VerifyingKey, write_key_pair};

#[test]
fn openssl_sec1_key_with_parameters_block_loads() -> TestResult {
    // `openssl ecparam -name prime256v1 -genkey` writes an EC PARAMETERS block first.
    let key = SigningKey::from_pem_file(&testdata().join("keys/test-only-sec1-with-params.pem"))?;
    let signature = key.sign_der(b"m");
    assert!(key.verifying_key().verify(b"m", &signature));
    Ok(())
}

#[test]
fn encrypted_and_wrong_curve_keys_are_refused_with_a_reason() {
    let err = SigningKey::from_pem_file(&testdata().join("keys/test-only-encrypted.pem")).err();
    assert!(
        matches!(err, Some(SigningError::InvalidKey { ref reason, .. }) if reason.contains("encrypted")),
        "{err:?}"
    );
    let err = VerifyingKey::from_pem_file(&testdata().join("keys/p384-public-key.pem")).err();
    assert!(
        matches!(err, Some(SigningError::InvalidKey { ref origin, ref reason, .. })
            if origin.ends_with("p384-public-key.pem") && reason.contains("only ECDSA P-256")),
        "{err:?}"
    );
}

#[test]
fn a_missing_key_file_is_an_io_error_naming_it() {
    let err = VerifyingKey::from_pem_file(&testdata().join("keys/absent.pem")).err();
    assert!(
        matches!(err, Some(SigningError::Io { ref path, .. }) if path.ends_with("absent.pem")),
        "{err:?}"
    );
}

#[test]
fn written_key_pair_loads_back_and_is_not_overwritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let private = dir.path().join("signing-key.pem");
    let public = dir.path().join("signing-key.pub.pem");
    let key = SigningKey::generate();
    write_key_pair(&key, &private, &public, false)?;
    assert_eq!(
        SigningKey::from_pem_file(&private)?.verifying_key(),
        key.verifying_key()
    );
    assert_eq!(VerifyingKey::from_pem_file(&public)?, key.verifying_key());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&public)?.permissions().mode() & 0o777,
            0o644
        );
    }

    let second = SigningKey::generate();
    let err = write_key_pair(&second, &private, &public, false).err();
    assert!(
        matches!(err, Some(SigningError::KeyExists { .. })),
        "{err:?}"
    );
    assert_eq!(VerifyingKey::from_pem_file(&public)?, key.verifying_key());

    write_key_pair(&second, &private, &public, true)?;
    assert_eq!(
        VerifyingKey::from_pem_file(&public)?,
        second.verifying_key()
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 2);
    Ok(())
}

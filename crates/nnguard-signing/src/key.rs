//! ECDSA P-256 key pairs in PEM, as the `key` method of the OpenSSF `model_signing` tool uses.
//!
//! Private keys are read from PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM and
//! written as PKCS#8; public keys are SubjectPublicKeyInfo (`PUBLIC KEY`) PEM. A bundle
//! names its key by a *hint*: the lowercase hex SHA-256 of the public key's PEM text
//! with 64-column lines and LF line endings, which is what Python's `cryptography` writes.

use std::fmt;
use std::io::Write;
use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Result, SigningError};

/// Largest key file accepted, in bytes; a PEM P-256 key is a few hundred bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

const PRIVATE_KEY_KIND: &str = "ECDSA P-256 private key (PEM)";
const PUBLIC_KEY_KIND: &str = "ECDSA P-256 public key (PEM)";

/// An ECDSA P-256 private key that signs.
///
/// The secret scalar is wiped from memory on drop and never printed: `Debug` shows only
/// the hint of the matching public key.
#[derive(Clone)]
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key_hint", &self.verifying_key().hint())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Generates a fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        let inner = p256::ecdsa::SigningKey::random(&mut rand_core_06::OsRng);
        SigningKey { inner }
    }

    /// Parses a PKCS#8 or SEC1 PEM private key; `origin` names its source in errors.
    ///
    /// Encrypted PKCS#8 keys are refused with a message saying how to decrypt them.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self> {
        let invalid = |reason: String| SigningError::InvalidKey {
            origin: origin.to_owned(),
            expected: PRIVATE_KEY_KIND,
            reason,
        };
        let (label, block) = match pem_block(pem) {
            Some((label, block)) => (Some(label), block),
            None => (None, pem),
        };
        match label {
            Some("PRIVATE KEY") => p256::ecdsa::SigningKey::from_pkcs8_pem(block)
                .map(|inner| SigningKey { inner })
                .map_err(|e| invalid(describe_parse_error(&e.to_string()))),
            Some("EC PRIVATE KEY") => p256::SecretKey::from_sec1_pem(block)
                .map(|secret| SigningKey {
                    inner: p256::ecdsa::SigningKey::from(secret),
                })
                .map_err(|e| invalid(describe_parse_error(&e.to_string()))),
            Some("ENCRYPTED PRIVATE KEY") => Err(invalid(
                "the key is encrypted; decrypt it first, e.g. `openssl pkcs8 -in KEY -out PLAIN.pem`"
                    .to_owned(),
            )),
            Some("PUBLIC KEY") => Err(invalid(
                "this is a public key; signing needs the matching private key".to_owned(),
            )),
            Some(other) => Err(invalid(format!("unexpected PEM block {other:?}"))),
            None => Err(invalid("no PEM \"-----BEGIN ...-----\" line found".to_owned())),
        }
    }

    /// Reads and parses a private key file (at most [`MAX_KEY_FILE_BYTES`]).
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let text = read_key_file(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// The PKCS#8 PEM text of this key (LF line endings), wiped from memory on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SigningError::InvalidKey {
                origin: "generated key".to_owned(),
                expected: PRIVATE_KEY_KIND,
                reason: e.to_string(),
            })
    }

    /// The public key that verifies this key's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// Signs `message` (hashed with SHA-256) and returns the ASN.1 DER signature, the
    /// encoding that `model_signing` and OpenSSL use. Signing is deterministic (RFC 6979).
    pub fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.inner.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

/// An ECDSA P-256 public key that verifies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: p256::ecdsa::VerifyingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("hint", &self.hint())
            .finish()
    }
}

impl VerifyingKey {
    /// Parses a SubjectPublicKeyInfo (`PUBLIC KEY`) PEM; `origin` names its source in errors.
    ///
    /// A private key is refused rather than silently reduced to its public half, so that
    /// private keys do not end up where only public keys belong.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self> {
        let invalid = |reason: String| SigningError::InvalidKey {
            origin: origin.to_owned(),
            expected: PUBLIC_KEY_KIND,
            reason,
        };
        let (label, block) = match pem_block(pem) {
            Some((label, block)) => (Some(label), block),
            None => (None, pem),
        };
        match label {
            Some("PUBLIC KEY") => p256::ecdsa::VerifyingKey::from_public_key_pem(block)
                .map(|inner| VerifyingKey { inner })
                .map_err(|e| invalid(describe_parse_error(&e.to_string()))),
            Some("PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY") => Err(invalid(
                "this is a private key; verification needs the public key (keep the private key secret)"
                    .to_owned(),
            )),
            Some(other) => Err(invalid(format!("unexpected PEM block {other:?}"))),
            None => Err(invalid("no PEM \"-----BEGIN ...-----\" line found".to_owned())),
        }
    }

    /// Reads and parses a public key file (at most [`MAX_KEY_FILE_BYTES`]).
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let text = read_key_file(path)?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// The canonical SubjectPublicKeyInfo PEM text (64-column lines, LF endings).
    pub fn to_pem(&self) -> Result<String> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SigningError::InvalidKey {
                origin: "public key".to_owned(),
                expected: PUBLIC_KEY_KIND,
                reason: e.to_string(),
            })
    }

    /// The key's hint as recorded in `verificationMaterial.publicKey.hint`: lowercase hex
    /// SHA-256 of [`VerifyingKey::to_pem`].
    pub fn hint(&self) -> String {
        // Encoding a valid point cannot fail; fall back to hashing the SEC1 bytes so the
        // hint is still a fingerprint of this key if it ever did.
        let text = match self.to_pem() {
            Ok(pem) => pem.into_bytes(),
            Err(_) => self.inner.to_encoded_point(false).as_bytes().to_vec(),
        };
        hex::encode(Sha256::digest(text))
    }

    /// Whether `signature` (ASN.1 DER, or the 64-byte fixed `r || s` form) is a valid
    /// ECDSA P-256 / SHA-256 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let parsed = p256::ecdsa::Signature::from_der(signature)
            .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
        match parsed {
            Ok(sig) => self.inner.verify(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// Writes a new key pair: the private key (PKCS#8 PEM, mode 0600 on Unix) and the public
/// key (SubjectPublicKeyInfo PEM, mode 0644).
///
/// Each file is written to a temporary file in the destination directory and renamed
/// into place, so a crash never leaves half a key. Existing files are refused with
/// [`SigningError::KeyExists`] unless `force` is set.
pub fn write_key_pair(
    key: &SigningKey,
    private_path: &Path,
    public_path: &Path,
    force: bool,
) -> Result<()> {
    if !force {
        for path in [private_path, public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(SigningError::KeyExists {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let private_pem = key.to_pkcs8_pem()?;
    let public_pem = key.verifying_key().to_pem()?;
    write_atomic(private_path, private_pem.as_bytes(), 0o600, force)?;
    write_atomic(public_path, public_pem.as_bytes(), 0o644, force)?;
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
///
/// The temporary file is created with mode 0600 and set to `mode` before the rename
/// (Unix only). Without `overwrite`, an existing `path` is left alone and reported as
/// [`SigningError::KeyExists`].
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nnguard-tmp-")
        .tempfile_in(dir)
        .map_err(|e| SigningError::io("create a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| SigningError::io("write", tmp.path().to_path_buf(), e))?;
    set_mode(tmp.as_file(), mode).map_err(|e| SigningError::io("set permissions on", path, e))?;
    if overwrite {
        tmp.persist(path)
            .map_err(|e| SigningError::io("write", path, e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                SigningError::KeyExists {
                    path: path.to_path_buf(),
                }
            } else {
                SigningError::io("write", path, e.error)
            }
        })?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &std::fs::File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Reads a key file as text, refusing files larger than [`MAX_KEY_FILE_BYTES`].
fn read_key_file(path: &Path) -> Result<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| SigningError::io("read key", path, e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SigningError::io("read key", path, e))?;
    let len = bytes.len() as u64;
    if len > MAX_KEY_FILE_BYTES {
        return Err(SigningError::FileTooLarge {
            path: path.to_path_buf(),
            what: "PEM key",
            len,
            max: MAX_KEY_FILE_BYTES,
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(SigningError::InvalidKey {
            origin: path.display().to_string(),
            expected: "PEM key",
            reason: "the file is not text (a DER key? convert it with `openssl pkey -outform PEM`)"
                .to_owned(),
        }),
    }
}

/// A parser error in words: an algorithm identifier mismatch means another key type or curve.
fn describe_parse_error(detail: &str) -> String {
    if detail.contains("OID") || detail.contains("algorithm") {
        "another key type or curve; only ECDSA P-256 (prime256v1) keys are supported".to_owned()
    } else {
        format!("the PEM or DER encoding is invalid ({detail})")
    }
}

/// The first PEM block other than `EC PARAMETERS` (which `openssl ecparam -genkey` puts
/// before the key): its label and its text from `-----BEGIN` to the end of its `-----END`
/// line (or to the end of the input when that line is missing, so the parser reports it).
fn pem_block(pem: &str) -> Option<(&str, &str)> {
    const BEGIN: &str = "-----BEGIN ";
    let mut offset = 0;
    while let Some(found) = pem[offset..].find(BEGIN) {
        let begin = offset + found;
        let label_start = begin + BEGIN.len();
        let label_len = pem[label_start..].find("-----")?;
        let label = &pem[label_start..label_start + label_len];
        let end_marker = format!("-----END {label}-----");
        let end = pem[label_start..]
            .find(&end_marker)
            .map_or(pem.len(), |i| label_start + i + end_marker.len());
        if label != "EC PARAMETERS" {
            return Some((label, pem[begin..end].trim_end()));
        }
        offset = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips_and_rejects_other_messages() {
        let key = SigningKey::generate();
        let sig = key.sign_der(b"payload");
        let public = key.verifying_key();
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"payload!", &sig));
        assert!(
            !SigningKey::generate()
                .verifying_key()
                .verify(b"payload", &sig)
        );
        assert!(!public.verify(b"payload", b"not a signature"));
    }

    #[test]
    fn both_s_forms_and_both_encodings_verify_like_openssl()
    -> std::result::Result<(), p256::ecdsa::Error> {
        // OpenSSL (and so `model_signing`) neither produces nor requires low-S signatures;
        // a verifier that insisted on low S would reject about half of its bundles.
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let sig = p256::ecdsa::Signature::from_der(&key.sign_der(b"m"))?;
        let (r, s) = sig.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes())?;
        assert_ne!(flipped, sig);
        assert!(public.verify(b"m", flipped.to_der().as_bytes()));
        assert!(public.verify(b"m", &sig.to_bytes()));
        Ok(())
    }

    #[test]
    fn pem_round_trip_preserves_the_key() -> Result<()> {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem()?;
        let again = SigningKey::from_pem(&pem, "test")?;
        assert_eq!(again.verifying_key(), key.verifying_key());
        let public_pem = key.verifying_key().to_pem()?;
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert_eq!(
            VerifyingKey::from_pem(&public_pem, "test")?,
            key.verifying_key()
        );
        Ok(())
    }

    #[test]
    fn public_and_private_keys_are_not_interchangeable() -> Result<()> {
        let key = SigningKey::generate();
        let public_pem = key.verifying_key().to_pem()?;
        let err = SigningKey::from_pem(&public_pem, "pub.pem").err();
        assert!(
            matches!(err, Some(SigningError::InvalidKey { ref reason, .. }) if reason.contains("public key"))
        );
        let private_pem = key.to_pkcs8_pem()?;
        let err = VerifyingKey::from_pem(&private_pem, "key.pem").err();
        assert!(
            matches!(err, Some(SigningError::InvalidKey { ref reason, .. }) if reason.contains("private key"))
        );
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN ",
        ] {
            assert!(SigningKey::from_pem(text, "x").is_err(), "{text:?}");
            assert!(VerifyingKey::from_pem(text, "x").is_err(), "{text:?}");
        }
    }

    #[test]
    fn debug_output_never_contains_the_secret() -> Result<()> {
        let key = SigningKey::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"));
        let secret_hex = hex::encode(key.inner.to_bytes());
        assert!(!shown.contains(&secret_hex));
        assert!(!shown.to_lowercase().contains(&secret_hex[..16]));
        Ok(())
    }
}

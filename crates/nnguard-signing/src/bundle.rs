//! Sigstore bundles (v0.3 JSON) carrying a DSSE envelope and a public-key hint.
//!
//! This is the layout the `key` method of `model_signing` writes:
//!
//! ```json
//! {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial": {"publicKey": {"hint": "<sha256 of the public key PEM>"},
//!                           "tlogEntries": []},
//!  "dsseEnvelope": {"payload": "<base64>", "payloadType": "application/vnd.in-toto+json",
//!                   "signatures": [{"sig": "<base64 DER>", "keyid": ""}]}}
//! ```
//!
//! Bundles from keyless (certificate-based) signing parse, but are reported as
//! [`SigningError::UnsupportedVerificationMaterial`] when verified with a key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::error::{Result, SigningError};
use crate::key::{SigningKey, VerifyingKey};

/// The media type written into new bundles (Sigstore bundle v0.3).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The newer spelling of the same bundle version, accepted when reading.
pub const BUNDLE_MEDIA_TYPE_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";

/// Largest bundle file accepted, in bytes. A manifest entry takes about 150 bytes, so this
/// leaves room for several hundred thousand files.
pub const MAX_BUNDLE_BYTES: u64 = 128 * 1024 * 1024;

/// The `publicKey` verification material: an identifier of the signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// Lowercase hex SHA-256 of the public key PEM; absent in bundles from older signers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The `verificationMaterial` of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// The key identifier, for key-based signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// A signing certificate (keyless or PKI signing); kept but not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<serde_json::Value>,
    /// A certificate chain (older bundles); kept but not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<serde_json::Value>,
    /// Transparency-log entries; empty for key-based signatures.
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
    /// RFC 3161 timestamps, if any; kept but not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

/// A Sigstore bundle holding a DSSE envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// The bundle media type, [`BUNDLE_MEDIA_TYPE`] for bundles this crate writes.
    pub media_type: String,
    /// How to find the key or certificate that verifies the signature.
    pub verification_material: VerificationMaterial,
    /// The signed envelope; a bundle with a plain `messageSignature` has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
    /// A plain message signature (not used for models); kept but not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<serde_json::Value>,
}

impl Bundle {
    /// Signs `payload` of type `payload_type` with `key` and wraps it in a bundle whose
    /// verification material is the key's hint.
    ///
    /// This is the general entry point for signing any JSON document (a data-set manifest,
    /// an in-toto statement) with the same keys and format as models.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Self {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyIdentifier {
                    hint: Some(key.verifying_key().hint()),
                }),
                certificate: None,
                x509_certificate_chain: None,
                tlog_entries: Vec::new(),
                timestamp_verification_data: None,
            },
            dsse_envelope: Some(Envelope::sign(payload_type, payload, key)),
            message_signature: None,
        }
    }

    /// Parses a bundle from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| SigningError::MalformedBundle {
            reason: e.to_string(),
        })
    }

    /// Reads and parses a bundle file (at most [`MAX_BUNDLE_BYTES`]).
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let file =
            std::fs::File::open(path).map_err(|e| SigningError::io("read signature", path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SigningError::io("read signature", path, e))?;
        let len = bytes.len() as u64;
        if len > MAX_BUNDLE_BYTES {
            return Err(SigningError::FileTooLarge {
                path: path.to_path_buf(),
                what: "signature bundle",
                len,
                max: MAX_BUNDLE_BYTES,
            });
        }
        Self::from_json(&bytes).map_err(|e| match e {
            SigningError::MalformedBundle { reason } => SigningError::MalformedBundle {
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// The compact JSON text of the bundle, as `model_signing` writes it.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|source| SigningError::Serialize {
            what: "signature bundle",
            source,
        })
    }

    /// Writes the bundle to `path` through a temporary file and a rename, replacing any
    /// existing file.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::key::write_atomic(path, self.to_json()?.as_bytes(), 0o644, true)
    }

    /// Verifies the bundle's DSSE envelope with `key` and returns the authenticated payload
    /// of type `expected_payload_type`.
    ///
    /// Checks, in order: the media type; that the verification material is a public-key
    /// hint (a hint that names another key is a [`SigningError::KeyMismatch`]); the DSSE
    /// signature over the PAE; the payload type.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        expected_payload_type: &'static str,
    ) -> Result<Vec<u8>> {
        if self.media_type != BUNDLE_MEDIA_TYPE && self.media_type != BUNDLE_MEDIA_TYPE_ALT {
            return Err(SigningError::UnsupportedMediaType {
                expected: BUNDLE_MEDIA_TYPE,
                found: self.media_type.clone(),
            });
        }
        let material = &self.verification_material;
        if material.certificate.is_some() {
            return Err(SigningError::UnsupportedVerificationMaterial {
                found: "a signing certificate (keyless or PKI signing)",
            });
        }
        if material.x509_certificate_chain.is_some() {
            return Err(SigningError::UnsupportedVerificationMaterial {
                found: "an X.509 certificate chain",
            });
        }
        let Some(envelope) = &self.dsse_envelope else {
            return Err(SigningError::MalformedBundle {
                reason: "the bundle has no dsseEnvelope".to_owned(),
            });
        };
        if let Some(hint) = material
            .public_key
            .as_ref()
            .and_then(|pk| pk.hint.as_deref())
        {
            let given = key.hint();
            if !hint.eq_ignore_ascii_case(&given) {
                return Err(SigningError::KeyMismatch {
                    in_bundle: hint.to_owned(),
                    given,
                });
            }
        }
        let payload = envelope.verify(key)?;
        if envelope.payload_type != expected_payload_type {
            return Err(SigningError::PayloadTypeMismatch {
                expected: expected_payload_type,
                found: envelope.payload_type.clone(),
            });
        }
        Ok(payload)
    }

    /// [`Bundle::verify`] for an in-toto statement payload.
    pub fn verify_in_toto(&self, key: &VerifyingKey) -> Result<Vec<u8>> {
        self.verify(key, IN_TOTO_PAYLOAD_TYPE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bundle_round_trips_through_json() -> Result<()> {
        let key = SigningKey::generate();
        let bundle = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &key);
        let json = bundle.to_json()?;
        assert!(json.starts_with("{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":{\"hint\":\""));
        let parsed = Bundle::from_json(json.as_bytes())?;
        assert_eq!(parsed, bundle);
        assert_eq!(
            parsed.verify_in_toto(&key.verifying_key())?,
            b"{\"a\":1}".to_vec()
        );
        Ok(())
    }

    #[test]
    fn a_different_key_is_reported_as_a_key_mismatch() {
        let key = SigningKey::generate();
        let bundle = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &key);
        let other = SigningKey::generate().verifying_key();
        assert!(matches!(
            bundle.verify_in_toto(&other),
            Err(SigningError::KeyMismatch { .. })
        ));

        let mut hintless = bundle;
        hintless.verification_material.public_key = None;
        assert!(matches!(
            hintless.verify_in_toto(&other),
            Err(SigningError::SignatureInvalid)
        ));
    }

    #[test]
    fn wrong_payload_type_and_media_type_are_distinct_errors() {
        let key = SigningKey::generate();
        let bundle = Bundle::sign("text/plain", b"{}", &key);
        assert!(matches!(
            bundle.verify_in_toto(&key.verifying_key()),
            Err(SigningError::PayloadTypeMismatch { .. })
        ));
        let mut old = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &key);
        old.media_type = "application/vnd.dev.sigstore.bundle+json;version=0.1".to_owned();
        assert!(matches!(
            old.verify_in_toto(&key.verifying_key()),
            Err(SigningError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn malformed_json_is_a_malformed_bundle() {
        for text in ["", "{", "[]", "{\"mediaType\":1}", "{\"mediaType\":\"x\"}"] {
            assert!(
                matches!(
                    Bundle::from_json(text.as_bytes()),
                    Err(SigningError::MalformedBundle { .. })
                ),
                "{text:?}"
            );
        }
    }
}

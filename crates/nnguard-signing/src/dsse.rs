//! DSSE envelopes (Dead Simple Signing Envelope, v1.0).
//!
//! A DSSE signature covers the *pre-authentication encoding* (PAE) of the payload type and
//! the payload, so neither can be swapped without breaking the signature:
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
//! See <https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md>.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SigningError};
use crate::key::{SigningKey, VerifyingKey};

/// The payload type of an in-toto statement carried in a DSSE envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The pre-authentication encoding of `payload_type` and `payload`: the exact bytes a
/// DSSE signature signs.
///
/// ```
/// let pae = nnguard_signing::dsse::pae("http://example.com/HelloWorld", b"hello world");
/// assert_eq!(pae, b"DSSEv1 29 http://example.com/HelloWorld 11 hello world");
/// ```
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// One signature in a DSSE envelope, as it appears in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The base64 (standard alphabet) of the signature bytes (ASN.1 DER for ECDSA).
    pub sig: String,
    /// An optional key identifier; `model_signing` writes the empty string.
    #[serde(default)]
    pub keyid: String,
}

/// A DSSE envelope as it appears in a Sigstore bundle's `dsseEnvelope` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The base64 (standard alphabet, padded) of the payload bytes.
    pub payload: String,
    /// The media type of the payload.
    pub payload_type: String,
    /// The signatures over the PAE of `payload_type` and the payload.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Signs `payload` of type `payload_type` with `key` and wraps both in an envelope.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Self {
        let sig = key.sign_der(&pae(payload_type, payload));
        let b64 = base64::engine::general_purpose::STANDARD;
        Envelope {
            payload: b64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                sig: b64.encode(sig),
                keyid: String::new(),
            }],
        }
    }

    /// The decoded payload bytes, without checking any signature.
    pub fn payload_bytes(&self) -> Result<Vec<u8>> {
        decode_base64(&self.payload).ok_or_else(|| SigningError::MalformedBundle {
            reason: "dsseEnvelope.payload is not valid base64".to_owned(),
        })
    }

    /// Checks that some signature in the envelope verifies with `key` and returns the
    /// authenticated payload bytes.
    ///
    /// An envelope without signatures is malformed; one whose signatures do not verify
    /// gives [`SigningError::SignatureInvalid`]. The payload type is covered by the
    /// signature but not checked against an expected value here.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>> {
        if self.signatures.is_empty() {
            return Err(SigningError::MalformedBundle {
                reason: "dsseEnvelope.signatures is empty".to_owned(),
            });
        }
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        let mut any_decoded = false;
        for signature in &self.signatures {
            let Some(sig) = decode_base64(&signature.sig) else {
                continue;
            };
            any_decoded = true;
            if key.verify(&message, &sig) {
                return Ok(payload);
            }
        }
        if !any_decoded {
            return Err(SigningError::MalformedBundle {
                reason: "no dsseEnvelope signature is valid base64".to_owned(),
            });
        }
        Err(SigningError::SignatureInvalid)
    }
}

/// Decodes base64 in any of the forms protobuf JSON accepts for bytes: standard or
/// URL-safe alphabet, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // The worked example of the DSSE v1.0 protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn envelope_verifies_only_its_own_type_and_payload() -> Result<()> {
        let key = SigningKey::generate();
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &key);
        assert_eq!(envelope.verify(&key.verifying_key())?, b"{}".to_vec());

        let mut retyped = envelope.clone();
        retyped.payload_type = "text/plain".to_owned();
        assert!(matches!(
            retyped.verify(&key.verifying_key()),
            Err(SigningError::SignatureInvalid)
        ));

        let mut altered = envelope.clone();
        altered.payload = base64::engine::general_purpose::STANDARD.encode(b"[]");
        assert!(matches!(
            altered.verify(&key.verifying_key()),
            Err(SigningError::SignatureInvalid)
        ));

        let mut unsigned = envelope;
        unsigned.signatures.clear();
        assert!(matches!(
            unsigned.verify(&key.verifying_key()),
            Err(SigningError::MalformedBundle { .. })
        ));
        Ok(())
    }
}

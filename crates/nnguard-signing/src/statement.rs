//! in-toto Statement v1: a typed predicate about one or more subjects named by digest.
//!
//! See <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
use crate::error::{Result, SigningError};
use crate::key::{SigningKey, VerifyingKey};

/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// A subject of a statement: a name and its digests by algorithm (`"sha256"` → hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject's name (for a model, its directory or file name).
    pub name: String,
    /// Digests of the subject, keyed by algorithm name, as lowercase hex.
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1 with predicate type `P` (raw JSON by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P = serde_json::Value> {
    /// Always [`STATEMENT_TYPE`] for statements this crate writes.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// The URI naming the predicate's schema.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate itself.
    pub predicate: P,
}

impl<P: Serialize> Statement<P> {
    /// A statement of `predicate_type` about `subject`.
    pub fn new(subject: Vec<Subject>, predicate_type: impl Into<String>, predicate: P) -> Self {
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    /// The statement as JSON indented by two spaces, the layout `model_signing` signs.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|source| SigningError::Serialize {
            what: "in-toto statement",
            source,
        })
    }

    /// Signs the statement with `key` into a Sigstore bundle holding a DSSE envelope.
    pub fn sign(&self, key: &SigningKey) -> Result<Bundle> {
        Ok(Bundle::sign(
            IN_TOTO_PAYLOAD_TYPE,
            &self.to_json_bytes()?,
            key,
        ))
    }
}

impl Statement<serde_json::Value> {
    /// Parses the payload of a verified envelope, checking `_type` and `predicateType`.
    pub fn from_payload(payload: &[u8], expected_predicate_type: &str) -> Result<Self> {
        let statement: Statement =
            serde_json::from_slice(payload).map_err(|e| SigningError::MalformedStatement {
                reason: e.to_string(),
            })?;
        if statement.statement_type != STATEMENT_TYPE {
            return Err(SigningError::StatementTypeMismatch {
                expected: STATEMENT_TYPE,
                found: statement.statement_type,
            });
        }
        if statement.predicate_type != expected_predicate_type {
            return Err(SigningError::PredicateTypeMismatch {
                expected: expected_predicate_type.to_owned(),
                found: statement.predicate_type,
            });
        }
        Ok(statement)
    }

    /// Verifies `bundle` with `key` and returns its statement, which must have predicate
    /// type `expected_predicate_type`.
    pub fn verify(
        bundle: &Bundle,
        key: &VerifyingKey,
        expected_predicate_type: &str,
    ) -> Result<Self> {
        let payload = bundle.verify_in_toto(key)?;
        Self::from_payload(&payload, expected_predicate_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_statement_verifies_and_checks_its_predicate_type() -> Result<()> {
        let key = SigningKey::generate();
        let subject = Subject {
            name: "data".to_owned(),
            digest: BTreeMap::from([("sha256".to_owned(), "00".repeat(32))]),
        };
        let statement = Statement::new(
            vec![subject],
            "https://example.com/p/v1",
            serde_json::json!({"k": 1}),
        );
        let bundle = statement.sign(&key)?;
        let back = Statement::verify(&bundle, &key.verifying_key(), "https://example.com/p/v1")?;
        assert_eq!(back.predicate, serde_json::json!({"k": 1}));
        assert!(matches!(
            Statement::verify(&bundle, &key.verifying_key(), "https://example.com/other"),
            Err(SigningError::PredicateTypeMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn payloads_that_are_not_statements_are_rejected() {
        assert!(matches!(
            Statement::from_payload(b"not json", "p"),
            Err(SigningError::MalformedStatement { .. })
        ));
        let wrong_type = br#"{"_type":"https://in-toto.io/Statement/v0.1","subject":[],"predicateType":"p","predicate":{}}"#;
        assert!(matches!(
            Statement::from_payload(wrong_type, "p"),
            Err(SigningError::StatementTypeMismatch { .. })
        ));
    }
}

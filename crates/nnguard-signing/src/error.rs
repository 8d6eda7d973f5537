//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while signing or verifying.
///
/// Variants fall into two groups, told apart by [`SigningError::is_verification_failure`]:
/// the signature or its signed statement does not check out (a wrong key, a forged or
/// altered envelope, a statement that is not a consistent model signature), or the input
/// could not be used at all (an unreadable file, a malformed bundle, an unsupported key).
/// Differences between a model and its signed manifest are not errors but
/// [`Finding`](crate::Finding)s of a [`Verification`](crate::Verification).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "open", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },

    /// A file is larger than this crate accepts for its kind (keys, bundles).
    #[error("{} is {len} bytes, more than the {max} bytes accepted for a {what}", path.display())]
    FileTooLarge {
        /// The file concerned.
        path: PathBuf,
        /// What the file was expected to hold.
        what: &'static str,
        /// Its size in bytes.
        len: u64,
        /// The largest size accepted.
        max: u64,
    },

    /// A key could not be parsed.
    #[error("{origin}: not a usable {expected}: {reason}")]
    InvalidKey {
        /// Where the key came from (a file name, or a description).
        origin: String,
        /// What kind of key was expected ("ECDSA P-256 private key", ...).
        expected: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A key file already exists and overwriting was not allowed.
    #[error("{} already exists; refusing to overwrite a key (pass --force to replace it)", path.display())]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A Sigstore bundle is not valid JSON or lacks a required field.
    #[error("malformed signature bundle: {reason}")]
    MalformedBundle {
        /// What is wrong with it.
        reason: String,
    },

    /// A bundle's media type is not one this crate verifies.
    #[error("unsupported bundle media type {found:?} (expected {expected:?})")]
    UnsupportedMediaType {
        /// The media type expected.
        expected: &'static str,
        /// The media type found.
        found: String,
    },

    /// A bundle carries verification material other than a public-key hint
    /// (a certificate or a certificate chain from keyless or PKI signing).
    #[error(
        "the bundle was signed with {found}; only key-based signatures (a public-key hint) are supported"
    )]
    UnsupportedVerificationMaterial {
        /// What kind of material was found.
        found: &'static str,
    },

    /// The public-key hint in the bundle names a different key than the one given.
    #[error(
        "wrong key: the bundle was signed by the key with hint {in_bundle}, but the given public key has hint {given}"
    )]
    KeyMismatch {
        /// The SHA-256 hint recorded in the bundle.
        in_bundle: String,
        /// The SHA-256 hint of the key given for verification.
        given: String,
    },

    /// No signature in the DSSE envelope verifies with the given key.
    #[error(
        "the DSSE signature does not verify with the given public key (wrong key or altered payload)"
    )]
    SignatureInvalid,

    /// The DSSE payload type is not the in-toto JSON type.
    #[error("DSSE payload type is {found:?}, expected {expected:?}")]
    PayloadTypeMismatch {
        /// The payload type expected.
        expected: &'static str,
        /// The payload type found.
        found: String,
    },

    /// The signed statement is not an in-toto Statement v1.
    #[error("statement type is {found:?}, expected {expected:?}")]
    StatementTypeMismatch {
        /// The statement type expected.
        expected: &'static str,
        /// The statement type found.
        found: String,
    },

    /// The signed statement's predicate type is not the model-signing predicate.
    #[error("predicate type is {found:?}, expected {expected:?}")]
    PredicateTypeMismatch {
        /// The predicate type expected.
        expected: String,
        /// The predicate type found.
        found: String,
    },

    /// The subject digest does not equal the digest of the listed resource digests.
    #[error(
        "subject digest mismatch: the statement records {recorded}, but its resources hash to {computed}"
    )]
    SubjectDigestMismatch {
        /// The digest recorded in the subject.
        recorded: String,
        /// The digest computed over the resource digests.
        computed: String,
    },

    /// The signed manifest contradicts itself (duplicate names, a bad digest, an
    /// algorithm that is not the declared hash type, a path that leaves the model).
    #[error("inconsistent manifest: {reason}")]
    InconsistentManifest {
        /// What is inconsistent.
        reason: String,
    },

    /// The signed statement is not valid JSON or lacks a required field.
    #[error("malformed signed statement: {reason}")]
    MalformedStatement {
        /// What is wrong with it.
        reason: String,
    },

    /// The manifest uses a serialization method this crate does not implement.
    #[error("unsupported serialization method {method:?} (supported: \"files\", \"shards\")")]
    UnsupportedSerialization {
        /// The method named in the manifest.
        method: String,
    },

    /// The manifest uses a hash algorithm this crate does not implement.
    #[error("unsupported hash type {hash_type:?} (supported: \"sha256\")")]
    UnsupportedHashType {
        /// The hash type named in the manifest.
        hash_type: String,
    },

    /// A symbolic link was found while symbolic links were not allowed.
    #[error("{} is a symbolic link; refusing to follow it (pass --allow-symlinks to hash its target)", path.display())]
    SymlinkRefused {
        /// The link.
        path: PathBuf,
    },

    /// A regular file with more than one hard link was found while hard links were not allowed.
    #[error("{} has {links} hard links; refusing a file that can change through another name (pass --allow-hardlinks)", path.display())]
    HardLinkRefused {
        /// The file.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },

    /// Something that is neither a regular file nor a directory (a FIFO, socket, device).
    #[error("{} is not a regular file or directory", path.display())]
    SpecialFileRefused {
        /// The file.
        path: PathBuf,
    },

    /// A path inside the model is not valid UTF-8 and cannot be named in a manifest.
    #[error("{} is not valid UTF-8 and cannot be recorded in a manifest", path.display())]
    NonUtf8Path {
        /// The path, as far as it can be shown.
        path: PathBuf,
    },

    /// A file changed size or identity while it was being hashed.
    #[error("{} changed while it was being hashed", path.display())]
    ChangedWhileHashing {
        /// The file.
        path: PathBuf,
    },

    /// An option has a value this crate cannot use.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },

    /// A value could not be serialised to JSON.
    #[error("cannot serialise {what} to JSON")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },
}

impl SigningError {
    /// Whether this error means "the signature does not verify" (exit code 1 in the CLI)
    /// rather than "the input could not be used" (exit code 2).
    ///
    /// A wrong key, an altered or forged envelope, and a signed statement that is not a
    /// consistent model signature are verification failures; unreadable files, malformed
    /// bundles and unsupported formats are not.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            SigningError::KeyMismatch { .. }
                | SigningError::SignatureInvalid
                | SigningError::PayloadTypeMismatch { .. }
                | SigningError::StatementTypeMismatch { .. }
                | SigningError::PredicateTypeMismatch { .. }
                | SigningError::SubjectDigestMismatch { .. }
                | SigningError::InconsistentManifest { .. }
                | SigningError::MalformedStatement { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        SigningError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = SigningError> = std::result::Result<T, E>;

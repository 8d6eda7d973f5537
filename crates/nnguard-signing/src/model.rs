//! Signing a model and verifying a model against its signature.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::Bundle;
use crate::error::{Result, SigningError};
use crate::hashing::{Anomaly, HashOptions, Progress, hash_model};
use crate::key::{SigningKey, VerifyingKey};
use crate::manifest::{ItemKey, MODEL_SIGNING_PREDICATE_TYPE, Manifest};
use crate::statement::Statement;

/// A freshly signed model: the bundle to write and the manifest it signs.
#[derive(Debug, Clone)]
pub struct SignedModel {
    /// The Sigstore bundle.
    pub bundle: Bundle,
    /// The manifest inside it.
    pub manifest: Manifest,
    /// Total number of bytes hashed.
    pub bytes_hashed: u64,
}

/// Hashes the model at `model` and signs its manifest with `key`.
///
/// Symbolic links, hard-linked files, special files and non-UTF-8 names are refused
/// (unless `options` allows links), and so is a model with nothing to sign.
pub fn sign_model(
    model: &Path,
    key: &SigningKey,
    options: &HashOptions,
    progress: &dyn Progress,
) -> Result<SignedModel> {
    let hashed = hash_model(model, options, progress)?;
    if let Some(anomaly) = hashed.anomalies.into_iter().next() {
        return Err(anomaly.into_error());
    }
    if hashed.manifest.resources.is_empty() {
        return Err(SigningError::InvalidOption {
            name: "model",
            reason: format!("{} has no files to sign", model.display()),
        });
    }
    let bundle = hashed.manifest.to_statement()?.sign(key)?;
    Ok(SignedModel {
        bundle,
        manifest: hashed.manifest,
        bytes_hashed: hashed.bytes_hashed,
    })
}

/// How a model is hashed for verification; the method and hash type come from the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Follow symbolic links instead of reporting them.
    pub allow_symlinks: bool,
    /// Accept files with several hard links instead of reporting them.
    pub allow_hardlinks: bool,
    /// Do not ignore the git metadata paths (they are ignored unless this is set).
    pub include_git_paths: bool,
    /// Further paths to ignore, relative to the model root; the signed manifest's own
    /// `ignore_paths` are always added.
    pub ignore_paths: Vec<String>,
    /// Only check the files named in the signed manifest: files added since signing are
    /// not findings (they are still hashed; `model_signing`'s `--ignore_unsigned_files`).
    pub ignore_unsigned_files: bool,
    /// Number of hashing threads; `None` uses one per CPU core.
    pub threads: Option<usize>,
}

/// One way in which a model differs from its signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A signed file (or shard) has different content.
    ContentChanged {
        /// The resource name.
        path: String,
        /// The signed digest (hex).
        expected: String,
        /// The digest of the file on disk (hex).
        actual: String,
    },
    /// A file that is not in the signed manifest.
    FileAdded {
        /// The resource name.
        path: String,
    },
    /// A signed file that is not there.
    FileMissing {
        /// The resource name.
        path: String,
    },
    /// A signed file is present, with the same content, under another name.
    FileRenamed {
        /// The signed name.
        from: String,
        /// The name on disk.
        to: String,
    },
    /// A symbolic link where the model should only have regular files.
    SymlinkFound {
        /// The link, relative to the model root.
        path: String,
    },
    /// A file with several hard links: it can be changed through a name outside the model.
    HardLinkFound {
        /// The file, relative to the model root.
        path: String,
        /// Its link count.
        links: u64,
    },
    /// A FIFO, socket or device inside the model.
    SpecialFile {
        /// The file, relative to the model root.
        path: String,
    },
    /// A file whose name is not UTF-8, so it cannot be in any manifest.
    NonUtf8Name {
        /// The name, lossily converted.
        path: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ContentChanged {
                path,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "content changed: {path} (signed sha256 {expected}, found {actual})"
                )
            }
            Finding::FileAdded { path } => {
                write!(f, "file added: {path} is not in the signed manifest")
            }
            Finding::FileMissing { path } => {
                write!(f, "file missing: {path} is signed but not present")
            }
            Finding::FileRenamed { from, to } => {
                write!(
                    f,
                    "file renamed: {from} is signed, but its content is now at {to}"
                )
            }
            Finding::SymlinkFound { path } => write!(
                f,
                "symbolic link: {path} is a link, not a regular file (verify with --allow-symlinks to follow it)"
            ),
            Finding::HardLinkFound { path, links } => write!(
                f,
                "hard link: {path} has {links} links and can change through a name outside the model (verify with --allow-hardlinks to accept it)"
            ),
            Finding::SpecialFile { path } => {
                write!(f, "special file: {path} is not a regular file")
            }
            Finding::NonUtf8Name { path } => write!(f, "file added: {path} (name is not UTF-8)"),
        }
    }
}

impl Finding {
    fn from_anomaly(anomaly: &Anomaly) -> Self {
        match anomaly {
            Anomaly::Symlink { rel, .. } => Finding::SymlinkFound { path: rel.clone() },
            Anomaly::HardLink { rel, links, .. } => Finding::HardLinkFound {
                path: rel.clone(),
                links: *links,
            },
            Anomaly::Special { rel, .. } => Finding::SpecialFile { path: rel.clone() },
            Anomaly::NonUtf8 { rel, .. } => Finding::NonUtf8Name { path: rel.clone() },
        }
    }
}

/// The outcome of checking a model against an authentic signature.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The signed manifest.
    pub manifest: Manifest,
    /// How the model on disk differs from it; empty when the model verifies.
    pub findings: Vec<Finding>,
    /// Total number of bytes hashed.
    pub bytes_hashed: u64,
}

impl Verification {
    /// Whether the model matches its signed manifest exactly.
    pub fn is_verified(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the signature of `bundle` with `key`, reads its manifest, hashes the model at
/// `model` the same way, and reports every difference.
///
/// Problems with the signature itself (wrong key, altered envelope, inconsistent
/// manifest) are errors for which [`SigningError::is_verification_failure`] is true;
/// differences in the model's files are [`Finding`]s.
pub fn verify_model(
    model: &Path,
    bundle: &Bundle,
    key: &VerifyingKey,
    options: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Verification> {
    let statement = Statement::verify(bundle, key, MODEL_SIGNING_PREDICATE_TYPE)?;
    let expected = Manifest::from_statement(&statement)?;
    if expected
        .serialization
        .ignore_paths
        .iter()
        .any(|p| ignores_everything(p))
    {
        return Err(SigningError::InconsistentManifest {
            reason: "ignore_paths leaves out the whole model".to_owned(),
        });
    }

    let mut ignore_paths = options.ignore_paths.clone();
    ignore_paths.extend(expected.serialization.ignore_paths.iter().cloned());
    let hash_options = HashOptions {
        method: expected.serialization.method,
        allow_symlinks: options.allow_symlinks,
        allow_hardlinks: options.allow_hardlinks,
        ignore_git_paths: !options.include_git_paths,
        ignore_paths,
        threads: options.threads,
    };
    let mut actual = hash_model(model, &hash_options, progress)?;
    if options.ignore_unsigned_files {
        let signed: HashSet<&str> = expected
            .resources
            .iter()
            .map(|r| r.key.path.as_str())
            .collect();
        actual
            .manifest
            .resources
            .retain(|r| signed.contains(r.key.path.as_str()));
        actual
            .anomalies
            .retain(|a| a.rel() == "." || signed.contains(a.rel()));
    }
    let findings = compare(&expected, &actual.manifest, &actual.anomalies);
    Ok(Verification {
        manifest: expected,
        findings,
        bytes_hashed: actual.bytes_hashed,
    })
}

fn ignores_everything(path: &str) -> bool {
    path.split('/').all(|c| c.is_empty() || c == ".")
}

/// The findings of `actual` against `expected`: anomalies first, then changed content,
/// renames (a missing item whose digest reappears under a new name), missing and added
/// items, each group sorted by name.
fn compare(expected: &Manifest, actual: &Manifest, anomalies: &[Anomaly]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = anomalies.iter().map(Finding::from_anomaly).collect();
    let anomalous: HashSet<&str> = anomalies.iter().map(Anomaly::rel).collect();
    if anomalous.contains(".") {
        // The model path itself is a link or special file: nothing below it was looked at.
        return findings;
    }

    let want: BTreeMap<&ItemKey, &[u8; 32]> = expected
        .resources
        .iter()
        .map(|r| (&r.key, &r.digest))
        .collect();
    let have: BTreeMap<&ItemKey, &[u8; 32]> = actual
        .resources
        .iter()
        .map(|r| (&r.key, &r.digest))
        .collect();

    let mut missing = Vec::new();
    for (key, digest) in &want {
        match have.get(key) {
            Some(found) if found == digest => {}
            Some(found) => findings.push(Finding::ContentChanged {
                path: key.name(),
                expected: hex::encode(digest),
                actual: hex::encode(found),
            }),
            // A link or special file in place of a signed file is reported as such.
            None if anomalous.contains(key.path.as_str()) => {}
            None => missing.push((*key, *digest)),
        }
    }
    let mut added: Vec<(&ItemKey, &[u8; 32])> = have
        .iter()
        .filter(|(key, _)| !want.contains_key(*key))
        .map(|(k, d)| (*k, *d))
        .collect();

    let mut still_missing = Vec::new();
    for (key, digest) in missing {
        let renamed_to = added
            .iter()
            .position(|(new_key, new_digest)| *new_digest == digest && new_key.range == key.range);
        match renamed_to {
            Some(i) => {
                let (new_key, _) = added.remove(i);
                findings.push(Finding::FileRenamed {
                    from: key.name(),
                    to: new_key.name(),
                });
            }
            None => still_missing.push(key),
        }
    }
    findings.extend(
        still_missing
            .into_iter()
            .map(|key| Finding::FileMissing { path: key.name() }),
    );
    findings.extend(
        added
            .into_iter()
            .map(|(key, _)| Finding::FileAdded { path: key.name() }),
    );
    findings
}

/// The path of `path` relative to the model root `model`, `/`-separated, if `path` lies
/// inside the model (both are resolved first; `path` need not exist yet).
///
/// Use it to leave the signature file, or user-given paths, out of a model's manifest, as
/// `model_signing` does for its `--signature` and `--ignore-paths` options.
pub fn path_inside_model(model: &Path, path: &Path) -> Option<String> {
    let root = std::fs::canonicalize(model).ok()?;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let resolved = resolve_lenient(&absolute)?;
    let rel = resolved.strip_prefix(&root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let joined = parts?.join("/");
    (!joined.is_empty()).then_some(joined)
}

/// Canonicalizes the longest existing ancestor of `path` and appends the rest.
fn resolve_lenient(path: &Path) -> Option<PathBuf> {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return Some(resolved);
    }
    let parent = path.parent()?;
    let name = path.file_name()?;
    Some(resolve_lenient(parent)?.join(name))
}

//! Model manifests: every file (or file shard) of a model paired with its SHA-256 digest,
//! and their encoding as the OpenSSF model-signing predicate
//! (`https://model_signing/signature/v1.0`).
//!
//! The predicate lists one *resource descriptor* per item, sorted by path components (then
//! by shard offsets), and records how the manifest was built (`serialization`). The
//! statement's single subject is the model name with, as its SHA-256 digest, the hash of
//! the concatenated raw resource digests in the listed order. This matches
//! `model_signing.manifest` and `model_signing._signing.signing.Payload` of the Python
//! reference implementation (PyPI package `model-signing`, 1.x).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, SigningError};
use crate::statement::{Statement, Subject};

/// The predicate type of an OpenSSF model signature, v1.0.
pub const MODEL_SIGNING_PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// The predicate type of the pre-1.0 format, recognised only to name it in errors.
pub const LEGACY_PREDICATE_TYPE: &str = "https://model_signing/Digests/v0.1";

/// The one hash algorithm implemented.
pub const HASH_TYPE_SHA256: &str = "sha256";

/// Paths ignored by default because they are version-control metadata, not model content
/// (the same list as `model_signing`).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// How a model was cut into manifest items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One item per file (`"method": "files"`), the default of `model_signing`.
    Files,
    /// Items are consecutive byte ranges of at most `shard_size` bytes of each non-empty
    /// file (`"method": "shards"`); empty files have no items.
    Shards {
        /// The shard length in bytes (the last shard of a file may be shorter).
        shard_size: u64,
    },
}

impl Method {
    /// The `algorithm` recorded in each resource descriptor for hash type `hash_type`.
    pub fn resource_algorithm(&self, hash_type: &str) -> String {
        match self {
            Method::Files => hash_type.to_owned(),
            Method::Shards { shard_size } => format!("{hash_type}-sharded-{shard_size}"),
        }
    }
}

/// The recorded parameters of the serialization that built a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// Files or shards.
    pub method: Method,
    /// The hash algorithm of the items (always [`HASH_TYPE_SHA256`] here).
    pub hash_type: String,
    /// Whether symbolic links were followed when signing.
    pub allow_symlinks: bool,
    /// Paths, relative to the model root, that were left out (their subtrees too).
    pub ignore_paths: Vec<String>,
}

/// Which item of a model a resource describes: a whole file or a byte range of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    /// The file's path relative to the model root, `/`-separated; `"."` when the model is
    /// a single file.
    pub path: String,
    /// The byte range `[start, end)` for shards; `None` for whole files.
    pub range: Option<(u64, u64)>,
}

impl ItemKey {
    /// The resource name as written in the manifest: `path`, or `path:start:end`.
    pub fn name(&self) -> String {
        match self.range {
            None => self.path.clone(),
            Some((start, end)) => format!("{}:{start}:{end}", self.path),
        }
    }
}

impl Ord for ItemKey {
    /// Path components first (as Python compares `PurePosixPath`s), then shard offsets.
    fn cmp(&self, other: &Self) -> Ordering {
        self.path
            .split('/')
            .cmp(other.path.split('/'))
            .then_with(|| self.range.cmp(&other.range))
    }
}

impl PartialOrd for ItemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One manifest item: what it is and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The file or shard.
    pub key: ItemKey,
    /// Its SHA-256 digest.
    pub digest: [u8; 32],
}

/// A model manifest: the model's name, how it was serialized, and its items in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The model's name (final component of its path); informative only.
    pub model_name: String,
    /// How the manifest was built.
    pub serialization: Serialization,
    /// The items, in the order they are (or were) listed in the predicate.
    pub resources: Vec<Resource>,
}

/// The predicate as written: field order follows `model_signing` where it matters to
/// nobody but readers.
#[derive(Debug, Serialize, Deserialize)]
struct PredicateJson {
    serialization: SerializationJson,
    resources: Vec<ResourceJson>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SerializationJson {
    method: String,
    hash_type: String,
    allow_symlinks: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard_size: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore_paths: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResourceJson {
    name: String,
    algorithm: String,
    digest: String,
}

impl Manifest {
    /// Builds a manifest with its resources sorted into the canonical signing order.
    pub fn new(
        model_name: String,
        serialization: Serialization,
        mut resources: Vec<Resource>,
    ) -> Self {
        resources.sort_by(|a, b| a.key.cmp(&b.key));
        Manifest {
            model_name,
            serialization,
            resources,
        }
    }

    /// SHA-256 over the concatenated raw digests of the resources, in listed order: the
    /// statement's subject digest.
    pub fn root_digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for resource in &self.resources {
            hasher.update(resource.digest);
        }
        hasher.finalize().into()
    }

    /// The in-toto statement that signs this manifest.
    pub fn to_statement(&self) -> Result<Statement> {
        let algorithm = self
            .serialization
            .method
            .resource_algorithm(&self.serialization.hash_type);
        let ignore_paths = (!self.serialization.ignore_paths.is_empty())
            .then(|| self.serialization.ignore_paths.clone());
        let (method, shard_size) = match self.serialization.method {
            Method::Files => ("files", None),
            Method::Shards { shard_size } => ("shards", Some(serde_json::Number::from(shard_size))),
        };
        let predicate = PredicateJson {
            serialization: SerializationJson {
                method: method.to_owned(),
                hash_type: self.serialization.hash_type.clone(),
                allow_symlinks: self.serialization.allow_symlinks,
                shard_size,
                ignore_paths,
            },
            resources: self
                .resources
                .iter()
                .map(|r| ResourceJson {
                    name: r.key.name(),
                    algorithm: algorithm.clone(),
                    digest: hex::encode(r.digest),
                })
                .collect(),
        };
        let subject = Subject {
            name: self.model_name.clone(),
            digest: BTreeMap::from([(
                HASH_TYPE_SHA256.to_owned(),
                hex::encode(self.root_digest()),
            )]),
        };
        let predicate =
            serde_json::to_value(predicate).map_err(|source| SigningError::Serialize {
                what: "model-signing predicate",
                source,
            })?;
        Ok(Statement::new(
            vec![subject],
            MODEL_SIGNING_PREDICATE_TYPE,
            predicate,
        ))
    }

    /// Reads the manifest back from a verified statement and checks that it is consistent:
    /// the predicate type, a single subject whose digest matches the resources, resource
    /// names that are canonical relative paths (or shards of them) without duplicates,
    /// algorithms that match the declared hash type, and well-formed digests.
    pub fn from_statement(statement: &Statement) -> Result<Self> {
        if statement.predicate_type != MODEL_SIGNING_PREDICATE_TYPE {
            return Err(SigningError::PredicateTypeMismatch {
                expected: MODEL_SIGNING_PREDICATE_TYPE.to_owned(),
                found: statement.predicate_type.clone(),
            });
        }
        let [subject] = statement.subject.as_slice() else {
            return Err(SigningError::InconsistentManifest {
                reason: format!(
                    "expected exactly one subject, found {}",
                    statement.subject.len()
                ),
            });
        };
        let Some(recorded) = subject.digest.get(HASH_TYPE_SHA256) else {
            return Err(SigningError::MalformedStatement {
                reason: "the subject has no sha256 digest".to_owned(),
            });
        };
        let predicate: PredicateJson = serde_json::from_value(statement.predicate.clone())
            .map_err(|e| SigningError::MalformedStatement {
                reason: format!("predicate: {e}"),
            })?;
        let serialization = parse_serialization(&predicate.serialization)?;
        let algorithm = serialization
            .method
            .resource_algorithm(&serialization.hash_type);

        let mut seen = HashSet::new();
        let mut resources = Vec::with_capacity(predicate.resources.len());
        for raw in &predicate.resources {
            let inconsistent = |reason: String| SigningError::InconsistentManifest {
                reason: format!("resource {:?}: {reason}", raw.name),
            };
            if raw.algorithm != algorithm {
                return Err(inconsistent(format!(
                    "algorithm {:?} does not match the serialization ({algorithm:?})",
                    raw.algorithm
                )));
            }
            let digest = decode_digest(&raw.digest)
                .ok_or_else(|| inconsistent("digest is not 64 hex digits".to_owned()))?;
            let key = parse_name(&raw.name, serialization.method).map_err(inconsistent)?;
            if !seen.insert(key.clone()) {
                return Err(inconsistent("listed twice".to_owned()));
            }
            resources.push(Resource { key, digest });
        }
        if resources.len() > 1 && resources.iter().any(|r| r.key.path == ".") {
            return Err(SigningError::InconsistentManifest {
                reason: "\".\" (a single-file model) listed together with other resources"
                    .to_owned(),
            });
        }
        check_shards_tile_files(&resources, serialization.method)?;

        let manifest = Manifest {
            model_name: subject.name.clone(),
            serialization,
            resources,
        };
        let computed = hex::encode(manifest.root_digest());
        if !recorded.eq_ignore_ascii_case(&computed) {
            return Err(SigningError::SubjectDigestMismatch {
                recorded: recorded.clone(),
                computed,
            });
        }
        Ok(manifest)
    }
}

fn parse_serialization(raw: &SerializationJson) -> Result<Serialization> {
    let method = match raw.method.as_str() {
        "files" => Method::Files,
        "shards" => {
            let size = raw
                .shard_size
                .as_ref()
                .ok_or_else(|| SigningError::MalformedStatement {
                    reason: "serialization method \"shards\" without shard_size".to_owned(),
                })?;
            Method::Shards {
                shard_size: positive_integer(size).ok_or_else(|| {
                    SigningError::InconsistentManifest {
                        reason: format!("shard_size {size} is not a positive integer"),
                    }
                })?,
            }
        }
        other => {
            return Err(SigningError::UnsupportedSerialization {
                method: other.to_owned(),
            });
        }
    };
    if raw.hash_type != HASH_TYPE_SHA256 {
        return Err(SigningError::UnsupportedHashType {
            hash_type: raw.hash_type.clone(),
        });
    }
    Ok(Serialization {
        method,
        hash_type: raw.hash_type.clone(),
        allow_symlinks: raw.allow_symlinks,
        ignore_paths: raw.ignore_paths.clone().unwrap_or_default(),
    })
}

/// A JSON number that is a positive integer; `model_signing` writes `1000.0` for 1000
/// because it goes through a protobuf `Struct`.
fn positive_integer(number: &serde_json::Number) -> Option<u64> {
    if let Some(n) = number.as_u64() {
        return (n > 0).then_some(n);
    }
    let f = number.as_f64()?;
    // 2^53: beyond this, floats no longer represent every integer.
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
    if f.fract() == 0.0 && f > 0.0 && f <= MAX_EXACT {
        // In range and integral, so the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f as u64)
    } else {
        None
    }
}

fn decode_digest(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Parses a resource name into an item key, accepting only canonical relative paths.
fn parse_name(name: &str, method: Method) -> std::result::Result<ItemKey, String> {
    let (path, range) = match method {
        Method::Files => (name, None),
        Method::Shards { shard_size } => {
            let mut parts = name.rsplitn(3, ':');
            let (Some(end), Some(start), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err("a shard name must be PATH:START:END".to_owned());
            };
            let start: u64 = start
                .parse()
                .map_err(|_| format!("shard start {start:?} is not an integer"))?;
            let end: u64 = end
                .parse()
                .map_err(|_| format!("shard end {end:?} is not an integer"))?;
            if end <= start || end - start > shard_size || !start.is_multiple_of(shard_size) {
                return Err(format!(
                    "[{start}, {end}) is not a shard of size {shard_size}"
                ));
            }
            (path, Some((start, end)))
        }
    };
    if path != "." && !is_canonical_relative(path) {
        return Err("not a canonical relative path inside the model".to_owned());
    }
    Ok(ItemKey {
        path: path.to_owned(),
        range,
    })
}

/// A `/`-separated relative path without empty, `.` or `..` components.
pub(crate) fn is_canonical_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// For shard manifests: the shards of each file must start at 0 and follow one another,
/// every shard but the last having the full size.
fn check_shards_tile_files(resources: &[Resource], method: Method) -> Result<()> {
    let Method::Shards { shard_size } = method else {
        return Ok(());
    };
    let mut by_path: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for r in resources {
        if let Some(range) = r.key.range {
            by_path.entry(r.key.path.as_str()).or_default().push(range);
        }
    }
    for (path, mut ranges) in by_path {
        ranges.sort_unstable();
        let mut expected_start = 0;
        let last = ranges.len().saturating_sub(1);
        for (i, (start, end)) in ranges.into_iter().enumerate() {
            if start != expected_start || (i < last && end - start != shard_size) {
                return Err(SigningError::InconsistentManifest {
                    reason: format!(
                        "the shards of {path:?} leave a gap or overlap at byte {expected_start}"
                    ),
                });
            }
            expected_start = end;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> ItemKey {
        ItemKey {
            path: path.to_owned(),
            range: None,
        }
    }

    #[test]
    fn items_sort_by_path_components_not_by_string() {
        // "a/b" < "a.txt" component-wise ("a" < "a.txt"), though '.' < '/' as bytes.
        let mut keys = [key("a.txt"), key("a/b"), key("B"), key("a")];
        keys.sort();
        let names: Vec<_> = keys.iter().map(ItemKey::name).collect();
        assert_eq!(names, ["B", "a", "a/b", "a.txt"]);

        let shard = |s, e| ItemKey {
            path: "w".to_owned(),
            range: Some((s, e)),
        };
        let mut shards = [shard(1000, 2000), shard(0, 1000), shard(2000, 2500)];
        shards.sort();
        assert_eq!(shards[0].name(), "w:0:1000");
        assert_eq!(shards[2].name(), "w:2000:2500");
    }

    #[test]
    fn root_digest_hashes_the_raw_digests_in_order() {
        let serialization = Serialization {
            method: Method::Files,
            hash_type: HASH_TYPE_SHA256.to_owned(),
            allow_symlinks: false,
            ignore_paths: vec![],
        };
        let a = Resource {
            key: key("a"),
            digest: [1; 32],
        };
        let b = Resource {
            key: key("b"),
            digest: [2; 32],
        };
        let manifest = Manifest::new("m".to_owned(), serialization, vec![b, a]);
        let mut concatenated = vec![1u8; 32];
        concatenated.extend([2u8; 32]);
        let expected: [u8; 32] = Sha256::digest(&concatenated).into();
        assert_eq!(manifest.root_digest(), expected);
    }

    #[test]
    fn statement_round_trip_keeps_every_field() -> Result<()> {
        let serialization = Serialization {
            method: Method::Shards { shard_size: 4 },
            hash_type: HASH_TYPE_SHA256.to_owned(),
            allow_symlinks: false,
            ignore_paths: vec![".git".to_owned()],
        };
        let resources = vec![
            Resource {
                key: ItemKey {
                    path: "w".to_owned(),
                    range: Some((4, 6)),
                },
                digest: [3; 32],
            },
            Resource {
                key: ItemKey {
                    path: "w".to_owned(),
                    range: Some((0, 4)),
                },
                digest: [4; 32],
            },
        ];
        let manifest = Manifest::new("model".to_owned(), serialization, resources);
        let back = Manifest::from_statement(&manifest.to_statement()?)?;
        assert_eq!(back, manifest);
        Ok(())
    }

    #[test]
    fn shard_size_written_as_a_float_is_accepted() {
        assert_eq!(
            positive_integer(&serde_json::Number::from(1000u64)),
            Some(1000)
        );
        let float = serde_json::Number::from_f64(1000.0);
        assert_eq!(float.as_ref().and_then(positive_integer), Some(1000));
        let fractional = serde_json::Number::from_f64(1000.5);
        assert_eq!(fractional.as_ref().and_then(positive_integer), None);
        assert_eq!(positive_integer(&serde_json::Number::from(0u64)), None);
        assert_eq!(positive_integer(&serde_json::Number::from(-3i64)), None);
    }

    #[test]
    fn names_that_leave_the_model_are_rejected() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a/.",
        ] {
            assert!(parse_name(bad, Method::Files).is_err(), "{bad:?}");
        }
        assert!(parse_name("a/b.bin", Method::Files).is_ok());
        assert!(parse_name(".", Method::Files).is_ok());
        let shards = Method::Shards { shard_size: 10 };
        assert!(parse_name("w:0:10", shards).is_ok());
        assert!(parse_name("dir/a:b:0:10", shards).is_ok());
        for bad in ["w", "w:0", "w:5:10", "w:0:11", "w:10:10", "w:x:10"] {
            assert!(parse_name(bad, shards).is_err(), "{bad:?}");
        }
    }
}

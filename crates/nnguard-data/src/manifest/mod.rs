//! Hash manifests of data sets: what `nnguard data manifest` writes and `nnguard data check`
//! verifies.
//!
//! A [`DataManifest`] records, for each split of a data set:
//! - the SHA-256 of every source file (for the bundled subset, of the embedded bytes);
//! - one [`RecordDigest`] per record, in order: the record's label and the SHA-256 of its
//!   pixels as nnguard loads them (`f32` little-endian, C×H×W order, values in `[0, 1]`);
//!   keeping the label beside the image digest, rather than hashing both together, lets a
//!   check tell a flipped label from a changed image;
//! - `records_sha256`, the SHA-256 over all records in order (label as `u32` little-endian,
//!   then the 32-byte image digest), one value that changes if any record does;
//! - the shape, number of classes, class names, class counts and value statistics.
//!
//! Record digests are computed from the decoded data, so the same images stored in another
//! format (IDX, NPY, gzip or not) have the same record digests, while file digests pin the
//! exact bytes. The file is JSON, written atomically, with one record per line (about
//! 75 bytes per record: 4.6 MB for Fashion-MNIST's 60,000 training images), so two manifests
//! can be compared with `diff`. A manifest is signed like a one-file model (see
//! [`sign_manifest`]).

mod diff;
mod observe;
mod sign;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{DataError, DataSource, Result, Split};

pub use diff::{RecordDiff, RecordMatch, RecordOnly, diff_records};
pub use observe::{Observed, load_unchecked, observe};
pub use sign::{SignatureCheck, default_signature_path, sign_manifest, verify_manifest_signature};

/// The `schema` field of every data manifest.
pub const MANIFEST_SCHEMA: &str = "nnguard-data-manifest";
/// The schema version this build writes and the newest it reads.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;
/// How record digests are computed, recorded in each manifest.
pub const RECORD_DIGEST_ALGORITHM: &str =
    "sha256 of the f32 little-endian pixel values, C*H*W order";
/// Largest manifest file read, in bytes (about 13 million records).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// A hash manifest of one or more splits of a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataManifest {
    /// Always [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// The schema version, [`MANIFEST_SCHEMA_VERSION`] for manifests this build writes.
    pub schema_version: u32,
    /// The tool and version that wrote the manifest, e.g. `nnguard 0.1.0`.
    pub tool: String,
    /// When the manifest was written (RFC 3339, UTC).
    pub created: String,
    /// The data source as given on the command line (`fashion-mnist`, `idx:DIR`, ...).
    pub source: String,
    /// How record digests are computed ([`RECORD_DIGEST_ALGORITHM`]).
    pub record_digest: String,
    /// One entry per split.
    pub splits: Vec<SplitManifest>,
}

/// The manifest of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// `train`, `test`, or `data` for sources without splits (`npy:`).
    pub split: String,
    /// The data set's name as the loader gives it, e.g. `fashion-mnist/train`.
    pub name: String,
    /// Shape of one record: channels, height, width.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, if the data set has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Records per class, `num_classes` long.
    pub class_counts: Vec<u64>,
    /// Statistics of the pixel values.
    pub values: ValueStats,
    /// The source files of the split.
    pub files: Vec<FileDigest>,
    /// Number of records.
    pub record_count: usize,
    /// SHA-256 over all records in order (see the module documentation), lowercase hex.
    pub records_sha256: String,
    /// One entry per record, in order.
    pub records: Vec<RecordDigest>,
}

/// The digest of one source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The file name (for the bundled subset, the name of the embedded file).
    pub name: String,
    /// What the file holds: `images`, `labels` or `batch` (a CIFAR-10 batch).
    pub role: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// Statistics of the pixel values of a split.
///
/// `min`, `max`, `mean` and `std` are over the finite values (absent when there are none);
/// `non_finite` counts NaN and infinite values, `out_of_range` finite values outside
/// `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Population standard deviation of the finite values.
    pub std: Option<f64>,
    /// Number of NaN or infinite values.
    pub non_finite: u64,
    /// Number of finite values below 0 or above 1.
    pub out_of_range: u64,
}

/// One record of a manifest: its label and the SHA-256 of its pixels.
///
/// Written in JSON as `"LABEL:HEX"`, e.g. `"9:3f1c…"`, to keep 60,000 records small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordDigest {
    /// The class label.
    pub label: u32,
    /// SHA-256 of the pixel values (see [`RECORD_DIGEST_ALGORITHM`]).
    pub image: [u8; 32],
}

impl RecordDigest {
    /// Digests one record: `pixels` as `f32` little-endian, then pairs it with `label`.
    pub fn of(pixels: &[f32], label: u32) -> Self {
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 4096];
        for chunk in pixels.chunks(buf.len() / 4) {
            for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            hasher.update(&buf[..chunk.len() * 4]);
        }
        RecordDigest {
            label,
            image: hasher.finalize().into(),
        }
    }
}

impl std::fmt::Display for RecordDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.label, hex::encode(self.image))
    }
}

impl std::str::FromStr for RecordDigest {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (label, digest) = s
            .split_once(':')
            .ok_or_else(|| format!("record {s:?} is not LABEL:SHA256"))?;
        let label = label
            .parse()
            .map_err(|_| format!("record {s:?}: label {label:?} is not a non-negative integer"))?;
        let mut image = [0u8; 32];
        hex::decode_to_slice(digest, &mut image)
            .map_err(|_| format!("record {s:?}: digest is not 64 hex digits"))?;
        Ok(RecordDigest { label, image })
    }
}

impl Serialize for RecordDigest {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordDigest {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RecordDigest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a record as \"LABEL:SHA256\"")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<RecordDigest, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The SHA-256 over `records` in order: each label as `u32` little-endian, then its image
/// digest.
pub fn records_root(records: &[RecordDigest]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for r in records {
        hasher.update(r.label.to_le_bytes());
        hasher.update(r.image);
    }
    hasher.finalize().into()
}

/// Which splits a command works on, as in `--split train|test|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitSelection {
    /// The training split.
    Train,
    /// The test split.
    Test,
    /// Every split the source has.
    #[default]
    All,
}

impl std::str::FromStr for SplitSelection {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(SplitSelection::Train),
            "test" => Ok(SplitSelection::Test),
            "all" => Ok(SplitSelection::All),
            other => Err(format!(
                "unknown split {other:?} (expected train, test or all)"
            )),
        }
    }
}

/// The name of the one split of sources that have no train/test split (`npy:`).
pub const UNSPLIT: &str = "data";

/// The split names `selection` stands for in `source`: `train` and/or `test`, or
/// [`UNSPLIT`] for `npy:` sources, which have one split whatever is selected.
///
/// `All` means the splits that are there: a directory with only training files gives
/// `train` (and one with neither gives both, so that loading says what is missing).
pub fn split_names(source: &DataSource, selection: SplitSelection) -> Vec<&'static str> {
    if matches!(source, DataSource::Npy { .. }) {
        return vec![UNSPLIT];
    }
    match selection {
        SplitSelection::Train => vec!["train"],
        SplitSelection::Test => vec!["test"],
        SplitSelection::All => {
            let present: Vec<&'static str> = [("train", Split::Train), ("test", Split::Test)]
                .into_iter()
                .filter(|(_, split)| observe::has_split(source, *split))
                .map(|(name, _)| name)
                .collect();
            if present.is_empty() {
                vec!["train", "test"]
            } else {
                present
            }
        }
    }
}

/// The loader split behind a split name (`data` loads like `train`).
pub fn split_of(name: &str) -> Option<Split> {
    match name {
        "train" | UNSPLIT => Some(Split::Train),
        "test" => Some(Split::Test),
        _ => None,
    }
}

/// Progress of a long manifest or check run, reported phase by phase.
pub trait Progress: Sync {
    /// A new phase begins (e.g. "hashing fashion-mnist/train").
    fn phase(&self, message: &str);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _message: &str) {}
}

impl DataManifest {
    /// Builds the manifest of `selection` of `source`; `created` is the RFC 3339 time to
    /// record (see [`rfc3339_utc`]).
    pub fn build(
        source: &DataSource,
        selection: SplitSelection,
        created: String,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let mut splits = Vec::new();
        for name in split_names(source, selection) {
            splits.push(observe(source, name, progress)?.to_manifest());
        }
        Ok(DataManifest {
            schema: MANIFEST_SCHEMA.to_owned(),
            schema_version: MANIFEST_SCHEMA_VERSION,
            tool: format!("nnguard {}", env!("CARGO_PKG_VERSION")),
            created,
            source: source.to_string(),
            record_digest: RECORD_DIGEST_ALGORITHM.to_owned(),
            splits,
        })
    }

    /// The split called `name`, if the manifest has it.
    pub fn split(&self, name: &str) -> Option<&SplitManifest> {
        self.splits.iter().find(|s| s.split == name)
    }

    /// The JSON text of the manifest: two-space indents, one record per line.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|e| DataError::BadManifest {
            path: PathBuf::from("<manifest>"),
            reason: format!("cannot serialise: {e}"),
        })?;
        out.push(b'\n');
        Ok(out)
    }

    /// Writes the manifest to `path` through a temporary file in the same directory and a
    /// rename, so readers never see half a manifest.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        write_atomic(path, &json)
    }

    /// Parses a manifest from JSON; `path` names it in errors.
    ///
    /// Refuses another schema and newer schema versions with a message saying so.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Header {
            schema: Option<serde_json::Value>,
            schema_version: Option<serde_json::Value>,
        }
        let bad = |reason: String| DataError::BadManifest {
            path: path.to_path_buf(),
            reason,
        };
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a data manifest (invalid JSON: {e})")))?;
        match header.schema.as_ref().and_then(|s| s.as_str()) {
            Some(MANIFEST_SCHEMA) => {}
            Some(other) => {
                return Err(bad(format!(
                    "not a data manifest: schema is {other:?}, expected {MANIFEST_SCHEMA:?}"
                )));
            }
            None => {
                return Err(bad(format!(
                    "not a data manifest: no \"schema\": {MANIFEST_SCHEMA:?} field (write one with `nnguard data manifest`)"
                )));
            }
        }
        match header.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(MANIFEST_SCHEMA_VERSION) => {}
            Some(v) if v > u64::from(MANIFEST_SCHEMA_VERSION) => {
                return Err(bad(format!(
                    "schema version {v} is newer than this nnguard reads ({MANIFEST_SCHEMA_VERSION}); upgrade nnguard"
                )));
            }
            other => {
                return Err(bad(format!(
                    "unsupported schema_version {}; expected {MANIFEST_SCHEMA_VERSION}",
                    other.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
                )));
            }
        }
        serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed data manifest: {e}")))
    }

    /// Reads and parses a manifest file (at most [`MAX_MANIFEST_BYTES`]).
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(DataError::WrongKind {
                path: path.into(),
                expected: "a manifest file",
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(DataError::BadManifest {
                path: path.into(),
                reason: format!("larger than the {MAX_MANIFEST_BYTES} bytes accepted"),
            });
        }
        Self::from_json(path, &bytes)
    }

    /// Ways in which the manifest contradicts itself (a record list that does not match
    /// its count, root digest or class counts; labels beyond the classes; an empty shape).
    /// An edited, unsigned manifest usually shows up here.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in &self.splits {
            let name = &s.split;
            if !seen.insert(name.as_str()) {
                problems.push(format!("split {name:?} appears twice"));
            }
            if split_of(name).is_none() {
                problems.push(format!("split {name:?} is not train, test or {UNSPLIT}"));
            }
            if s.shape.contains(&0) {
                problems.push(format!("{name}: shape {:?} has a zero dimension", s.shape));
            }
            if s.records.len() != s.record_count {
                problems.push(format!(
                    "{name}: record_count is {} but {} records are listed",
                    s.record_count,
                    s.records.len()
                ));
            }
            if hex::encode(records_root(&s.records)) != s.records_sha256.to_ascii_lowercase() {
                problems.push(format!(
                    "{name}: records_sha256 does not match the listed records"
                ));
            }
            if s.class_counts.len() != s.num_classes {
                problems.push(format!(
                    "{name}: {} class counts for {} classes",
                    s.class_counts.len(),
                    s.num_classes
                ));
            }
            if let Some(r) = s.records.iter().find(|r| r.label as usize >= s.num_classes) {
                problems.push(format!(
                    "{name}: label {} is not below num_classes {}",
                    r.label, s.num_classes
                ));
            } else if class_counts(&s.records, s.num_classes) != s.class_counts {
                problems.push(format!(
                    "{name}: class_counts do not match the labels of the listed records"
                ));
            }
        }
        problems
    }
}

/// Records per class among `records` (labels at or above `num_classes` are not counted).
pub(crate) fn class_counts(records: &[RecordDigest], num_classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; num_classes];
    for r in records {
        if let Some(c) = counts.get_mut(r.label as usize) {
            *c += 1;
        }
    }
    counts
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename),
/// readable by everyone (mode 0644 on Unix).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nnguard-manifest-")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| DataError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| DataError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC timestamp
/// (`2023-11-14T22:13:20Z`).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn record_digests_round_trip_through_text_and_reject_garbage() {
        let r = RecordDigest::of(&[0.0, 0.5, 1.0], 7);
        let text = r.to_string();
        assert!(text.starts_with("7:") && text.len() == 66, "{text}");
        assert_eq!(text.parse::<RecordDigest>(), Ok(r));
        for bad in [
            "",
            "7",
            "x:00",
            "-1:00",
            &format!("7:{}", "0".repeat(63)),
            &format!("7:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<RecordDigest>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn record_digest_is_sha256_of_the_little_endian_values() {
        let pixels = [0.25f32, 1.0];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0.25f32.to_le_bytes());
        bytes.extend_from_slice(&1.0f32.to_le_bytes());
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(RecordDigest::of(&pixels, 0).image, expected);
        // Longer than the internal buffer: still the digest of the whole record.
        let long: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        let bytes: Vec<u8> = long.iter().flat_map(|v| v.to_le_bytes()).collect();
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(RecordDigest::of(&long, 0).image, expected);
    }

    fn small_manifest() -> DataManifest {
        let records: Vec<RecordDigest> = (0..4u32)
            .map(|i| RecordDigest::of(&[i as f32 / 4.0; 6], i % 2))
            .collect();
        DataManifest {
            schema: MANIFEST_SCHEMA.into(),
            schema_version: MANIFEST_SCHEMA_VERSION,
            tool: "nnguard test".into(),
            created: rfc3339_utc(0),
            source: "npy:x.npy,y.npy".into(),
            record_digest: RECORD_DIGEST_ALGORITHM.into(),
            splits: vec![SplitManifest {
                split: UNSPLIT.into(),
                name: "toy".into(),
                shape: [1, 2, 3],
                num_classes: 2,
                class_names: None,
                class_counts: class_counts(&records, 2),
                values: ValueStats {
                    min: Some(0.0),
                    max: Some(0.75),
                    mean: Some(0.375),
                    std: Some(0.28),
                    non_finite: 0,
                    out_of_range: 0,
                },
                files: vec![],
                record_count: records.len(),
                records_sha256: hex::encode(records_root(&records)),
                records,
            }],
        }
    }

    #[test]
    fn a_written_manifest_reads_back_equal_and_is_consistent() {
        let m = small_manifest();
        assert!(m.inconsistencies().is_empty(), "{:?}", m.inconsistencies());
        let json = m.to_json().unwrap();
        assert_eq!(DataManifest::from_json(Path::new("m"), &json).unwrap(), m);
        let mut edited = m.clone();
        edited.splits[0].records.swap(0, 1);
        edited.splits[0].record_count = 9;
        let problems = edited.inconsistencies();
        assert!(
            problems.iter().any(|p| p.contains("records_sha256")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("record_count")),
            "{problems:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn random_text_is_an_error_never_a_panic(text in ".{0,300}") {
            let _ = DataManifest::from_json(Path::new("f"), text.as_bytes());
            let _ = text.parse::<RecordDigest>();
        }

        #[test]
        fn a_truncated_or_corrupted_manifest_is_an_error(cut in 0usize..100_000, flip in 0usize..100_000, byte in proptest::num::u8::ANY) {
            let json = small_manifest().to_json().unwrap();
            let cut = cut % (json.len() - 1);
            proptest::prop_assert!(DataManifest::from_json(Path::new("f"), &json[..cut]).is_err());
            let mut bad = json.clone();
            let at = flip % bad.len();
            bad[at] = byte;
            // A corrupted manifest either fails to parse or parses into something whose
            // consistency check runs without panicking.
            if let Ok(m) = DataManifest::from_json(Path::new("f"), &bad) {
                let _ = m.inconsistencies();
            }
        }
    }

    #[test]
    fn foreign_and_future_manifests_are_refused_with_a_reason() {
        let p = Path::new("m.json");
        let cases = [
            ("{", "invalid JSON"),
            ("{}", "no \"schema\""),
            (r#"{"schema":"other"}"#, "schema is \"other\""),
            (
                r#"{"schema":"nnguard-data-manifest","schema_version":99}"#,
                "newer",
            ),
            (
                r#"{"schema":"nnguard-data-manifest","schema_version":"1"}"#,
                "unsupported",
            ),
            (
                r#"{"schema":"nnguard-data-manifest","schema_version":1}"#,
                "malformed",
            ),
        ];
        for (text, expected) in cases {
            let err = DataManifest::from_json(p, text.as_bytes()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("m.json: ") && msg.contains(expected),
                "{text}: {msg}"
            );
        }
    }
}

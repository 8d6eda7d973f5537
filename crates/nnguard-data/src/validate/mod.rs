//! Data-set findings: what `nnguard data check` reports, and the checks behind them
//! (duplicates with conflicting labels, near duplicates, class balance, invalid values).
//!
//! Every [`Finding`] is named for what it flags and carries a [`Severity`], the split it
//! concerns, a one-line message and structured fields (serialised flat, with the name in
//! `kind`).

mod balance;
mod near;

use serde::Serialize;

pub use balance::{BalanceConfig, BalanceShift, chi_square_sf, compare_class_counts};
pub use near::{
    MAX_NEAR_DUPLICATE_PAIRS, NearDuplicateConfig, NearDuplicates, NearPair, NearPairs,
};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; rarely an attack on its own.
    Low,
    /// Suspicious; look before training.
    Medium,
    /// The data differs from what was approved, or is poisoned in a typical way.
    High,
    /// The evidence itself cannot be trusted (signature, shape).
    Critical,
}

impl Severity {
    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record named by a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    /// The split it is in.
    pub split: String,
    /// Its index in the split.
    pub index: usize,
    /// Its label.
    pub label: u32,
}

impl std::fmt::Display for RecordRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} #{} (label {})", self.split, self.index, self.label)
    }
}

/// What a finding flags, with its details. Each variant's documentation says what it
/// means and why it matters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
#[non_exhaustive]
pub enum FindingKind {
    /// **What:** the manifest's signature does not verify with the given public key.
    /// **Why:** an attacker who can change the data can also rewrite an unsigned manifest;
    /// only a verified signature makes the manifest evidence. Nothing else in the report
    /// can be trusted until this is resolved.
    ManifestSignatureInvalid {
        /// Why verification failed.
        reason: String,
    },
    /// **What:** the manifest contradicts itself (its records do not match their count,
    /// root digest or class counts). **Why:** the usual sign of a hand-edited manifest.
    ManifestInconsistent {
        /// What is inconsistent.
        reason: String,
    },
    /// **What:** a source file's SHA-256 differs from the manifest's. **Why:** the bytes
    /// are not those that were approved; the record findings say what changed inside.
    /// When every record still matches (a re-compressed file), the severity is low.
    FileDigestMismatch {
        /// The file name.
        file: String,
        /// The digest in the manifest.
        expected_sha256: String,
        /// The digest now.
        actual_sha256: String,
        /// Whether every decoded record of the split still matches the manifest.
        records_unchanged: bool,
    },
    /// **What:** a file listed in the manifest is not among the source's files.
    FileMissing {
        /// The file name.
        file: String,
    },
    /// **What:** the source has a file the manifest does not list.
    FileAdded {
        /// The file name.
        file: String,
    },
    /// **What:** records have another shape than the manifest (or reference) says.
    /// **Why:** a model trained on the manifest's shape cannot use them; a swapped data
    /// set. Records are not compared.
    ShapeMismatch {
        /// The shape expected (channels, height, width).
        expected: [usize; 3],
        /// The shape found.
        actual: [usize; 3],
        /// `manifest` or `reference`.
        against: &'static str,
    },
    /// **What:** the number of classes differs from the manifest's.
    NumClassesMismatch {
        /// Classes in the manifest.
        expected: usize,
        /// Classes now.
        actual: usize,
    },
    /// **What:** a record's pixels differ from the manifest's record at the same place.
    /// **Why:** tampered images (backdoor triggers, adversarial perturbations) look like
    /// this. Example: one pixel of record 17 changed.
    RecordDigestMismatch {
        /// Index in the data now.
        index: usize,
        /// Index in the manifest.
        manifest_index: usize,
        /// Label now.
        label: u32,
        /// Label in the manifest.
        manifest_label: u32,
    },
    /// **What:** a record has the same pixels as in the manifest but another label.
    /// **Why:** label flipping is the simplest poisoning attack.
    LabelFlipped {
        /// Index in the data now.
        index: usize,
        /// Index in the manifest.
        manifest_index: usize,
        /// Label now.
        label: u32,
        /// Label in the manifest.
        manifest_label: u32,
    },
    /// **What:** a record in the manifest is gone. **Why:** removing records of one class
    /// shifts what a model learns.
    RecordRemoved {
        /// Index in the manifest.
        manifest_index: usize,
        /// Its label in the manifest.
        manifest_label: u32,
    },
    /// **What:** a record the manifest does not have. **Why:** injected records are how
    /// poisoning and backdoor attacks reach the training set.
    RecordAdded {
        /// Index in the data now.
        index: usize,
        /// Its label.
        label: u32,
    },
    /// **What:** records kept their content but changed order.
    RecordsReordered {
        /// How many records moved.
        moved: usize,
        /// The first few moves as `(manifest_index, index)`.
        first: Vec<(usize, usize)>,
    },
    /// **What:** identical images with different labels. **Why:** at least one label is
    /// wrong; a copied image with a flipped label is a classic poisoning attack.
    DuplicateWithConflictingLabel {
        /// Every record with that image.
        records: Vec<RecordRef>,
    },
    /// **What:** two images closer than the near-duplicate threshold (root-mean-square
    /// pixel difference) with different labels. **Why:** a slightly perturbed copy with a
    /// flipped label poisons training while evading exact-duplicate checks.
    NearDuplicateWithConflictingLabel {
        /// The two records.
        records: [RecordRef; 2],
        /// Their root-mean-square pixel difference.
        rms_distance: f32,
        /// The threshold in use.
        threshold: f32,
    },
    /// **What:** the near-duplicate search stopped at its limit of pairs.
    NearDuplicateSearchTruncated {
        /// Pairs reported.
        reported: usize,
    },
    /// **What:** identical images with the same label within a split. **Why:** repeating
    /// a record raises its weight in training (and can amplify a poisoned one).
    DuplicateRecords {
        /// Number of groups of identical records.
        groups: usize,
        /// Records beyond the first of each group.
        extra_records: usize,
        /// The first few records that repeat an earlier one.
        first: Vec<RecordRef>,
    },
    /// **What:** the same image (and label) in the training and the test split.
    /// **Why:** test accuracy then overstates what the model learned.
    TrainTestOverlap {
        /// Number of test records that also appear in training.
        records: usize,
        /// The first few as `[train record, test record]`.
        first: Vec<[RecordRef; 2]>,
    },
    /// **What:** the class distribution differs from the reference manifest's by more
    /// than the threshold (total-variation distance). **Why:** removing or over-sampling
    /// a class biases the model; a shifted batch of new data may not be what it claims.
    ClassBalanceShift {
        /// `½ Σ |p_c − q_c|`.
        total_variation: f64,
        /// The threshold in use.
        threshold: f64,
        /// Pearson's chi-square statistic against the reference proportions.
        chi_square: f64,
        /// Its degrees of freedom.
        degrees_of_freedom: usize,
        /// Its p-value.
        p_value: f64,
        /// Class counts of the reference.
        reference_counts: Vec<u64>,
        /// Class counts now.
        counts: Vec<u64>,
    },
    /// **What:** a class of the reference has no records. **Why:** a removed class cannot
    /// be learned at all.
    ClassMissing {
        /// The class.
        class: usize,
        /// Its name, or its number.
        class_name: String,
        /// Its records in the reference.
        reference_count: u64,
    },
    /// **What:** NaN or infinite pixel values. **Why:** they break training (a NaN loss)
    /// or hide an attack; a correct data set has none.
    NonFiniteValue {
        /// Records with such values.
        records: usize,
        /// Values in all.
        values: u64,
        /// Every affected record's index.
        indices: Vec<usize>,
    },
    /// **What:** finite pixel values outside `[0, 1]`. **Why:** nnguard's models and
    /// attacks assume that range; out-of-range inputs are out-of-distribution.
    ValueOutOfRange {
        /// Records with such values.
        records: usize,
        /// Values in all.
        values: u64,
        /// Smallest value found.
        min: f64,
        /// Largest value found.
        max: f64,
        /// Every affected record's index.
        indices: Vec<usize>,
    },
}

impl FindingKind {
    /// The finding's name, e.g. `RecordDigestMismatch`.
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::ManifestSignatureInvalid { .. } => "ManifestSignatureInvalid",
            FindingKind::ManifestInconsistent { .. } => "ManifestInconsistent",
            FindingKind::FileDigestMismatch { .. } => "FileDigestMismatch",
            FindingKind::FileMissing { .. } => "FileMissing",
            FindingKind::FileAdded { .. } => "FileAdded",
            FindingKind::ShapeMismatch { .. } => "ShapeMismatch",
            FindingKind::NumClassesMismatch { .. } => "NumClassesMismatch",
            FindingKind::RecordDigestMismatch { .. } => "RecordDigestMismatch",
            FindingKind::LabelFlipped { .. } => "LabelFlipped",
            FindingKind::RecordRemoved { .. } => "RecordRemoved",
            FindingKind::RecordAdded { .. } => "RecordAdded",
            FindingKind::RecordsReordered { .. } => "RecordsReordered",
            FindingKind::DuplicateWithConflictingLabel { .. } => "DuplicateWithConflictingLabel",
            FindingKind::NearDuplicateWithConflictingLabel { .. } => {
                "NearDuplicateWithConflictingLabel"
            }
            FindingKind::NearDuplicateSearchTruncated { .. } => "NearDuplicateSearchTruncated",
            FindingKind::DuplicateRecords { .. } => "DuplicateRecords",
            FindingKind::TrainTestOverlap { .. } => "TrainTestOverlap",
            FindingKind::ClassBalanceShift { .. } => "ClassBalanceShift",
            FindingKind::ClassMissing { .. } => "ClassMissing",
            FindingKind::NonFiniteValue { .. } => "NonFiniteValue",
            FindingKind::ValueOutOfRange { .. } => "ValueOutOfRange",
        }
    }

    /// The severity of this kind of finding.
    pub fn severity(&self) -> Severity {
        match self {
            FindingKind::ManifestSignatureInvalid { .. }
            | FindingKind::ManifestInconsistent { .. }
            | FindingKind::ShapeMismatch { .. } => Severity::Critical,
            FindingKind::FileDigestMismatch {
                records_unchanged: true,
                ..
            }
            | FindingKind::RecordsReordered { .. }
            | FindingKind::DuplicateRecords { .. }
            | FindingKind::TrainTestOverlap { .. }
            | FindingKind::NearDuplicateSearchTruncated { .. } => Severity::Low,
            FindingKind::FileMissing { .. }
            | FindingKind::FileAdded { .. }
            | FindingKind::RecordRemoved { .. }
            | FindingKind::NearDuplicateWithConflictingLabel { .. }
            | FindingKind::ClassBalanceShift { .. } => Severity::Medium,
            FindingKind::FileDigestMismatch { .. }
            | FindingKind::NumClassesMismatch { .. }
            | FindingKind::RecordDigestMismatch { .. }
            | FindingKind::LabelFlipped { .. }
            | FindingKind::RecordAdded { .. }
            | FindingKind::DuplicateWithConflictingLabel { .. }
            | FindingKind::ClassMissing { .. }
            | FindingKind::NonFiniteValue { .. }
            | FindingKind::ValueOutOfRange { .. } => Severity::High,
        }
    }
}

/// One problem found in a data set or its manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// The split concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// What was found, in one line.
    pub message: String,
    /// What the finding flags, with its details.
    #[serde(flatten)]
    pub kind: FindingKind,
}

impl Finding {
    /// A finding of `kind` about `split`, with the kind's severity.
    pub fn new(split: Option<&str>, kind: FindingKind, message: String) -> Self {
        Finding {
            severity: kind.severity(),
            split: split.map(str::to_owned),
            message,
            kind,
        }
    }
}

/// Groups of identical records: every set of two or more positions in `digests` with the
/// same value, each sorted, in order of first position.
pub fn exact_duplicate_groups<T: Eq + std::hash::Hash>(digests: &[T]) -> Vec<Vec<usize>> {
    let mut by_digest: std::collections::HashMap<&T, Vec<usize>> = std::collections::HashMap::new();
    for (i, d) in digests.iter().enumerate() {
        by_digest.entry(d).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_digest.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_unstable_by_key(|g| g[0]);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_groups_are_complete_and_ordered() {
        let groups = exact_duplicate_groups(&["a", "b", "a", "c", "b", "a"]);
        assert_eq!(groups, vec![vec![0, 2, 5], vec![1, 4]]);
        assert!(exact_duplicate_groups(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn findings_serialise_flat_with_their_name() {
        let f = Finding::new(
            Some("train"),
            FindingKind::LabelFlipped {
                index: 4,
                manifest_index: 4,
                label: 1,
                manifest_label: 2,
            },
            "flipped".into(),
        );
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["kind"], "LabelFlipped");
        assert_eq!(json["severity"], "high");
        assert_eq!(json["split"], "train");
        assert_eq!(json["manifest_label"], 2);
        assert_eq!(f.kind.name(), "LabelFlipped");
    }
}

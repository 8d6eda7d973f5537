//! `nnguard data check`: a data set against its manifest, plus validation.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::manifest::{
    DataManifest, Observed, Progress, RecordDiff, SplitManifest, SplitSelection, UNSPLIT,
    diff_records, observe, split_names,
};
use crate::validate::{
    BalanceConfig, Finding, FindingKind, NearDuplicateConfig, NearDuplicates, RecordRef,
    compare_class_counts, exact_duplicate_groups,
};
use crate::{DataError, DataSource, Result};

/// How many examples a summarising finding lists in its message.
const EXAMPLES: usize = 5;

/// Settings of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckConfig {
    /// The near-duplicate search, or `None` to skip it.
    pub near_duplicates: Option<NearDuplicateConfig>,
    /// The class-balance comparison with a reference manifest.
    pub balance: BalanceConfig,
    /// Compare source-file digests (turn off for data converted to another format, whose
    /// records still match).
    pub compare_files: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            near_duplicates: Some(NearDuplicateConfig::default()),
            balance: BalanceConfig::default(),
            compare_files: true,
        }
    }
}

impl CheckConfig {
    /// Checks the settings.
    pub fn build(self) -> Result<Checker> {
        Ok(Checker {
            near: self
                .near_duplicates
                .map(NearDuplicateConfig::build)
                .transpose()?,
            balance: self.balance.build()?,
            compare_files: self.compare_files,
        })
    }
}

/// A configured check (see [`CheckConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checker {
    near: Option<NearDuplicates>,
    balance: BalanceConfig,
    compare_files: bool,
}

/// What was checked in one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// `train`, `test` or `data`.
    pub split: String,
    /// The data set's name.
    pub name: String,
    /// Records in the data now.
    pub records: usize,
    /// Shape of one record.
    pub shape: [usize; 3],
    /// Records per class now.
    pub class_counts: Vec<u64>,
    /// Source files hashed.
    pub files: usize,
    /// Records in the manifest, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_records: Option<usize>,
    /// Records identical to the manifest's (same image, same label, in order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged_records: Option<usize>,
}

/// The result of a check: what was looked at and what was found (worst first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// One summary per split checked.
    pub splits: Vec<SplitSummary>,
    /// Every finding, most severe first.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Adds a finding and keeps the list ordered by severity.
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }
}

impl Checker {
    /// Checks `selection` of `source` (default: the manifest's splits, or every split)
    /// against `manifest` (record and file digests, shape, classes) and `reference` (class
    /// balance, shape), and validates the data itself (invalid values, exact and near
    /// duplicates with conflicting labels, repeated records, train/test overlap).
    ///
    /// A split that is not in the manifest, or data that cannot be loaded, is an error;
    /// everything else is a finding.
    pub fn check(
        &self,
        source: &DataSource,
        selection: Option<SplitSelection>,
        manifest: Option<&DataManifest>,
        reference: Option<&DataManifest>,
        progress: &dyn Progress,
    ) -> Result<CheckReport> {
        let names = splits_to_check(source, selection, manifest)?;
        let mut findings = Vec::new();
        if let Some(m) = manifest {
            findings.extend(m.inconsistencies().into_iter().map(|reason| {
                Finding::new(
                    None,
                    FindingKind::ManifestInconsistent {
                        reason: reason.clone(),
                    },
                    format!("the manifest is inconsistent: {reason}"),
                )
            }));
        }
        let mut observed = Vec::new();
        let mut summaries = Vec::new();
        for name in &names {
            let obs = observe(source, name, progress)?;
            progress.phase(&format!("checking {}", obs.dataset.name));
            let mut summary = SplitSummary {
                split: obs.split.clone(),
                name: obs.dataset.name.clone(),
                records: obs.records.len(),
                shape: obs.dataset.shape,
                class_counts: crate::manifest::class_counts(&obs.records, obs.dataset.num_classes),
                files: obs.files.len(),
                manifest_records: None,
                unchanged_records: None,
            };
            if let Some(expected) = manifest.and_then(|m| matching_split(m, name)) {
                let diff = self.compare_with_manifest(&obs, expected, &mut findings);
                summary.manifest_records = Some(expected.records.len());
                summary.unchanged_records = Some(diff.unchanged);
            }
            value_findings(&obs, &mut findings);
            if let Some(r) = reference {
                self.compare_with_reference(&obs, r, &mut findings);
            }
            summaries.push(summary);
            observed.push(obs);
        }
        progress.phase("looking for duplicates");
        duplicate_findings(&observed, &mut findings);
        if let Some(near) = &self.near {
            progress.phase("looking for near duplicates");
            near_duplicate_findings(near, &observed, &mut findings);
        }
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        Ok(CheckReport {
            splits: summaries,
            findings,
        })
    }

    /// Shape, classes, records and files of one split against the manifest's entry.
    fn compare_with_manifest(
        &self,
        obs: &Observed,
        expected: &SplitManifest,
        findings: &mut Vec<Finding>,
    ) -> RecordDiff {
        let split = Some(obs.split.as_str());
        let d = &obs.dataset;
        let names = ClassNames(d.class_names.as_deref());
        let shape_ok = d.shape == expected.shape;
        if !shape_ok {
            findings.push(Finding::new(
                split,
                FindingKind::ShapeMismatch {
                    expected: expected.shape,
                    actual: d.shape,
                    against: "manifest",
                },
                format!(
                    "records are {}, the manifest says {}; records not compared",
                    shape_text(d.shape),
                    shape_text(expected.shape)
                ),
            ));
        }
        if d.num_classes != expected.num_classes {
            findings.push(Finding::new(
                split,
                FindingKind::NumClassesMismatch {
                    expected: expected.num_classes,
                    actual: d.num_classes,
                },
                format!(
                    "{} classes, the manifest says {}",
                    d.num_classes, expected.num_classes
                ),
            ));
        }
        let diff = if shape_ok {
            diff_records(&expected.records, &obs.records)
        } else {
            RecordDiff::default()
        };
        record_findings(&diff, split, &names, findings);
        if self.compare_files {
            let records_unchanged = shape_ok && diff.is_empty();
            file_findings(obs, expected, records_unchanged, findings);
        }
        diff
    }

    /// Shape and class balance of one split against a reference manifest.
    fn compare_with_reference(
        &self,
        obs: &Observed,
        reference: &DataManifest,
        findings: &mut Vec<Finding>,
    ) {
        let split = Some(obs.split.as_str());
        let (shape, counts, what) = match matching_split(reference, &obs.split) {
            Some(s) => (Some(s.shape), s.class_counts.clone(), s.split.clone()),
            None => {
                // No split of that name: compare with all of the reference.
                let mut total: Vec<u64> = Vec::new();
                for s in &reference.splits {
                    if total.len() < s.class_counts.len() {
                        total.resize(s.class_counts.len(), 0);
                    }
                    for (t, c) in total.iter_mut().zip(&s.class_counts) {
                        *t += c;
                    }
                }
                let shape = reference.splits.first().map(|s| s.shape);
                (shape, total, "all splits".to_owned())
            }
        };
        if let Some(shape) = shape
            && shape != obs.dataset.shape
        {
            findings.push(Finding::new(
                split,
                FindingKind::ShapeMismatch {
                    expected: shape,
                    actual: obs.dataset.shape,
                    against: "reference",
                },
                format!(
                    "records are {}, the reference ({what}) has {}",
                    shape_text(obs.dataset.shape),
                    shape_text(shape)
                ),
            ));
        }
        let actual = crate::manifest::class_counts(&obs.records, obs.dataset.num_classes);
        let shift = compare_class_counts(&counts, &actual);
        let names = ClassNames(obs.dataset.class_names.as_deref());
        if shift.total_variation > self.balance.max_total_variation {
            findings.push(Finding::new(
                split,
                FindingKind::ClassBalanceShift {
                    total_variation: shift.total_variation,
                    threshold: self.balance.max_total_variation,
                    chi_square: shift.chi_square,
                    degrees_of_freedom: shift.degrees_of_freedom,
                    p_value: shift.p_value,
                    reference_counts: counts.clone(),
                    counts: actual.clone(),
                },
                format!(
                    "class balance differs from the reference ({what}): total variation {:.3} > {} (chi-square {:.1}, {} dof, p = {:.2e})",
                    shift.total_variation,
                    self.balance.max_total_variation,
                    shift.chi_square,
                    shift.degrees_of_freedom,
                    shift.p_value
                ),
            ));
        }
        for &class in &shift.missing {
            let reference_count = counts.get(class).copied().unwrap_or(0);
            findings.push(Finding::new(
                split,
                FindingKind::ClassMissing {
                    class,
                    class_name: names.name(class),
                    reference_count,
                },
                format!(
                    "class {} has no records (the reference has {reference_count})",
                    names.value(class as u32)
                ),
            ));
        }
    }
}

/// The split names to check, in order.
fn splits_to_check(
    source: &DataSource,
    selection: Option<SplitSelection>,
    manifest: Option<&DataManifest>,
) -> Result<Vec<&'static str>> {
    let names = match (selection, manifest) {
        (Some(sel), _) => split_names(source, sel),
        (None, None) => split_names(source, SplitSelection::All),
        // Every split of the manifest, present or not: a deleted split is an error, not
        // something to skip quietly.
        (None, Some(_)) if matches!(source, DataSource::Npy { .. }) => vec![UNSPLIT],
        (None, Some(m)) => {
            let named: Vec<&'static str> = ["train", "test"]
                .into_iter()
                .filter(|n| m.split(n).is_some())
                .collect();
            if named.is_empty() {
                split_names(source, SplitSelection::All)
            } else {
                named
            }
        }
    };
    if let Some(m) = manifest
        && let Some(missing) = names.iter().find(|n| matching_split(m, n).is_none())
    {
        let have: Vec<&str> = m.splits.iter().map(|s| s.split.as_str()).collect();
        return Err(DataError::InvalidOption {
            name: "--split",
            reason: format!(
                "the manifest has no {missing} split (it has: {}); pick one with --split",
                have.join(", ")
            ),
        });
    }
    if names.is_empty() {
        return Err(DataError::InvalidOption {
            name: "--manifest",
            reason: "the manifest lists no split of this data set".to_owned(),
        });
    }
    Ok(names)
}

/// The manifest entry for split `name`; data without splits matches a manifest with one.
fn matching_split<'m>(m: &'m DataManifest, name: &str) -> Option<&'m SplitManifest> {
    m.split(name).or_else(|| match m.splits.as_slice() {
        [only] if name == UNSPLIT => Some(only),
        _ => None,
    })
}

fn record_findings(
    diff: &RecordDiff,
    split: Option<&str>,
    names: &ClassNames<'_>,
    findings: &mut Vec<Finding>,
) {
    for m in &diff.changed {
        let place = if m.index == m.manifest_index {
            format!("record {} ({})", m.index, names.label(m.label))
        } else {
            format!(
                "record {} ({}, manifest record {})",
                m.index,
                names.label(m.label),
                m.manifest_index
            )
        };
        let relabel = if m.label == m.manifest_label {
            String::new()
        } else {
            format!("; its label was {}", names.label(m.manifest_label))
        };
        findings.push(Finding::new(
            split,
            FindingKind::RecordDigestMismatch {
                index: m.index,
                manifest_index: m.manifest_index,
                label: m.label,
                manifest_label: m.manifest_label,
            },
            format!("{place}: pixels differ from the manifest{relabel}"),
        ));
    }
    for m in &diff.relabelled {
        let moved = if m.index == m.manifest_index {
            String::new()
        } else {
            format!(" (manifest record {})", m.manifest_index)
        };
        findings.push(Finding::new(
            split,
            FindingKind::LabelFlipped {
                index: m.index,
                manifest_index: m.manifest_index,
                label: m.label,
                manifest_label: m.manifest_label,
            },
            format!(
                "record {}{moved}: label changed from {} to {}, pixels unchanged",
                m.index,
                names.value(m.manifest_label),
                names.value(m.label)
            ),
        ));
    }
    for r in &diff.removed {
        findings.push(Finding::new(
            split,
            FindingKind::RecordRemoved {
                manifest_index: r.index,
                manifest_label: r.label,
            },
            format!(
                "manifest record {} ({}) is missing",
                r.index,
                names.label(r.label)
            ),
        ));
    }
    for r in &diff.added {
        findings.push(Finding::new(
            split,
            FindingKind::RecordAdded {
                index: r.index,
                label: r.label,
            },
            format!(
                "record {} ({}) is not in the manifest",
                r.index,
                names.label(r.label)
            ),
        ));
    }
    if !diff.moved.is_empty() {
        let first: Vec<(usize, usize)> = diff
            .moved
            .iter()
            .take(EXAMPLES)
            .map(|m| (m.manifest_index, m.index))
            .collect();
        let examples: Vec<String> = first
            .iter()
            .map(|(from, to)| format!("{from} → {to}"))
            .collect();
        findings.push(Finding::new(
            split,
            FindingKind::RecordsReordered {
                moved: diff.moved.len(),
                first,
            },
            format!(
                "{} records moved (manifest index → index: {}{})",
                diff.moved.len(),
                examples.join(", "),
                if diff.moved.len() > EXAMPLES {
                    ", ..."
                } else {
                    ""
                }
            ),
        ));
    }
}

fn file_findings(
    obs: &Observed,
    expected: &SplitManifest,
    records_unchanged: bool,
    findings: &mut Vec<Finding>,
) {
    let split = Some(obs.split.as_str());
    let now: BTreeMap<&str, &str> = obs
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.sha256.as_str()))
        .collect();
    let then: BTreeMap<&str, &str> = expected
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.sha256.as_str()))
        .collect();
    for (&file, &want) in &then {
        match now.get(file) {
            Some(&have) if have.eq_ignore_ascii_case(want) => {}
            Some(&have) => findings.push(Finding::new(
                split,
                FindingKind::FileDigestMismatch {
                    file: file.to_owned(),
                    expected_sha256: want.to_owned(),
                    actual_sha256: have.to_owned(),
                    records_unchanged,
                },
                format!(
                    "{file}: SHA-256 {} differs from the manifest's {}{}",
                    short(have),
                    short(want),
                    if records_unchanged {
                        "; every record still matches (re-compressed or re-encoded?)"
                    } else {
                        ""
                    }
                ),
            )),
            None => findings.push(Finding::new(
                split,
                FindingKind::FileMissing {
                    file: file.to_owned(),
                },
                format!("{file} is in the manifest but not among the source files"),
            )),
        }
    }
    for &file in now.keys().filter(|f| !then.contains_key(*f)) {
        findings.push(Finding::new(
            split,
            FindingKind::FileAdded {
                file: file.to_owned(),
            },
            format!("{file} is not in the manifest"),
        ));
    }
}

fn value_findings(obs: &Observed, findings: &mut Vec<Finding>) {
    let split = Some(obs.split.as_str());
    let non_finite: Vec<usize> = obs
        .bad_values
        .iter()
        .filter(|b| b.non_finite > 0)
        .map(|b| b.index)
        .collect();
    if !non_finite.is_empty() {
        findings.push(Finding::new(
            split,
            FindingKind::NonFiniteValue {
                records: non_finite.len(),
                values: obs.values.non_finite,
                indices: non_finite.clone(),
            },
            format!(
                "{} records hold NaN or infinite values ({} values; records {})",
                non_finite.len(),
                obs.values.non_finite,
                index_list(&non_finite)
            ),
        ));
    }
    let out: Vec<usize> = obs
        .bad_values
        .iter()
        .filter(|b| b.out_of_range > 0)
        .map(|b| b.index)
        .collect();
    if !out.is_empty() {
        let (min, max) = (
            obs.values.min.unwrap_or(f64::NAN),
            obs.values.max.unwrap_or(f64::NAN),
        );
        findings.push(Finding::new(
            split,
            FindingKind::ValueOutOfRange {
                records: out.len(),
                values: obs.values.out_of_range,
                min,
                max,
                indices: out.clone(),
            },
            format!(
                "{} records hold values outside [0, 1] ({} values, from {min} to {max}; records {})",
                out.len(),
                obs.values.out_of_range,
                index_list(&out)
            ),
        ));
    }
}

/// A record of any checked split: (split position, index).
type Rec = (usize, usize);

fn record_ref(observed: &[Observed], (s, i): Rec) -> RecordRef {
    RecordRef {
        split: observed[s].split.clone(),
        index: i,
        label: observed[s].records[i].label,
    }
}

fn ref_text(observed: &[Observed], rec: Rec) -> String {
    let r = record_ref(observed, rec);
    let names = ClassNames(observed[rec.0].dataset.class_names.as_deref());
    format!("{} #{} ({})", r.split, r.index, names.label(r.label))
}

/// Exact duplicates over all checked splits: conflicting labels, repeats within a split,
/// and train/test overlap.
fn duplicate_findings(observed: &[Observed], findings: &mut Vec<Finding>) {
    let all: Vec<Rec> = observed
        .iter()
        .enumerate()
        .flat_map(|(s, o)| (0..o.records.len()).map(move |i| (s, i)))
        .collect();
    let digests: Vec<&[u8; 32]> = all
        .iter()
        .map(|&(s, i)| &observed[s].records[i].image)
        .collect();
    let mut repeats: BTreeMap<usize, (usize, Vec<Rec>)> = BTreeMap::new();
    let mut overlap: Vec<[Rec; 2]> = Vec::new();
    for group in exact_duplicate_groups(&digests) {
        let members: Vec<Rec> = group.iter().map(|&g| all[g]).collect();
        let labels: HashSet<u32> = members
            .iter()
            .map(|&(s, i)| observed[s].records[i].label)
            .collect();
        if labels.len() > 1 {
            let splits: HashSet<usize> = members.iter().map(|m| m.0).collect();
            let split = (splits.len() == 1).then(|| observed[members[0].0].split.as_str());
            let text: Vec<String> = members.iter().map(|&m| ref_text(observed, m)).collect();
            findings.push(Finding::new(
                split,
                FindingKind::DuplicateWithConflictingLabel {
                    records: members.iter().map(|&m| record_ref(observed, m)).collect(),
                },
                format!(
                    "identical images with different labels: {}",
                    text.join(", ")
                ),
            ));
            continue;
        }
        for (s, o) in observed.iter().enumerate() {
            let here: Vec<Rec> = members.iter().copied().filter(|m| m.0 == s).collect();
            if here.len() > 1 {
                let entry = repeats.entry(s).or_default();
                entry.0 += 1;
                entry.1.extend(&here[1..]);
            }
            if o.split == "test"
                && let Some(&train) = members.iter().find(|m| observed[m.0].split == "train")
            {
                overlap.extend(here.iter().map(|&t| [train, t]));
            }
        }
    }
    for (s, (groups, extra)) in repeats {
        let first: Vec<RecordRef> = extra
            .iter()
            .take(EXAMPLES)
            .map(|&r| record_ref(observed, r))
            .collect();
        let text: Vec<String> = extra
            .iter()
            .take(EXAMPLES)
            .map(|&r| ref_text(observed, r))
            .collect();
        findings.push(Finding::new(
            Some(&observed[s].split),
            FindingKind::DuplicateRecords {
                groups,
                extra_records: extra.len(),
                first,
            },
            format!(
                "{groups} images appear more than once with the same label ({} extra records: {}{})",
                extra.len(),
                text.join(", "),
                if extra.len() > EXAMPLES { ", ..." } else { "" }
            ),
        ));
    }
    if !overlap.is_empty() {
        overlap.sort_unstable_by_key(|p| p[1]);
        let text: Vec<String> = overlap
            .iter()
            .take(EXAMPLES)
            .map(|&[a, b]| format!("{} = {}", ref_text(observed, b), ref_text(observed, a)))
            .collect();
        findings.push(Finding::new(
            None,
            FindingKind::TrainTestOverlap {
                records: overlap.len(),
                first: overlap
                    .iter()
                    .take(EXAMPLES)
                    .map(|&[a, b]| [record_ref(observed, a), record_ref(observed, b)])
                    .collect(),
            },
            format!(
                "{} test records also appear in the training split: {}{}",
                overlap.len(),
                text.join(", "),
                if overlap.len() > EXAMPLES {
                    ", ..."
                } else {
                    ""
                }
            ),
        ));
    }
}

/// Near duplicates with different labels over all checked splits of the same shape.
/// Pairs of identical images are left to [`duplicate_findings`].
fn near_duplicate_findings(
    near: &NearDuplicates,
    observed: &[Observed],
    findings: &mut Vec<Finding>,
) {
    let mut shapes: Vec<[usize; 3]> = observed.iter().map(|o| o.dataset.shape).collect();
    shapes.sort_unstable();
    shapes.dedup();
    for shape in shapes {
        let recs: Vec<Rec> = observed
            .iter()
            .enumerate()
            .filter(|(_, o)| o.dataset.shape == shape)
            .flat_map(|(s, o)| (0..o.records.len()).map(move |i| (s, i)))
            .collect();
        let pixels: Vec<&[f32]> = recs
            .iter()
            .map(|&(s, i)| observed[s].dataset.image(i))
            .collect();
        let digest = |k: usize| &observed[recs[k].0].records[recs[k].1];
        let result = near.pairs(&pixels, shape, |a, b| {
            let (x, y) = (digest(a), digest(b));
            x.label != y.label && x.image != y.image
        });
        for p in &result.pairs {
            let (a, b) = (recs[p.a], recs[p.b]);
            let split = (a.0 == b.0).then(|| observed[a.0].split.as_str());
            findings.push(Finding::new(
                split,
                FindingKind::NearDuplicateWithConflictingLabel {
                    records: [record_ref(observed, a), record_ref(observed, b)],
                    rms_distance: p.rms,
                    threshold: near.threshold_rms(),
                },
                format!(
                    "near-duplicate images with different labels: {} and {} (RMS difference {:.4} ≤ {})",
                    ref_text(observed, a),
                    ref_text(observed, b),
                    p.rms,
                    near.threshold_rms()
                ),
            ));
        }
        if result.truncated {
            findings.push(Finding::new(
                None,
                FindingKind::NearDuplicateSearchTruncated {
                    reported: result.pairs.len(),
                },
                format!(
                    "more than {} near-duplicate pairs; only the first are reported (lower --near-threshold?)",
                    result.pairs.len()
                ),
            ));
        }
    }
}

/// Class names for messages.
struct ClassNames<'a>(Option<&'a [String]>);

impl ClassNames<'_> {
    fn name(&self, class: usize) -> String {
        self.0
            .and_then(|n| n.get(class).cloned())
            .unwrap_or_else(|| class.to_string())
    }

    /// `3 [Dress]`, or `3` without names.
    fn value(&self, label: u32) -> String {
        match self.0.and_then(|n| n.get(label as usize)) {
            Some(name) => format!("{label} [{name}]"),
            None => label.to_string(),
        }
    }

    /// `label 3 [Dress]`, or `label 3` without names.
    fn label(&self, label: u32) -> String {
        format!("label {}", self.value(label))
    }
}

fn shape_text(s: [usize; 3]) -> String {
    format!("{}×{}×{}", s[0], s[1], s[2])
}

fn short(hex: &str) -> String {
    format!("{}…", hex.get(..12).unwrap_or(hex))
}

fn index_list(indices: &[usize]) -> String {
    let shown: Vec<String> = indices
        .iter()
        .take(EXAMPLES)
        .map(ToString::to_string)
        .collect();
    format!(
        "{}{}",
        shown.join(", "),
        if indices.len() > EXAMPLES {
            ", ..."
        } else {
            ""
        }
    )
}

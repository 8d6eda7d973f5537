//! Data manifests and checks end to end: a manifest of a clean data set, then one tampering
//! at a time, each caught by the finding named for it, and a clean data set that stays
//! silent.

use std::path::Path;

use nnguard_data::manifest::{NoProgress, RecordDigest};
use nnguard_data::validate::{FindingKind, Severity};
use nnguard_data::{CheckConfig, CheckReport, DataManifest, DataSource, Split, SplitSelection};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A small IDX data set on disk: the first `n` training images of the bundled subset, as
/// bytes, that a test can tamper with and write again.
struct Fixture {
    dir: tempfile::TempDir,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;

impl Fixture {
    fn new(n: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let data = DataSource::Bundled.load(Split::Train)?.take(n);
        let pixels = data
            .images
            .iter()
            .map(|&v| (v * 255.0).round() as u8)
            .collect();
        let labels = data.labels.iter().map(|&l| l as u8).collect();
        let fixture = Fixture {
            dir: tempfile::tempdir()?,
            pixels,
            labels,
        };
        fixture.write()?;
        Ok(fixture)
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn source(&self) -> DataSource {
        DataSource::Idx(self.dir.path().to_path_buf())
    }

    fn write(&self) -> std::io::Result<()> {
        let n = self.len() as u32;
        let mut images = vec![0, 0, 8, 3];
        for d in [n, SIDE as u32, SIDE as u32] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        images.extend_from_slice(&self.pixels);
        let mut labels = vec![0, 0, 8, 1];
        labels.extend_from_slice(&n.to_be_bytes());
        labels.extend_from_slice(&self.labels);
        std::fs::write(self.dir.path().join("train-images-idx3-ubyte"), images)?;
        std::fs::write(self.dir.path().join("train-labels-idx1-ubyte"), labels)
    }

    fn image(&self, i: usize) -> Vec<u8> {
        self.pixels[i * PIXELS..(i + 1) * PIXELS].to_vec()
    }

    fn remove(&mut self, i: usize) {
        self.pixels.drain(i * PIXELS..(i + 1) * PIXELS);
        self.labels.remove(i);
    }

    fn insert(&mut self, i: usize, image: &[u8], label: u8) {
        self.pixels
            .splice(i * PIXELS..i * PIXELS, image.iter().copied());
        self.labels.insert(i, label);
    }

    fn manifest(&self) -> Result<DataManifest, nnguard_data::DataError> {
        DataManifest::build(
            &self.source(),
            SplitSelection::Train,
            "2024-01-01T00:00:00Z".into(),
            &NoProgress,
        )
    }
}

fn check(
    source: &DataSource,
    manifest: Option<&DataManifest>,
    reference: Option<&DataManifest>,
) -> Result<CheckReport, nnguard_data::DataError> {
    CheckConfig::default()
        .build()?
        .check(source, None, manifest, reference, &NoProgress)
}

/// The findings' names, in report order.
fn kinds(report: &CheckReport) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.kind.name()).collect()
}

fn only<'r>(report: &'r CheckReport, name: &str) -> Vec<&'r FindingKind> {
    report
        .findings
        .iter()
        .filter(|f| f.kind.name() == name)
        .map(|f| &f.kind)
        .collect()
}

#[test]
fn the_bundled_data_set_checks_clean_against_its_own_manifest() -> TestResult {
    let manifest = DataManifest::build(
        &DataSource::Bundled,
        SplitSelection::All,
        "2024-01-01T00:00:00Z".into(),
        &NoProgress,
    )?;
    assert_eq!(manifest.splits.len(), 2);
    assert_eq!(manifest.splits[0].record_count, 2000);
    assert_eq!(manifest.splits[1].class_counts.iter().sum::<u64>(), 1000);
    assert_eq!(manifest.splits[0].files.len(), 2);
    assert!(manifest.inconsistencies().is_empty());

    let report = check(&DataSource::Bundled, Some(&manifest), Some(&manifest))?;
    assert!(report.is_clean(), "{:?}", kinds(&report));
    assert_eq!(report.splits[0].unchanged_records, Some(2000));
    assert_eq!(report.splits[1].unchanged_records, Some(1000));
    Ok(())
}

#[test]
fn a_manifest_survives_a_round_trip_through_its_file() -> TestResult {
    let fixture = Fixture::new(50)?;
    let manifest = fixture.manifest()?;
    let path = fixture.dir.path().join("m.json");
    manifest.write(&path)?;
    assert_eq!(DataManifest::read(&path)?, manifest);
    // One record per line, so that `diff` shows which records differ.
    let text = std::fs::read_to_string(&path)?;
    let first = manifest.splits[0].records[0].to_string();
    assert!(
        text.lines().any(|l| l.trim() == format!("\"{first}\",")),
        "{first}"
    );
    // The same records in another format digest the same.
    let pixels: Vec<f32> = fixture
        .image(0)
        .iter()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    assert_eq!(
        manifest.splits[0].records[0],
        RecordDigest::of(&pixels, u32::from(fixture.labels[0]))
    );
    Ok(())
}

#[test]
fn one_changed_pixel_is_a_record_digest_mismatch_at_its_index() -> TestResult {
    let mut fixture = Fixture::new(300)?;
    let manifest = fixture.manifest()?;
    fixture.pixels[17 * PIXELS + 400] ^= 0x01;
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    assert_eq!(
        kinds(&report),
        vec!["RecordDigestMismatch", "FileDigestMismatch"]
    );
    assert!(matches!(
        only(&report, "RecordDigestMismatch")[0],
        FindingKind::RecordDigestMismatch {
            index: 17,
            manifest_index: 17,
            ..
        }
    ));
    assert!(matches!(
        only(&report, "FileDigestMismatch")[0],
        FindingKind::FileDigestMismatch { file, records_unchanged: false, .. } if file == "train-images-idx3-ubyte"
    ));
    assert_eq!(report.splits[0].unchanged_records, Some(299));
    Ok(())
}

#[test]
fn a_flipped_label_is_reported_with_both_labels() -> TestResult {
    let mut fixture = Fixture::new(300)?;
    let manifest = fixture.manifest()?;
    let was = fixture.labels[42];
    fixture.labels[42] = (was + 1) % 10;
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    assert_eq!(kinds(&report), vec!["LabelFlipped", "FileDigestMismatch"]);
    let FindingKind::LabelFlipped {
        index,
        label,
        manifest_label,
        ..
    } = only(&report, "LabelFlipped")[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (*index, *manifest_label, *label),
        (42, u32::from(was), u32::from((was + 1) % 10))
    );
    Ok(())
}

#[test]
fn a_removed_and_an_added_record_are_named_without_shifting_the_rest() -> TestResult {
    let mut fixture = Fixture::new(300)?;
    let manifest = fixture.manifest()?;
    let removed_label = u32::from(fixture.labels[100]);
    fixture.remove(100);
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    let removed = only(&report, "RecordRemoved");
    assert_eq!(
        removed,
        vec![&FindingKind::RecordRemoved {
            manifest_index: 100,
            manifest_label: removed_label
        }]
    );
    assert!(only(&report, "RecordDigestMismatch").is_empty());
    assert_eq!(report.splits[0].unchanged_records, Some(299));

    // An image that was never there, inserted at 200.
    let mut fresh = fixture.image(0);
    fresh.iter_mut().for_each(|p| *p = 255 - *p);
    fixture.insert(200, &fresh, 4);
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    assert_eq!(
        only(&report, "RecordAdded"),
        vec![&FindingKind::RecordAdded {
            index: 200,
            label: 4
        }]
    );
    assert_eq!(only(&report, "RecordRemoved").len(), 1);
    assert!(only(&report, "RecordDigestMismatch").is_empty());
    Ok(())
}

#[test]
fn swapped_records_are_a_reordering_not_a_change() -> TestResult {
    let mut fixture = Fixture::new(100)?;
    let manifest = fixture.manifest()?;
    let (a, b) = (fixture.image(10), fixture.image(11));
    fixture.pixels[10 * PIXELS..11 * PIXELS].copy_from_slice(&b);
    fixture.pixels[11 * PIXELS..12 * PIXELS].copy_from_slice(&a);
    fixture.labels.swap(10, 11);
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    let names = kinds(&report);
    assert!(names.contains(&"RecordsReordered"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| ["RecordsReordered", "FileDigestMismatch"].contains(n)),
        "{names:?}"
    );
    assert!(matches!(
        only(&report, "RecordsReordered")[0],
        FindingKind::RecordsReordered { moved: 1, .. }
    ));
    Ok(())
}

#[test]
fn a_noisy_copy_with_another_label_is_a_conflicting_near_duplicate() -> TestResult {
    let mut fixture = Fixture::new(300)?;
    let manifest = fixture.manifest()?;
    let original = 5;
    let mut copy = fixture.image(original);
    for (i, p) in copy.iter_mut().enumerate() {
        // ±4/255 on every pixel: not identical, far below the threshold.
        *p = if i % 2 == 0 {
            p.saturating_add(4)
        } else {
            p.saturating_sub(4)
        };
    }
    let label = (fixture.labels[original] + 3) % 10;
    fixture.insert(300, &copy, label);
    fixture.write()?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    let near = only(&report, "NearDuplicateWithConflictingLabel");
    assert_eq!(near.len(), 1, "{:?}", kinds(&report));
    let FindingKind::NearDuplicateWithConflictingLabel {
        records,
        rms_distance,
        ..
    } = near[0]
    else {
        unreachable!()
    };
    assert_eq!((records[0].index, records[1].index), (original, 300));
    assert!(
        *rms_distance > 0.0 && *rms_distance < 0.02,
        "{rms_distance}"
    );
    assert_eq!(only(&report, "RecordAdded").len(), 1);
    assert!(only(&report, "DuplicateWithConflictingLabel").is_empty());

    // Without a manifest, validation alone still finds it.
    let report = check(&fixture.source(), None, None)?;
    assert_eq!(kinds(&report), vec!["NearDuplicateWithConflictingLabel"]);
    Ok(())
}

#[test]
fn an_exact_copy_with_another_label_is_a_conflicting_duplicate() -> TestResult {
    let mut fixture = Fixture::new(200)?;
    let copy = fixture.image(7);
    let label = (fixture.labels[7] + 1) % 10;
    fixture.insert(150, &copy, label);
    fixture.write()?;
    let report = check(&fixture.source(), None, None)?;
    assert_eq!(kinds(&report), vec!["DuplicateWithConflictingLabel"]);
    let FindingKind::DuplicateWithConflictingLabel { records } =
        only(&report, "DuplicateWithConflictingLabel")[0]
    else {
        unreachable!()
    };
    let indices: Vec<usize> = records.iter().map(|r| r.index).collect();
    assert_eq!(indices, vec![7, 150]);

    // The same image with the same label is a low-severity repeat instead.
    fixture.labels[150] = fixture.labels[7];
    fixture.write()?;
    let report = check(&fixture.source(), None, None)?;
    assert_eq!(kinds(&report), vec!["DuplicateRecords"]);
    assert_eq!(report.findings[0].severity, Severity::Low);
    Ok(())
}

#[test]
fn a_removed_class_shifts_the_balance_against_the_reference() -> TestResult {
    let mut fixture = Fixture::new(400)?;
    let reference = fixture.manifest()?;
    let keep: Vec<usize> = (0..fixture.len())
        .filter(|&i| fixture.labels[i] != 3)
        .collect();
    let pixels = keep.iter().flat_map(|&i| fixture.image(i)).collect();
    let labels = keep.iter().map(|&i| fixture.labels[i]).collect();
    fixture.pixels = pixels;
    fixture.labels = labels;
    fixture.write()?;
    let report = check(&fixture.source(), None, Some(&reference))?;
    assert_eq!(
        kinds(&report),
        vec!["ClassMissing", "ClassBalanceShift"],
        "{:#?}",
        report.findings
    );
    assert!(matches!(
        only(&report, "ClassMissing")[0],
        FindingKind::ClassMissing { class: 3, class_name, reference_count } if class_name == "3" && *reference_count > 0
    ));
    let FindingKind::ClassBalanceShift {
        total_variation, ..
    } = only(&report, "ClassBalanceShift")[0]
    else {
        unreachable!()
    };
    assert!(*total_variation > 0.05, "{total_variation}");

    // The untouched data set against the same reference is silent.
    let fresh = Fixture::new(400)?;
    assert!(check(&fresh.source(), None, Some(&reference))?.is_clean());
    Ok(())
}

fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> TestResult {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    std::fs::write(path, buf)?;
    Ok(())
}

#[test]
fn nan_and_out_of_range_values_in_npy_files_are_findings_per_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    // Ten different records, two classes.
    let mut values: Vec<f32> = (0..10 * 16)
        .map(|i| ((i * 7 + i / 16 * 3) % 17) as f32 / 17.0)
        .collect();
    values[3 * 16 + 2] = f32::NAN;
    values[6 * 16] = 1.5;
    values[8 * 16 + 5] = -0.25;
    write_npy(&x, &[10, 4, 4], &values)?;
    write_npy(&y, &[10], &(0..10).map(|i| i % 2).collect::<Vec<i64>>())?;
    let source = DataSource::Npy {
        images: x.clone(),
        labels: y.clone(),
    };
    // The normal loader refuses the file; the check reports every bad record instead.
    assert!(source.load(Split::Train).is_err());
    let report = check(&source, None, None)?;
    let nan = only(&report, "NonFiniteValue");
    assert!(
        matches!(nan[0], FindingKind::NonFiniteValue { records: 1, values: 1, indices } if indices == &vec![3])
    );
    assert!(matches!(
        only(&report, "ValueOutOfRange")[0],
        FindingKind::ValueOutOfRange { records: 2, indices, min, max, .. }
            if indices == &vec![6, 8] && *min == -0.25 && *max == 1.5
    ));
    assert_eq!(report.splits[0].split, "data");
    Ok(())
}

#[test]
fn records_of_another_shape_are_a_shape_mismatch() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    write_npy(&x, &[6, 4, 4], &vec![0.5f32; 96])?;
    write_npy(&y, &[6], &[0i64, 1, 0, 1, 0, 1])?;
    let source = DataSource::Npy {
        images: x.clone(),
        labels: y.clone(),
    };
    let manifest = DataManifest::build(&source, SplitSelection::All, "t".into(), &NoProgress)?;
    write_npy(&x, &[6, 2, 8], &vec![0.5f32; 96])?;
    let report = check(&source, Some(&manifest), None)?;
    assert_eq!(report.findings[0].kind.name(), "ShapeMismatch");
    assert_eq!(report.findings[0].severity, Severity::Critical);
    assert!(only(&report, "RecordDigestMismatch").is_empty());
    Ok(())
}

#[test]
fn a_recompressed_file_with_the_same_records_is_a_low_finding() -> TestResult {
    let fixture = Fixture::new(50)?;
    let manifest = fixture.manifest()?;
    let labels = fixture.dir.path().join("train-labels-idx1-ubyte");
    let raw = std::fs::read(&labels)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw)?;
    std::fs::remove_file(&labels)?;
    std::fs::write(labels.with_extension("gz"), gz.finish()?)?;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    // The old name is gone and a new one appeared; no record changed.
    assert_eq!(kinds(&report), vec!["FileMissing", "FileAdded"]);
    let config = CheckConfig {
        compare_files: false,
        ..CheckConfig::default()
    };
    let report =
        config
            .build()?
            .check(&fixture.source(), None, Some(&manifest), None, &NoProgress)?;
    assert!(report.is_clean());
    Ok(())
}

#[test]
fn an_edited_manifest_is_inconsistent() -> TestResult {
    let fixture = Fixture::new(50)?;
    let mut manifest = fixture.manifest()?;
    // Someone "fixes" the manifest to match a tampered record without recomputing the root.
    manifest.splits[0].records[9].label = (manifest.splits[0].records[9].label + 1) % 10;
    let report = check(&fixture.source(), Some(&manifest), None)?;
    let names = kinds(&report);
    assert!(names.contains(&"ManifestInconsistent"), "{names:?}");
    assert_eq!(report.findings[0].severity, Severity::Critical);
    Ok(())
}

#[test]
fn a_split_the_manifest_lacks_is_an_error_naming_the_flag() -> TestResult {
    let fixture = Fixture::new(20)?;
    let manifest = fixture.manifest()?;
    let err = CheckConfig::default()
        .build()?
        .check(
            &DataSource::Bundled,
            Some(SplitSelection::Test),
            Some(&manifest),
            None,
            &NoProgress,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--split") && msg.contains("no test split"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn a_deleted_split_is_an_error_not_a_silent_pass() -> TestResult {
    let fixture = Fixture::new(20)?;
    let dir = fixture.dir.path();
    for (from, to) in [
        ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
        ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        std::fs::copy(dir.join(from), dir.join(to))?;
    }
    let manifest = DataManifest::build(
        &fixture.source(),
        SplitSelection::All,
        "t".into(),
        &NoProgress,
    )?;
    assert_eq!(manifest.splits.len(), 2);
    // Both splits hold the same images: every test record is also a training record.
    let report = check(&fixture.source(), Some(&manifest), None)?;
    assert_eq!(kinds(&report), vec!["TrainTestOverlap"]);

    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte"))?;
    let err = check(&fixture.source(), Some(&manifest), None).unwrap_err();
    assert!(err.to_string().contains("no test split"), "{err}");
    Ok(())
}

//! Loading one split and computing everything a manifest records about it.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{
    FileDigest, Progress, RecordDigest, SplitManifest, ValueStats, class_counts, records_root,
    split_of,
};
use crate::source::search_dirs;
use crate::{DataError, DataSource, Dataset, Result, Split, bundled, cifar, idx, npy};

/// One split as it is now: the loaded data and its digests and statistics.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The split's name (`train`, `test` or `data`).
    pub split: String,
    /// The records, loaded without rejecting out-of-range values (see [`load_unchecked`]).
    pub dataset: Dataset,
    /// Digests of the source files.
    pub files: Vec<FileDigest>,
    /// One digest per record, in order.
    pub records: Vec<RecordDigest>,
    /// Statistics of the pixel values.
    pub values: ValueStats,
    /// Records holding NaN, infinite or out-of-range values, in order.
    pub bad_values: Vec<BadValues>,
}

/// The invalid pixel values of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadValues {
    /// The record's index.
    pub index: usize,
    /// Number of NaN or infinite values.
    pub non_finite: usize,
    /// Number of finite values outside `[0, 1]`.
    pub out_of_range: usize,
    /// The first invalid value (NaN, infinite, or out of range).
    pub first: f32,
}

impl Observed {
    /// The manifest entry for this split.
    pub fn to_manifest(&self) -> SplitManifest {
        let d = &self.dataset;
        SplitManifest {
            split: self.split.clone(),
            name: d.name.clone(),
            shape: d.shape,
            num_classes: d.num_classes,
            class_names: d.class_names.clone(),
            class_counts: class_counts(&self.records, d.num_classes),
            values: self.values.clone(),
            files: self.files.clone(),
            record_count: self.records.len(),
            records_sha256: hex::encode(records_root(&self.records)),
            records: self.records.clone(),
        }
    }
}

/// Loads `split` of `source` like [`DataSource::load`], except that `npy:` images with NaN,
/// infinite or out-of-range values are kept rather than refused, so a check can report
/// every such record. (The other formats store bytes, which cannot be out of range.)
/// Malformed files, wrong dimensions and bad labels are still errors.
pub fn load_unchecked(source: &DataSource, split: Split) -> Result<Dataset> {
    match source {
        DataSource::Npy { images, labels } => npy::load_unchecked(images, labels),
        other => other.load(split),
    }
}

/// Loads the split called `name` (`train`, `test` or `data`) of `source` and computes its
/// file digests, record digests and value statistics.
pub fn observe(source: &DataSource, name: &str, progress: &dyn Progress) -> Result<Observed> {
    let split = split_of(name).ok_or_else(|| DataError::InvalidOption {
        name: "--split",
        reason: format!("unknown split {name:?} (expected train, test or data)"),
    })?;
    progress.phase(&format!("loading {source} ({name})"));
    let dataset = load_unchecked(source, split)?;
    progress.phase(&format!("hashing {}", dataset.name));
    let files = source_files(source, split)?
        .iter()
        .map(SourceFile::digest)
        .collect::<Result<Vec<_>>>()?;
    let (records, values, bad_values) = digest_records(&dataset);
    Ok(Observed {
        split: name.to_owned(),
        dataset,
        files,
        records,
        values,
        bad_values,
    })
}

/// Per-record digests, value statistics and the records with invalid values.
fn digest_records(d: &Dataset) -> (Vec<RecordDigest>, ValueStats, Vec<BadValues>) {
    let n = d.image_len();
    let per_record: Vec<(RecordDigest, Partial, Option<BadValues>)> = d
        .images
        .par_chunks(n)
        .zip(d.labels.par_iter())
        .enumerate()
        .map(|(index, (pixels, &label))| {
            let partial = Partial::of(pixels);
            let bad = (partial.non_finite + partial.out_of_range > 0).then(|| BadValues {
                index,
                non_finite: partial.non_finite as usize,
                out_of_range: partial.out_of_range as usize,
                first: pixels
                    .iter()
                    .copied()
                    .find(|v| !(0.0..=1.0).contains(v))
                    .unwrap_or(f32::NAN),
            });
            (RecordDigest::of(pixels, label), partial, bad)
        })
        .collect();
    let mut total = Partial::default();
    let mut records = Vec::with_capacity(per_record.len());
    let mut bad_values = Vec::new();
    for (digest, partial, bad) in per_record {
        total.merge(&partial);
        records.push(digest);
        bad_values.extend(bad);
    }
    (records, total.finish(), bad_values)
}

/// Running value statistics of some pixels.
#[derive(Debug, Clone, Copy)]
struct Partial {
    finite: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
    non_finite: u64,
    out_of_range: u64,
}

impl Default for Partial {
    fn default() -> Self {
        Partial {
            finite: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            non_finite: 0,
            out_of_range: 0,
        }
    }
}

impl Partial {
    fn of(pixels: &[f32]) -> Self {
        let mut p = Partial::default();
        for &v in pixels {
            if !v.is_finite() {
                p.non_finite += 1;
                continue;
            }
            let v = f64::from(v);
            if !(0.0..=1.0).contains(&v) {
                p.out_of_range += 1;
            }
            p.finite += 1;
            p.sum += v;
            p.sum_sq += v * v;
            p.min = p.min.min(v);
            p.max = p.max.max(v);
        }
        p
    }

    fn merge(&mut self, o: &Partial) {
        self.finite += o.finite;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.non_finite += o.non_finite;
        self.out_of_range += o.out_of_range;
    }

    fn finish(&self) -> ValueStats {
        let any = self.finite > 0;
        let n = self.finite as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        ValueStats {
            min: any.then_some(self.min),
            max: any.then_some(self.max),
            mean: any.then_some(mean),
            std: any.then(|| var.sqrt()),
            non_finite: self.non_finite,
            out_of_range: self.out_of_range,
        }
    }
}

/// Where a source file's bytes are.
#[derive(Debug)]
enum FileBytes {
    Path(PathBuf),
    Embedded(&'static [u8]),
}

/// A file a split is loaded from.
#[derive(Debug)]
struct SourceFile {
    name: String,
    role: &'static str,
    bytes: FileBytes,
}

impl SourceFile {
    fn on_disk(path: PathBuf, role: &'static str) -> Self {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        SourceFile {
            name,
            role,
            bytes: FileBytes::Path(path),
        }
    }

    /// The file's SHA-256 and size; files are streamed, not read whole.
    fn digest(&self) -> Result<FileDigest> {
        let mut hasher = Sha256::new();
        let bytes = match &self.bytes {
            FileBytes::Embedded(b) => {
                hasher.update(b);
                b.len() as u64
            }
            FileBytes::Path(p) => {
                let mut file = std::fs::File::open(p).map_err(|e| DataError::io(p, e))?;
                std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(p, e))?
            }
        };
        Ok(FileDigest {
            name: self.name.clone(),
            role: self.role.to_owned(),
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Whether the files of `split` are there (always true for the installed and bundled data
/// sets, whose loaders say themselves what is missing).
pub(crate) fn has_split(source: &DataSource, split: Split) -> bool {
    match source {
        DataSource::Idx(dir) => idx::find_split_files(dir, split).is_ok(),
        DataSource::Cifar10(dir) => cifar::batch_files(dir, split).is_ok(),
        _ => true,
    }
}

/// The files `split` of `source` is loaded from, found the way the loaders find them.
fn source_files(source: &DataSource, split: Split) -> Result<Vec<SourceFile>> {
    let idx_pair = |dir: &Path| -> Result<Vec<SourceFile>> {
        let (images, labels) = idx::find_split_files(dir, split)?;
        Ok(vec![
            SourceFile::on_disk(images, "images"),
            SourceFile::on_disk(labels, "labels"),
        ])
    };
    let installed = |subdir: &str| -> Result<PathBuf> {
        search_dirs(subdir)
            .into_iter()
            .find(|d| d.is_dir())
            .ok_or_else(|| DataError::malformed(subdir, "the data set directory disappeared"))
    };
    match source {
        DataSource::Bundled => Ok(bundled::raw_files(split)
            .into_iter()
            .map(|(name, role, bytes)| SourceFile {
                name: name.to_owned(),
                role,
                bytes: FileBytes::Embedded(bytes),
            })
            .collect()),
        DataSource::FashionMnist => idx_pair(&installed("fashion-mnist")?),
        DataSource::Mnist => idx_pair(&installed("mnist")?),
        DataSource::Idx(dir) => idx_pair(dir),
        DataSource::Cifar10(dir) => Ok(cifar::batch_files(dir, split)?
            .into_iter()
            .map(|p| SourceFile::on_disk(p, "batch"))
            .collect()),
        DataSource::Npy { images, labels } => Ok(vec![
            SourceFile::on_disk(images.clone(), "images"),
            SourceFile::on_disk(labels.clone(), "labels"),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_statistics_and_bad_records_are_exact_on_a_toy_set() {
        let images = vec![0.0, 1.0, 0.5, 0.5, f32::NAN, 2.0, 0.25, 0.75];
        let d = Dataset::new("toy", [1, 1, 2], images, vec![0, 1, 0, 1], 2).unwrap();
        let (records, stats, bad) = digest_records(&d);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0], RecordDigest::of(&[0.0, 1.0], 0));
        assert_eq!(stats.non_finite, 1);
        assert_eq!(stats.out_of_range, 1);
        assert_eq!((stats.min, stats.max), (Some(0.0), Some(2.0)));
        // Finite values 0, 1, .5, .5, 2, .25, .75: mean 5/7.
        let mean = stats.mean.unwrap();
        assert!((mean - 5.0 / 7.0).abs() < 1e-12, "{mean}");
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].index, bad[0].non_finite, bad[0].out_of_range),
            (2, 1, 1)
        );
        assert!(bad[0].first.is_nan());
    }

    #[test]
    fn bundled_files_are_the_embedded_bytes() {
        let files = source_files(&DataSource::Bundled, Split::Test).unwrap();
        let digests: Vec<FileDigest> = files.iter().map(|f| f.digest().unwrap()).collect();
        assert_eq!(digests[0].name, "t10k-images-idx3-ubyte.gz");
        assert_eq!(digests[1].role, "labels");
        assert!(digests.iter().all(|d| d.bytes > 0 && d.sha256.len() == 64));
    }
}

//! The binary version of CIFAR-10: records of one label byte and 3×32×32 pixel bytes
//! (red plane, green plane, blue plane), in `data_batch_1..5.bin` and `test_batch.bin`.

use std::path::{Path, PathBuf};

use crate::idx::read_maybe_gz;
use crate::{DataError, Dataset, Result, Split};

const SIDE: usize = 32;
const CHANNELS: usize = 3;
const RECORD: usize = 1 + CHANNELS * SIDE * SIDE;
const CLASSES: usize = 10;

/// CIFAR-10's class names, in label order.
pub const CIFAR10_CLASSES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The batch files of `split` in `dir` (or in its `cifar-10-batches-bin` subdirectory).
pub(crate) fn batch_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let base = if dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let files: Vec<PathBuf> = names.iter().map(|n| base.join(n)).collect();
    let present: Vec<PathBuf> = files.iter().filter(|p| p.exists()).cloned().collect();
    if present.is_empty() {
        return Err(DataError::malformed(
            base,
            format!(
                "no CIFAR-10 {split} batches here (expected {})",
                names.join(", ")
            ),
        ));
    }
    Ok(present)
}

/// Decodes the records of one batch file, appending pixels (scaled to `[0, 1]`) and labels.
fn decode(path: &Path, bytes: &[u8], pixels: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::malformed(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated?)",
                bytes.len()
            ),
        ));
    }
    for rec in bytes.chunks_exact(RECORD) {
        let label = rec[0];
        if usize::from(label) >= CLASSES {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                index: labels.len(),
                label: i64::from(label),
                num_classes: CLASSES,
            });
        }
        labels.push(u32::from(label));
        pixels.extend(rec[1..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok(())
}

/// Loads `split` of the CIFAR-10 binary version from `dir`.
pub(crate) fn load(dir: &Path, split: Split) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DataError::WrongKind {
            path: dir.into(),
            expected: "a directory with CIFAR-10 .bin batches",
        });
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for file in batch_files(dir, split)? {
        let bytes = read_maybe_gz(&file)?;
        decode(&file, &bytes, &mut pixels, &mut labels)?;
    }
    Ok(Dataset::new(
        format!("cifar10/{split}"),
        [CHANNELS, SIDE, SIDE],
        pixels,
        labels,
        CLASSES,
    )?
    .with_class_names(&CIFAR10_CLASSES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_planes_in_order_and_checks_labels() {
        let mut rec = vec![7u8];
        rec.extend((0..CHANNELS * SIDE * SIDE).map(|i| (i / (SIDE * SIDE)) as u8 * 100));
        let (mut px, mut lb) = (Vec::new(), Vec::new());
        decode(Path::new("b"), &rec, &mut px, &mut lb).unwrap();
        assert_eq!(lb, vec![7]);
        assert_eq!(px[0], 0.0);
        assert_eq!(px[SIDE * SIDE], 100.0 / 255.0);
        assert_eq!(px[2 * SIDE * SIDE], 200.0 / 255.0);

        rec[0] = 10;
        assert!(matches!(
            decode(Path::new("b"), &rec, &mut px, &mut lb),
            Err(DataError::LabelOutOfRange { label: 10, .. })
        ));
        assert!(decode(Path::new("b"), &rec[..100], &mut px, &mut lb).is_err());
    }
}

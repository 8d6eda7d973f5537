//! The IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
//! then one big-endian `u32` per dimension, then the values.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, Dataset, Result, Split};

/// The largest decompressed file accepted (a guard against gzip bombs).
pub const MAX_DECOMPRESSED_BYTES: u64 = 2 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug)]
pub(crate) struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a whole file, transparently decompressing gzip, up to [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        return Err(DataError::WrongKind {
            path: path.into(),
            expected: "a file",
        });
    }
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    gunzip_if_compressed(path, raw)
}

/// Decompresses `raw` if it starts with the gzip magic; `path` only names it in errors.
pub(crate) fn gunzip_if_compressed(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::malformed(path, format!("corrupt gzip stream: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(DataError::malformed(
            path,
            format!("decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// Parses an IDX file whose values are unsigned bytes and which has `expected_dims` dimensions.
pub(crate) fn parse_idx(path: &Path, bytes: &[u8], expected_dims: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: 4,
            found: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let ndim = bytes[3];
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != TYPE_U8 || !expected_dims.contains(&ndim) {
        return Err(DataError::BadMagic {
            path: path.into(),
            format: "IDX (unsigned byte)",
            found: magic,
            expected: 0x0800 | u32::from(expected_dims[0]),
        });
    }
    let header_len = 4 + 4 * usize::from(ndim);
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header_len as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::malformed(path, format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[header_len..];
    if body.len() < count {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: count as u64,
            found: body.len() as u64,
        });
    }
    if body.len() > count {
        return Err(DataError::TrailingBytes {
            path: path.into(),
            extra: (body.len() - count) as u64,
        });
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Loads an images file (`N×H×W` or `N×C×H×W`) and a labels file (`N`) into a data set.
///
/// `num_classes` fixes the number of classes (labels above it are an error); `None` takes
/// the largest label plus one.
pub(crate) fn load_pair(
    name: &str,
    images: &Path,
    labels: &Path,
    num_classes: Option<usize>,
) -> Result<Dataset> {
    let image_bytes = read_maybe_gz(images)?;
    let label_bytes = read_maybe_gz(labels)?;
    decode_pair(
        name,
        (images, &image_bytes),
        (labels, &label_bytes),
        num_classes,
    )
}

/// Decodes already-read (and decompressed) images and labels; the paths name them in errors.
pub(crate) fn decode_pair(
    name: &str,
    (images, image_bytes): (&Path, &[u8]),
    (labels, label_bytes): (&Path, &[u8]),
    num_classes: Option<usize>,
) -> Result<Dataset> {
    let img = parse_idx(images, image_bytes, &[3, 4])?;
    let lab = parse_idx(labels, label_bytes, &[1])?;
    let shape = match img.dims[..] {
        [_, h, w] => [1, h, w],
        [_, c, h, w] => [c, h, w],
        _ => unreachable_dims(images)?,
    };
    let (n_images, n_labels) = (img.dims[0], lab.dims[0]);
    if n_images != n_labels {
        return Err(DataError::CountMismatch {
            images: images.into(),
            n_images,
            labels: labels.into(),
            n_labels,
        });
    }
    if n_images == 0 {
        return Err(DataError::Empty { name: name.into() });
    }
    let classes = num_classes.unwrap_or_else(|| {
        lab.data
            .iter()
            .map(|&l| usize::from(l) + 1)
            .max()
            .unwrap_or(1)
    });
    if let Some((index, &label)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels.into(),
            index,
            label: i64::from(label),
            num_classes: classes,
        });
    }
    let pixels = img.data.iter().map(|&p| f32::from(p) / 255.0).collect();
    let labels = lab.data.iter().map(|&l| u32::from(l)).collect();
    Dataset::new(name, shape, pixels, labels, classes)
}

fn unreachable_dims(path: &Path) -> Result<[usize; 3]> {
    Err(DataError::malformed(
        path,
        "images must have 3 or 4 dimensions",
    ))
}

/// Finds the images and labels files of `split` in an MNIST-style directory.
///
/// Accepts the usual spellings: `train-images-idx3-ubyte`, `train-images.idx3-ubyte`,
/// `t10k-...` or `test-...` for the test split, each optionally with `.gz`.
pub(crate) fn find_split_files(dir: &Path, split: Split) -> Result<(PathBuf, PathBuf)> {
    let prefixes: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["t10k", "test"],
    };
    let find = |kind: &str, idx: &str| -> Option<PathBuf> {
        for prefix in prefixes {
            for sep in ["-", "."] {
                for ext in ["", ".gz"] {
                    let p = dir.join(format!("{prefix}-{kind}{sep}{idx}-ubyte{ext}"));
                    if p.is_file() {
                        return Some(p);
                    }
                }
            }
        }
        None
    };
    let images = find("images", "idx3");
    let labels = find("labels", "idx1");
    match (images, labels) {
        (Some(i), Some(l)) => Ok((i, l)),
        _ => Err(DataError::malformed(
            dir,
            format!(
                "no {split} split here: expected {p}-images-idx3-ubyte[.gz] and {p}-labels-idx1-ubyte[.gz]",
                p = prefixes[0]
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_a_well_formed_array() {
        let a = parse_idx(
            Path::new("x"),
            &idx_bytes(&[2, 1, 2], &[0, 1, 2, 255]),
            &[3],
        )
        .unwrap();
        assert_eq!(a.dims, vec![2, 1, 2]);
        assert_eq!(a.data, vec![0, 1, 2, 255]);
    }

    #[test]
    fn rejects_wrong_magic_truncation_and_trailing_bytes() {
        let p = Path::new("f");
        let mut bad = idx_bytes(&[1], &[3]);
        bad[2] = 0x0d; // float type
        assert!(matches!(
            parse_idx(p, &bad, &[1]),
            Err(DataError::BadMagic { .. })
        ));
        assert!(matches!(
            parse_idx(p, &idx_bytes(&[3, 2, 2], &[0; 11]), &[3]),
            Err(DataError::Truncated {
                expected: 12,
                found: 11,
                ..
            })
        ));
        assert!(matches!(
            parse_idx(p, &idx_bytes(&[1], &[0, 0]), &[1]),
            Err(DataError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            parse_idx(p, &[0, 0], &[1]),
            Err(DataError::Truncated { .. })
        ));
        // Dimensions whose product overflows must not allocate.
        let huge = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(parse_idx(p, &huge, &[3]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse_idx(Path::new("fuzz"), &bytes, &[1, 3]);
        }
    }
}

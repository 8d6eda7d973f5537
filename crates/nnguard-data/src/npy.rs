//! Images and labels as a pair of NumPy `.npy` files.
//!
//! Images: `uint8` (scaled by 1/255) or `float32`/`float64` already in `[0, 1]`, shaped
//! `N×H×W` (one channel), `N×C×H×W`, or `N×D` (flat vectors, treated as `1×1×D`).
//! Labels: any integer type, shape `N`.

use std::path::Path;

use npyz::{NpyFile, TypeChar};

use crate::idx::read_maybe_gz;
use crate::{DataError, Dataset, Result};

fn open<'a>(path: &Path, bytes: &'a [u8]) -> Result<NpyFile<&'a [u8]>> {
    let npy = NpyFile::new(bytes)
        .map_err(|e| DataError::malformed(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(DataError::malformed(
            path,
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    Ok(npy)
}

fn type_of(path: &Path, npy: &NpyFile<&[u8]>) -> Result<(TypeChar, u64)> {
    match npy.dtype() {
        npyz::DType::Plain(t) => Ok((t.type_char(), t.size_field())),
        other => Err(DataError::malformed(
            path,
            format!(
                "unsupported dtype {}: expected a plain numeric array",
                other.descr()
            ),
        )),
    }
}

fn read<T: npyz::Deserialize>(path: &Path, npy: NpyFile<&[u8]>) -> Result<Vec<T>> {
    npy.into_vec::<T>()
        .map_err(|e| DataError::malformed(path, format!("cannot read the array data: {e}")))
}

fn load_images(path: &Path, check_range: bool) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = read_maybe_gz(path)?;
    let npy = open(path, &bytes)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = match type_of(path, &npy)? {
        (TypeChar::Uint, 1) => read::<u8>(path, npy)?
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect(),
        (TypeChar::Float, 4) => read::<f32>(path, npy)?,
        (TypeChar::Float, 8) => read::<f64>(path, npy)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (t, s) => {
            return Err(DataError::malformed(
                path,
                format!("images must be uint8, float32 or float64, found {t:?}{s}"),
            ));
        }
    };
    if check_range
        && let Some((index, &v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return Err(DataError::ValueOutOfRange {
            path: path.into(),
            index,
            value: f64::from(v),
        });
    }
    Ok((shape, values))
}

fn load_labels(path: &Path) -> Result<Vec<i64>> {
    let bytes = read_maybe_gz(path)?;
    let npy = open(path, &bytes)?;
    if npy.shape().len() != 1 {
        return Err(DataError::malformed(
            path,
            format!(
                "labels must be one-dimensional, found shape {:?}",
                npy.shape()
            ),
        ));
    }
    Ok(match type_of(path, &npy)? {
        (TypeChar::Uint, 1) => read::<u8>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Uint, 2) => read::<u16>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Uint, 4) => read::<u32>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Uint, 8) => read::<u64>(path, npy)?
            .into_iter()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            .collect(),
        (TypeChar::Int, 1) => read::<i8>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 2) => read::<i16>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 4) => read::<i32>(path, npy)?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 8) => read::<i64>(path, npy)?,
        (t, s) => {
            return Err(DataError::malformed(
                path,
                format!("labels must be integers, found {t:?}{s}"),
            ));
        }
    })
}

/// Loads images from `x` and labels from `y`.
pub(crate) fn load(x: &Path, y: &Path) -> Result<Dataset> {
    load_with(x, y, true)
}

/// Like [`load`], but keeps NaN, infinite and out-of-range pixel values, so that data
/// validation can report them record by record instead of failing on the first.
pub(crate) fn load_unchecked(x: &Path, y: &Path) -> Result<Dataset> {
    load_with(x, y, false)
}

fn load_with(x: &Path, y: &Path, check_range: bool) -> Result<Dataset> {
    let (shape, pixels) = load_images(x, check_range)?;
    let labels = load_labels(y)?;
    let image_shape = match shape[..] {
        [_, d] => [1, 1, d],
        [_, h, w] => [1, h, w],
        [_, c, h, w] => [c, h, w],
        _ => {
            return Err(DataError::malformed(
                x,
                format!("images must be N×D, N×H×W or N×C×H×W, found shape {shape:?}"),
            ));
        }
    };
    if shape[0] != labels.len() {
        return Err(DataError::CountMismatch {
            images: x.into(),
            n_images: shape[0],
            labels: y.into(),
            n_labels: labels.len(),
        });
    }
    if labels.is_empty() {
        return Err(DataError::Empty {
            name: x.display().to_string(),
        });
    }
    let max = labels.iter().copied().max().unwrap_or(0);
    let num_classes = usize::try_from(max).unwrap_or(0).saturating_add(1);
    let mut out = Vec::with_capacity(labels.len());
    for (index, &label) in labels.iter().enumerate() {
        match u32::try_from(label) {
            Ok(l) if label <= i64::from(u16::MAX) => out.push(l),
            _ => {
                return Err(DataError::LabelOutOfRange {
                    path: y.into(),
                    index,
                    label,
                    num_classes: usize::from(u16::MAX) + 1,
                });
            }
        }
    }
    Dataset::new(
        format!("npy:{}", x.display()),
        image_shape,
        pixels,
        out,
        num_classes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
        dir: &Path,
        name: &str,
        shape: &[u64],
        data: &[T],
    ) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut buf = Vec::new();
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        std::fs::write(&path, buf).unwrap();
        path
    }

    #[test]
    fn loads_uint8_images_with_int64_labels() {
        let dir = tempfile::tempdir().unwrap();
        let x = write_npy(
            dir.path(),
            "x.npy",
            &[2, 2, 2],
            &[0u8, 255, 51, 0, 0, 0, 0, 0],
        );
        let y = write_npy(dir.path(), "y.npy", &[2], &[1i64, 0]);
        let d = load(&x, &y).unwrap();
        assert_eq!(d.shape, [1, 2, 2]);
        assert_eq!(d.labels, vec![1, 0]);
        assert_eq!(d.num_classes, 2);
        assert_eq!(d.images[1], 1.0);
        assert!((d.images[2] - 0.2).abs() < 1e-7);
    }

    #[test]
    fn rejects_out_of_range_floats_negative_labels_and_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let x = write_npy(dir.path(), "x.npy", &[1, 2], &[0.5f32, 3.0]);
        let y = write_npy(dir.path(), "y.npy", &[1], &[0i32]);
        assert!(matches!(
            load(&x, &y),
            Err(DataError::ValueOutOfRange { index: 1, .. })
        ));
        let x = write_npy(dir.path(), "x2.npy", &[1, 2], &[0.5f32, 0.25]);
        let y = write_npy(dir.path(), "y2.npy", &[1], &[-1i32]);
        assert!(matches!(
            load(&x, &y),
            Err(DataError::LabelOutOfRange { label: -1, .. })
        ));
        let y = write_npy(dir.path(), "y3.npy", &[2], &[0i32, 1]);
        assert!(matches!(load(&x, &y), Err(DataError::CountMismatch { .. })));
        std::fs::write(dir.path().join("bad.npy"), b"\x93NUMPY garbage").unwrap();
        assert!(load(&dir.path().join("bad.npy"), &y).is_err());
    }
}

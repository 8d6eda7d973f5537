//! Thin helpers between nnguard's plain buffers and Burn tensors.
//!
//! Burn is wrapped here and in the model code only, so a Burn upgrade touches one crate.

pub use burn::tensor::{Device, Int, Tensor, TensorData};

/// The CPU device every model runs on: Burn's Flex backend (pure Rust, multi-threaded).
pub fn cpu() -> Device {
    Device::flex()
}

/// Builds an NCHW batch tensor from `n` images of `shape` stored contiguously in `pixels`.
pub fn batch_tensor(pixels: &[f32], shape: [usize; 3], device: &Device) -> Tensor<4> {
    let per = shape.iter().product::<usize>().max(1);
    let n = pixels.len() / per;
    Tensor::from_data(
        TensorData::new(pixels.to_vec(), [n, shape[0], shape[1], shape[2]]),
        device,
    )
}

/// Copies a tensor's values out as `f32`, whatever its rank.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// A `[labels.len(), classes]` one-hot matrix (1 at each label, 0 elsewhere).
pub fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            v[i * classes + l as usize] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [labels.len(), classes]), device)
}

/// The index of the largest value in each row of a `[rows, cols]` buffer.
pub fn argmax_rows(values: &[f32], cols: usize) -> Vec<u32> {
    values
        .chunks(cols.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0 as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_skips_nan() {
        assert_eq!(
            argmax_rows(&[1.0, 3.0, 3.0, f32::NAN, 0.0, -1.0], 3),
            vec![1, 1]
        );
    }

    #[test]
    fn batch_tensor_round_trips() {
        let d = cpu();
        let px: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let t = batch_tensor(&px, [1, 2, 2], &d);
        assert_eq!(t.dims(), [2, 1, 2, 2]);
        assert_eq!(to_vec(t), px);
        assert_eq!(
            to_vec(one_hot(&[2, 0], 3, &d)),
            vec![0., 0., 1., 1., 0., 0.]
        );
    }
}

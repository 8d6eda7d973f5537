//! Random resizing and padding (Xie et al. 2018, "Mitigating Adversarial Effects Through
//! Randomization"): each image is resized (nearest neighbour) to a random side between
//! `min` and its own height (width scaled alike) and placed at a random offset on a zero
//! canvas of the original size. Both steps pick input values, so the transform is a gather
//! on the tracked input with an exact gradient for the sampled draw; it is randomised, so
//! attacks average gradients over draws (EOT).

use std::sync::Mutex;

use nnguard_model::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{InputTransform, misfit};
use crate::DefenseError;

/// Settings of [`ResizePad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizePadConfig {
    /// The smallest resized height (at least 1, at most the image height); `None` means
    /// 85% of the height (Xie et al. resize 299 to 299–331, about ±10%).
    pub min_size: Option<usize>,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for ResizePadConfig {
    /// Heights from 85% of the image's to its full height; seed 0.
    fn default() -> Self {
        Self {
            min_size: None,
            seed: 0,
        }
    }
}

impl ResizePadConfig {
    /// Checks that the smallest size fits the images.
    pub fn build(self, shape: [usize; 3]) -> Result<ResizePad, DefenseError> {
        let h = shape[1];
        let min = self
            .min_size
            .unwrap_or_else(|| ((h as f64 * 0.85).ceil() as usize).max(1));
        if min == 0 || min > h || shape[2] == 0 {
            return Err(misfit(
                &format!("resize-pad:min={min}"),
                shape,
                format!("the smallest size must be between 1 and the image height {h}"),
            ));
        }
        Ok(ResizePad {
            min,
            shape,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(self.seed)),
        })
    }
}

/// Random nearest-neighbour down-sizing and zero padding.
#[derive(Debug)]
pub struct ResizePad {
    min: usize,
    shape: [usize; 3],
    rng: Mutex<ChaCha8Rng>,
}

impl ResizePad {
    /// For `n` images, the source pixel of every output pixel (`h·w` for the zero pad).
    fn draw(&self, n: usize) -> Vec<i64> {
        let [_, h, w] = self.shape;
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let pad = (h * w) as i64;
        let mut out = Vec::with_capacity(n * h * w);
        for _ in 0..n {
            let rh = rng.random_range(self.min..=h);
            let rw = ((rh * w) as f64 / h as f64).round().clamp(1.0, w as f64) as usize;
            let top = rng.random_range(0..=h - rh);
            let left = rng.random_range(0..=w - rw);
            for i in 0..h {
                for j in 0..w {
                    let inside = i >= top && i < top + rh && j >= left && j < left + rw;
                    out.push(if inside {
                        let si = (i - top) * h / rh;
                        let sj = (j - left) * w / rw;
                        (si * w + sj) as i64
                    } else {
                        pad
                    });
                }
            }
        }
        out
    }
}

impl InputTransform for ResizePad {
    fn name(&self) -> String {
        format!("resize-pad:min={}", self.min)
    }

    fn is_differentiable(&self) -> bool {
        true
    }

    fn is_randomized(&self) -> bool {
        true
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let device = x.device();
        let per_image = self.draw(b);
        let idx: Vec<i64> = per_image
            .chunks(h * w)
            .flat_map(|img| (0..c).flat_map(move |_| img.iter().copied()))
            .collect();
        let idx = Tensor::<3, Int>::from_data(TensorData::new(idx, [b, c, h * w]), &device);
        let flat = x.reshape([b, c, h * w]);
        let zero = flat.clone().slice([0..b, 0..c, 0..1]).mul_scalar(0.0);
        Tensor::cat(vec![flat, zero], 2)
            .gather(2, idx)
            .reshape([b, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::{cpu, to_vec};

    #[test]
    fn draws_differ_and_keep_the_pixel_multiset_inside_the_window() {
        let t = ResizePadConfig {
            min_size: Some(6),
            seed: 1,
        }
        .build([1, 8, 8])
        .unwrap();
        let d = cpu();
        let x = Tensor::<4>::ones([4, 1, 8, 8], &d);
        let a = to_vec(t.apply(x.clone()));
        let b = to_vec(t.apply(x));
        assert_ne!(a, b, "two draws were identical");
        for img in a.chunks(64) {
            let ones = img.iter().filter(|&&v| v == 1.0).count();
            // A window of side 6..=8 (square for square images) of ones on zeros.
            assert!([36, 49, 64].contains(&ones), "{ones}");
            assert!(img.iter().all(|&v| v == 0.0 || v == 1.0));
        }
        assert!(
            ResizePadConfig {
                min_size: Some(9),
                seed: 0
            }
            .build([1, 8, 8])
            .is_err()
        );
    }
}

//! Gaussian spatial smoothing: each channel is convolved with a normalised Gaussian kernel
//! of standard deviation σ (radius ⌈2σ⌉). Near the borders the kernel is renormalised over
//! the pixels inside the image, so edges are not darkened. A fixed linear filter, computed
//! with Burn's convolution, so attacks get its exact gradient: smoothing alone is not
//! expected to add robustness against an adaptive attacker.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use nnguard_model::tensor::{Tensor, TensorData};

use super::{InputTransform, misfit};
use crate::DefenseError;

/// Settings of [`GaussianSmoothing`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothingConfig {
    /// Standard deviation of the kernel, in pixels (positive).
    pub sigma: f32,
}

impl Default for SmoothingConfig {
    /// σ = 1 pixel.
    fn default() -> Self {
        Self { sigma: 1.0 }
    }
}

impl SmoothingConfig {
    /// Checks σ and that the kernel fits the images.
    pub fn build(self, shape: [usize; 3]) -> Result<GaussianSmoothing, DefenseError> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(DefenseError::config(
                "--transform",
                format!(
                    "smooth: sigma must be a positive number, got {}",
                    self.sigma
                ),
            ));
        }
        let radius = (2.0 * self.sigma).ceil() as usize;
        if radius >= shape[1] || radius >= shape[2] {
            return Err(misfit(
                &format!("smooth:sigma={}", self.sigma),
                shape,
                format!(
                    "a kernel of radius {radius} does not fit {}×{} images",
                    shape[1], shape[2]
                ),
            ));
        }
        let k = 2 * radius + 1;
        let g: Vec<f32> = (0..k)
            .map(|i| {
                let d = i as f32 - radius as f32;
                (-d * d / (2.0 * self.sigma * self.sigma)).exp()
            })
            .collect();
        let total: f32 = g.iter().sum();
        let mut kernel = Vec::with_capacity(k * k);
        for a in &g {
            for b in &g {
                kernel.push(a * b / (total * total));
            }
        }
        Ok(GaussianSmoothing {
            sigma: self.sigma,
            radius,
            kernel,
            channels: shape[0],
        })
    }
}

/// A depthwise Gaussian blur.
#[derive(Debug, Clone)]
pub struct GaussianSmoothing {
    sigma: f32,
    radius: usize,
    kernel: Vec<f32>,
    channels: usize,
}

impl GaussianSmoothing {
    fn blur(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let k = 2 * self.radius + 1;
        let c = self.channels;
        let weight: Vec<f32> = (0..c).flat_map(|_| self.kernel.iter().copied()).collect();
        let weight = Tensor::<4>::from_data(TensorData::new(weight, [c, 1, k, k]), &device);
        let r = self.radius;
        conv2d(x, weight, None, ConvOptions::new([1, 1], [r, r], [1, 1], c))
    }
}

impl InputTransform for GaussianSmoothing {
    fn name(&self) -> String {
        format!("smooth:sigma={}", self.sigma)
    }

    fn is_differentiable(&self) -> bool {
        true
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c, h, w] = x.dims();
        let ones = Tensor::<4>::ones([1, c, h, w], &x.device());
        let weights = self.blur(ones).detach();
        self.blur(x).div(weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::{cpu, to_vec};

    #[test]
    fn keeps_constant_images_and_spreads_an_impulse_symmetrically() {
        let t = SmoothingConfig { sigma: 1.0 }.build([1, 7, 7]).unwrap();
        let d = cpu();
        let flat = Tensor::<4>::full([1, 1, 7, 7], 0.3, &d);
        for v in to_vec(t.apply(flat)) {
            assert!((v - 0.3).abs() < 1e-6);
        }
        let mut impulse = vec![0.0f32; 49];
        impulse[24] = 1.0;
        let y = to_vec(t.apply(Tensor::<4>::from_data(
            TensorData::new(impulse, [1, 1, 7, 7]),
            &d,
        )));
        let g1 = (-0.5f32).exp();
        // Ratio of a direct neighbour to the centre is exp(-1/2) for σ = 1.
        assert!((y[23] / y[24] - g1).abs() < 1e-5);
        assert!((y[23] - y[25]).abs() < 1e-7 && (y[17] - y[31]).abs() < 1e-7);
        assert!(SmoothingConfig { sigma: 5.0 }.build([1, 7, 7]).is_err());
    }
}

//! Total-variation minimisation (Guo et al. 2018, "Countering Adversarial Images using Input
//! Transformations"): each channel `f` is replaced by the minimiser of the ROF energy
//! `½‖u − f‖² + λ·TV(u)` (Rudin, Osher and Fatemi 1992), computed with Chambolle's (2004)
//! dual projection algorithm for a fixed number of iterations. The solver is run on the
//! host and is not differentiated, so attacks go through it with BPDA.

use nnguard_model::tensor::Tensor;

use super::{InputTransform, map_planes, misfit};
use crate::DefenseError;

/// Chambolle's step size; the iteration converges for τ ≤ 1/8.
const TAU: f32 = 0.125;

/// Settings of [`TotalVariation`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TvConfig {
    /// The weight λ of the total variation (positive; larger smooths more).
    pub weight: f32,
    /// Iterations of the dual algorithm (at least 1).
    pub iterations: usize,
}

impl Default for TvConfig {
    /// λ = 0.05, 30 iterations.
    fn default() -> Self {
        Self {
            weight: 0.05,
            iterations: 30,
        }
    }
}

impl TvConfig {
    /// Checks the parameters and that the images have at least 2×2 pixels.
    pub fn build(self, shape: [usize; 3]) -> Result<TotalVariation, DefenseError> {
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(DefenseError::config(
                "--transform",
                format!("tv: weight must be a positive number, got {}", self.weight),
            ));
        }
        if self.iterations == 0 {
            return Err(DefenseError::config(
                "--transform",
                "tv: iters must be at least 1",
            ));
        }
        if shape[1] < 2 || shape[2] < 2 {
            return Err(misfit(
                "tv",
                shape,
                "total variation needs images of at least 2×2 pixels",
            ));
        }
        Ok(TotalVariation { config: self })
    }
}

/// ROF total-variation denoising of every channel.
#[derive(Debug, Clone)]
pub struct TotalVariation {
    config: TvConfig,
}

/// `div p` with the boundary conventions of Chambolle (2004).
fn divergence(p1: &[f32], p2: &[f32], h: usize, w: usize, out: &mut [f32]) {
    for i in 0..h {
        for j in 0..w {
            let k = i * w + j;
            let mut d = 0.0;
            if i < h - 1 {
                d += p1[k];
            }
            if i > 0 {
                d -= p1[k - w];
            }
            if j < w - 1 {
                d += p2[k];
            }
            if j > 0 {
                d -= p2[k - 1];
            }
            out[k] = d;
        }
    }
}

/// Denoises one `[h, w]` plane in place.
pub fn rof_denoise(f: &mut [f32], h: usize, w: usize, weight: f32, iterations: usize) {
    let n = h * w;
    let (mut p1, mut p2) = (vec![0.0f32; n], vec![0.0f32; n]);
    let mut div = vec![0.0f32; n];
    let mut v = vec![0.0f32; n];
    for _ in 0..iterations {
        divergence(&p1, &p2, h, w, &mut div);
        for k in 0..n {
            v[k] = div[k] - f[k] / weight;
        }
        for i in 0..h {
            for j in 0..w {
                let k = i * w + j;
                let gx = if i < h - 1 { v[k + w] - v[k] } else { 0.0 };
                let gy = if j < w - 1 { v[k + 1] - v[k] } else { 0.0 };
                let norm = (gx * gx + gy * gy).sqrt();
                p1[k] = (p1[k] + TAU * gx) / (1.0 + TAU * norm);
                p2[k] = (p2[k] + TAU * gy) / (1.0 + TAU * norm);
            }
        }
    }
    divergence(&p1, &p2, h, w, &mut div);
    for k in 0..n {
        f[k] -= weight * div[k];
    }
}

impl InputTransform for TotalVariation {
    fn name(&self) -> String {
        format!(
            "tv:weight={}:iters={}",
            self.config.weight, self.config.iterations
        )
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let TvConfig { weight, iterations } = self.config;
        map_planes(x, |plane, h, w| {
            rof_denoise(plane, h, w, weight, iterations)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(f: &[f32], h: usize, w: usize) -> f32 {
        let mut t = 0.0;
        for i in 0..h {
            for j in 0..w {
                let k = i * w + j;
                let gx = if i < h - 1 { f[k + w] - f[k] } else { 0.0 };
                let gy = if j < w - 1 { f[k + 1] - f[k] } else { 0.0 };
                t += (gx * gx + gy * gy).sqrt();
            }
        }
        t
    }

    #[test]
    fn denoises_a_noisy_step_and_keeps_constants() {
        let (h, w) = (12, 12);
        let clean: Vec<f32> = (0..h * w)
            .map(|k| if k % w < 6 { 0.2 } else { 0.8 })
            .collect();
        // Deterministic ±0.1 noise.
        let noisy: Vec<f32> = clean
            .iter()
            .enumerate()
            .map(|(k, v)| v + if (k * 7919) % 5 < 2 { 0.1 } else { -0.1 })
            .collect();
        let mut out = noisy.clone();
        rof_denoise(&mut out, h, w, 0.1, 100);
        let err = |a: &[f32]| {
            a.iter()
                .zip(&clean)
                .map(|(x, y)| (x - y).abs())
                .sum::<f32>()
        };
        assert!(
            err(&out) < 0.5 * err(&noisy),
            "{} vs {}",
            err(&out),
            err(&noisy)
        );
        assert!(tv(&out, h, w) < tv(&noisy, h, w));
        let mut flat = vec![0.4f32; h * w];
        rof_denoise(&mut flat, h, w, 0.1, 50);
        assert!(flat.iter().all(|v| (v - 0.4).abs() < 1e-6));
    }
}

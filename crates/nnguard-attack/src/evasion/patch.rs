//! Adversarial patch (Brown, Mané, Roy, Abadi and Gilmer 2017, "Adversarial Patch"): one
//! universal square patch, trained by expectation over transformation (Athalye et al. 2018)
//! to be adversarial wherever it is pasted. Each training step pastes the patch on a batch of
//! the inputs at random locations, scales and rotations, and follows the gradient of the
//! loss (averaged over the batch) with respect to the patch with Adam. The warp is bilinear
//! sampling of the rotated, scaled patch at every covered pixel, blended with its coverage,
//! and its exact transpose carries the input gradient back to the patch.
//!
//! Untargeted (raise the cross-entropy of the true class) or targeted (raise the probability
//! of one target class, or of the tracker's targets). The harness then judges the patched
//! inputs: each input gets `placements` random placements of the trained patch. A patch is
//! not ε-bounded: its budget is its area ([`Patch::area_fraction`]), reported beside the
//! result; the tracker's distance is informative only.

use std::sync::Mutex;

use nnguard_model::tensor::{Tensor, TensorData, argmax_rows, to_vec};
use nnguard_model::{Differentiable, Loss};
use rand::Rng;
use rand::seq::SliceRandom;

use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::steps::objective;

/// Adam's decay rates and stabiliser (Kingma and Ba 2015; PyTorch's defaults).
const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;

/// Settings of [`Patch`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatchConfig {
    /// Area of the (unscaled) square patch as a fraction of the image area.
    pub area: f32,
    /// Smallest and largest scale of the patch's side at a placement.
    pub scale: (f32, f32),
    /// Largest rotation at a placement, in degrees either way.
    pub max_rotation_deg: f32,
    /// Adam steps of training.
    pub steps: usize,
    /// Inputs (each at its own random placement) per training step.
    pub batch: usize,
    /// Adam learning rate, in units of the input range.
    pub lr: f32,
    /// Train towards this class instead of away from the true one (untargeted success still
    /// counts unless the tracker has targets).
    pub target: Option<u32>,
    /// Random placements of the trained patch offered per input.
    pub placements: usize,
}

impl Default for PatchConfig {
    /// A patch covering 10% of the image, scaled 0.8–1.2×, rotated up to ±22.5°, trained
    /// for 200 Adam steps of 32 placements with learning rate 0.05, untargeted, judged at
    /// one random placement per input.
    fn default() -> Self {
        Self {
            area: 0.1,
            scale: (0.8, 1.2),
            max_rotation_deg: 22.5,
            steps: 200,
            batch: 32,
            lr: 0.05,
            target: None,
            placements: 1,
        }
    }
}

impl PatchConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Patch, AttackError> {
        if !(self.area > 0.0 && self.area <= 1.0) {
            return Err(AttackError::config(
                "--patch-area",
                format!("must be in (0, 1], got {}", self.area),
            ));
        }
        let (s0, s1) = self.scale;
        if !(s0.is_finite() && s1.is_finite() && s0 > 0.0 && s0 <= s1) {
            return Err(AttackError::config(
                "--patch-scale",
                format!("must be 0 < min ≤ max, got {s0}..{s1}"),
            ));
        }
        if !(self.max_rotation_deg.is_finite() && (0.0..=180.0).contains(&self.max_rotation_deg)) {
            return Err(AttackError::config(
                "--patch-rotation",
                format!("must be in [0, 180] degrees, got {}", self.max_rotation_deg),
            ));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        AttackError::at_least_one("--batch", self.batch as u64)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(AttackError::config(
                "--step",
                format!("the learning rate must be > 0, got {}", self.lr),
            ));
        }
        AttackError::at_least_one("--placements", self.placements as u64)?;
        Ok(Patch {
            config: self,
            trained: Mutex::new(None),
        })
    }
}

/// A built adversarial-patch attack; after a run it holds the trained patch.
#[derive(Debug)]
pub struct Patch {
    config: PatchConfig,
    trained: Mutex<Option<TrainedPatch>>,
}

/// A trained patch.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedPatch {
    /// Side of the square patch in pixels.
    pub side: usize,
    /// Values, `[channels, side, side]`.
    pub values: Vec<f32>,
    /// Fraction of the image area the unscaled patch covers.
    pub area_fraction: f64,
}

impl Patch {
    /// The threat model the attack works in: not ε-bounded (the patch's area is its budget).
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: Norm::L2,
            eps: None,
            bounds,
        }
    }

    /// Side of the square patch, in pixels, on `h × w` images.
    pub fn side(&self, h: usize, w: usize) -> usize {
        let side = (f64::from(self.config.area) * (h * w) as f64)
            .sqrt()
            .round() as usize;
        side.clamp(1, h.min(w))
    }

    /// Fraction of an `h × w` image the unscaled patch covers.
    pub fn area_fraction(&self, h: usize, w: usize) -> f64 {
        let s = self.side(h, w);
        (s * s) as f64 / (h * w) as f64
    }

    /// The patch trained by the last run, if any.
    pub fn trained(&self) -> Option<TrainedPatch> {
        self.trained.lock().ok().and_then(|t| t.clone())
    }

    fn random_placement(
        &self,
        rng: &mut rand_chacha::ChaCha8Rng,
        side: usize,
        (h, w): (usize, usize),
    ) -> Placement {
        let c = &self.config;
        let scale = rng.random_range(c.scale.0..=c.scale.1);
        let max = c.max_rotation_deg.to_radians();
        let angle = if max > 0.0 {
            rng.random_range(-max..=max)
        } else {
            0.0
        };
        // Keep the rotated, scaled square inside the image where it fits.
        let half = 0.5 * scale * side as f32 * (angle.cos().abs() + angle.sin().abs());
        let mut centre = |size: usize| {
            let size = size as f32;
            if size > 2.0 * half {
                rng.random_range(half..=size - half)
            } else {
                size / 2.0
            }
        };
        let cx = centre(w);
        let cy = centre(h);
        Placement::new(side, (h, w), (cx, cy), scale, angle)
    }
}

/// Where the patch lands in one image: for every covered pixel, its bilinear taps into the
/// patch (pixel centres at half-integers in both frames).
#[derive(Debug, Clone)]
struct Placement {
    taps: Vec<Tap>,
}

#[derive(Debug, Clone, Copy)]
struct Tap {
    pixel: usize,
    patch: [usize; 4],
    weight: [f32; 4],
    count: usize,
}

impl Placement {
    /// The patch of `side` pixels at centre `(cx, cy)`, scaled by `scale` and rotated by
    /// `angle` radians, on an `h × w` image.
    fn new(
        side: usize,
        (h, w): (usize, usize),
        (cx, cy): (f32, f32),
        scale: f32,
        angle: f32,
    ) -> Self {
        let p = side as f32;
        let (sin, cos) = angle.sin_cos();
        let reach = 0.5 * scale * p * std::f32::consts::SQRT_2 + 1.0;
        let rows =
            ((cy - reach).floor().max(0.0) as usize)..((cy + reach).ceil().min(h as f32) as usize);
        let cols =
            ((cx - reach).floor().max(0.0) as usize)..((cx + reach).ceil().min(w as f32) as usize);
        let mut taps = Vec::new();
        for v in rows {
            for u in cols.clone() {
                // Inverse map: image point → patch point.
                let dx = u as f32 + 0.5 - cx;
                let dy = v as f32 + 0.5 - cy;
                let qx = (cos * dx + sin * dy) / scale + p / 2.0 - 0.5;
                let qy = (-sin * dx + cos * dy) / scale + p / 2.0 - 0.5;
                let (x0, y0) = (qx.floor(), qy.floor());
                let (fx, fy) = (qx - x0, qy - y0);
                let mut tap = Tap {
                    pixel: v * w + u,
                    patch: [0; 4],
                    weight: [0.0; 4],
                    count: 0,
                };
                for (oy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
                    for (ox, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
                        let (a, b) = (x0 + ox, y0 + oy);
                        let weight = wx * wy;
                        if weight > 0.0 && a >= 0.0 && b >= 0.0 && a < p && b < p {
                            tap.patch[tap.count] = b as usize * side + a as usize;
                            tap.weight[tap.count] = weight;
                            tap.count += 1;
                        }
                    }
                }
                if tap.count > 0 {
                    taps.push(tap);
                }
            }
        }
        Self { taps }
    }

    /// Pastes `patch` (`[c, side, side]`) onto `image` (`[c, h, w]`), blending by coverage.
    fn paste(&self, image: &mut [f32], patch: &[f32], channels: usize) {
        let plane = image.len() / channels;
        let patch_plane = patch.len() / channels;
        for tap in &self.taps {
            let cover: f32 = tap.weight[..tap.count].iter().sum();
            for ch in 0..channels {
                let sample: f32 = (0..tap.count)
                    .map(|k| tap.weight[k] * patch[ch * patch_plane + tap.patch[k]])
                    .sum();
                let px = &mut image[ch * plane + tap.pixel];
                *px = *px * (1.0 - cover) + sample;
            }
        }
    }

    /// Adds the transpose of [`Placement::paste`] (with respect to the patch) applied to
    /// `grad` (`[c, h, w]`) to `out` (`[c, side, side]`).
    fn pull_back(&self, grad: &[f32], out: &mut [f32], channels: usize) {
        let plane = grad.len() / channels;
        let patch_plane = out.len() / channels;
        for tap in &self.taps {
            for ch in 0..channels {
                let g = grad[ch * plane + tap.pixel];
                for k in 0..tap.count {
                    out[ch * patch_plane + tap.patch[k]] += tap.weight[k] * g;
                }
            }
        }
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Patch {
    fn name(&self) -> String {
        "patch".into()
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let c = &self.config;
        let k = model.num_classes();
        if let Some(t) = c.target
            && t as usize >= k
        {
            return Err(AttackError::config(
                "--target",
                format!("class {t} does not exist; the model has {k} classes"),
            ));
        }
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let (lo, hi) = ctx.tracker.threat().bounds;
        let x0 = ctx.tracker.x0_rows(&rows);
        let dims = x0.dims();
        let (channels, h, w) = (dims[1], dims[2], dims[3]);
        let n = channels * h * w;
        let device = x0.device();
        let x0 = to_vec(x0);
        let side = self.side(h, w);
        let patch_len = channels * side * side;
        let targeted = c.target.is_some() || ctx.tracker.is_targeted();
        let (loss, _) = objective(Loss::CrossEntropy, targeted);
        let labels: Vec<u32> = match (ctx.tracker.is_targeted(), c.target) {
            (false, Some(t)) => vec![t; rows.len()],
            _ => ctx.tracker.objective_labels(&rows),
        };
        let mut patch: Vec<f32> = (0..patch_len)
            .map(|_| ctx.rng.random_range(lo..=hi))
            .collect();
        let mut m = vec![0.0f32; patch_len];
        let mut v = vec![0.0f32; patch_len];
        let mut order: Vec<usize> = Vec::new();
        let total = c.steps + 1;
        for step in 0..c.steps {
            // Draw the batch from a reshuffled pass over the inputs.
            let mut batch = Vec::with_capacity(c.batch);
            while batch.len() < c.batch.min(rows.len()) {
                if order.is_empty() {
                    order = (0..rows.len()).collect();
                    order.shuffle(&mut ctx.rng);
                }
                if let Some(i) = order.pop() {
                    batch.push(i);
                }
            }
            let placements: Vec<Placement> = batch
                .iter()
                .map(|_| self.random_placement(&mut ctx.rng, side, (h, w)))
                .collect();
            let mut images = Vec::with_capacity(batch.len() * n);
            for (&i, place) in batch.iter().zip(&placements) {
                let start = images.len();
                images.extend_from_slice(&x0[i * n..(i + 1) * n]);
                place.paste(&mut images[start..], &patch, channels);
            }
            let y: Vec<u32> = batch.iter().map(|&i| labels[i]).collect();
            let b = batch.len();
            let x = Tensor::<4>::from_data(TensorData::new(images, [b, channels, h, w]), &device);
            let g = model.input_gradient(x, &y, loss);
            let grad = to_vec(g.grad);
            // Placements that already fool the model stop pulling on the patch, so the
            // unbounded loss of easy inputs does not drown the others.
            let predicted = argmax_rows(&to_vec(g.logits), k);
            let mut gp = vec![0.0f32; patch_len];
            for (j, place) in placements.iter().enumerate() {
                if (predicted[j] == y[j]) == targeted {
                    continue;
                }
                place.pull_back(&grad[j * n..(j + 1) * n], &mut gp, channels);
            }
            // Adam ascent on the batch-mean loss, then back into the valid range.
            let t = (step + 1) as i32;
            let (c1, c2) = (1.0 - ADAM_BETA1.powi(t), 1.0 - ADAM_BETA2.powi(t));
            for j in 0..patch_len {
                let gj = gp[j] / b as f32;
                m[j] = ADAM_BETA1 * m[j] + (1.0 - ADAM_BETA1) * gj;
                v[j] = ADAM_BETA2 * v[j] + (1.0 - ADAM_BETA2) * gj * gj;
                let update = c.lr * (m[j] / c1) / ((v[j] / c2).sqrt() + ADAM_EPS);
                patch[j] = (patch[j] + update).clamp(lo, hi);
            }
            ctx.tick(step + 1, total);
        }
        // The harness judges the patched inputs, each at its own random placements.
        for _ in 0..c.placements {
            let mut images = Vec::with_capacity(rows.len() * n);
            for i in 0..rows.len() {
                let start = images.len();
                images.extend_from_slice(&x0[i * n..(i + 1) * n]);
                self.random_placement(&mut ctx.rng, side, (h, w)).paste(
                    &mut images[start..],
                    &patch,
                    channels,
                );
            }
            let x = Tensor::<4>::from_data(
                TensorData::new(images, [rows.len(), channels, h, w]),
                &device,
            );
            let logits = model.logits(x.clone());
            ctx.tracker.offer(&rows, x, Some(logits))?;
        }
        ctx.tick(total, total);
        let area_fraction = self.area_fraction(h, w);
        tracing::info!(side, area_fraction, "adversarial patch trained");
        if let Ok(mut slot) = self.trained.lock() {
            *slot = Some(TrainedPatch {
                side,
                values: patch,
                area_fraction,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrotated_unit_scale_placement_copies_the_patch() {
        // A 2×2 patch centred on a 4×4 image at integer offsets lands pixel for pixel.
        let place = Placement::new(2, (4, 4), (2.0, 2.0), 1.0, 0.0);
        let mut image = vec![0.5f32; 16];
        place.paste(&mut image, &[0.1, 0.2, 0.3, 0.4], 1);
        let inner = [image[5], image[6], image[9], image[10]];
        for (a, b) in inner.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            assert!((a - b).abs() < 1e-6, "{image:?}");
        }
        assert_eq!(image.iter().filter(|&&v| v == 0.5).count(), 12);
    }

    #[test]
    fn pull_back_is_the_transpose_of_paste() {
        // ⟨paste(p) − paste(0), g⟩ = ⟨p, pullback(g)⟩ for a rotated, scaled placement.
        let place = Placement::new(3, (8, 8), (4.2, 3.7), 1.3, 0.4);
        let patch = [0.9f32, -0.3, 0.2, 0.5, 0.1, -0.7, 0.4, 0.8, -0.2];
        let grad: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let mut with = vec![0.0f32; 64];
        place.paste(&mut with, &patch, 1);
        let lhs: f64 = with.iter().zip(&grad).map(|(a, b)| f64::from(a * b)).sum();
        let mut back = vec![0.0f32; 9];
        place.pull_back(&grad, &mut back, 1);
        let rhs: f64 = back.iter().zip(&patch).map(|(a, b)| f64::from(a * b)).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
        assert!(
            lhs.abs() > 1e-3,
            "the test placement must cover some pixels"
        );
    }
}

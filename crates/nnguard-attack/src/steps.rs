//! Building blocks shared by the gradient attacks: steepest-ascent directions per norm,
//! random starts inside the ball, and shrinking a batch to the inputs still being attacked.

use nnguard_model::Loss;
use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::norm::{Norm, Threat};
use crate::tracker::select_rows;

/// Fraction of coordinates an L1 step moves (the sparse steepest ascent of Tramèr and Boneh
/// 2019: only the largest-gradient coordinates, so the L1 budget is not spread thin).
pub const L1_STEP_SPARSITY: f32 = 0.01;

/// The unit-size steepest-ascent direction of `g` in `norm`, per sample: the sign for L∞,
/// `g/‖g‖₂` for L2, and the sign on the top [`L1_STEP_SPARSITY`] coordinates scaled to unit
/// L1 norm for L1.
pub fn ascent_direction(g: Tensor<4>, norm: Norm) -> Tensor<4> {
    match norm {
        Norm::Linf => g.sign(),
        Norm::L2 => {
            let dims = g.dims();
            let norms = Norm::L2.per_sample(&g);
            let inv: Vec<f32> = norms.iter().map(|&n| 1.0 / n.max(1e-12)).collect();
            let s = Tensor::<4>::from_data(TensorData::new(inv, [dims[0], 1, 1, 1]), &g.device());
            g.mul(s)
        }
        Norm::L1 => {
            let dims = g.dims();
            let device = g.device();
            let n = dims[1] * dims[2] * dims[3];
            let k = ((n as f32 * L1_STEP_SPARSITY).ceil() as usize).clamp(1, n);
            let mut v = to_vec(g);
            for row in v.chunks_mut(n) {
                let mut mags: Vec<f32> = row.iter().map(|x| x.abs()).collect();
                mags.sort_by(|a, b| b.total_cmp(a));
                let threshold = mags[k - 1];
                let picked = row
                    .iter()
                    .filter(|x| x.abs() >= threshold && **x != 0.0)
                    .count()
                    .max(1);
                for x in row.iter_mut() {
                    *x = if x.abs() >= threshold && *x != 0.0 {
                        x.signum() / picked as f32
                    } else {
                        0.0
                    };
                }
            }
            Tensor::from_data(TensorData::new(v, dims), &device)
        }
    }
}

/// A uniformly random point of the ε-ball around each input (then clipped to the bounds):
/// uniform per coordinate for L∞; a uniform direction with radius `eps·u^(1/d)` for L2;
/// a Laplace direction with radius `eps·u^(1/d)` for L1.
pub fn random_start(x0: &Tensor<4>, threat: &Threat, rng: &mut ChaCha8Rng) -> Tensor<4> {
    let Some(eps) = threat.eps else {
        return x0.clone();
    };
    let dims = x0.dims();
    let n = dims[1] * dims[2] * dims[3];
    let mut delta = Vec::with_capacity(dims[0] * n);
    for _ in 0..dims[0] {
        match threat.norm {
            Norm::Linf => delta.extend((0..n).map(|_| rng.random_range(-eps..=eps))),
            Norm::L2 | Norm::L1 => {
                let dir: Vec<f32> = (0..n)
                    .map(|_| {
                        if threat.norm == Norm::L2 {
                            StandardNormal.sample(rng)
                        } else {
                            let u: f32 = rng.random_range(-0.5f32..0.5);
                            -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-12).ln()
                        }
                    })
                    .collect();
                let len = threat.norm.of_rows(&dir, n)[0].max(1e-12);
                let radius = eps * rng.random::<f32>().powf(1.0 / n as f32);
                delta.extend(dir.iter().map(|d| d * radius / len));
            }
        }
    }
    let delta = Tensor::<4>::from_data(TensorData::new(delta, dims), &x0.device());
    threat.project(x0, x0.clone().add(delta))
}

/// The loss to ascend and the sign to ascend it with, for untargeted or targeted runs:
/// cross-entropy becomes the targeted cross-entropy; margin-type losses are descended.
pub fn objective(loss: Loss, targeted: bool) -> (Loss, f32) {
    match (loss, targeted) {
        (_, false) => (loss, 1.0),
        (Loss::CrossEntropy | Loss::TargetedCrossEntropy, true) => {
            (Loss::TargetedCrossEntropy, 1.0)
        }
        (other, true) => (other, -1.0),
    }
}

/// The rows of a working batch that are still being attacked.
pub struct Working {
    /// Row indices into the tracker's inputs.
    pub rows: Vec<usize>,
    /// Clean inputs of those rows.
    pub x0: Tensor<4>,
    /// Current iterates.
    pub x: Tensor<4>,
    /// Labels the loss uses (targets when targeted).
    pub y: Vec<u32>,
}

impl Working {
    /// Keeps only the rows whose `done` flag is false; returns false when none is left.
    pub fn retain(&mut self, done: &[bool]) -> bool {
        if !done.iter().any(|&d| d) {
            return true;
        }
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| !done[i]).collect();
        if keep.is_empty() {
            self.rows.clear();
            return false;
        }
        self.rows = keep.iter().map(|&i| self.rows[i]).collect();
        self.y = keep.iter().map(|&i| self.y[i]).collect();
        self.x0 = select_rows(&self.x0, &keep);
        self.x = select_rows(&self.x, &keep);
        true
    }

    /// Keeps the same rows of a tensor aligned with the working batch before `retain`.
    pub fn select(t: &Tensor<4>, keep: &[usize]) -> Tensor<4> {
        select_rows(t, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::cpu;
    use rand::SeedableRng;

    #[test]
    fn directions_have_unit_size_in_their_norm() {
        let d = cpu();
        let g = Tensor::<4>::from_data(
            TensorData::new(vec![3.0f32, -4.0, 0.0, 0.5], [1, 1, 2, 2]),
            &d,
        );
        assert_eq!(
            to_vec(ascent_direction(g.clone(), Norm::Linf)),
            vec![1.0, -1.0, 0.0, 1.0]
        );
        let l2 = Norm::L2.per_sample(&ascent_direction(g.clone(), Norm::L2))[0];
        assert!((l2 - 1.0).abs() < 1e-6);
        // One coordinate (the largest, -4) carries the whole L1 step.
        assert_eq!(
            to_vec(ascent_direction(g, Norm::L1)),
            vec![0.0, -1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn random_starts_stay_in_the_ball() {
        let d = cpu();
        let x0 = Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 64], [4, 1, 4, 4]), &d);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for norm in [Norm::Linf, Norm::L2, Norm::L1] {
            let t = Threat {
                norm,
                eps: Some(0.3),
                bounds: (0.0, 1.0),
            };
            let x = random_start(&x0, &t, &mut rng);
            for n in norm.per_sample(&x.sub(x0.clone())) {
                assert!(n <= 0.3 + 1e-5 && n > 0.0, "{norm}: {n}");
            }
        }
    }
}

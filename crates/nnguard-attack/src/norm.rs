//! Norms, ε-balls and the projections every attack and the tracker share.

use nnguard_model::tensor::{Tensor, TensorData, to_vec};

use crate::AttackError;

/// The norm a perturbation is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Largest absolute change of any pixel.
    Linf,
    /// Euclidean length of the change.
    L2,
    /// Sum of absolute changes.
    L1,
}

impl std::str::FromStr for Norm {
    type Err = AttackError;
    fn from_str(s: &str) -> Result<Self, AttackError> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" | "l_inf" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            "l1" | "1" => Ok(Norm::L1),
            other => Err(AttackError::config(
                "--norm",
                format!("unknown norm {other:?} (expected linf, l2 or l1)"),
            )),
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
            Norm::L1 => "l1",
        })
    }
}

impl Norm {
    /// The norm of each row of a `[rows, n]` host buffer.
    pub fn of_rows(self, values: &[f32], n: usize) -> Vec<f32> {
        values
            .chunks(n.max(1))
            .map(|r| match self {
                Norm::Linf => r.iter().fold(0.0f32, |m, v| m.max(v.abs())),
                Norm::L2 => r
                    .iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>()
                    .sqrt() as f32,
                Norm::L1 => r.iter().map(|v| f64::from(v.abs())).sum::<f64>() as f32,
            })
            .collect()
    }

    /// Per-sample norms of a batch.
    pub fn per_sample(self, t: &Tensor<4>) -> Vec<f32> {
        let [b, c, h, w] = t.dims();
        let _ = b;
        self.of_rows(&to_vec(t.clone()), c * h * w)
    }

    /// Projects each sample of `delta` onto the ball of radius `eps` (exactly, in every norm).
    pub fn project(self, delta: Tensor<4>, eps: f32) -> Tensor<4> {
        match self {
            Norm::Linf => delta.clamp(-eps, eps),
            Norm::L2 => {
                let dims = delta.dims();
                let device = delta.device();
                let norms = self.per_sample(&delta);
                let scale: Vec<f32> = norms
                    .iter()
                    .map(|&n| if n > eps { eps / n } else { 1.0 })
                    .collect();
                let s = Tensor::<4>::from_data(TensorData::new(scale, [dims[0], 1, 1, 1]), &device);
                delta.mul(s)
            }
            Norm::L1 => {
                let dims = delta.dims();
                let device = delta.device();
                let n = dims[1] * dims[2] * dims[3];
                let mut v = to_vec(delta);
                for row in v.chunks_mut(n.max(1)) {
                    project_l1_row(row, eps);
                }
                Tensor::from_data(TensorData::new(v, dims), &device)
            }
        }
    }
}

/// Euclidean projection of one vector onto the L1 ball of radius `eps`
/// (Duchi, Shalev-Shwartz, Singer and Chandra 2008: sort, find the threshold, shrink).
pub fn project_l1_row(row: &mut [f32], eps: f32) {
    let l1: f64 = row.iter().map(|v| f64::from(v.abs())).sum();
    if l1 <= f64::from(eps) {
        return;
    }
    let mut mags: Vec<f32> = row.iter().map(|v| v.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    let (mut cum, mut theta) = (0.0f64, 0.0f64);
    for (i, &m) in mags.iter().enumerate() {
        cum += f64::from(m);
        let t = (cum - f64::from(eps)) / (i + 1) as f64;
        if f64::from(m) > t {
            theta = t;
        } else {
            break;
        }
    }
    for v in row.iter_mut() {
        let shrunk = (f64::from(v.abs()) - theta).max(0.0) as f32;
        *v = shrunk.copysign(*v);
    }
}

/// A threat model: which perturbations count.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Threat {
    /// The norm perturbations are measured in.
    pub norm: Norm,
    /// The radius of the allowed ball; `None` for minimal-perturbation attacks, whose
    /// result is judged by its size instead.
    pub eps: Option<f32>,
    /// The valid input range.
    pub bounds: (f32, f32),
}

impl Threat {
    /// Checks the radius.
    pub fn validate(&self) -> Result<(), AttackError> {
        if let Some(e) = self.eps
            && !(e.is_finite() && e >= 0.0)
        {
            return Err(AttackError::config(
                "--eps",
                format!("must be a finite number ≥ 0, got {e}"),
            ));
        }
        if self.bounds.0.partial_cmp(&self.bounds.1) != Some(std::cmp::Ordering::Less) {
            return Err(AttackError::config(
                "--bounds",
                format!("{:?} is empty", self.bounds),
            ));
        }
        Ok(())
    }

    /// Projects candidates onto the ball around `x0` (when bounded) and then into the
    /// valid input range. NaN coordinates fall back to the original input.
    pub fn project(&self, x0: &Tensor<4>, candidate: Tensor<4>) -> Tensor<4> {
        let nan = candidate.clone().is_nan();
        let candidate = candidate.mask_where(nan, x0.clone());
        let delta = candidate.sub(x0.clone());
        let delta = match self.eps {
            Some(eps) => self.norm.project(delta, eps),
            None => delta,
        };
        x0.clone().add(delta).clamp(self.bounds.0, self.bounds.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::cpu;

    #[test]
    fn l1_projection_matches_the_closed_form() {
        // (3, -1) onto radius 2: threshold 1 shrinks to (2, 0).
        let mut v = [3.0f32, -1.0];
        project_l1_row(&mut v, 2.0);
        assert_eq!(v, [2.0, 0.0]);
        // (1, 1, 1) onto radius 1.5: threshold 0.5 gives (0.5, 0.5, 0.5).
        let mut v = [1.0f32, -1.0, 1.0];
        project_l1_row(&mut v, 1.5);
        assert_eq!(v, [0.5, -0.5, 0.5]);
        let mut inside = [0.1f32, 0.2];
        project_l1_row(&mut inside, 1.0);
        assert_eq!(inside, [0.1, 0.2]);
    }

    proptest::proptest! {
        #[test]
        fn projections_land_in_the_ball_and_the_bounds(
            vals in proptest::collection::vec(-3.0f32..3.0, 8),
            eps in 0.0f32..2.0,
        ) {
            let d = cpu();
            let x0 = Tensor::<4>::from_data(TensorData::new(vec![0.5f32; 8], [2, 1, 2, 2]), &d);
            let cand = Tensor::<4>::from_data(TensorData::new(vals, [2, 1, 2, 2]), &d);
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                let t = Threat { norm, eps: Some(eps), bounds: (0.0, 1.0) };
                let p = t.project(&x0, cand.clone());
                let delta = p.clone().sub(x0.clone());
                for n in norm.per_sample(&delta) {
                    proptest::prop_assert!(n <= eps * (1.0 + 1e-5) + 1e-6, "{norm}: {n} > {eps}");
                }
                for v in to_vec(p) {
                    proptest::prop_assert!((0.0..=1.0).contains(&v));
                }
            }
        }
    }
}

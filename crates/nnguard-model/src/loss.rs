//! Per-sample losses on logits, the objectives attacks and training differentiate.

use crate::tensor::{Tensor, one_hot, to_vec};

/// Which loss an input gradient is taken of. Every loss is per sample and grows as the
/// input becomes more adversarial for its label (untargeted) or closer to its target
/// (the `Targeted*` variants, whose labels are the targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Cross-entropy `logsumexp(z) − z_y` (what PyTorch's `cross_entropy` computes).
    CrossEntropy,
    /// Carlini-Wagner margin `max_{j≠y} z_j − z_y`: positive once misclassified.
    Margin,
    /// Difference of logits ratio (Croce & Hein 2020):
    /// `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e−12)`, invariant to logit scale and shift.
    Dlr,
    /// Negative cross-entropy to a target class: grows as the target becomes likelier.
    TargetedCrossEntropy,
}

impl Loss {
    /// The per-sample loss for `logits` (`[B, K]`) and `labels` (true classes, or targets for
    /// the targeted losses). Differentiable when `logits` is tracked.
    pub fn per_sample(self, logits: Tensor<2>, labels: &[u32]) -> Tensor<1> {
        let [b, k] = logits.dims();
        let device = logits.device();
        let mask = one_hot(labels, k, &device);
        let z_y = logits.clone().mul(mask.clone()).sum_dim(1);
        // Largest logit among the other classes: push the label's logit down to -inf-ish.
        let others = logits.clone().sub(mask.mul_scalar(1e9f32));
        let z_other = others.max_dim(1);
        let out: Tensor<2> = match self {
            Loss::CrossEntropy => logsumexp(logits).sub(z_y),
            Loss::TargetedCrossEntropy => z_y.sub(logsumexp(logits)),
            Loss::Margin => z_other.sub(z_y),
            Loss::Dlr => {
                let (p1, p3) = ranked(&logits, b, k, |s| (s[0], s[2.min(k - 1)]));
                let denom = gather_cols(&logits, &p1).sub(gather_cols(&logits, &p3));
                z_other.sub(z_y).div(denom.add_scalar(1e-12f32))
            }
        };
        out.reshape([b])
    }
}

/// `log Σ exp(z)` per row, computed stably.
fn logsumexp(z: Tensor<2>) -> Tensor<2> {
    let m = z.clone().max_dim(1).detach();
    z.sub(m.clone()).exp().sum_dim(1).log().add(m)
}

/// Per row, the column indices picked by `pick` from the columns sorted by descending value.
/// The ranking itself is not differentiated (as in the reference implementations).
fn ranked(
    logits: &Tensor<2>,
    b: usize,
    k: usize,
    pick: impl Fn(&[usize]) -> (usize, usize),
) -> (Vec<i64>, Vec<i64>) {
    let values = to_vec(logits.clone().detach());
    let mut first = Vec::with_capacity(b);
    let mut second = Vec::with_capacity(b);
    for row in values.chunks(k) {
        let mut idx: Vec<usize> = (0..k).collect();
        idx.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
        let (a, c) = pick(&idx);
        first.push(a as i64);
        second.push(c as i64);
    }
    (first, second)
}

/// `logits[i, cols[i]]` for every row, as a `[B, 1]` tensor.
fn gather_cols(logits: &Tensor<2>, cols: &[i64]) -> Tensor<2> {
    let device = logits.device();
    let idx = Tensor::<2, crate::tensor::Int>::from_data(
        crate::tensor::TensorData::new(cols.to_vec(), [cols.len(), 1]),
        &device,
    );
    logits.clone().gather(1, idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{TensorData, cpu};

    fn z(rows: &[[f32; 4]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 4]), &cpu())
    }

    #[test]
    fn losses_match_hand_computed_values() {
        let logits = [[2.0, 1.0, 0.0, -1.0]];
        let ce = to_vec(Loss::CrossEntropy.per_sample(z(&logits), &[1]))[0];
        let lse = (2f32.exp() + 1f32.exp() + 1.0 + (-1f32).exp()).ln();
        assert!((ce - (lse - 1.0)).abs() < 1e-5);
        let tce = to_vec(Loss::TargetedCrossEntropy.per_sample(z(&logits), &[1]))[0];
        assert!((tce + ce).abs() < 1e-6);
        let margin = to_vec(Loss::Margin.per_sample(z(&logits), &[0]))[0];
        assert!((margin - (1.0 - 2.0)).abs() < 1e-6);
        // DLR for label 1: -(1 - 2) / (2 - 0) = 0.5
        let dlr = to_vec(Loss::Dlr.per_sample(z(&logits), &[1]))[0];
        assert!((dlr - 0.5).abs() < 1e-6);
    }
}

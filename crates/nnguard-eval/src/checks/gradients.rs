//! Zero, NaN or infinite input gradients: a gradient attack cannot move where gradients
//! vanish and goes astray where they are not finite. Gradients are taken of the margin
//! loss, which (unlike cross-entropy) does not saturate on confidently classified inputs,
//! so a zero here means the model blocks gradients. Where they vanish, the loss is probed
//! with random perturbations: if it moves, the gradients are obfuscated (see
//! [`super::preprocessing`]).

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use nnguard_model::{Differentiable, Loss};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{CheckResult, Status, pct, tolerance};

/// Largest gradient magnitude that still counts as zero.
pub const ZERO_GRADIENT: f32 = 1e-30;
/// Random directions each zero-gradient input is probed in.
pub const PROBES: usize = 4;

/// Input gradients of a sample of inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GradientEvidence {
    /// Inputs whose gradient was taken.
    pub rows: u64,
    /// Inputs whose gradient is zero everywhere.
    pub zero_rows: u64,
    /// Inputs whose gradient has a NaN or infinite value.
    pub nonfinite_rows: u64,
    /// Zero-gradient inputs probed with random perturbations.
    pub probed_rows: u64,
    /// Probed inputs whose loss changed under the perturbations.
    pub moving_rows: u64,
    /// Size of the probing perturbations (L∞).
    pub probe: f32,
}

impl GradientEvidence {
    /// Takes margin-loss gradients of `x` (`labels` their classes) and probes the
    /// zero-gradient inputs with perturbations of L∞ size `probe`.
    pub fn observe(
        &mut self,
        model: &dyn Differentiable,
        x: Tensor<4>,
        labels: &[u32],
        probe: f32,
        rng: &mut ChaCha8Rng,
    ) {
        let dims = x.dims();
        if dims[0] == 0 {
            return;
        }
        let n = dims[1] * dims[2] * dims[3];
        let g = model.input_gradient(x.clone(), labels, Loss::Margin);
        let grad = to_vec(g.grad);
        let loss = to_vec(g.loss);
        let mut zero = Vec::new();
        for (i, row) in grad.chunks(n).enumerate() {
            self.rows += 1;
            if row.iter().any(|v| !v.is_finite()) {
                self.nonfinite_rows += 1;
            } else if row.iter().all(|v| v.abs() <= ZERO_GRADIENT) {
                self.zero_rows += 1;
                zero.push(i);
            }
        }
        self.probe = self.probe.max(probe);
        if zero.is_empty() || probe <= 0.0 {
            return;
        }
        let x_host = to_vec(x.clone());
        let (lo, hi) = model.bounds();
        let mut moved = vec![false; zero.len()];
        for _ in 0..PROBES {
            let mut v = Vec::with_capacity(zero.len() * n);
            let mut y = Vec::with_capacity(zero.len());
            for &r in &zero {
                v.extend(x_host[r * n..(r + 1) * n].iter().map(|&p| {
                    let s = if rng.random::<bool>() { probe } else { -probe };
                    (p + s).clamp(lo, hi)
                }));
                y.push(labels[r]);
            }
            let xp = Tensor::<4>::from_data(
                TensorData::new(v, [zero.len(), dims[1], dims[2], dims[3]]),
                &x.device(),
            );
            let lp = to_vec(Loss::Margin.per_sample(model.logits(xp), &y));
            for (j, &r) in zero.iter().enumerate() {
                if (lp[j] - loss[r]).abs() > 1e-6 * (1.0 + loss[r].abs()) {
                    moved[j] = true;
                }
            }
        }
        self.probed_rows += zero.len() as u64;
        self.moving_rows += moved.iter().filter(|&&m| m).count() as u64;
    }

    /// Whether enough inputs have zero gradients to matter.
    pub fn vanishing(&self) -> bool {
        self.rows > 0 && self.zero_rows >= tolerance(self.rows)
    }

    /// Whether gradients vanish where the loss still moves: obfuscated gradients.
    pub fn obfuscated(&self) -> bool {
        self.vanishing() && self.probed_rows > 0 && 2 * self.moving_rows >= self.probed_rows
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.rows += o.rows;
        self.zero_rows += o.zero_rows;
        self.nonfinite_rows += o.nonfinite_rows;
        self.probed_rows += o.probed_rows;
        self.moving_rows += o.moving_rows;
        self.probe = self.probe.max(o.probe);
    }
}

/// The verdict.
pub fn judge(e: &GradientEvidence) -> CheckResult {
    const ID: &str = "gradients";
    const TITLE: &str = "input gradients are non-zero and finite";
    if e.rows == 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "no gradients (query-only target)",
        );
    }
    if e.nonfinite_rows > 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "input gradients contain NaN or infinite values on {} of {} inputs ({})",
                e.nonfinite_rows,
                e.rows,
                pct(e.nonfinite_rows, e.rows)
            ),
        )
        .with_action("gradient attacks are unreliable here; check the model for log(0), division by zero or overflow");
    }
    if e.vanishing() {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "input gradients are exactly zero on {} of {} inputs ({}): gradient attacks cannot move from them",
                e.zero_rows,
                e.rows,
                pct(e.zero_rows, e.rows)
            ),
        )
        .with_action("see obfuscated-gradients; the robust accuracy of gradient attacks alone is not an upper bound");
    }
    CheckResult::new(
        ID,
        TITLE,
        Status::Passed,
        format!(
            "{} inputs: {} with zero and none with non-finite gradients",
            e.rows, e.zero_rows
        ),
    )
}

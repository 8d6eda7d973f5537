//! The [`Tracker`]: the harness's record of the best adversarial example per input.
//!
//! Attacks propose; the tracker judges. Every candidate an attack offers is projected onto
//! the threat model's ball and the valid range, scored (re-using the attack's logits only
//! when the projection left the candidate unchanged), and kept if it is adversarial and
//! smaller than what was kept before. [`Tracker::finish`] re-queries the model on the kept
//! examples, so a success is always the model's fresh prediction, never an attack's claim.

use nnguard_model::tensor::{Int, Tensor, TensorData, argmax_rows, to_vec};

use crate::AttackError;
use crate::norm::Threat;
use crate::oracle::Scorer;

/// Largest coordinate change a projection may make before the attack's own logits are
/// considered stale and the candidate is re-scored.
const PROJECTION_TOLERANCE: f32 = 1e-6;

/// The best adversarial example found for each input.
pub struct Tracker<'a> {
    judge: &'a dyn Scorer,
    threat: Threat,
    x0: Tensor<4>,
    x0_host: Vec<f32>,
    labels: Vec<u32>,
    targets: Option<Vec<u32>>,
    best: Vec<f32>,
    success: Vec<bool>,
    dist: Vec<f32>,
    rescored: usize,
}

/// What a finished tracker reports.
#[derive(Debug, Clone)]
pub struct TrackerResult {
    /// The kept example per input (the clean input where no attack succeeded), NCHW.
    pub x_adv: Vec<f32>,
    /// Whether the model's fresh prediction on `x_adv` is adversarial.
    pub success: Vec<bool>,
    /// The model's fresh prediction on `x_adv`.
    pub predicted: Vec<u32>,
    /// Perturbation size in the threat's norm (0 where no attack succeeded).
    pub distance: Vec<f32>,
    /// Inputs the tracker had recorded as adversarial but whose fresh prediction was not
    /// (a sign of a randomised or inconsistent model).
    pub not_reproduced: Vec<usize>,
    /// Candidates re-scored because an attack proposed something outside the threat model.
    pub rescored: usize,
}

impl<'a> Tracker<'a> {
    /// A tracker for clean inputs `x0` with their labels; with `targets`, success means
    /// reaching the target class instead of leaving the true one.
    pub fn new(
        judge: &'a dyn Scorer,
        threat: Threat,
        x0: Tensor<4>,
        labels: Vec<u32>,
        targets: Option<Vec<u32>>,
    ) -> Result<Self, AttackError> {
        threat.validate()?;
        let n = x0.dims()[0];
        if labels.len() != n || targets.as_ref().is_some_and(|t| t.len() != n) {
            return Err(AttackError::config(
                "--targets",
                format!("{n} inputs but {} labels", labels.len()),
            ));
        }
        let x0_host = to_vec(x0.clone());
        Ok(Self {
            judge,
            threat,
            x0,
            best: x0_host.clone(),
            x0_host,
            labels,
            targets,
            success: vec![false; n],
            dist: vec![f32::INFINITY; n],
            rescored: 0,
        })
    }

    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no inputs.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The threat model.
    pub fn threat(&self) -> Threat {
        self.threat
    }

    /// The clean inputs.
    pub fn x0(&self) -> &Tensor<4> {
        &self.x0
    }

    /// The clean inputs of `rows`.
    pub fn x0_rows(&self, rows: &[usize]) -> Tensor<4> {
        select_rows(&self.x0, rows)
    }

    /// True labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Target classes, for targeted attacks.
    pub fn targets(&self) -> Option<&[u32]> {
        self.targets.as_deref()
    }

    /// The classes attacks optimise towards or away from for `rows`: targets when
    /// targeted, true labels otherwise.
    pub fn objective_labels(&self, rows: &[usize]) -> Vec<u32> {
        let src = self.targets.as_deref().unwrap_or(&self.labels);
        rows.iter().map(|&r| src[r]).collect()
    }

    /// Whether the attack is targeted.
    pub fn is_targeted(&self) -> bool {
        self.targets.is_some()
    }

    /// Inputs for which no adversarial example has been found yet.
    pub fn active(&self) -> Vec<usize> {
        (0..self.len()).filter(|&r| !self.success[r]).collect()
    }

    /// Whether input `row` already has an adversarial example.
    pub fn is_adversarial(&self, row: usize) -> bool {
        self.success.get(row).copied().unwrap_or(false)
    }

    /// The size of the kept example of `row` (infinite when none).
    pub fn distance(&self, row: usize) -> f32 {
        self.dist.get(row).copied().unwrap_or(f32::INFINITY)
    }

    fn is_adv(&self, row: usize, predicted: u32) -> bool {
        match &self.targets {
            Some(t) => predicted == t[row],
            None => predicted != self.labels[row],
        }
    }

    /// Offers one candidate for each of `rows` (a `[rows.len(), C, H, W]` batch). `logits`,
    /// if given, must be the model's logits for exactly these candidates; they are used only
    /// when projection leaves every candidate unchanged. Returns, per offered row, whether
    /// that candidate is adversarial.
    pub fn offer(
        &mut self,
        rows: &[usize],
        candidates: Tensor<4>,
        logits: Option<Tensor<2>>,
    ) -> Result<Vec<bool>, AttackError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if candidates.dims()[0] != rows.len() {
            return Err(AttackError::config(
                "rows",
                format!(
                    "{} candidates offered for {} rows",
                    candidates.dims()[0],
                    rows.len()
                ),
            ));
        }
        let x0 = self.x0_rows(rows);
        let projected = self.threat.project(&x0, candidates.clone());
        let moved = to_vec(projected.clone().sub(candidates).abs().max())
            .first()
            .is_none_or(|&m| m.is_nan() || m > PROJECTION_TOLERANCE);
        let logits = match logits {
            Some(l) if !moved => l,
            _ => {
                self.rescored += rows.len();
                self.judge.scores(projected.clone())?
            }
        };
        let k = self.judge.num_classes();
        let predicted = argmax_rows(&to_vec(logits), k);
        let values = to_vec(projected.clone());
        let delta = to_vec(projected.sub(x0));
        let n = values.len() / rows.len();
        let dists = self.threat.norm.of_rows(&delta, n);
        let mut out = Vec::with_capacity(rows.len());
        for (i, &r) in rows.iter().enumerate() {
            let adv = self.is_adv(r, predicted[i]);
            if adv && dists[i] < self.dist[r] {
                self.best[r * n..(r + 1) * n].copy_from_slice(&values[i * n..(i + 1) * n]);
                self.dist[r] = dists[i];
                self.success[r] = true;
            }
            out.push(adv);
        }
        Ok(out)
    }

    /// Re-queries the model on the kept examples and reports the result.
    pub fn finish(self) -> Result<TrackerResult, AttackError> {
        let dims = self.x0.dims();
        let device = self.x0.device();
        let n = dims[1] * dims[2] * dims[3];
        let x_adv = Tensor::<4>::from_data(TensorData::new(self.best.clone(), dims), &device);
        let predicted = argmax_rows(&to_vec(self.judge.scores(x_adv)?), self.judge.num_classes());
        let mut success = Vec::with_capacity(self.len());
        let mut not_reproduced = Vec::new();
        let mut distance = Vec::with_capacity(self.len());
        for (r, &p) in predicted.iter().enumerate() {
            let fresh = self.is_adv(r, p);
            if self.success[r] && !fresh {
                not_reproduced.push(r);
            }
            success.push(fresh);
            let d: Vec<f32> = self.best[r * n..(r + 1) * n]
                .iter()
                .zip(&self.x0_host[r * n..(r + 1) * n])
                .map(|(a, b)| a - b)
                .collect();
            distance.push(self.threat.norm.of_rows(&d, n)[0]);
        }
        Ok(TrackerResult {
            x_adv: self.best,
            success,
            predicted,
            distance,
            not_reproduced,
            rescored: self.rescored,
        })
    }
}

/// Rows `rows` of a batch, in that order.
pub fn select_rows(x: &Tensor<4>, rows: &[usize]) -> Tensor<4> {
    let device = x.device();
    let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [rows.len()]), &device);
    x.clone().select(0, idx)
}

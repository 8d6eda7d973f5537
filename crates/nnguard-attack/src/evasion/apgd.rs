//! Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"): PGD with momentum 0.75 and a step size that
//! starts at 2ε and is halved per input at checkpoints (after 22% of the iterations, then at
//! intervals shrinking by 3% down to 6%) when the loss rose in fewer than ρ = 75% of the
//! steps since the last checkpoint, or when the step size was not reduced last time and the
//! best loss has not improved since; a halving restarts from the best point found.
//!
//! Losses: cross-entropy or the difference of logits ratio (DLR), untargeted; APGD-T runs the
//! targeted DLR loss (or the targeted cross-entropy) once per target class, taking the
//! classes ranked 2nd, 3rd, ... by the clean logits as targets, and counts any
//! misclassification as a success (as AutoAttack does). When the tracker itself is targeted,
//! its targets are used instead.

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use nnguard_model::{Differentiable, InputGradient, Loss};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::deepfool::ranked_classes;
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::tracker::select_rows;

/// Settings of [`Apgd`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApgdConfig {
    /// Norm of the ball (L∞ or L2).
    pub norm: Norm,
    /// Radius of the ball.
    pub eps: f32,
    /// Iterations per run.
    pub steps: usize,
    /// Runs from random starts (per target class for APGD-T); later runs attack only the
    /// inputs still unbroken.
    pub restarts: usize,
    /// Cross-entropy or DLR.
    pub loss: Loss,
    /// APGD-T: attack the top `n` other classes of the clean logits, one after the other.
    /// `None` for the untargeted attack.
    pub target_classes: Option<usize>,
    /// Fraction ρ of steps since the last checkpoint in which the loss must have risen to
    /// keep the step size.
    pub rho: f32,
    /// Weight of the new step against the previous one (the paper's α = 0.75).
    pub momentum: f32,
}

impl Default for ApgdConfig {
    /// L∞, ε = 8/255, 100 iterations, one run, cross-entropy, untargeted, ρ = 0.75,
    /// momentum 0.75 (the paper's and AutoAttack's standard values).
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            steps: 100,
            restarts: 1,
            loss: Loss::CrossEntropy,
            target_classes: None,
            rho: 0.75,
            momentum: 0.75,
        }
    }
}

impl ApgdConfig {
    /// APGD-T as in AutoAttack: the targeted DLR loss over the top 9 target classes.
    pub fn targeted() -> Self {
        Self {
            loss: Loss::Dlr,
            target_classes: Some(9),
            ..Self::default()
        }
    }

    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Apgd, AttackError> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be ≥ 0, got {}", self.eps),
            ));
        }
        if self.norm == Norm::L1 {
            return Err(AttackError::config("--norm", "APGD supports linf and l2"));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        AttackError::at_least_one("--restarts", self.restarts as u64)?;
        if !matches!(self.loss, Loss::CrossEntropy | Loss::Dlr) {
            return Err(AttackError::config(
                "--loss",
                format!("APGD optimises cross-entropy or DLR, not {:?}", self.loss),
            ));
        }
        if self.target_classes == Some(0) {
            return Err(AttackError::config(
                "--target-classes",
                "must be at least 1",
            ));
        }
        if !(self.rho > 0.0 && self.rho <= 1.0) {
            return Err(AttackError::config(
                "--rho",
                format!("must be in (0, 1], got {}", self.rho),
            ));
        }
        if !(self.momentum >= 0.0 && self.momentum <= 1.0) {
            return Err(AttackError::config(
                "--momentum",
                format!("must be in [0, 1], got {}", self.momentum),
            ));
        }
        Ok(Apgd { config: self })
    }
}

/// A built APGD attack.
#[derive(Debug, Clone)]
pub struct Apgd {
    config: ApgdConfig,
}

impl Apgd {
    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: Some(self.config.eps),
            bounds,
        }
    }
}

/// The loss one run ascends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Objective {
    CrossEntropy,
    Dlr,
    TargetedCrossEntropy,
    TargetedDlr,
}

/// The targeted DLR loss of Croce and Hein (2020), per sample:
/// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e−12)`, where `π` ranks the logits in
/// decreasing order. It grows as the target's logit overtakes the true class's and, like
/// DLR, does not change when the logits are shifted or scaled. Needs at least 4 classes;
/// differentiable when `logits` is tracked (the ranking itself is not differentiated).
pub fn targeted_dlr_loss(logits: Tensor<2>, labels: &[u32], targets: &[u32]) -> Tensor<1> {
    let [b, k] = logits.dims();
    let device = logits.device();
    let ranked = ranked_classes(&to_vec(logits.clone().detach()), k, 4.min(k));
    let mut num = vec![0.0f32; b * k];
    let mut den = vec![0.0f32; b * k];
    for i in 0..b {
        num[i * k + targets[i] as usize] += 1.0;
        num[i * k + labels[i] as usize] -= 1.0;
        let r = &ranked[i];
        let at = |j: usize| r[j.min(r.len() - 1)] as usize;
        den[i * k + at(0)] += 1.0;
        den[i * k + at(2)] -= 0.5;
        den[i * k + at(3)] -= 0.5;
    }
    let num = Tensor::<2>::from_data(TensorData::new(num, [b, k]), &device);
    let den = Tensor::<2>::from_data(TensorData::new(den, [b, k]), &device);
    let top = logits.clone().mul(num).sum_dim(1);
    let spread = logits.mul(den).sum_dim(1).add_scalar(1e-12);
    top.div(spread).reshape([b])
}

fn gradient<M: Differentiable + ?Sized>(
    model: &M,
    x: Tensor<4>,
    objective: Objective,
    labels: &[u32],
    targets: &[u32],
) -> InputGradient {
    match objective {
        Objective::CrossEntropy => model.input_gradient(x, labels, Loss::CrossEntropy),
        Objective::Dlr => model.input_gradient(x, labels, Loss::Dlr),
        Objective::TargetedCrossEntropy => {
            model.input_gradient(x, targets, Loss::TargetedCrossEntropy)
        }
        Objective::TargetedDlr => {
            let xa = x.detach().autodiff().require_grad();
            let logits = model.forward(xa.clone());
            let loss = targeted_dlr_loss(logits.clone(), labels, targets);
            let grads = loss.clone().sum().backward();
            let grad = xa
                .grad(&grads)
                .unwrap_or_else(|| xa.clone().without_autodiff().zeros_like());
            InputGradient {
                grad,
                loss: loss.detach().without_autodiff(),
                logits: logits.detach().without_autodiff(),
            }
        }
    }
}

/// Per-row values as a `[b, 1, 1, 1]` tensor for broadcasting over images.
fn per_row(values: Vec<f32>, like: &Tensor<4>) -> Tensor<4> {
    let b = values.len();
    Tensor::from_data(TensorData::new(values, [b, 1, 1, 1]), &like.device())
}

/// `new` where `take` is set, `old` elsewhere (exactly, row by row).
fn blend(old: Tensor<4>, new: Tensor<4>, take: &[bool]) -> Tensor<4> {
    if !take.iter().any(|&t| t) {
        return old;
    }
    if take.iter().all(|&t| t) {
        return new;
    }
    let m: Vec<f32> = take.iter().map(|&t| if t { 1.0 } else { 0.0 }).collect();
    let m = per_row(m, &old);
    let keep = m.clone().neg().add_scalar(1.0);
    new.mul(m).add(old.mul(keep))
}

/// The state of one APGD run for the inputs still being attacked.
struct Run {
    ids: Vec<usize>,
    y: Vec<u32>,
    t: Vec<u32>,
    x0: Tensor<4>,
    x: Tensor<4>,
    x_prev: Tensor<4>,
    x_best: Tensor<4>,
    grad: Tensor<4>,
    grad_best: Tensor<4>,
    step: Vec<f32>,
    loss_last: Vec<f32>,
    loss_best: Vec<f32>,
    loss_best_checked: Vec<f32>,
    increases: Vec<usize>,
    reduced_last: Vec<bool>,
}

impl Run {
    fn retain(&mut self, keep: &[usize]) {
        fn pick<T: Copy>(v: &[T], keep: &[usize]) -> Vec<T> {
            keep.iter().map(|&i| v[i]).collect()
        }
        self.ids = pick(&self.ids, keep);
        self.y = pick(&self.y, keep);
        self.t = pick(&self.t, keep);
        self.step = pick(&self.step, keep);
        self.loss_last = pick(&self.loss_last, keep);
        self.loss_best = pick(&self.loss_best, keep);
        self.loss_best_checked = pick(&self.loss_best_checked, keep);
        self.increases = pick(&self.increases, keep);
        self.reduced_last = pick(&self.reduced_last, keep);
        for t in [
            &mut self.x0,
            &mut self.x,
            &mut self.x_prev,
            &mut self.x_best,
            &mut self.grad,
            &mut self.grad_best,
        ] {
            *t = select_rows(t, keep);
        }
    }

    /// Drops the inputs the tracker found adversarial; false when none is left.
    fn drop_adversarial(&mut self, adv: &[bool]) -> bool {
        if adv.iter().any(|&a| a) {
            let keep: Vec<usize> = (0..adv.len()).filter(|&i| !adv[i]).collect();
            self.retain(&keep);
        }
        !self.ids.is_empty()
    }
}

impl Apgd {
    /// AutoAttack's random start: a random point on the surface of the ball (scaled uniform
    /// noise for L∞, a Gaussian direction for L2), then clipped to the bounds.
    fn start(
        &self,
        x0: &Tensor<4>,
        threat: &Threat,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Tensor<4> {
        let dims = x0.dims();
        let n = dims[1] * dims[2] * dims[3];
        let eps = self.config.eps;
        let mut delta = Vec::with_capacity(dims[0] * n);
        for _ in 0..dims[0] {
            let t: Vec<f32> = match self.config.norm {
                Norm::L2 => (0..n).map(|_| StandardNormal.sample(rng)).collect(),
                _ => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            };
            let size = self.config.norm.of_rows(&t, n)[0] + 1e-12;
            delta.extend(t.iter().map(|v| eps * v / size));
        }
        let delta = Tensor::<4>::from_data(TensorData::new(delta, dims), &x0.device());
        threat.project(x0, x0.clone().add(delta))
    }

    /// One APGD run on `ids` (labels `y`, targets `t`), offering every iterate.
    #[allow(clippy::too_many_arguments)]
    fn single_run<M: Differentiable + ?Sized>(
        &self,
        model: &M,
        ctx: &mut AttackContext<'_>,
        ids: Vec<usize>,
        y: Vec<u32>,
        t: Vec<u32>,
        objective: Objective,
        done_before: usize,
        total: usize,
    ) -> Result<(), AttackError> {
        let c = &self.config;
        let threat = ctx.tracker.threat();
        let x0 = ctx.tracker.x0_rows(&ids);
        let x = self.start(&x0, &threat, &mut ctx.rng);
        let g = gradient(model, x.clone(), objective, &y, &t);
        let adv = ctx.tracker.offer(&ids, x.clone(), Some(g.logits))?;
        let loss = to_vec(g.loss);
        let b = ids.len();
        let mut run = Run {
            ids,
            y,
            t,
            x0,
            x_prev: x.clone(),
            x_best: x.clone(),
            x,
            grad_best: g.grad.clone(),
            grad: g.grad,
            step: vec![2.0 * c.eps; b],
            loss_last: loss.clone(),
            loss_best: loss.clone(),
            loss_best_checked: loss,
            increases: vec![0; b],
            reduced_last: vec![true; b],
        };
        if !run.drop_adversarial(&adv) {
            return Ok(());
        }
        let first_check = ((0.22 * c.steps as f64) as usize).max(1);
        let min_check = ((0.06 * c.steps as f64) as usize).max(1);
        let shrink = ((0.03 * c.steps as f64) as usize).max(1);
        let mut interval = first_check;
        let mut since_check = 0;
        for i in 0..c.steps {
            // Gradient step, then momentum with the previous step, each projected.
            let scale: Vec<f32> = match c.norm {
                Norm::L2 => {
                    let norms = Norm::L2.per_sample(&run.grad);
                    run.step
                        .iter()
                        .zip(norms)
                        .map(|(s, n)| s / (n + 1e-12))
                        .collect()
                }
                _ => run.step.clone(),
            };
            let dir = match c.norm {
                Norm::L2 => run.grad.clone(),
                _ => run.grad.clone().sign(),
            };
            let z = threat.project(&run.x0, run.x.clone().add(dir.mul(per_row(scale, &run.x))));
            let a = if i == 0 { 1.0 } else { c.momentum };
            let moved = run
                .x
                .clone()
                .add(z.sub(run.x.clone()).mul_scalar(a))
                .add(run.x.clone().sub(run.x_prev.clone()).mul_scalar(1.0 - a));
            run.x_prev = run.x.clone();
            run.x = threat.project(&run.x0, moved);
            let g = gradient(model, run.x.clone(), objective, &run.y, &run.t);
            let adv = ctx.tracker.offer(&run.ids, run.x.clone(), Some(g.logits))?;
            run.grad = g.grad;
            let loss = to_vec(g.loss);
            let mut improved = vec![false; loss.len()];
            for (j, &l) in loss.iter().enumerate() {
                if l > run.loss_last[j] {
                    run.increases[j] += 1;
                }
                run.loss_last[j] = l;
                if l > run.loss_best[j] {
                    run.loss_best[j] = l;
                    improved[j] = true;
                }
            }
            run.x_best = blend(run.x_best.clone(), run.x.clone(), &improved);
            run.grad_best = blend(run.grad_best.clone(), run.grad.clone(), &improved);
            since_check += 1;
            if since_check == interval {
                let mut reduce = vec![false; loss.len()];
                for (j, r) in reduce.iter_mut().enumerate() {
                    let oscillating = run.increases[j] as f32 <= interval as f32 * c.rho;
                    let stalled =
                        !run.reduced_last[j] && run.loss_best_checked[j] >= run.loss_best[j];
                    *r = oscillating || stalled;
                    if *r {
                        run.step[j] /= 2.0;
                    }
                    run.reduced_last[j] = *r;
                    run.loss_best_checked[j] = run.loss_best[j];
                    run.increases[j] = 0;
                }
                run.x = blend(run.x.clone(), run.x_best.clone(), &reduce);
                run.grad = blend(run.grad.clone(), run.grad_best.clone(), &reduce);
                interval = interval.saturating_sub(shrink).max(min_check);
                since_check = 0;
            }
            ctx.tick(done_before + i + 1, total);
            if !run.drop_adversarial(&adv) {
                break;
            }
        }
        Ok(())
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Apgd {
    fn name(&self) -> String {
        let c = &self.config;
        let base = match (c.target_classes.is_some(), c.loss) {
            (true, Loss::CrossEntropy) => "apgd-t-ce",
            (true, _) => "apgd-t",
            (false, Loss::CrossEntropy) => "apgd-ce",
            (false, _) => "apgd-dlr",
        };
        match c.norm {
            Norm::Linf => base.into(),
            n => format!("{base}-{n}"),
        }
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let c = &self.config;
        let k = model.num_classes();
        let tracker_targeted = ctx.tracker.is_targeted();
        let targeted = tracker_targeted || c.target_classes.is_some();
        let objective = match (targeted, c.loss) {
            (false, Loss::CrossEntropy) => Objective::CrossEntropy,
            (false, _) => Objective::Dlr,
            (true, Loss::CrossEntropy) => Objective::TargetedCrossEntropy,
            (true, _) => Objective::TargetedDlr,
        };
        let needed = match objective {
            Objective::TargetedDlr => 4,
            Objective::Dlr => 3,
            _ => 2,
        };
        if k < needed {
            return Err(AttackError::Unsupported {
                attack: EvasionAttack::<M>::name(self),
                reason: format!(
                    "its loss needs at least {needed} classes, the model has {k}; use --loss ce"
                ),
            });
        }
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        // The clean logits rank the target classes; misclassified inputs are done at once.
        let x0 = ctx.tracker.x0_rows(&rows);
        let clean = model.logits(x0.clone());
        let ranked = ranked_classes(&to_vec(clean.clone()), k, k);
        ctx.tracker.offer(&rows, x0, Some(clean))?;
        let mut rank_of = vec![Vec::new(); ctx.tracker.len()];
        for (i, &r) in rows.iter().enumerate() {
            rank_of[r] = ranked[i].clone();
        }
        let ranks: Vec<Option<usize>> = match c.target_classes {
            Some(n) if !tracker_targeted => (1..=n.min(k - 1)).map(Some).collect(),
            _ => vec![None],
        };
        let total = ranks.len() * c.restarts * c.steps;
        let mut done = 0;
        for rank in ranks {
            for _ in 0..c.restarts {
                let ids = ctx.tracker.active();
                if ids.is_empty() {
                    return Ok(());
                }
                let y: Vec<u32> = ids.iter().map(|&r| ctx.tracker.labels()[r]).collect();
                let t: Vec<u32> = match rank {
                    Some(rank) => ids.iter().map(|&r| rank_of[r][rank]).collect(),
                    None => ctx.tracker.objective_labels(&ids),
                };
                self.single_run(model, ctx, ids, y, t, objective, done, total)?;
                done += c.steps;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::cpu;

    #[test]
    fn targeted_dlr_matches_hand_computed_values() {
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![4.0f32, 1.0, 3.0, 0.0, -2.0], [1, 5]),
            &cpu(),
        );
        // y = 0, t = 2: −(4 − 3) / (4 − (1 + 0)/2) = −1/3.5
        let l = to_vec(targeted_dlr_loss(z.clone(), &[0], &[2]))[0];
        assert!((l + 1.0 / 3.5).abs() < 1e-6, "{l}");
        // Shifting and scaling the logits leaves it unchanged.
        let l2 = to_vec(targeted_dlr_loss(
            z.mul_scalar(3.0).add_scalar(7.0),
            &[0],
            &[2],
        ))[0];
        assert!((l2 - l).abs() < 1e-6, "{l2}");
    }
}

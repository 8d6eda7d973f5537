//! Carlini and Wagner (2017, "Towards Evaluating the Robustness of Neural Networks"):
//!
//! - [`CwL2`]: the L2 attack. It optimises `w` with `x = lo + (hi − lo)·(tanh(w) + 1)/2`
//!   (so every iterate is inside the bounds) and minimises `‖x − x₀‖₂² + c·f(x)` with Adam,
//!   where `f(x) = max(z_y − max_{j≠y} z_j, −κ)` (untargeted) or
//!   `max(max_{j≠t} z_j − z_t, −κ)` (targeted). A binary search over `c` per input follows
//!   the paper: halve the bracket after a success, multiply `c` by 10 while none was found.
//!   Every iterate is offered to the tracker, which keeps the smallest adversarial one.
//! - [`CwLinf`]: the L∞ version used in practice since Madry et al. (2018, "Towards Deep
//!   Learning Models Resistant to Adversarial Attacks", the "CW" rows of their evaluation):
//!   projected gradient ascent inside the ε-ball on the same margin loss, capped at κ.

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use nnguard_model::{Differentiable, Loss};

use super::deepfool::offer_raw;
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::steps::{ascent_direction, random_start};
use crate::tracker::select_rows;

/// Adam's decay rates and stabiliser (Kingma and Ba 2015; PyTorch's defaults).
const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
/// Keeps `atanh` finite at the bounds.
const TANH_SHRINK: f32 = 1.0 - 1e-6;
/// Early abort: a binary-search step ends when the summed loss fell by less than this factor
/// since the last check (Carlini and Wagner's 0.01%).
const ABORT_PROGRESS: f32 = 0.9999;
/// An upper bracket of `c` that was never narrowed.
const C_UNBOUNDED: f32 = 1e10;

/// Settings of [`CwL2`].
#[derive(Debug, Clone, PartialEq)]
pub struct CwL2Config {
    /// Initial trade-off constant `c` between distance and misclassification.
    pub c: f32,
    /// Confidence κ: how far past the decision boundary the loss keeps pushing.
    pub kappa: f32,
    /// Adam steps per binary-search step.
    pub steps: usize,
    /// Adam learning rate (in `tanh` space).
    pub lr: f32,
    /// Binary-search steps over `c` (1: keep `c` fixed).
    pub binary_search_steps: usize,
    /// End a binary-search step once the summed loss stops falling (checked every
    /// `steps/10` steps), as in the paper's code.
    pub abort_early: bool,
}

impl Default for CwL2Config {
    /// c = 1, κ = 0, 100 steps of Adam with learning rate 0.01, 5 binary-search steps,
    /// aborting early.
    fn default() -> Self {
        Self {
            c: 1.0,
            kappa: 0.0,
            steps: 100,
            lr: 0.01,
            binary_search_steps: 5,
            abort_early: true,
        }
    }
}

impl CwL2Config {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<CwL2, AttackError> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(AttackError::config(
                "--c",
                format!("must be > 0, got {}", self.c),
            ));
        }
        if !(self.kappa.is_finite() && self.kappa >= 0.0) {
            return Err(AttackError::config(
                "--kappa",
                format!("must be ≥ 0, got {}", self.kappa),
            ));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(AttackError::config(
                "--step",
                format!("the learning rate must be > 0, got {}", self.lr),
            ));
        }
        if self.binary_search_steps == 0 {
            return Err(AttackError::config(
                "--binary-search-steps",
                "must be at least 1",
            ));
        }
        Ok(CwL2 { config: self })
    }
}

/// A built Carlini-Wagner L2 attack.
#[derive(Debug, Clone)]
pub struct CwL2 {
    config: CwL2Config,
}

impl CwL2 {
    /// The threat model the attack works in: unbounded L2 (minimal perturbation).
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: Norm::L2,
            eps: None,
            bounds,
        }
    }
}

/// Per-row values as a `[b, 1, 1, 1]` tensor for broadcasting over images.
fn per_row(values: Vec<f32>, like: &Tensor<4>) -> Tensor<4> {
    let b = values.len();
    Tensor::from_data(TensorData::new(values, [b, 1, 1, 1]), &like.device())
}

/// The inputs of one binary-search step still being optimised.
struct Active {
    /// Positions in the run's row list.
    pos: Vec<usize>,
    x0: Tensor<4>,
    w: Tensor<4>,
    m: Tensor<4>,
    v: Tensor<4>,
    y: Vec<u32>,
    c: Vec<f32>,
}

impl Active {
    fn retain(&mut self, keep: &[usize]) {
        self.pos = keep.iter().map(|&i| self.pos[i]).collect();
        self.y = keep.iter().map(|&i| self.y[i]).collect();
        self.c = keep.iter().map(|&i| self.c[i]).collect();
        self.x0 = select_rows(&self.x0, keep);
        self.w = select_rows(&self.w, keep);
        self.m = select_rows(&self.m, keep);
        self.v = select_rows(&self.v, keep);
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for CwL2 {
    fn name(&self) -> String {
        "cw-l2".into()
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let cfg = &self.config;
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let threat = ctx.tracker.threat();
        let (lo, hi) = threat.bounds;
        let half = (hi - lo) / 2.0;
        // In an ε-bounded evaluation any adversarial example counts, so an input is done once
        // it has one; unbounded, the attack keeps shrinking the perturbation.
        let stop_when_adversarial = threat.eps.is_some();
        // Untargeted: f = max(−margin_y, −κ); targeted: f = max(margin_t, −κ).
        let s = if ctx.tracker.is_targeted() { 1.0 } else { -1.0 };
        let kappa = cfg.kappa;
        let labels = ctx.tracker.objective_labels(&rows);
        let x0_all = ctx.tracker.x0_rows(&rows);
        let w0 = x0_all
            .clone()
            .sub_scalar(lo)
            .div_scalar(half)
            .sub_scalar(1.0)
            .mul_scalar(TANH_SHRINK)
            .atanh();
        let b = rows.len();
        let mut c = vec![cfg.c; b];
        let mut lower = vec![0.0f32; b];
        let mut upper = vec![C_UNBOUNDED; b];
        let check_every = cfg.steps.div_ceil(10).max(1);
        let total = cfg.steps * cfg.binary_search_steps;
        for search in 0..cfg.binary_search_steps {
            let live: Vec<usize> = (0..b)
                .filter(|&i| !(stop_when_adversarial && ctx.tracker.is_adversarial(rows[i])))
                .collect();
            if live.is_empty() {
                break;
            }
            let mut found = vec![false; b];
            let w = select_rows(&w0, &live);
            let mut a = Active {
                x0: select_rows(&x0_all, &live),
                m: w.zeros_like(),
                v: w.zeros_like(),
                w,
                y: live.iter().map(|&i| labels[i]).collect(),
                c: live.iter().map(|&i| c[i]).collect(),
                pos: live,
            };
            let mut previous = f64::INFINITY;
            for step in 0..cfg.steps {
                let tanh = a.w.clone().tanh();
                let x = tanh.clone().add_scalar(1.0).mul_scalar(half).add_scalar(lo);
                let g = model.input_gradient(x.clone(), &a.y, Loss::Margin);
                let ids: Vec<usize> = a.pos.iter().map(|&p| rows[p]).collect();
                let adv = offer_raw(&mut ctx.tracker, &ids, x.clone(), g.logits)?;
                let margin = to_vec(g.loss);
                let delta = x.sub(a.x0.clone());
                let dist2: Vec<f32> = Norm::L2.per_sample(&delta).iter().map(|d| d * d).collect();
                // ∂f/∂x is s·∂margin/∂x where the hinge is active, else 0.
                let mut coef = Vec::with_capacity(margin.len());
                let mut loss = Vec::with_capacity(margin.len());
                for i in 0..margin.len() {
                    let f = s * margin[i];
                    if adv[i] && f <= -kappa {
                        found[a.pos[i]] = true;
                    }
                    coef.push(if f > -kappa { a.c[i] * s } else { 0.0 });
                    loss.push(dist2[i] + a.c[i] * f.max(-kappa));
                }
                let dx = delta.mul_scalar(2.0).add(g.grad.mul(per_row(coef, &a.w)));
                // Chain rule through x = lo + half·(tanh(w) + 1).
                let dw = dx.mul(tanh.powi_scalar(2).neg().add_scalar(1.0).mul_scalar(half));
                let t = (step + 1) as i32;
                a.m =
                    a.m.clone()
                        .mul_scalar(ADAM_BETA1)
                        .add(dw.clone().mul_scalar(1.0 - ADAM_BETA1));
                a.v =
                    a.v.clone()
                        .mul_scalar(ADAM_BETA2)
                        .add(dw.powi_scalar(2).mul_scalar(1.0 - ADAM_BETA2));
                let m_hat = a.m.clone().div_scalar(1.0 - ADAM_BETA1.powi(t));
                let v_hat = a.v.clone().div_scalar(1.0 - ADAM_BETA2.powi(t));
                a.w = a.w.clone().sub(
                    m_hat
                        .div(v_hat.sqrt().add_scalar(ADAM_EPS))
                        .mul_scalar(cfg.lr),
                );
                let done: Vec<bool> = ids
                    .iter()
                    .map(|&r| stop_when_adversarial && ctx.tracker.is_adversarial(r))
                    .collect();
                if cfg.abort_early && (step + 1) % check_every == 0 {
                    // Carlini and Wagner's rule: stop once the summed loss stalls.
                    let sum: f64 = loss.iter().map(|&l| f64::from(l)).sum();
                    if sum > f64::from(ABORT_PROGRESS) * previous {
                        break;
                    }
                    previous = sum;
                }
                if done.iter().any(|&d| d) {
                    let keep: Vec<usize> = (0..done.len()).filter(|&i| !done[i]).collect();
                    if keep.is_empty() {
                        break;
                    }
                    a.retain(&keep);
                }
                ctx.tick(search * cfg.steps + step + 1, total);
            }
            // Binary search: shrink c after a success, grow it while none was found.
            for i in 0..b {
                if found[i] {
                    upper[i] = upper[i].min(c[i]);
                    c[i] = (lower[i] + upper[i]) / 2.0;
                } else {
                    lower[i] = lower[i].max(c[i]);
                    c[i] = if upper[i] < C_UNBOUNDED {
                        (lower[i] + upper[i]) / 2.0
                    } else {
                        c[i] * 10.0
                    };
                }
            }
        }
        Ok(())
    }
}

/// Settings of [`CwLinf`].
#[derive(Debug, Clone, PartialEq)]
pub struct CwLinfConfig {
    /// Radius of the L∞ ball.
    pub eps: f32,
    /// Step size; `None` means `2.5·ε/steps` (Madry et al.).
    pub step: Option<f32>,
    /// Gradient steps per restart.
    pub steps: usize,
    /// Independent runs from random starts; later runs attack only unbroken inputs.
    pub restarts: usize,
    /// Confidence κ: an input is done once its margin past the boundary reaches κ.
    pub kappa: f32,
    /// Start from a random point of the ball.
    pub random_start: bool,
}

impl Default for CwLinfConfig {
    /// ε = 8/255, 50 steps of 2.5ε/50, one random start, κ = 0.
    fn default() -> Self {
        Self {
            eps: 8.0 / 255.0,
            step: None,
            steps: 50,
            restarts: 1,
            kappa: 0.0,
            random_start: true,
        }
    }
}

impl CwLinfConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<CwLinf, AttackError> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be ≥ 0, got {}", self.eps),
            ));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        AttackError::at_least_one("--restarts", self.restarts as u64)?;
        if let Some(s) = self.step
            && !(s.is_finite() && s > 0.0)
        {
            return Err(AttackError::config(
                "--step",
                format!("must be > 0, got {s}"),
            ));
        }
        if !(self.kappa.is_finite() && self.kappa >= 0.0) {
            return Err(AttackError::config(
                "--kappa",
                format!("must be ≥ 0, got {}", self.kappa),
            ));
        }
        Ok(CwLinf { config: self })
    }
}

/// A built Carlini-Wagner L∞ attack (PGD on the CW margin loss).
#[derive(Debug, Clone)]
pub struct CwLinf {
    config: CwLinfConfig,
}

impl CwLinf {
    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: Norm::Linf,
            eps: Some(self.config.eps),
            bounds,
        }
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for CwLinf {
    fn name(&self) -> String {
        "cw-linf".into()
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let cfg = &self.config;
        let threat = ctx.tracker.threat();
        // Ascend the margin (untargeted) or its negative (targeted) until it reaches κ.
        let s = if ctx.tracker.is_targeted() { -1.0 } else { 1.0 };
        let alpha = cfg.step.unwrap_or(2.5 * cfg.eps / cfg.steps as f32);
        let total = cfg.steps * cfg.restarts;
        for restart in 0..cfg.restarts {
            let mut rows = ctx.tracker.active();
            if rows.is_empty() {
                break;
            }
            let mut x0 = ctx.tracker.x0_rows(&rows);
            let mut x = if cfg.random_start {
                random_start(&x0, &threat, &mut ctx.rng)
            } else {
                x0.clone()
            };
            let mut y = ctx.tracker.objective_labels(&rows);
            for step in 0..cfg.steps {
                let g = model.input_gradient(x.clone(), &y, Loss::Margin);
                let adv = ctx.tracker.offer(&rows, x.clone(), Some(g.logits))?;
                let margin = to_vec(g.loss);
                let done: Vec<bool> = (0..rows.len())
                    .map(|i| adv[i] && s * margin[i] >= cfg.kappa)
                    .collect();
                let mut grad = g.grad;
                if done.iter().any(|&d| d) {
                    let keep: Vec<usize> = (0..done.len()).filter(|&i| !done[i]).collect();
                    rows = keep.iter().map(|&i| rows[i]).collect();
                    if rows.is_empty() {
                        break;
                    }
                    y = keep.iter().map(|&i| y[i]).collect();
                    x0 = select_rows(&x0, &keep);
                    x = select_rows(&x, &keep);
                    grad = select_rows(&grad, &keep);
                }
                let next = x.add(ascent_direction(grad, Norm::Linf).mul_scalar(alpha * s));
                x = threat.project(&x0, next);
                ctx.tick(restart * cfg.steps + step + 1, total);
            }
            if !rows.is_empty() {
                let logits = model.logits(x.clone());
                ctx.tracker.offer(&rows, x, Some(logits))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_change_of_variables_round_trips() {
        let d = nnguard_model::tensor::cpu();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.0f32, 0.25, 0.5, 1.0], [1, 1, 2, 2]),
            &d,
        );
        let w = x
            .clone()
            .mul_scalar(2.0)
            .sub_scalar(1.0)
            .mul_scalar(TANH_SHRINK)
            .atanh();
        let back = to_vec(w.tanh().add_scalar(1.0).mul_scalar(0.5));
        for (a, b) in back.iter().zip(to_vec(x)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

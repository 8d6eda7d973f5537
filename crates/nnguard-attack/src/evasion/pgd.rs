//! Projected Gradient Descent (Madry et al. 2018, "Towards Deep Learning Models Resistant
//! to Adversarial Attacks"; BIM of Kurakin et al. 2017 without the random start), for L∞, L2
//! and L1, with random restarts, optional momentum (MI-FGSM, Dong et al. 2018) and early
//! stopping of inputs that are already adversarial.

use nnguard_model::tensor::{Tensor, TensorData};
use nnguard_model::{Differentiable, Loss};

use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::steps::{Working, ascent_direction, objective, random_start};
use crate::tracker::select_rows;

/// Settings of [`Pgd`].
#[derive(Debug, Clone, PartialEq)]
pub struct PgdConfig {
    /// Norm of the ball.
    pub norm: Norm,
    /// Radius of the ball.
    pub eps: f32,
    /// Step size; `None` means `2.5·ε/steps` (Madry et al.).
    pub step: Option<f32>,
    /// Gradient steps per restart.
    pub steps: usize,
    /// Start from a random point of the ball (PGD) rather than the input (BIM).
    pub random_start: bool,
    /// Independent runs; each later run attacks only the inputs still unbroken.
    pub restarts: usize,
    /// Loss to ascend.
    pub loss: Loss,
    /// Momentum decay μ of MI-FGSM; `None` for plain PGD.
    pub momentum: Option<f32>,
    /// Stop iterating on an input once it is adversarial.
    pub early_stop: bool,
}

impl Default for PgdConfig {
    /// L∞, ε = 8/255, 20 steps of 2.5ε/20, random start, one restart, cross-entropy.
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            step: None,
            steps: 20,
            random_start: true,
            restarts: 1,
            loss: Loss::CrossEntropy,
            momentum: None,
            early_stop: true,
        }
    }
}

impl PgdConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Pgd, AttackError> {
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
        if let Some(mu) = self.momentum
            && !(mu.is_finite() && mu >= 0.0)
        {
            return Err(AttackError::config(
                "--momentum",
                format!("must be ≥ 0, got {mu}"),
            ));
        }
        Ok(Pgd { config: self })
    }
}

/// A built PGD attack.
#[derive(Debug, Clone)]
pub struct Pgd {
    config: PgdConfig,
}

impl Pgd {
    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: Some(self.config.eps),
            bounds,
        }
    }

    fn step_size(&self) -> f32 {
        self.config
            .step
            .unwrap_or(2.5 * self.config.eps / self.config.steps as f32)
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Pgd {
    fn name(&self) -> String {
        let base = match (self.config.momentum.is_some(), self.config.random_start) {
            (true, _) => "mi-fgsm",
            (false, true) => "pgd",
            (false, false) => "bim",
        };
        match self.config.norm {
            Norm::Linf => base.to_string(),
            n => format!("{base}-{n}"),
        }
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let c = &self.config;
        let threat = ctx.tracker.threat();
        let (loss, sign) = objective(c.loss, ctx.tracker.is_targeted());
        let alpha = self.step_size() * sign;
        let total = c.steps * c.restarts;
        for restart in 0..c.restarts {
            let rows = ctx.tracker.active();
            if rows.is_empty() {
                break;
            }
            let x0 = ctx.tracker.x0_rows(&rows);
            let x = if c.random_start {
                random_start(&x0, &threat, &mut ctx.rng)
            } else {
                x0.clone()
            };
            let y = ctx.tracker.objective_labels(&rows);
            let mut w = Working { rows, x0, x, y };
            let mut velocity: Option<Tensor<4>> = None;
            for step in 0..c.steps {
                let g = model.input_gradient(w.x.clone(), &w.y, loss);
                let adv = ctx.tracker.offer(&w.rows, w.x.clone(), Some(g.logits))?;
                let mut grad = g.grad;
                if c.early_stop {
                    let keep: Vec<usize> = (0..adv.len()).filter(|&i| !adv[i]).collect();
                    if keep.len() < adv.len() {
                        grad = select_rows(&grad, &keep);
                        velocity = velocity.map(|v| select_rows(&v, &keep));
                        if !w.retain(&adv) {
                            break;
                        }
                    }
                }
                if c.norm == Norm::L1 {
                    // The sparse L1 step must not spend its budget on pixels the bounds hold.
                    grad = movable(grad, &w.x, threat.bounds, alpha);
                }
                if let Some(mu) = c.momentum {
                    // MI-FGSM: accumulate gradients divided by their (dense) L1 norm.
                    let unit = l1_normalised(grad);
                    grad = match velocity.take() {
                        Some(v) => v.mul_scalar(mu).add(unit),
                        None => unit,
                    };
                    velocity = Some(grad.clone());
                }
                let next =
                    w.x.clone()
                        .add(ascent_direction(grad, c.norm).mul_scalar(alpha));
                w.x = threat.project(&w.x0, next);
                ctx.tick(restart * c.steps + step + 1, total);
            }
            if !w.rows.is_empty() {
                let logits = model.logits(w.x.clone());
                ctx.tracker.offer(&w.rows, w.x, Some(logits))?;
            }
        }
        Ok(())
    }
}

/// `g` with the coordinates zeroed that a step along `sign(step·g)` cannot move because the
/// iterate `x` sits at that bound (the box-aware sparse ascent of Tramèr and Boneh 2019).
fn movable(g: Tensor<4>, x: &Tensor<4>, (lo, hi): (f32, f32), step: f32) -> Tensor<4> {
    let dir = g.clone().mul_scalar(step);
    let at_low = x
        .clone()
        .lower_equal_elem(lo)
        .bool_and(dir.clone().lower_elem(0.0));
    let at_high = x
        .clone()
        .greater_equal_elem(hi)
        .bool_and(dir.greater_elem(0.0));
    g.mask_fill(at_low.bool_or(at_high), 0.0)
}

/// Each sample of `g` divided by its L1 norm (Dong et al. 2018's normalisation).
fn l1_normalised(g: Tensor<4>) -> Tensor<4> {
    let dims = g.dims();
    let inv: Vec<f32> = Norm::L1
        .per_sample(&g)
        .iter()
        .map(|&n| 1.0 / n.max(1e-12))
        .collect();
    let s = Tensor::<4>::from_data(TensorData::new(inv, [dims[0], 1, 1, 1]), &g.device());
    g.mul(s)
}

//! Fast Gradient Sign Method (Goodfellow, Shlens and Szegedy 2015, "Explaining and
//! Harnessing Adversarial Examples"): one step of size ε along the sign of the loss gradient
//! (L∞), or along the normalised gradient (L2, "FGM").

use nnguard_model::{Differentiable, Loss};

use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::steps::{ascent_direction, objective};

/// Settings of [`Fgsm`].
#[derive(Debug, Clone, PartialEq)]
pub struct FgsmConfig {
    /// Norm of the step (L∞ or L2).
    pub norm: Norm,
    /// Step size = perturbation budget.
    pub eps: f32,
    /// Loss whose gradient is followed.
    pub loss: Loss,
}

impl Default for FgsmConfig {
    /// L∞, ε = 8/255, cross-entropy.
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            loss: Loss::CrossEntropy,
        }
    }
}

impl FgsmConfig {
    /// Checks the parameters.
    pub fn build(self) -> Result<Fgsm, AttackError> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be ≥ 0, got {}", self.eps),
            ));
        }
        if self.norm == Norm::L1 {
            return Err(AttackError::config("--norm", "FGSM supports linf and l2"));
        }
        Ok(Fgsm { config: self })
    }
}

/// A built FGSM attack.
#[derive(Debug, Clone)]
pub struct Fgsm {
    config: FgsmConfig,
}

impl Fgsm {
    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: Some(self.config.eps),
            bounds,
        }
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Fgsm {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::Linf => "fgsm".into(),
            _ => format!("fgm-{}", self.config.norm),
        }
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let (loss, sign) = objective(self.config.loss, ctx.tracker.is_targeted());
        let x0 = ctx.tracker.x0_rows(&rows);
        let y = ctx.tracker.objective_labels(&rows);
        let g = model.input_gradient(x0.clone(), &y, loss);
        let step = ascent_direction(g.grad, self.config.norm).mul_scalar(self.config.eps * sign);
        let x = x0.add(step);
        ctx.tracker.offer(&rows, x, None)?;
        ctx.tick(1, 1);
        Ok(())
    }
}

//! Universal adversarial perturbation (Moosavi-Dezfooli, Fawzi, Fawzi and Frossard 2017,
//! "Universal adversarial perturbations"): one perturbation `v` with `‖v‖ ≤ ε` that, added to
//! every input, changes as many predictions as possible. `v` is found with the stochastic
//! gradient formulation of Shafahi, Najibi, Xu, Dickerson, Davis and Goldstein (2020,
//! "Universal adversarial training"): projected ascent steps on the loss summed over
//! mini-batches of the inputs, where, as in the original algorithm's per-input updates, only
//! inputs that `v` does not fool yet contribute. After every pass over the inputs the fooling
//! rate of `v` is measured; the best `v` is offered for every input (one perturbation for
//! all, so the tracker sees a universal result).

use std::sync::Mutex;

use nnguard_model::tensor::{Tensor, TensorData, argmax_rows, to_vec};
use nnguard_model::{Differentiable, Loss};
use rand::seq::SliceRandom;

use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::steps::{ascent_direction, objective};

/// Settings of [`Uap`].
#[derive(Debug, Clone, PartialEq)]
pub struct UapConfig {
    /// Norm of the ball (L∞ or L2).
    pub norm: Norm,
    /// Radius of the ball.
    pub eps: f32,
    /// Passes over the inputs.
    pub epochs: usize,
    /// Inputs per ascent step.
    pub batch: usize,
    /// Step size; `None` means ε/10.
    pub step: Option<f32>,
    /// Stop once this fraction of the inputs is fooled.
    pub target_fooling_rate: f32,
}

impl Default for UapConfig {
    /// L∞, ε = 8/255, 10 passes of batches of 32 with steps of ε/10, until every input is
    /// fooled.
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            epochs: 10,
            batch: 32,
            step: None,
            target_fooling_rate: 1.0,
        }
    }
}

impl UapConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Uap, AttackError> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be ≥ 0, got {}", self.eps),
            ));
        }
        if self.norm == Norm::L1 {
            return Err(AttackError::config("--norm", "UAP supports linf and l2"));
        }
        if self.epochs == 0 {
            return Err(AttackError::config("--steps", "must be at least 1 pass"));
        }
        AttackError::at_least_one("--batch", self.batch as u64)?;
        if let Some(s) = self.step
            && !(s.is_finite() && s > 0.0)
        {
            return Err(AttackError::config(
                "--step",
                format!("must be > 0, got {s}"),
            ));
        }
        if !(self.target_fooling_rate > 0.0 && self.target_fooling_rate <= 1.0) {
            return Err(AttackError::config(
                "--fooling-rate",
                format!("must be in (0, 1], got {}", self.target_fooling_rate),
            ));
        }
        Ok(Uap {
            config: self,
            perturbation: Mutex::new(None),
        })
    }
}

/// A built UAP attack; after a run it holds the universal perturbation.
#[derive(Debug)]
pub struct Uap {
    config: UapConfig,
    perturbation: Mutex<Option<Vec<f32>>>,
}

impl Uap {
    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: Some(self.config.eps),
            bounds,
        }
    }

    /// The universal perturbation of the last run (`[C, H, W]`), if any.
    pub fn perturbation(&self) -> Option<Vec<f32>> {
        self.perturbation.lock().ok().and_then(|p| p.clone())
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Uap {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::Linf => "uap".into(),
            n => format!("uap-{n}"),
        }
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let c = &self.config;
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let threat = Threat {
            eps: Some(c.eps),
            ..ctx.tracker.threat()
        };
        let targeted = ctx.tracker.is_targeted();
        let (loss, sign) = objective(Loss::CrossEntropy, targeted);
        let labels = ctx.tracker.objective_labels(&rows);
        let true_labels: Vec<u32> = rows.iter().map(|&r| ctx.tracker.labels()[r]).collect();
        let fooled = |pred: u32, i: usize| {
            if targeted {
                pred == labels[i]
            } else {
                pred != true_labels[i]
            }
        };
        let x0 = ctx.tracker.x0_rows(&rows);
        let dims = x0.dims();
        let one = [1, dims[1], dims[2], dims[3]];
        let device = x0.device();
        let k = model.num_classes();
        let step = c.step.unwrap_or(c.eps / 10.0);
        let mut v = Tensor::<4>::zeros(one, &device);
        let mut best: Option<(usize, Tensor<4>, Tensor<4>, Tensor<2>)> = None;
        let batches = rows.len().div_ceil(c.batch);
        let total = c.epochs * batches;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        for epoch in 0..c.epochs {
            order.shuffle(&mut ctx.rng);
            for (j, chunk) in order.chunks(c.batch).enumerate() {
                let idx: Vec<usize> = chunk.to_vec();
                let xb = crate::tracker::select_rows(&x0, &idx);
                let xv = threat.project(&xb, xb.clone().add(v.clone()));
                let y: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
                let g = model.input_gradient(xv, &y, loss);
                let pred = argmax_rows(&to_vec(g.logits), k);
                // Only inputs not fooled yet pull on v.
                let live: Vec<f32> = idx
                    .iter()
                    .zip(&pred)
                    .map(|(&i, &p)| if fooled(p, i) { 0.0 } else { 1.0 })
                    .collect();
                if live.iter().any(|&l| l > 0.0) {
                    let b = live.len();
                    let mask = Tensor::<4>::from_data(TensorData::new(live, [b, 1, 1, 1]), &device);
                    let mean = g.grad.mul(mask).sum_dim(0);
                    let next = v
                        .clone()
                        .add(ascent_direction(mean, c.norm).mul_scalar(step * sign));
                    v = c.norm.project(next, c.eps);
                }
                ctx.tick(epoch * batches + j + 1, total);
            }
            // The fooling rate of this v over all inputs (one forward pass).
            let xv = threat.project(&x0, x0.clone().add(v.clone()));
            let logits = model.logits(xv.clone());
            let pred = argmax_rows(&to_vec(logits.clone()), k);
            let count = pred
                .iter()
                .enumerate()
                .filter(|&(i, &p)| fooled(p, i))
                .count();
            if best.as_ref().is_none_or(|(b, ..)| count > *b) {
                best = Some((count, v.clone(), xv, logits));
            }
            if count as f32 >= c.target_fooling_rate * rows.len() as f32 {
                break;
            }
        }
        if let Some((_, v, xv, logits)) = best {
            ctx.tracker.offer(&rows, xv, Some(logits))?;
            if let Ok(mut slot) = self.perturbation.lock() {
                *slot = Some(to_vec(v));
            }
        }
        ctx.tick(total, total);
        Ok(())
    }
}

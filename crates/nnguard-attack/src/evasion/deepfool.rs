//! DeepFool (Moosavi-Dezfooli, Fawzi and Frossard 2016, "DeepFool: a simple and accurate
//! method to fool deep neural networks"): a minimal-perturbation attack that linearises the
//! classifier around the current point, steps onto the nearest linearised decision boundary
//! among the top candidate classes, and repeats until the prediction changes; the summed
//! step is finally scaled by `1 + overshoot`.
//!
//! On an affine classifier the first step lands exactly on the nearest decision boundary, so
//! the result is the exact distance `|z_k − z_y| / ‖w_k − w_y‖` (L2; the dual L1 norm of the
//! weight difference for L∞) times `1 + overshoot`. Later steps, needed on nonlinear models
//! or where clipping at the bounds absorbed part of a step, go [`STALL_NUDGE`] further.

use nnguard_model::tensor::{Int, Tensor, TensorData, argmax_rows, to_vec};
use nnguard_model::{Differentiable, InputGradient, Loss};

use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::tracker::{Tracker, select_rows};

/// How much further than the linearised boundary every step after the first goes, in the
/// attack's norm (the authors' code and foolbox add the same). Where pixels are clipped at
/// the bounds a step achieves only part of its linearised progress, so without it the gap
/// shrinks geometrically and never closes (and an exact tie never moves).
const STALL_NUDGE: f64 = 1e-4;

/// Settings of [`DeepFool`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeepFoolConfig {
    /// Norm of the perturbation (L2 or L∞).
    pub norm: Norm,
    /// Most linearisation steps per input.
    pub steps: usize,
    /// Relative overshoot applied to the summed step (crosses the boundary instead of
    /// landing on it).
    pub overshoot: f32,
    /// Number of classes considered: the top `candidates` of the clean logits, the
    /// predicted class included.
    pub candidates: usize,
}

impl Default for DeepFoolConfig {
    /// L2, 50 steps, overshoot 0.02, 10 candidate classes (the paper's and foolbox's values).
    fn default() -> Self {
        Self {
            norm: Norm::L2,
            steps: 50,
            overshoot: 0.02,
            candidates: 10,
        }
    }
}

impl DeepFoolConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<DeepFool, AttackError> {
        if self.norm == Norm::L1 {
            return Err(AttackError::config(
                "--norm",
                "DeepFool supports l2 and linf",
            ));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        if !(self.overshoot.is_finite() && self.overshoot >= 0.0) {
            return Err(AttackError::config(
                "--overshoot",
                format!("must be ≥ 0, got {}", self.overshoot),
            ));
        }
        if self.candidates < 2 {
            return Err(AttackError::config(
                "--candidates",
                format!(
                    "must be at least 2 (the predicted class and one other), got {}",
                    self.candidates
                ),
            ));
        }
        Ok(DeepFool { config: self })
    }
}

/// A built DeepFool attack.
#[derive(Debug, Clone)]
pub struct DeepFool {
    config: DeepFoolConfig,
}

impl DeepFool {
    /// The threat model the attack works in: unbounded (minimal perturbation) in its norm.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: None,
            bounds,
        }
    }
}

/// Per row, the gradient of the logit difference `z[plus] − z[minus]` with respect to the
/// input; `loss` holds the differences and `logits` the logits, all from one
/// forward/backward pass.
pub(crate) fn logit_difference_gradient<M: Differentiable + ?Sized>(
    model: &M,
    x: Tensor<4>,
    plus: &[u32],
    minus: &[u32],
) -> InputGradient {
    let b = plus.len();
    let k = model.num_classes();
    let device = x.device();
    let mut weights = vec![0.0f32; b * k];
    for (i, (&p, &m)) in plus.iter().zip(minus).enumerate() {
        weights[i * k + p as usize] += 1.0;
        weights[i * k + m as usize] -= 1.0;
    }
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, k]), &device);
    let xa = x.detach().autodiff().require_grad();
    let logits = model.forward(xa.clone());
    let diff = logits.clone().mul(weights).sum_dim(1).reshape([b]);
    let grads = diff.clone().sum().backward();
    let grad = xa
        .grad(&grads)
        .unwrap_or_else(|| xa.clone().without_autodiff().zeros_like());
    InputGradient {
        grad,
        loss: diff.detach().without_autodiff(),
        logits: logits.detach().without_autodiff(),
    }
}

/// Offers the candidates `x` of rows `ids` (with their `logits`) and returns, per row, whether
/// the candidate itself is adversarial by those logits: the verdict minimal-perturbation
/// attacks steer by, which may differ from the tracker's when its ε-ball projection moves
/// the candidate. Candidates inside the ball go to the tracker with their logits; adversarial
/// ones outside it are offered alone, so that only they are re-scored after projection.
pub(crate) fn offer_raw(
    tracker: &mut Tracker<'_>,
    ids: &[usize],
    x: Tensor<4>,
    logits: Tensor<2>,
) -> Result<Vec<bool>, AttackError> {
    let k = logits.dims()[1];
    let predicted = argmax_rows(&to_vec(logits.clone()), k);
    let goal = tracker.objective_labels(ids);
    let targeted = tracker.is_targeted();
    let raw: Vec<bool> = predicted
        .iter()
        .zip(&goal)
        .map(|(&p, &g)| if targeted { p == g } else { p != g })
        .collect();
    let threat = tracker.threat();
    let Some(eps) = threat.eps else {
        tracker.offer(ids, x, Some(logits))?;
        return Ok(raw);
    };
    let sizes = threat.norm.per_sample(&x.clone().sub(tracker.x0_rows(ids)));
    let inside: Vec<usize> = (0..ids.len())
        .filter(|&i| sizes[i] <= eps * (1.0 + 1e-6))
        .collect();
    let outside: Vec<usize> = (0..ids.len())
        .filter(|&i| sizes[i] > eps * (1.0 + 1e-6) && raw[i])
        .collect();
    for (rows, logits) in [(&inside, Some(logits)), (&outside, None)] {
        if rows.is_empty() {
            continue;
        }
        let sub: Vec<usize> = rows.iter().map(|&i| ids[i]).collect();
        let logits = logits.map(|l| {
            let idx: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [rows.len()]), &l.device());
            l.select(0, idx)
        });
        tracker.offer(&sub, select_rows(&x, rows), logits)?;
    }
    Ok(raw)
}

/// The classes of each row sorted by decreasing logit (first `take` of them).
pub(crate) fn ranked_classes(logits: &[f32], k: usize, take: usize) -> Vec<Vec<u32>> {
    logits
        .chunks(k.max(1))
        .map(|row| {
            let mut idx: Vec<u32> = (0..k as u32).collect();
            idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
            idx.truncate(take);
            idx
        })
        .collect()
}

/// The dual norm of `g` for a step in `norm`: ‖g‖₂ for L2, ‖g‖₁ for L∞.
fn dual_norm(g: &[f32], norm: Norm) -> f64 {
    match norm {
        Norm::Linf => g.iter().map(|v| f64::from(v.abs())).sum(),
        _ => g
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt(),
    }
}

/// The rows `keep` of a flat `[rows, n]` buffer.
pub(crate) fn keep_flat(values: &[f32], keep: &[usize], n: usize) -> Vec<f32> {
    keep.iter()
        .flat_map(|&i| values[i * n..(i + 1) * n].iter().copied())
        .collect()
}

/// The inputs still being attacked, with their summed steps.
struct Working {
    /// Indices into the tracker.
    ids: Vec<usize>,
    /// Per row: the reference class first, then the classes compared with it (untargeted),
    /// or just the target (targeted).
    classes: Vec<Vec<u32>>,
    /// Clean inputs, flat.
    x0: Vec<f32>,
    /// Summed (not yet overshot) steps, flat.
    total: Vec<f32>,
    /// Current iterates.
    x: Tensor<4>,
}

impl Working {
    fn retain(&mut self, keep: &[usize], n: usize) {
        self.ids = keep.iter().map(|&i| self.ids[i]).collect();
        self.classes = keep.iter().map(|&i| self.classes[i].clone()).collect();
        self.x0 = keep_flat(&self.x0, keep, n);
        self.total = keep_flat(&self.total, keep, n);
        self.x = select_rows(&self.x, keep);
    }
}

/// The linearised boundary of one class: its logit gap to the reference class and the
/// gradient of that gap, flat.
struct Linearised {
    gap: Vec<f32>,
    grad: Vec<f32>,
}

impl DeepFool {
    /// One gradient pass for candidate `j` (untargeted) or the target (targeted).
    fn linearise<M: Differentiable + ?Sized>(
        &self,
        model: &M,
        w: &Working,
        j: usize,
        targeted: bool,
    ) -> InputGradient {
        if targeted {
            // Gap of the target to the strongest other class: minus the margin loss.
            let t: Vec<u32> = w.classes.iter().map(|c| c[0]).collect();
            let g = model.input_gradient(w.x.clone(), &t, Loss::Margin);
            InputGradient {
                grad: g.grad.neg(),
                loss: g.loss.neg(),
                logits: g.logits,
            }
        } else {
            let plus: Vec<u32> = w.classes.iter().map(|c| c[j]).collect();
            let minus: Vec<u32> = w.classes.iter().map(|c| c[0]).collect();
            logit_difference_gradient(model, w.x.clone(), &plus, &minus)
        }
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for DeepFool {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::L2 => "deepfool".into(),
            n => format!("deepfool-{n}"),
        }
    }

    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError> {
        let c = &self.config;
        let k = model.num_classes();
        if k < 2 {
            return Err(AttackError::Unsupported {
                attack: EvasionAttack::<M>::name(self),
                reason: format!("needs at least 2 classes, the model has {k}"),
            });
        }
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let targeted = ctx.tracker.is_targeted();
        let (lo, hi) = ctx.tracker.threat().bounds;
        let x0 = ctx.tracker.x0_rows(&rows);
        let dims = x0.dims();
        let n = dims[1] * dims[2] * dims[3];
        let device = x0.device();
        // The clean logits rank the candidate classes; inputs already adversarial stop here.
        let clean = model.logits(x0.clone());
        let ranked = ranked_classes(&to_vec(clean.clone()), k, c.candidates.min(k));
        let adv = ctx.tracker.offer(&rows, x0.clone(), Some(clean))?;
        let objective = ctx.tracker.objective_labels(&rows);
        let keep: Vec<usize> = (0..rows.len()).filter(|&i| !adv[i]).collect();
        let x0_host = to_vec(x0.clone());
        let mut w = Working {
            ids: keep.iter().map(|&i| rows[i]).collect(),
            classes: keep
                .iter()
                .map(|&i| {
                    if targeted {
                        vec![objective[i]]
                    } else {
                        ranked[i].clone()
                    }
                })
                .collect(),
            x0: keep_flat(&x0_host, &keep, n),
            total: vec![0.0; keep.len() * n],
            x: select_rows(&x0, &keep),
        };
        let passes = if targeted { 1 } else { ranked[0].len() - 1 };
        let scale = 1.0 + c.overshoot;
        for step in 0..c.steps {
            if w.ids.is_empty() {
                break;
            }
            let mut lines: Vec<Linearised> = Vec::with_capacity(passes);
            for j in 1..=passes {
                let g = self.linearise(model, &w, j, targeted);
                let (mut grad, mut gap) = (g.grad, g.loss);
                if j == 1 && step > 0 {
                    // The first pass's logits decide which inputs are done.
                    let adv = offer_raw(&mut ctx.tracker, &w.ids, w.x.clone(), g.logits)?;
                    if adv.iter().any(|&a| a) {
                        let keep: Vec<usize> = (0..adv.len()).filter(|&i| !adv[i]).collect();
                        w.retain(&keep, n);
                        if w.ids.is_empty() {
                            break;
                        }
                        grad = select_rows(&grad, &keep);
                        let all = to_vec(gap);
                        gap = Tensor::from_data(
                            TensorData::new(keep.iter().map(|&i| all[i]).collect(), [keep.len()]),
                            &device,
                        );
                    }
                }
                lines.push(Linearised {
                    gap: to_vec(gap),
                    grad: to_vec(grad),
                });
            }
            if w.ids.is_empty() {
                break;
            }
            // Step onto the nearest linearised boundary; the overshoot scales the sum.
            let b = w.ids.len();
            let mut next = vec![0.0f32; b * n];
            for i in 0..b {
                let mut best: Option<(f64, f64, &[f32])> = None;
                for line in &lines {
                    let g = &line.grad[i * n..(i + 1) * n];
                    let dual = dual_norm(g, c.norm);
                    if dual <= 0.0 {
                        continue;
                    }
                    let gap = f64::from(line.gap[i]).abs();
                    let distance = gap / dual;
                    if best.is_none_or(|(d, _, _)| distance < d) {
                        best = Some((distance, dual, g));
                    }
                }
                let total = &mut w.total[i * n..(i + 1) * n];
                if let Some((distance, dual, g)) = best {
                    let distance = if step == 0 {
                        distance
                    } else {
                        distance + STALL_NUDGE
                    };
                    match c.norm {
                        Norm::Linf => {
                            let size = distance as f32;
                            for (t, &gj) in total.iter_mut().zip(g) {
                                *t += size * sign(gj);
                            }
                        }
                        _ => {
                            let size = (distance / dual) as f32;
                            for (t, &gj) in total.iter_mut().zip(g) {
                                *t += size * gj;
                            }
                        }
                    }
                }
                let x0 = &w.x0[i * n..(i + 1) * n];
                for ((o, &a), &t) in next[i * n..(i + 1) * n].iter_mut().zip(x0).zip(&*total) {
                    *o = (a + scale * t).clamp(lo, hi);
                }
            }
            w.x = Tensor::from_data(
                TensorData::new(next, [b, dims[1], dims[2], dims[3]]),
                &device,
            );
            ctx.tick(step + 1, c.steps);
        }
        if !w.ids.is_empty() {
            let logits = model.logits(w.x.clone());
            offer_raw(&mut ctx.tracker, &w.ids, w.x, logits)?;
        }
        Ok(())
    }
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

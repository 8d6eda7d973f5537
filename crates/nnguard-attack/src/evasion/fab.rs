//! The targeted Fast Adaptive Boundary attack, FAB-T (Croce and Hein 2020, "Minimally
//! distorted adversarial examples with a fast adaptive boundary attack").
//!
//! For each target class t (the classes ranked 2nd, 3rd, ... by the clean logits, as in
//! AutoAttack) FAB linearises `z_t − z_y` at the current point, projects both the current
//! point and the clean input onto the linearised boundary intersected with the valid box
//! (the exact minimal-norm projection, L∞ or L2), and moves to a convex combination of the two
//! projections, extrapolated by η and biased towards the clean input by
//! `α = min(‖d₁‖/(‖d₁‖ + ‖d₂‖), α_max)`. After each step that is adversarial it steps back
//! towards the clean input by β, which keeps the perturbation small. The tracker keeps the
//! smallest adversarial example; unbounded (minimal-perturbation) runs attack every input
//! with every target, ε-bounded runs stop on an input once it is broken.

use nnguard_model::Differentiable;
use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::deepfool::{keep_flat, logit_difference_gradient, offer_raw, ranked_classes};
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};

/// Smallest projection size used in the step weights (the reference implementation's).
const MIN_PROJECTION: f64 = 1e-8;

/// Settings of [`Fab`].
#[derive(Debug, Clone, PartialEq)]
pub struct FabConfig {
    /// Norm whose perturbations are minimised (L∞ or L2).
    pub norm: Norm,
    /// Iterations per run.
    pub steps: usize,
    /// Runs per target class; every run after the first starts from a random point at half
    /// the start radius.
    pub restarts: usize,
    /// Number of target classes: the top `n` other classes of the clean logits.
    pub target_classes: usize,
    /// Largest weight of the clean input's projection in a step.
    pub alpha_max: f32,
    /// Extrapolation of the projections past the linearised boundary.
    pub eta: f32,
    /// Backward step towards the clean input after an adversarial step.
    pub beta: f32,
    /// Radius of the random starts when the evaluation is unbounded (an ε-bounded
    /// evaluation uses its ε).
    pub start_radius: f32,
}

impl Default for FabConfig {
    /// L∞, 100 steps, one run for each of 9 target classes, α_max = 0.1, η = 1.05, β = 0.9
    /// (AutoAttack's standard values), random starts of radius 0.3.
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            steps: 100,
            restarts: 1,
            target_classes: 9,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            start_radius: 0.3,
        }
    }
}

impl FabConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Fab, AttackError> {
        if self.norm == Norm::L1 {
            return Err(AttackError::config("--norm", "FAB-T supports linf and l2"));
        }
        AttackError::at_least_one("--steps", self.steps as u64)?;
        AttackError::at_least_one("--restarts", self.restarts as u64)?;
        if self.target_classes == 0 {
            return Err(AttackError::config(
                "--target-classes",
                "must be at least 1",
            ));
        }
        if !(self.alpha_max >= 0.0 && self.alpha_max <= 1.0) {
            return Err(AttackError::config(
                "--alpha-max",
                format!("must be in [0, 1], got {}", self.alpha_max),
            ));
        }
        if !(self.eta.is_finite() && self.eta >= 1.0) {
            return Err(AttackError::config(
                "--eta",
                format!("must be ≥ 1, got {}", self.eta),
            ));
        }
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return Err(AttackError::config(
                "--beta",
                format!("must be in (0, 1], got {}", self.beta),
            ));
        }
        if !(self.start_radius.is_finite() && self.start_radius >= 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be ≥ 0, got {}", self.start_radius),
            ));
        }
        Ok(Fab { config: self })
    }
}

/// A built FAB-T attack.
#[derive(Debug, Clone)]
pub struct Fab {
    config: FabConfig,
}

impl Fab {
    /// The threat model the attack works in: unbounded (minimal perturbation) in its norm.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: None,
            bounds,
        }
    }
}

/// The minimal-`norm` step `d` (L2 or L∞) with `w·(t + d) = b` and `lo ≤ t + d ≤ hi`: the
/// projection of `t` onto a hyperplane intersected with the box. Where the hyperplane misses
/// the box, every coordinate moves as far towards it as the box allows.
///
/// Each coordinate moves in the direction that brings `w·z` towards `b`, by `min(λ|wᵢ|,
/// roomᵢ)` for L2 or `min(δ, roomᵢ)` for L∞; the total change is piecewise linear in λ (δ),
/// so sorting the points where coordinates reach the box gives the exact solution.
pub(crate) fn project_onto_hyperplane(
    t: &[f32],
    w: &[f32],
    b: f64,
    (lo, hi): (f32, f32),
    norm: Norm,
) -> Vec<f32> {
    let n = t.len();
    let c: f64 = w
        .iter()
        .zip(t)
        .map(|(&wi, &ti)| f64::from(wi) * f64::from(ti))
        .sum::<f64>()
        - b;
    let mut d = vec![0.0f32; n];
    if c == 0.0 || !c.is_finite() {
        return d;
    }
    // Moving coordinate i by +1 in direction dir[i] lowers |w·z − b| by |w_i|.
    let need = c.abs();
    let mut dir = vec![0.0f64; n];
    let mut room = vec![0.0f64; n];
    let mut gain = vec![0.0f64; n];
    for i in 0..n {
        let wi = f64::from(w[i]);
        if wi == 0.0 {
            continue;
        }
        let up = (wi > 0.0) != (c > 0.0);
        dir[i] = if up { 1.0 } else { -1.0 };
        room[i] = if up {
            f64::from(hi) - f64::from(t[i])
        } else {
            f64::from(t[i]) - f64::from(lo)
        }
        .max(0.0);
        gain[i] = wi.abs();
    }
    let movable: Vec<usize> = (0..n).filter(|&i| gain[i] > 0.0).collect();
    // Per unit of the parameter (λ for L2, δ for L∞), unsaturated coordinate i moves by
    // rate[i] and lowers the gap by gain[i]·rate[i]; it saturates at room[i]/rate[i].
    let rate = |i: usize| match norm {
        Norm::Linf => 1.0,
        _ => gain[i],
    };
    let mut order = movable.clone();
    order.sort_by(|&a, &b| (room[a] / rate(a)).total_cmp(&(room[b] / rate(b))));
    let mut saturated_gain = 0.0f64;
    let mut slope: f64 = movable.iter().map(|&i| gain[i] * rate(i)).sum();
    let mut param = f64::INFINITY;
    for &i in &order {
        let at = room[i] / rate(i);
        if saturated_gain + at * slope >= need {
            param = (need - saturated_gain) / slope;
            break;
        }
        saturated_gain += gain[i] * room[i];
        slope -= gain[i] * rate(i);
    }
    for &i in &movable {
        let m = if param.is_finite() {
            (param * rate(i)).min(room[i])
        } else {
            room[i]
        };
        d[i] = (dir[i] * m) as f32;
    }
    d
}

/// The state of one FAB run for the inputs it attacks.
struct Run {
    ids: Vec<usize>,
    y: Vec<u32>,
    t: Vec<u32>,
    x0: Vec<f32>,
    x: Vec<f32>,
}

impl Run {
    fn retain(&mut self, keep: &[usize], n: usize) {
        self.ids = keep.iter().map(|&i| self.ids[i]).collect();
        self.y = keep.iter().map(|&i| self.y[i]).collect();
        self.t = keep.iter().map(|&i| self.t[i]).collect();
        self.x0 = keep_flat(&self.x0, keep, n);
        self.x = keep_flat(&self.x, keep, n);
    }
}

impl Fab {
    /// A random start at half the radius around each input, as in the reference code.
    fn random_start(
        &self,
        run: &mut Run,
        radius: &[f32],
        bounds: (f32, f32),
        rng: &mut rand_chacha::ChaCha8Rng,
        n: usize,
    ) {
        for (i, r) in radius.iter().enumerate() {
            let t: Vec<f32> = match self.config.norm {
                Norm::L2 => (0..n).map(|_| StandardNormal.sample(rng)).collect(),
                _ => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            };
            let size = self.config.norm.of_rows(&t, n)[0].max(1e-12);
            let x0 = &run.x0[i * n..(i + 1) * n];
            for ((x, &a), &tj) in run.x[i * n..(i + 1) * n].iter_mut().zip(x0).zip(&t) {
                *x = (a + 0.5 * r * tj / size).clamp(bounds.0, bounds.1);
            }
        }
    }

    /// One FAB step for every row of `run`, given `z_t − z_y` and its gradient.
    fn step(&self, run: &mut Run, gap: &[f32], grad: &[f32], bounds: (f32, f32), n: usize) {
        let c = &self.config;
        for i in 0..run.ids.len() {
            let w = &grad[i * n..(i + 1) * n];
            let x = &run.x[i * n..(i + 1) * n];
            let x0 = &run.x0[i * n..(i + 1) * n];
            // The linearised boundary: {z : w·z = w·x − gap}.
            let b = w
                .iter()
                .zip(x)
                .map(|(&a, &v)| f64::from(a) * f64::from(v))
                .sum::<f64>()
                - f64::from(gap[i]);
            let d1 = project_onto_hyperplane(x, w, b, bounds, c.norm);
            let d2 = project_onto_hyperplane(x0, w, b, bounds, c.norm);
            let a1 = f64::from(c.norm.of_rows(&d1, n)[0]).max(MIN_PROJECTION);
            let a2 = f64::from(c.norm.of_rows(&d2, n)[0]).max(MIN_PROJECTION);
            let alpha = (a1 / (a1 + a2)).clamp(0.0, f64::from(c.alpha_max)) as f32;
            let next: Vec<f32> = (0..n)
                .map(|j| {
                    ((x[j] + c.eta * d1[j]) * (1.0 - alpha) + (x0[j] + c.eta * d2[j]) * alpha)
                        .clamp(bounds.0, bounds.1)
                })
                .collect();
            run.x[i * n..(i + 1) * n].copy_from_slice(&next);
        }
    }
}

impl<M: Differentiable + ?Sized> EvasionAttack<M> for Fab {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::Linf => "fab-t".into(),
            n => format!("fab-t-{n}"),
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
        let threat = ctx.tracker.threat();
        let bounds = threat.bounds;
        let minimal = threat.eps.is_none();
        let x0 = ctx.tracker.x0_rows(&rows);
        let dims = x0.dims();
        let n = dims[1] * dims[2] * dims[3];
        let device = x0.device();
        let clean = model.logits(x0.clone());
        let ranked = ranked_classes(&to_vec(clean.clone()), k, k);
        let adv = ctx.tracker.offer(&rows, x0, Some(clean))?;
        let mut rank_of = vec![Vec::new(); ctx.tracker.len()];
        let mut attacked = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            rank_of[r] = ranked[i].clone();
            if !adv[i] {
                attacked.push(r);
            }
        }
        let ranks: Vec<Option<usize>> = if ctx.tracker.is_targeted() {
            vec![None]
        } else {
            (1..=c.target_classes.min(k - 1)).map(Some).collect()
        };
        let total = ranks.len() * c.restarts * c.steps;
        let mut done = 0;
        for rank in ranks {
            for restart in 0..c.restarts {
                // Unbounded, every target refines every input; bounded, broken inputs are done.
                let ids: Vec<usize> = attacked
                    .iter()
                    .copied()
                    .filter(|&r| minimal || !ctx.tracker.is_adversarial(r))
                    .collect();
                if ids.is_empty() {
                    return Ok(());
                }
                let x0 = to_vec(ctx.tracker.x0_rows(&ids));
                let mut run = Run {
                    y: ids.iter().map(|&r| ctx.tracker.labels()[r]).collect(),
                    t: match rank {
                        Some(rank) => ids.iter().map(|&r| rank_of[r][rank]).collect(),
                        None => ctx.tracker.objective_labels(&ids),
                    },
                    x: x0.clone(),
                    x0,
                    ids,
                };
                if restart > 0 {
                    let limit = threat.eps.unwrap_or(c.start_radius);
                    let radius: Vec<f32> = run
                        .ids
                        .iter()
                        .map(|&r| ctx.tracker.distance(r).min(limit))
                        .collect();
                    self.random_start(&mut run, &radius, bounds, &mut ctx.rng, n);
                }
                let tensor = |values: Vec<f32>, b: usize| {
                    Tensor::<4>::from_data(
                        TensorData::new(values, [b, dims[1], dims[2], dims[3]]),
                        &device,
                    )
                };
                for step in 0..=c.steps {
                    let x = tensor(run.x.clone(), run.ids.len());
                    if step == c.steps {
                        // The last iterate needs only a verdict.
                        let logits = model.logits(x.clone());
                        offer_raw(&mut ctx.tracker, &run.ids, x, logits)?;
                        break;
                    }
                    // One pass linearises the boundary and judges the iterate (the clean
                    // start was judged already).
                    let g = logit_difference_gradient(model, x.clone(), &run.t, &run.y);
                    let (mut gap, mut grad) = (to_vec(g.loss), to_vec(g.grad));
                    if step > 0 || restart > 0 {
                        let mut adv = offer_raw(&mut ctx.tracker, &run.ids, x, g.logits)?;
                        let broken: Vec<bool> = run
                            .ids
                            .iter()
                            .map(|&r| !minimal && ctx.tracker.is_adversarial(r))
                            .collect();
                        if broken.iter().any(|&a| a) {
                            let keep: Vec<usize> =
                                (0..broken.len()).filter(|&i| !broken[i]).collect();
                            run.retain(&keep, n);
                            if run.ids.is_empty() {
                                break;
                            }
                            gap = keep.iter().map(|&i| gap[i]).collect();
                            grad = keep_flat(&grad, &keep, n);
                            adv = keep.iter().map(|&i| adv[i]).collect();
                        }
                        // Step back from every adversarial iterate, whatever the tracker's
                        // projection made of it, and linearise again there.
                        let back: Vec<usize> = (0..adv.len()).filter(|&i| adv[i]).collect();
                        if !back.is_empty() {
                            for &i in &back {
                                for j in i * n..(i + 1) * n {
                                    run.x[j] = run.x0[j] + c.beta * (run.x[j] - run.x0[j]);
                                }
                            }
                            let ids: Vec<usize> = back.iter().map(|&i| run.ids[i]).collect();
                            let t: Vec<u32> = back.iter().map(|&i| run.t[i]).collect();
                            let y: Vec<u32> = back.iter().map(|&i| run.y[i]).collect();
                            let xb = tensor(keep_flat(&run.x, &back, n), back.len());
                            let g = logit_difference_gradient(model, xb.clone(), &t, &y);
                            offer_raw(&mut ctx.tracker, &ids, xb, g.logits)?;
                            let (gb, fb) = (to_vec(g.grad), to_vec(g.loss));
                            for (j, &i) in back.iter().enumerate() {
                                gap[i] = fb[j];
                                grad[i * n..(i + 1) * n].copy_from_slice(&gb[j * n..(j + 1) * n]);
                            }
                        }
                    }
                    self.step(&mut run, &gap, &grad, bounds, n);
                    done += 1;
                    ctx.tick(done, total);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn projection_without_active_bounds_is_the_closed_form() {
        let t = [0.5f32, 0.5, 0.5];
        let w = [1.0f32, -2.0, 0.5];
        // w·t = −0.25; target b = 0 needs a change of +0.25.
        let d = project_onto_hyperplane(&t, &w, 0.0, (-10.0, 10.0), Norm::L2);
        let ww = 1.0 + 4.0 + 0.25;
        for (di, wi) in d.iter().zip(w) {
            assert!((f64::from(*di) - 0.25 * f64::from(wi) / ww).abs() < 1e-7);
        }
        // L∞: every coordinate moves by 0.25/‖w‖₁ along sign(w).
        let d = project_onto_hyperplane(&t, &w, 0.0, (-10.0, 10.0), Norm::Linf);
        for (di, wi) in d.iter().zip(w) {
            assert!((f64::from(*di) - 0.25 / 3.5 * f64::from(wi.signum())).abs() < 1e-7);
        }
    }

    #[test]
    fn projection_respects_the_box_and_reaches_the_plane() {
        // Coordinate 0 can rise by only 0.1; the others make up the rest.
        let t = [0.9f32, 0.5, 0.5];
        let w = [3.0f32, 1.0, 1.0];
        let b = dot(&t, &w) + 1.0;
        for norm in [Norm::L2, Norm::Linf] {
            let d = project_onto_hyperplane(&t, &w, b, (0.0, 1.0), norm);
            let z: Vec<f32> = t.iter().zip(&d).map(|(a, b)| a + b).collect();
            assert!((dot(&z, &w) - b).abs() < 1e-5, "{norm}: {z:?}");
            assert!(
                z.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)),
                "{norm}: {z:?}"
            );
        }
        // L2 by hand: coordinate 0 saturates at 0.1 (gain 0.3), the other two share 0.7:
        // 0.35 each.
        let d = project_onto_hyperplane(&t, &w, b, (0.0, 1.0), Norm::L2);
        assert!(
            (d[0] - 0.1).abs() < 1e-6 && (d[1] - 0.35).abs() < 1e-6,
            "{d:?}"
        );
        // L∞ by hand: δ with 3·min(δ, 0.1) + 2δ = 1 → δ = 0.35.
        let d = project_onto_hyperplane(&t, &w, b, (0.0, 1.0), Norm::Linf);
        assert!(
            (d[0] - 0.1).abs() < 1e-6 && (d[2] - 0.35).abs() < 1e-6,
            "{d:?}"
        );
    }

    #[test]
    fn unreachable_plane_moves_to_the_nearest_corner() {
        let t = [0.5f32, 0.5];
        let w = [1.0f32, -1.0];
        let d = project_onto_hyperplane(&t, &w, 5.0, (0.0, 1.0), Norm::L2);
        assert_eq!(d, vec![0.5, -0.5]);
    }
}

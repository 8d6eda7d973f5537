//! Boundary attack (Brendel, Rauber and Bethge 2018, "Decision-Based Adversarial Attacks:
//! Reliable Attacks Against Black-Box Machine Learning Models"), L2.
//!
//! A minimal-perturbation attack that sees only labels. From an adversarial starting point
//! (uniform noise blended towards the input) it walks along the decision boundary: each
//! step draws a random orthogonal move on the sphere around the clean input and a small
//! move towards it, and keeps the proposal when it is still adversarial. Step sizes adapt
//! to the observed success rates with foolbox 3's targets (20–50 % for the orthogonal step,
//! checked alone every tenth step, and 10–25 % for the whole step), but over shorter
//! windows (the last 10 orthogonal checks and the last 30 steps, instead of 100 and 30
//! checks) so that they adapt within a few hundred queries rather than a few thousand. In
//! an ε-bounded evaluation the tracker projects each improvement and an input stops once
//! it is adversarial within ε.

use rand_distr::{Distribution, StandardNormal};

use super::decision::{BLEND_TOLERANCE, Decisions, Path, l2};
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::oracle::Oracle;

/// Steps between checks of the orthogonal (spherical) proposal alone.
const CHECK_EVERY: usize = 10;
/// Spherical outcomes averaged before the step sizes adapt.
const SPHERICAL_WINDOW: usize = 10;
/// Whole-step outcomes (one per step) averaged before the step towards the input adapts.
const STEP_WINDOW: usize = 30;

/// Settings of [`Boundary`].
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryConfig {
    /// Query budget per input.
    pub queries: u64,
    /// Most steps.
    pub steps: usize,
    /// Initial size of the orthogonal step, relative to the current distance.
    pub spherical_step: f32,
    /// Initial size of the step towards the input, relative to the current distance.
    pub source_step: f32,
    /// An input stops once its step towards the input is this small.
    pub convergence: f32,
    /// Factor by which step sizes grow or shrink.
    pub step_adaptation: f32,
    /// Uniform-noise images (then other inputs) tried for a starting point.
    pub init_trials: usize,
}

impl Default for BoundaryConfig {
    /// 10 000 queries, at most 25 000 steps, steps of 0.01, convergence at 1e-7,
    /// adaptation ×1.5, 100 starting-point trials (foolbox 3's settings, with a budget).
    fn default() -> Self {
        Self {
            queries: 10_000,
            steps: 25_000,
            spherical_step: 0.01,
            source_step: 0.01,
            convergence: 1e-7,
            step_adaptation: 1.5,
            init_trials: 100,
        }
    }
}

impl BoundaryConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Boundary, AttackError> {
        AttackError::at_least_one("--queries", self.queries)?;
        AttackError::at_least_one("--steps", self.steps as u64)?;
        for (flag, v) in [
            ("--spherical-step", self.spherical_step),
            ("--source-step", self.source_step),
            ("--convergence", self.convergence),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(AttackError::config(flag, format!("must be > 0, got {v}")));
            }
        }
        if !(self.step_adaptation.is_finite() && self.step_adaptation > 1.0) {
            return Err(AttackError::config(
                "--step-adaptation",
                format!("must be > 1, got {}", self.step_adaptation),
            ));
        }
        AttackError::at_least_one("--init-trials", self.init_trials as u64)?;
        Ok(Boundary { config: self })
    }
}

/// A built Boundary attack.
#[derive(Debug, Clone)]
pub struct Boundary {
    config: BoundaryConfig,
}

impl Boundary {
    /// The settings.
    pub fn config(&self) -> &BoundaryConfig {
        &self.config
    }
}

/// The last outcomes of a kind of proposal, for the success rates.
#[derive(Debug, Clone)]
struct Outcomes {
    seen: Vec<bool>,
    window: usize,
}

impl Outcomes {
    fn new(window: usize) -> Self {
        Self {
            seen: Vec::with_capacity(window),
            window,
        }
    }
    fn push(&mut self, v: bool) {
        if self.seen.len() == self.window {
            self.seen.remove(0);
        }
        self.seen.push(v);
    }
    /// The success rate once the window is full.
    fn rate(&self) -> Option<f32> {
        (self.seen.len() == self.window)
            .then(|| self.seen.iter().filter(|&&v| v).count() as f32 / self.window as f32)
    }
}

/// One input's walk.
struct Walk {
    best: Vec<f32>,
    label: u32,
    spherical: f32,
    source: f32,
    spherical_stats: Outcomes,
    step_stats: Outcomes,
}

impl<'o> EvasionAttack<dyn Oracle + 'o> for Boundary {
    fn name(&self) -> String {
        "boundary".into()
    }

    fn run(
        &self,
        oracle: &(dyn Oracle + 'o),
        ctx: &mut AttackContext<'_>,
    ) -> Result<(), AttackError> {
        let c = &self.config;
        let bounded = ctx.tracker.threat().eps.is_some();
        let rows = if bounded {
            ctx.tracker.active()
        } else {
            (0..ctx.tracker.len()).collect()
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut s = Decisions::new(oracle, ctx, rows, c.queries)?;
        let m = s.rows.len();
        let (lo, hi) = s.bounds;

        let pool = nnguard_model::tensor::to_vec(ctx.tracker.x0().clone());
        let pool_labels = ctx.tracker.labels().to_vec();
        let starts = s.starting_points(&mut ctx.rng, c.init_trials, &pool, &pool_labels)?;
        let who: Vec<usize> = (0..m).filter(|&i| starts[i].is_some()).collect();
        let (far, far_labels): (Vec<Vec<f32>>, Vec<u32>) =
            who.iter().filter_map(|&i| starts[i].clone()).unzip();
        let (points, labels) = s.binary_search(
            &who,
            &far,
            &far_labels,
            vec![1.0; who.len()],
            &vec![BLEND_TOLERANCE; who.len()],
            Path::Blend,
        )?;
        let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let adv = s.offer(ctx, &who, &refs, &labels)?;
        let mut walks: Vec<Option<Walk>> = (0..m).map(|_| None).collect();
        for (j, (&i, (p, l))) in who.iter().zip(points.into_iter().zip(labels)).enumerate() {
            if bounded && adv[j] {
                continue;
            }
            walks[i] = Some(Walk {
                best: p,
                label: l,
                spherical: c.spherical_step,
                source: c.source_step,
                spherical_stats: Outcomes::new(SPHERICAL_WINDOW),
                step_stats: Outcomes::new(STEP_WINDOW),
            });
        }

        let n = s.n;
        for step in 1..=c.steps {
            let check = step % CHECK_EVERY == 0;
            let cost = if check { 2 } else { 1 };
            let active: Vec<usize> = (0..m)
                .filter(|&i| {
                    walks[i]
                        .as_ref()
                        .is_some_and(|w| w.source >= c.convergence && s.quota[i] >= cost)
                })
                .collect();
            if active.is_empty() {
                break;
            }
            // Proposals: [candidate, spherical candidate] per input on checking steps.
            let mut images = Vec::with_capacity(active.len() * n * cost as usize);
            let mut ids = Vec::with_capacity(active.len() * cost as usize);
            let mut source_norms = Vec::with_capacity(active.len());
            for &i in &active {
                let Some(w) = walks[i].as_ref() else { continue };
                let x0 = &s.x0[i];
                let toward: Vec<f32> = x0.iter().zip(&w.best).map(|(a, b)| a - b).collect();
                let norm = l2(x0, &w.best).max(1e-12);
                source_norms.push(norm);
                // A Gaussian direction orthogonal to the way back, of length
                // spherical·norm, then back onto the sphere (Pythagoras).
                let mut eta: Vec<f32> = (0..n)
                    .map(|_| StandardNormal.sample(&mut ctx.rng))
                    .collect();
                let dot: f32 = eta.iter().zip(&toward).map(|(e, t)| e * t).sum::<f32>() / norm;
                for (e, t) in eta.iter_mut().zip(&toward) {
                    *e -= dot * t / norm;
                }
                let en = eta.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                let scale = w.spherical * norm / en;
                let shrink = (w.spherical * w.spherical + 1.0).sqrt();
                let spherical: Vec<f32> = x0
                    .iter()
                    .zip(&eta)
                    .zip(&toward)
                    .map(|((a, e), t)| (a + (e * scale - t) / shrink).clamp(lo, hi))
                    .collect();
                // Then a step of source·norm towards the input, corrected for the sphere.
                let back = l2(x0, &spherical).max(1e-12);
                let length = ((w.source * norm + back - norm).max(0.0)) / back;
                let candidate: Vec<f32> = spherical
                    .iter()
                    .zip(x0)
                    .map(|(p, a)| (p + length * (a - p)).clamp(lo, hi))
                    .collect();
                images.extend(candidate);
                ids.push(i);
                if check {
                    images.extend(spherical);
                    ids.push(i);
                }
            }
            let (adv, seen) = s.decide(&ids, &images)?;
            let mut improved = Vec::new();
            for (a, &i) in active.iter().enumerate() {
                let q = a * cost as usize;
                let Some(w) = walks[i].as_mut() else { continue };
                let candidate = &images[q * n..(q + 1) * n];
                let closer = l2(&s.x0[i], candidate) < source_norms[a];
                if adv[q] && closer {
                    w.best.copy_from_slice(candidate);
                    w.label = seen[q];
                    improved.push(i);
                }
                w.step_stats.push(adv[q]);
                if check {
                    w.spherical_stats.push(adv[q + 1]);
                }
                adapt(w, c.step_adaptation);
            }
            if !improved.is_empty() {
                let refs: Vec<&[f32]> = improved
                    .iter()
                    .filter_map(|&i| walks[i].as_ref().map(|w| w.best.as_slice()))
                    .collect();
                let labels: Vec<u32> = improved
                    .iter()
                    .filter_map(|&i| walks[i].as_ref().map(|w| w.label))
                    .collect();
                let verdict = s.offer(ctx, &improved, &refs, &labels)?;
                if bounded {
                    for (j, &i) in improved.iter().enumerate() {
                        if verdict[j] {
                            walks[i] = None;
                        }
                    }
                }
            }
            if step % 100 == 0 {
                ctx.tick(step, c.steps);
            }
        }
        Ok(())
    }
}

/// foolbox 3's step-size rule: a spherical success rate above 50 % grows both steps and
/// one below 20 % shrinks them; a whole-step success rate above 25 % grows the step
/// towards the input and one below 10 % shrinks it. A window is cleared when it acted.
fn adapt(w: &mut Walk, factor: f32) {
    if let Some(p) = w.spherical_stats.rate() {
        if p > 0.5 {
            w.spherical *= factor;
            w.source *= factor;
            w.spherical_stats.seen.clear();
        } else if p < 0.2 {
            w.spherical /= factor;
            w.source /= factor;
            w.spherical_stats.seen.clear();
        }
    }
    if let Some(p) = w.step_stats.rate() {
        if p > 0.25 {
            w.source *= factor;
            w.step_stats.seen.clear();
        } else if p < 0.1 {
            w.source /= factor;
            w.step_stats.seen.clear();
        }
    }
}

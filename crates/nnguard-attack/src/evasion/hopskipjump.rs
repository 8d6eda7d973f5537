//! HopSkipJump (Chen, Jordan and Wainwright 2020, "HopSkipJumpAttack: A Query-Efficient
//! Decision-Based Attack"), L2 and L∞.
//!
//! A minimal-perturbation attack that sees only labels. From an adversarial starting point
//! (uniform noise blended towards the input) it repeats: estimate the direction of the
//! decision boundary's normal from the labels of random points around the current boundary
//! point (Monte Carlo, with baseline subtraction), step along it with a geometrically
//! shrinking step until still adversarial, and binary-search back to the boundary towards
//! the clean input. The perturbation shrinks with the query budget; in an ε-bounded
//! evaluation the tracker projects each boundary point and an input stops once it is
//! adversarial within ε.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::decision::{BLEND_TOLERANCE, Decisions, MAX_QUERY_BATCH, Path, l2, linf};
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::Norm;
use crate::oracle::Oracle;

/// Halvings of the step size tried before an iteration gives up on a step.
const MAX_STEP_HALVINGS: usize = 30;

/// Settings of [`HopSkipJump`].
#[derive(Debug, Clone, PartialEq)]
pub struct HopSkipJumpConfig {
    /// Norm the perturbation is minimised in (L2 or L∞).
    pub norm: Norm,
    /// Query budget per input.
    pub queries: u64,
    /// Most iterations (gradient estimate, step, binary search).
    pub steps: usize,
    /// Samples of the first gradient estimate; iteration `j` uses `init_evals·√j`.
    pub init_evals: usize,
    /// Most samples of one gradient estimate.
    pub max_evals: usize,
    /// Scale γ of the binary-search precision θ = γ/d^{3/2} (L2) or γ/d² (L∞).
    pub gamma: f32,
    /// Uniform-noise images (then other inputs) tried for a starting point.
    pub init_trials: usize,
}

impl Default for HopSkipJumpConfig {
    /// L2, 5000 queries, at most 64 iterations, 100 to 10 000 samples per estimate, γ = 1,
    /// 100 starting-point trials (the paper's and foolbox's settings, with a budget).
    fn default() -> Self {
        Self {
            norm: Norm::L2,
            queries: 5000,
            steps: 64,
            init_evals: 100,
            max_evals: 10_000,
            gamma: 1.0,
            init_trials: 100,
        }
    }
}

impl HopSkipJumpConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<HopSkipJump, AttackError> {
        if self.norm == Norm::L1 {
            return Err(AttackError::config(
                "--norm",
                "HopSkipJump supports l2 and linf",
            ));
        }
        AttackError::at_least_one("--queries", self.queries)?;
        AttackError::at_least_one("--steps", self.steps as u64)?;
        if self.init_evals == 0 || self.max_evals < self.init_evals {
            return Err(AttackError::config(
                "--init-evals",
                format!(
                    "must be at least 1 and at most the maximum of {} samples, got {}",
                    self.max_evals, self.init_evals
                ),
            ));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(AttackError::config(
                "--gamma",
                format!("must be > 0, got {}", self.gamma),
            ));
        }
        AttackError::at_least_one("--init-trials", self.init_trials as u64)?;
        Ok(HopSkipJump { config: self })
    }
}

/// A built HopSkipJump attack.
#[derive(Debug, Clone)]
pub struct HopSkipJump {
    config: HopSkipJumpConfig,
}

impl HopSkipJump {
    /// The settings.
    pub fn config(&self) -> &HopSkipJumpConfig {
        &self.config
    }
}

impl<'o> EvasionAttack<dyn Oracle + 'o> for HopSkipJump {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::L2 => "hopskipjump".into(),
            n => format!("hopskipjump-{n}"),
        }
    }

    fn run(
        &self,
        oracle: &(dyn Oracle + 'o),
        ctx: &mut AttackContext<'_>,
    ) -> Result<(), AttackError> {
        let c = &self.config;
        let bounded = ctx.tracker.threat().eps.is_some();
        // Minimal-perturbation search: keep shrinking inputs already broken, unless the
        // evaluation is ε-bounded and they are broken within ε.
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
        let d = s.n as f32;
        let theta = match c.norm {
            Norm::Linf => c.gamma / (d * d),
            _ => c.gamma / (d * d.sqrt()),
        };
        let dist_of = |a: &[f32], b: &[f32]| match c.norm {
            Norm::Linf => linf(a, b),
            _ => l2(a, b),
        };

        // Starting points, blended towards the inputs.
        let pool = nnguard_model::tensor::to_vec(ctx.tracker.x0().clone());
        let pool_labels = ctx.tracker.labels().to_vec();
        let starts = s.starting_points(&mut ctx.rng, c.init_trials, &pool, &pool_labels)?;
        let who: Vec<usize> = (0..m).filter(|&i| starts[i].is_some()).collect();
        let far: Vec<Vec<f32>> = who
            .iter()
            .filter_map(|&i| starts[i].as_ref().map(|p| p.0.clone()))
            .collect();
        let far_labels: Vec<u32> = who
            .iter()
            .filter_map(|&i| starts[i].as_ref().map(|p| p.1))
            .collect();
        let blend_tol = match c.norm {
            Norm::Linf => BLEND_TOLERANCE,
            _ => theta,
        };
        let (mut points, mut labels) = s.binary_search(
            &who,
            &far,
            &far_labels,
            vec![1.0; who.len()],
            &vec![blend_tol; who.len()],
            Path::Blend,
        )?;
        if c.norm == Norm::Linf {
            let high: Vec<f32> = who
                .iter()
                .zip(&points)
                .map(|(&i, p)| linf(p, &s.x0[i]))
                .collect();
            let tol: Vec<f32> = high.iter().map(|&h| (h * theta).min(theta)).collect();
            (points, labels) = s.binary_search(&who, &points, &labels, high, &tol, Path::Linf)?;
        }
        let mut x: Vec<Option<Vec<f32>>> = vec![None; m];
        let mut dist = vec![f32::INFINITY; m];
        let mut done = vec![false; m];
        {
            let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
            let adv = s.offer(ctx, &who, &refs, &labels)?;
            for (j, &i) in who.iter().enumerate() {
                dist[i] = dist_of(&points[j], &s.x0[i]);
                done[i] = bounded && adv[j];
            }
        }
        for (j, p) in who.iter().zip(points) {
            x[*j] = Some(p);
        }

        let (lo, hi) = s.bounds;
        for step in 1..=c.steps {
            // Queries a full iteration needs besides the gradient samples.
            let search_cost = |dist: f32| -> u64 {
                let ratio = match c.norm {
                    Norm::Linf => (dist / (dist * theta).min(theta)).max(1.0),
                    _ => 1.0 / theta,
                };
                1 + ratio.log2().ceil() as u64
            };
            let evals_cap = ((c.init_evals as f64) * (step as f64).sqrt()) as u64;
            let evals_cap = evals_cap.min(c.max_evals as u64);
            let mut active = Vec::new();
            let mut evals = Vec::new();
            for i in 0..m {
                if done[i] || x[i].is_none() {
                    continue;
                }
                let spare = s.quota[i].saturating_sub(search_cost(dist[i]));
                let e = evals_cap.min(spare);
                if e < 2 {
                    continue;
                }
                active.push(i);
                evals.push(e as usize);
            }
            if active.is_empty() {
                break;
            }

            // Gradient-direction estimates, streamed in batches across inputs.
            let deltas: Vec<f32> = active
                .iter()
                .map(|&i| {
                    if step == 1 {
                        0.1 * (hi - lo)
                    } else {
                        match c.norm {
                            Norm::Linf => d * theta * dist[i],
                            _ => d.sqrt() * theta * dist[i],
                        }
                    }
                })
                .collect();
            let mut est = Estimates::new(active.len(), s.n);
            let mut batch = Batch::default();
            for (a, &i) in active.iter().enumerate() {
                let Some(xi) = x[i].as_deref() else { continue };
                for _ in 0..evals[a] {
                    let mut u: Vec<f32> = match c.norm {
                        Norm::Linf => (0..s.n)
                            .map(|_| ctx.rng.random_range(-1.0f32..=1.0))
                            .collect(),
                        _ => (0..s.n)
                            .map(|_| StandardNormal.sample(&mut ctx.rng))
                            .collect(),
                    };
                    let un = u.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    let delta = deltas[a];
                    for (q, v) in u.iter_mut().enumerate() {
                        let p = (xi[q] + delta * *v / un).clamp(lo, hi);
                        batch.images.push(p);
                        *v = (p - xi[q]) / delta;
                    }
                    batch.rvs.extend(u);
                    batch.owner.push(a);
                    if batch.owner.len() == MAX_QUERY_BATCH {
                        batch.flush(&mut s, &active, &mut est)?;
                    }
                }
            }
            batch.flush(&mut s, &active, &mut est)?;

            // Geometric step search along the estimate, then back to the boundary.
            let updates: Vec<Vec<f32>> = (0..active.len())
                .map(|a| {
                    let g = est.direction(a);
                    match c.norm {
                        Norm::Linf => g
                            .iter()
                            .map(|v| v.signum() * f32::from(*v != 0.0))
                            .collect(),
                        _ => g,
                    }
                })
                .collect();
            let mut size: Vec<f32> = active
                .iter()
                .map(|&i| dist[i] / (step as f32).sqrt())
                .collect();
            let mut stepped: Vec<Option<(Vec<f32>, u32)>> = vec![None; active.len()];
            for _ in 0..MAX_STEP_HALVINGS {
                let pending: Vec<usize> = (0..active.len())
                    .filter(|&a| stepped[a].is_none() && s.quota[active[a]] > 0)
                    .collect();
                if pending.is_empty() {
                    break;
                }
                let mut images = Vec::with_capacity(pending.len() * s.n);
                for &a in &pending {
                    if let Some(xi) = x[active[a]].as_deref() {
                        images.extend(
                            xi.iter()
                                .zip(&updates[a])
                                .map(|(v, u)| (v + size[a] * u).clamp(lo, hi)),
                        );
                    }
                }
                let ids: Vec<usize> = pending.iter().map(|&a| active[a]).collect();
                let (adv, seen) = s.decide(&ids, &images)?;
                for (q, &a) in pending.iter().enumerate() {
                    if adv[q] {
                        stepped[a] = Some((images[q * s.n..(q + 1) * s.n].to_vec(), seen[q]));
                    } else {
                        size[a] *= 0.5;
                    }
                }
            }
            let moved: Vec<usize> = (0..active.len())
                .filter(|&a| stepped[a].is_some())
                .collect();
            if moved.is_empty() {
                continue;
            }
            let who: Vec<usize> = moved.iter().map(|&a| active[a]).collect();
            let (far, far_labels): (Vec<Vec<f32>>, Vec<u32>) =
                moved.iter().filter_map(|&a| stepped[a].clone()).unzip();
            let (points, labels) = match c.norm {
                Norm::Linf => {
                    let high: Vec<f32> = who
                        .iter()
                        .zip(&far)
                        .map(|(&i, p)| linf(p, &s.x0[i]))
                        .collect();
                    let tol: Vec<f32> = high.iter().map(|&h| (h * theta).min(theta)).collect();
                    s.binary_search(&who, &far, &far_labels, high, &tol, Path::Linf)?
                }
                _ => s.binary_search(
                    &who,
                    &far,
                    &far_labels,
                    vec![1.0; who.len()],
                    &vec![theta; who.len()],
                    Path::Blend,
                )?,
            };
            let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
            let adv = s.offer(ctx, &who, &refs, &labels)?;
            // The walk always continues from the new boundary point (the paper's update);
            // the tracker keeps the smallest one seen.
            for ((j, &i), p) in who.iter().enumerate().zip(points) {
                dist[i] = dist_of(&p, &s.x0[i]);
                x[i] = Some(p);
                done[i] |= bounded && adv[j];
            }
            ctx.tick(step, c.steps);
        }
        Ok(())
    }
}

/// Running sums of one gradient estimate per input: `Σ f·u`, `Σ u` and `Σ f`, where `f`
/// is +1 for an adversarial sample and −1 otherwise.
struct Estimates {
    n: usize,
    fu: Vec<f32>,
    u: Vec<f32>,
    f: Vec<i64>,
    count: Vec<i64>,
}

impl Estimates {
    fn new(inputs: usize, n: usize) -> Self {
        Self {
            n,
            fu: vec![0.0; inputs * n],
            u: vec![0.0; inputs * n],
            f: vec![0; inputs],
            count: vec![0; inputs],
        }
    }

    /// The unit-L2 estimate for input `a`: the mean of `(f − mean f)·u`, or `±mean u` when
    /// every sample agreed (the paper's baseline subtraction).
    fn direction(&self, a: usize) -> Vec<f32> {
        let n = self.n;
        let count = self.count[a].max(1) as f32;
        let mean_f = self.f[a] as f32 / count;
        let fu = &self.fu[a * n..(a + 1) * n];
        let u = &self.u[a * n..(a + 1) * n];
        let g: Vec<f32> = if self.f[a] == self.count[a] {
            u.iter().map(|v| v / count).collect()
        } else if self.f[a] == -self.count[a] {
            u.iter().map(|v| -v / count).collect()
        } else {
            fu.iter()
                .zip(u)
                .map(|(a, b)| a / count - mean_f * b / count)
                .collect()
        };
        let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            g.iter().map(|v| v / norm).collect()
        } else {
            g
        }
    }
}

/// Gradient-estimation samples waiting for one oracle call.
#[derive(Default)]
struct Batch {
    images: Vec<f32>,
    rvs: Vec<f32>,
    owner: Vec<usize>,
}

impl Batch {
    fn flush(
        &mut self,
        s: &mut Decisions<'_, '_>,
        active: &[usize],
        est: &mut Estimates,
    ) -> Result<(), AttackError> {
        if self.owner.is_empty() {
            return Ok(());
        }
        let n = s.n;
        let who: Vec<usize> = self.owner.iter().map(|&a| active[a]).collect();
        let (adv, _) = s.decide(&who, &self.images)?;
        for (q, &a) in self.owner.iter().enumerate() {
            let f = if adv[q] { 1.0 } else { -1.0 };
            let rv = &self.rvs[q * n..(q + 1) * n];
            for (k, v) in rv.iter().enumerate() {
                est.fu[a * n + k] += f * v;
                est.u[a * n + k] += v;
            }
            est.f[a] += if adv[q] { 1 } else { -1 };
            est.count[a] += 1;
        }
        self.images.clear();
        self.rvs.clear();
        self.owner.clear();
        Ok(())
    }
}

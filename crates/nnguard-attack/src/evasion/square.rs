//! Square attack (Andriushchenko, Croce, Flammarion and Hein 2020, "Square Attack: a
//! query-efficient black-box adversarial attack via random search"), L∞ and L2.
//!
//! A score-based random search: starting from a perturbation on the surface of the ε-ball
//! (vertical stripes for L∞, a grid of centre-peaked squares for L2), each query changes one
//! random square window of the current best perturbation and keeps the change when the
//! margin loss drops. The side of the window shrinks on the `p_init` schedule of the paper
//! (as rescaled to the query budget by AutoAttack). An input stops costing queries as soon
//! as the tracker finds it adversarial.

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::decision::MAX_QUERY_BATCH;
use super::{AttackContext, EvasionAttack};
use crate::AttackError;
use crate::norm::{Norm, Threat};
use crate::oracle::Oracle;

/// Tries at drawing a window sign that changes the current image (the authors' code
/// resamples so no query is spent on a no-op; bounded here so a saturated window cannot
/// loop forever).
const MAX_SIGN_DRAWS: usize = 16;

/// Settings of [`Square`].
#[derive(Debug, Clone, PartialEq)]
pub struct SquareConfig {
    /// Norm of the ball (L∞ or L2).
    pub norm: Norm,
    /// Radius of the ball.
    pub eps: f32,
    /// Query budget per input, all restarts together.
    pub queries: u64,
    /// Initial fraction of the image a window covers, in (0, 1].
    pub p_init: f32,
    /// Independent runs sharing the budget; each later run attacks only inputs still
    /// unbroken.
    pub restarts: usize,
}

impl Default for SquareConfig {
    /// L∞, ε = 8/255, 5000 queries, `p_init` 0.8, one run (AutoAttack's standard setting).
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            queries: 5000,
            p_init: 0.8,
            restarts: 1,
        }
    }
}

impl SquareConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Square, AttackError> {
        if self.norm == Norm::L1 {
            return Err(AttackError::config(
                "--norm",
                "the Square attack supports linf and l2",
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(AttackError::config(
                "--eps",
                format!("must be > 0, got {}", self.eps),
            ));
        }
        AttackError::at_least_one("--queries", self.queries)?;
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(AttackError::config(
                "--p-init",
                format!("must be in (0, 1], got {}", self.p_init),
            ));
        }
        AttackError::at_least_one("--restarts", self.restarts as u64)?;
        Ok(Square { config: self })
    }
}

/// A built Square attack.
#[derive(Debug, Clone)]
pub struct Square {
    config: SquareConfig,
}

impl Square {
    /// The settings.
    pub fn config(&self) -> &SquareConfig {
        &self.config
    }

    /// The threat model the attack works in.
    pub fn threat(&self, bounds: (f32, f32)) -> Threat {
        Threat {
            norm: self.config.norm,
            eps: Some(self.config.eps),
            bounds,
        }
    }
}

/// The fraction of the image a window covers at iteration `iter` of `total`: `p_init`
/// halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10 000 (the paper's
/// schedule, rescaled to the budget as AutoAttack does).
pub fn p_selection(p_init: f32, iter: u64, total: u64) -> f32 {
    let it = iter.saturating_mul(10_000).checked_div(total).unwrap_or(0);
    let halvings = match it {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    p_init / (1u32 << halvings) as f32
}

/// Margin losses of a `[rows, k]` score buffer: `z_y − max_{j≠y} z_j` (untargeted, `y` the
/// true class) or `max_{j≠t} z_j − z_t` (targeted); negative means adversarial.
pub fn margins(scores: &[f32], k: usize, labels: &[u32], targeted: bool) -> Vec<f32> {
    scores
        .chunks(k.max(1))
        .zip(labels)
        .map(|(row, &y)| {
            let y = y as usize;
            let zy = row.get(y).copied().unwrap_or(f32::NEG_INFINITY);
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y)
                .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
            let m = if targeted { other - zy } else { zy - other };
            if m.is_nan() { f32::INFINITY } else { m }
        })
        .collect()
}

/// The rows of one run still being attacked, with their state.
struct Live {
    /// Index into the attacked rows.
    idx: Vec<usize>,
    /// Best image so far, `[live, n]`.
    best: Vec<f32>,
    /// Its margin loss.
    loss: Vec<f32>,
    /// Queries this run may still spend on the row.
    left: Vec<u64>,
}

impl Live {
    fn retain(&mut self, keep: &[bool], n: usize) {
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut j = 0;
        let mut best = Vec::with_capacity(self.best.len());
        for (i, &k) in keep.iter().enumerate() {
            if k {
                best.extend_from_slice(&self.best[i * n..(i + 1) * n]);
                self.idx[j] = self.idx[i];
                self.loss[j] = self.loss[i];
                self.left[j] = self.left[i];
                j += 1;
            }
        }
        self.idx.truncate(j);
        self.loss.truncate(j);
        self.left.truncate(j);
        self.best = best;
    }
}

impl<'o> EvasionAttack<dyn Oracle + 'o> for Square {
    fn name(&self) -> String {
        match self.config.norm {
            Norm::Linf => "square".into(),
            n => format!("square-{n}"),
        }
    }

    fn run(
        &self,
        oracle: &(dyn Oracle + 'o),
        ctx: &mut AttackContext<'_>,
    ) -> Result<(), AttackError> {
        let c = &self.config;
        let rows = ctx.tracker.active();
        if rows.is_empty() {
            return Ok(());
        }
        let shape = oracle.input_shape();
        let [ch, h, w] = shape;
        let n = ch * h * w;
        let k = oracle.num_classes();
        let bounds = oracle.bounds();
        let x0 = to_vec(ctx.tracker.x0_rows(&rows));
        if n == 0 || x0.len() != rows.len() * n {
            return Err(AttackError::Unsupported {
                attack: self.name(),
                reason: format!("inputs do not match the model's input shape {shape:?}"),
            });
        }
        let y = ctx.tracker.objective_labels(&rows);
        let quota: Vec<u64> = rows
            .iter()
            .map(|&r| c.queries.min(oracle.remaining(r)))
            .collect();
        let mut spent = vec![0u64; rows.len()];
        let geometry = Geometry {
            shape,
            eps: c.eps,
            bounds,
        };

        for restart in 0..c.restarts {
            let runs_left = (c.restarts - restart) as u64;
            let idx: Vec<usize> = (0..rows.len())
                .filter(|&i| !ctx.tracker.is_adversarial(rows[i]) && spent[i] < quota[i])
                .collect();
            if idx.is_empty() {
                break;
            }
            let left: Vec<u64> = idx
                .iter()
                .map(|&i| ((quota[i] - spent[i]) / runs_left).max(1))
                .collect();
            let total = left.iter().copied().max().unwrap_or(1);

            // Initial perturbation on the surface of the ball.
            let mut init = Vec::with_capacity(idx.len() * n);
            for &i in &idx {
                let x0r = &x0[i * n..(i + 1) * n];
                let start = match c.norm {
                    Norm::L2 => geometry.l2_init(x0r, &mut ctx.rng),
                    _ => geometry.linf_init(x0r, &mut ctx.rng),
                };
                init.extend(start);
            }
            let mut live = Live {
                loss: vec![f32::INFINITY; idx.len()],
                idx,
                best: init.clone(),
                left,
            };
            self.step(oracle, ctx, &rows, &y, &mut spent, &mut live, init, n, k)?;

            for iter in 1..total {
                if live.idx.is_empty() {
                    break;
                }
                let p = p_selection(c.p_init, iter - 1, total);
                let mut cand = Vec::with_capacity(live.best.len());
                for (j, &i) in live.idx.iter().enumerate() {
                    let x0r = &x0[i * n..(i + 1) * n];
                    let best = &live.best[j * n..(j + 1) * n];
                    let next = match c.norm {
                        Norm::L2 => geometry.l2_step(x0r, best, p, &mut ctx.rng),
                        _ => geometry.linf_step(x0r, best, p, &mut ctx.rng),
                    };
                    cand.extend(next);
                }
                self.step(oracle, ctx, &rows, &y, &mut spent, &mut live, cand, n, k)?;
                ctx.tick(
                    restart * total as usize + iter as usize,
                    c.restarts * total as usize,
                );
            }
        }
        Ok(())
    }
}

impl Square {
    /// Queries one candidate per live row (in oracle calls of at most [`MAX_QUERY_BATCH`]
    /// images), offers them to the tracker, keeps improvements and drops rows that are
    /// adversarial or out of queries.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        oracle: &dyn Oracle,
        ctx: &mut AttackContext<'_>,
        rows: &[usize],
        y: &[u32],
        spent: &mut [u64],
        live: &mut Live,
        cand: Vec<f32>,
        n: usize,
        k: usize,
    ) -> Result<(), AttackError> {
        let [ch, h, w] = oracle.input_shape();
        let m = live.idx.len();
        let device = ctx.tracker.x0().device();
        let targeted = ctx.tracker.is_targeted();
        let mut loss = Vec::with_capacity(m);
        let mut adv = Vec::with_capacity(m);
        for start in (0..m).step_by(MAX_QUERY_BATCH) {
            let end = (start + MAX_QUERY_BATCH).min(m);
            let b = end - start;
            let who: Vec<usize> = live.idx[start..end].iter().map(|&i| rows[i]).collect();
            let labels: Vec<u32> = live.idx[start..end].iter().map(|&i| y[i]).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(cand[start * n..end * n].to_vec(), [b, ch, h, w]),
                &device,
            );
            let scores = oracle.scores(&who, x.clone())?;
            let values = to_vec(scores.clone());
            if values.len() != b * k {
                return Err(AttackError::Unsupported {
                    attack: self.name(),
                    reason: format!("{} scores for {b} inputs of {k} classes", values.len()),
                });
            }
            loss.extend(margins(&values, k, &labels, targeted));
            adv.extend(ctx.tracker.offer(&who, x, Some(scores))?);
        }
        let mut keep = Vec::with_capacity(m);
        for j in 0..m {
            spent[live.idx[j]] += 1;
            live.left[j] = live.left[j].saturating_sub(1);
            if loss[j] < live.loss[j] {
                live.loss[j] = loss[j];
                live.best[j * n..(j + 1) * n].copy_from_slice(&cand[j * n..(j + 1) * n]);
            }
            keep.push(!adv[j] && live.left[j] > 0);
        }
        live.retain(&keep, n);
        Ok(())
    }
}

/// Image geometry and the ball, for building candidates on the host.
struct Geometry {
    shape: [usize; 3],
    eps: f32,
    bounds: (f32, f32),
}

impl Geometry {
    /// `x0 ± ε` in vertical stripes: one random sign per channel and column.
    fn linf_init(&self, x0: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
        let [ch, h, w] = self.shape;
        let mut out = x0.to_vec();
        for c in 0..ch {
            let signs: Vec<f32> = (0..w).map(|_| sign(rng)).collect();
            for r in 0..h {
                for (col, s) in signs.iter().enumerate() {
                    let i = (c * h + r) * w + col;
                    out[i] = (x0[i] + self.eps * s).clamp(self.bounds.0, self.bounds.1);
                }
            }
        }
        out
    }

    /// Sets one random window of side `√(p·h·w)` to `x0 ± ε`, one sign per channel,
    /// redrawing the signs (a few times) while the window would not change.
    fn linf_step(&self, x0: &[f32], best: &[f32], p: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let [ch, h, w] = self.shape;
        let s = ((p * (h * w) as f32).sqrt().round() as usize).clamp(1, h.min(w));
        let vh = rng.random_range(0..=h - s);
        let vw = rng.random_range(0..=w - s);
        let mut out = best.to_vec();
        for _ in 0..MAX_SIGN_DRAWS {
            let mut changed = false;
            for c in 0..ch {
                let sg = sign(rng);
                for r in vh..vh + s {
                    for col in vw..vw + s {
                        let i = (c * h + r) * w + col;
                        let v = (x0[i] + self.eps * sg).clamp(self.bounds.0, self.bounds.1);
                        changed |= (v - best[i]).abs() > 1e-7;
                        out[i] = v;
                    }
                }
            }
            if changed {
                break;
            }
        }
        out
    }

    /// A grid of `eta` squares with random signs, scaled to L2 norm ε.
    fn l2_init(&self, x0: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
        let [ch, h, w] = self.shape;
        let s = (h / 5).max(1);
        let start = h.saturating_sub(s * 5) / 2;
        let mut delta = vec![0.0f32; x0.len()];
        let mut vh = start;
        for _ in 0..h / s {
            let mut vw = start;
            for _ in 0..w / s {
                let e = eta(s, rng);
                for c in 0..ch {
                    let sg = sign(rng);
                    for (a, r) in (vh..(vh + s).min(h)).enumerate() {
                        for (b, col) in (vw..(vw + s).min(w)).enumerate() {
                            delta[(c * h + r) * w + col] += e[a * s + b] * sg;
                        }
                    }
                }
                vw += s;
            }
            vh += s;
        }
        self.apply_l2(x0, &delta)
    }

    /// Moves the mass of one random window (and empties a second one) into a fresh `eta`
    /// square, keeping the total L2 norm at ε (Algorithm 3 of the paper).
    fn l2_step(&self, x0: &[f32], best: &[f32], p: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let [ch, h, w] = self.shape;
        let mut s = ((p * (h * w) as f32).sqrt().round() as usize).max(3);
        if s.is_multiple_of(2) {
            s += 1;
        }
        let s = s.min(h.min(w));
        let mut delta: Vec<f32> = best.iter().zip(x0).map(|(b, a)| b - a).collect();
        let (vh, vw) = (rng.random_range(0..=h - s), rng.random_range(0..=w - s));
        let (vh2, vw2) = (rng.random_range(0..=h - s), rng.random_range(0..=w - s));
        let in1 = |r: usize, col: usize| (vh..vh + s).contains(&r) && (vw..vw + s).contains(&col);
        let in2 =
            |r: usize, col: usize| (vh2..vh2 + s).contains(&r) && (vw2..vw2 + s).contains(&col);

        let norm_image: f32 = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
        let mut norm_windows = 0.0f32;
        for c in 0..ch {
            for r in 0..h {
                for col in 0..w {
                    if in1(r, col) || in2(r, col) {
                        let v = delta[(c * h + r) * w + col];
                        norm_windows += v * v;
                    }
                }
            }
        }
        let norm_windows = norm_windows.sqrt();
        let budget = ((self.eps * self.eps - norm_image * norm_image).max(0.0) / ch as f32
            + norm_windows * norm_windows)
            .sqrt();
        let e = eta(s, rng);
        let mut fresh = vec![0.0f32; ch * s * s];
        for c in 0..ch {
            let sg = sign(rng);
            let at = |a: usize, b: usize| (c * h + vh + a) * w + vw + b;
            let old_norm = (0..s * s)
                .map(|q| delta[at(q / s, q % s)].powi(2))
                .sum::<f32>()
                .sqrt();
            let block = &mut fresh[c * s * s..(c + 1) * s * s];
            for q in 0..s * s {
                block[q] = e[q] * sg + delta[at(q / s, q % s)] / (1e-12 + old_norm);
            }
            let bn = block.iter().map(|v| v * v).sum::<f32>().sqrt();
            for v in block.iter_mut() {
                *v = *v / (1e-12 + bn) * budget;
            }
        }
        for c in 0..ch {
            for r in vh2..vh2 + s {
                for col in vw2..vw2 + s {
                    delta[(c * h + r) * w + col] = 0.0;
                }
            }
            for q in 0..s * s {
                delta[(c * h + vh + q / s) * w + vw + q % s] = fresh[c * s * s + q];
            }
        }
        self.apply_l2(x0, &delta)
    }

    /// `clip(x0 + ε·δ/‖δ‖₂)`.
    fn apply_l2(&self, x0: &[f32], delta: &[f32]) -> Vec<f32> {
        let norm = delta.iter().map(|v| v * v).sum::<f32>().sqrt();
        let scale = self.eps / (norm + 1e-12);
        x0.iter()
            .zip(delta)
            .map(|(a, d)| (a + d * scale).clamp(self.bounds.0, self.bounds.1))
            .collect()
    }
}

fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<bool>() { 1.0 } else { -1.0 }
}

/// Nested rectangles of weight `1/(k+1)²` around the centre of an `x × y` block, unit L2
/// norm (the paper's `M` of Algorithm 3).
fn eta_rectangles(x: usize, y: usize) -> Vec<f32> {
    let mut d = vec![0.0f32; x * y];
    if x == 0 || y == 0 {
        return d;
    }
    let (xc, yc) = (x as i64 / 2 + 1, y as i64 / 2 + 1);
    let (mut c0, mut c1) = (xc - 1, yc - 1);
    for k in 0..xc.max(yc) {
        let weight = 1.0 / ((k + 1) * (k + 1)) as f32;
        let (r0, r1) = (
            c0.max(0) as usize,
            ((c0 + 2 * k + 1).min(x as i64)).max(0) as usize,
        );
        let (q0, q1) = (
            c1.max(0) as usize,
            ((c1 + 2 * k + 1).min(y as i64)).max(0) as usize,
        );
        for r in r0..r1 {
            for q in q0..q1 {
                d[r * y + q] += weight;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    normalise(&mut d);
    d
}

/// An `s × s` block: rectangles of opposite signs in its two halves, randomly transposed,
/// unit L2 norm.
fn eta(s: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let top = s / 2;
    let mut d = eta_rectangles(top, s);
    d.extend(eta_rectangles(s - top, s).into_iter().map(|v| -v));
    normalise(&mut d);
    if rng.random::<bool>() {
        let t: Vec<f32> = (0..s * s).map(|q| d[(q % s) * s + q / s]).collect();
        d = t;
    }
    d
}

fn normalise(d: &mut [f32]) {
    let n = d.iter().map(|v| v * v).sum::<f32>().sqrt();
    if n > 0.0 {
        d.iter_mut().for_each(|v| *v /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedule_halves_p_at_the_paper_thresholds() {
        // 10 000 queries: unscaled thresholds.
        assert_eq!(p_selection(0.8, 10, 10_000), 0.8);
        assert_eq!(p_selection(0.8, 11, 10_000), 0.4);
        assert_eq!(p_selection(0.8, 500, 10_000), 0.1);
        assert_eq!(p_selection(0.8, 9_000, 10_000), 0.8 / 512.0);
        // 1000 queries: iteration 2 is 20 of 10 000.
        assert_eq!(p_selection(0.8, 2, 1000), 0.4);
        assert_eq!(p_selection(0.8, 1, 1000), 0.8);
    }

    #[test]
    fn margins_are_negative_exactly_when_adversarial() {
        let s = [1.0f32, 3.0, 2.0, 5.0, 0.0, 4.0];
        assert_eq!(margins(&s, 3, &[1, 0], false), vec![1.0, 1.0]);
        assert_eq!(margins(&s, 3, &[2, 2], false), vec![-1.0, -1.0]);
        // Targeted at class 2: the best other class minus the target.
        assert_eq!(margins(&s, 3, &[2, 2], true), vec![1.0, 1.0]);
    }

    #[test]
    fn eta_has_unit_norm_and_opposite_halves() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for s in [1, 3, 5, 8] {
            let e = eta(s, &mut rng);
            assert_eq!(e.len(), s * s);
            let n: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "side {s}: norm {n}");
            if s > 1 {
                assert!(e.iter().sum::<f32>().abs() < 0.5, "halves cancel roughly");
            }
        }
    }

    #[test]
    fn candidates_stay_on_the_ball_and_in_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let g = Geometry {
            shape: [2, 7, 6],
            eps: 0.3,
            bounds: (0.0, 1.0),
        };
        let x0: Vec<f32> = (0..84).map(|i| (i % 11) as f32 / 10.0).collect();
        let mut x = g.linf_init(&x0, &mut rng);
        for it in 0..50 {
            x = g.linf_step(&x0, &x, p_selection(0.8, it, 50), &mut rng);
            for (a, b) in x.iter().zip(&x0) {
                assert!((a - b).abs() <= 0.3 + 1e-6 && (0.0..=1.0).contains(a));
            }
        }
        // Bounds far away, so clipping does not shorten the perturbation.
        let g = Geometry {
            eps: 1.0,
            bounds: (-10.0, 10.0),
            ..g
        };
        let x0 = vec![0.5f32; 84];
        let mut x = g.l2_init(&x0, &mut rng);
        for it in 0..50 {
            let d: f32 = x
                .iter()
                .zip(&x0)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt();
            assert!((d - 1.0).abs() < 1e-4, "iteration {it}: L2 {d}");
            x = g.l2_step(&x0, &x, p_selection(0.8, it, 50), &mut rng);
        }
    }
}

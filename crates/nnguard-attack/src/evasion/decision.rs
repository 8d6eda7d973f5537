//! What the decision-based attacks ([`HopSkipJump`](super::HopSkipJump) and
//! [`Boundary`](super::Boundary)) share: label queries charged to each input's quota and
//! batched across inputs, an adversarial starting point (uniform noise, else another input
//! of the batch, blended towards the clean input), and binary searches towards the clean
//! input that keep the adversarial side.

use nnguard_model::tensor::{Device, Tensor, TensorData, one_hot};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::AttackContext;
use crate::AttackError;
use crate::oracle::Oracle;

/// Most images sent to the oracle in one call (larger batches run slower on the CPU
/// backend, and a remote scorer splits further by its own limit).
pub(crate) const MAX_QUERY_BATCH: usize = 256;

/// Precision, as a fraction of the way, of the search that blends the starting point
/// towards the clean input (HopSkipJump's initialisation).
pub(crate) const BLEND_TOLERANCE: f32 = 1e-3;

/// An adversarial starting point and the label the oracle gave it.
pub(crate) type Start = Option<(Vec<f32>, u32)>;

/// How a binary search moves between the clean input (0) and an adversarial point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// `(1 − α)·x0 + α·x` for α in [0, 1].
    Blend,
    /// `x` clipped to the L∞ ball of radius α around `x0`.
    Linf,
}

/// The inputs a decision-based attack works on, with their query quotas.
pub(crate) struct Decisions<'a, 'o> {
    oracle: &'a (dyn Oracle + 'o),
    /// Shape of one image.
    pub shape: [usize; 3],
    /// Values per image.
    pub n: usize,
    /// Valid input range.
    pub bounds: (f32, f32),
    device: Device,
    classes: usize,
    /// Tracker rows being attacked.
    pub rows: Vec<usize>,
    /// Their clean images.
    pub x0: Vec<Vec<f32>>,
    /// Labels to leave (untargeted) or reach (targeted).
    pub y: Vec<u32>,
    targeted: bool,
    /// Queries each input may still spend.
    pub quota: Vec<u64>,
}

impl<'a, 'o> Decisions<'a, 'o> {
    /// The inputs `rows` of `ctx`, each allowed `min(queries, what the oracle has left)`.
    pub fn new(
        oracle: &'a (dyn Oracle + 'o),
        ctx: &AttackContext<'_>,
        rows: Vec<usize>,
        queries: u64,
    ) -> Result<Self, AttackError> {
        let shape = oracle.input_shape();
        let n = shape.iter().product::<usize>();
        let flat = nnguard_model::tensor::to_vec(ctx.tracker.x0_rows(&rows));
        if n == 0 || flat.len() != rows.len() * n {
            return Err(AttackError::Unsupported {
                attack: "decision-based attack".into(),
                reason: format!("inputs do not match the model's input shape {shape:?}"),
            });
        }
        Ok(Self {
            oracle,
            shape,
            n,
            bounds: oracle.bounds(),
            device: ctx.tracker.x0().device(),
            classes: oracle.num_classes(),
            x0: flat.chunks(n).map(<[f32]>::to_vec).collect(),
            y: ctx.tracker.objective_labels(&rows),
            targeted: ctx.tracker.is_targeted(),
            quota: rows
                .iter()
                .map(|&r| queries.min(oracle.remaining(r)))
                .collect(),
            rows,
        })
    }

    /// Whether `label` counts as adversarial for input `i`.
    pub fn adversarial(&self, i: usize, label: u32) -> bool {
        if self.targeted {
            label == self.y[i]
        } else {
            label != self.y[i]
        }
    }

    /// Labels of `images` (`who.len()` images, the `j`th charged to input `who[j]`), in
    /// oracle calls of at most [`MAX_QUERY_BATCH`] images. Callers check the quotas first.
    pub fn labels(&mut self, who: &[usize], images: &[f32]) -> Result<Vec<u32>, AttackError> {
        let [c, h, w] = self.shape;
        let mut out = Vec::with_capacity(who.len());
        for (chunk, pixels) in who
            .chunks(MAX_QUERY_BATCH)
            .zip(images.chunks(MAX_QUERY_BATCH * self.n))
        {
            for &i in chunk {
                self.quota[i] = self.quota[i].saturating_sub(1);
            }
            let rows: Vec<usize> = chunk.iter().map(|&i| self.rows[i]).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(pixels.to_vec(), [chunk.len(), c, h, w]),
                &self.device,
            );
            let labels = self.oracle.labels(&rows, x)?;
            if labels.len() != chunk.len() {
                return Err(AttackError::Unsupported {
                    attack: "decision-based attack".into(),
                    reason: format!("{} labels for {} images", labels.len(), chunk.len()),
                });
            }
            out.extend(labels);
        }
        Ok(out)
    }

    /// Whether each of `images` is adversarial for its input, with the labels seen.
    pub fn decide(
        &mut self,
        who: &[usize],
        images: &[f32],
    ) -> Result<(Vec<bool>, Vec<u32>), AttackError> {
        let labels = self.labels(who, images)?;
        let adv = who
            .iter()
            .zip(&labels)
            .map(|(&i, &l)| self.adversarial(i, l))
            .collect();
        Ok((adv, labels))
    }

    /// Offers `points` of inputs `who` to the tracker, with the labels the oracle gave them
    /// as one-hot scores (the tracker reads only their argmax, so no query is repeated).
    /// Returns the tracker's verdicts.
    pub fn offer(
        &self,
        ctx: &mut AttackContext<'_>,
        who: &[usize],
        points: &[&[f32]],
        labels: &[u32],
    ) -> Result<Vec<bool>, AttackError> {
        if who.is_empty() {
            return Ok(Vec::new());
        }
        let [c, h, w] = self.shape;
        let flat: Vec<f32> = points.iter().flat_map(|p| p.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(flat, [who.len(), c, h, w]), &self.device);
        let scores = one_hot(labels, self.classes, &self.device);
        let rows: Vec<usize> = who.iter().map(|&i| self.rows[i]).collect();
        ctx.tracker.offer(&rows, x, Some(scores))
    }

    /// An adversarial starting point for each input, or `None` where none was found:
    /// up to `trials` uniform-noise images, then up to `trials` other inputs of `pool`
    /// (`pool_labels` their true labels), those of another class (or of the target class)
    /// first. Returns the points and their labels.
    pub fn starting_points(
        &mut self,
        rng: &mut ChaCha8Rng,
        trials: usize,
        pool: &[f32],
        pool_labels: &[u32],
    ) -> Result<Vec<Start>, AttackError> {
        let m = self.rows.len();
        let mut found: Vec<Start> = vec![None; m];
        let (lo, hi) = self.bounds;
        for _ in 0..trials {
            let who: Vec<usize> = (0..m)
                .filter(|&i| found[i].is_none() && self.quota[i] > 0)
                .collect();
            if who.is_empty() {
                break;
            }
            let mut images = Vec::with_capacity(who.len() * self.n);
            for _ in &who {
                images.extend((0..self.n).map(|_| rng.random_range(lo..=hi)));
            }
            let (adv, labels) = self.decide(&who, &images)?;
            for (j, &i) in who.iter().enumerate() {
                if adv[j] {
                    found[i] = Some((images[j * self.n..(j + 1) * self.n].to_vec(), labels[j]));
                }
            }
        }
        // Other inputs, in a random order with the likely adversarial ones first.
        let others = pool_labels.len().min(pool.len() / self.n.max(1));
        let mut order: Vec<usize> = (0..others).collect();
        order.shuffle(rng);
        for (i, slot) in found.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let row = self.rows[i];
            let mut candidates: Vec<usize> = order.iter().copied().filter(|&o| o != row).collect();
            let y = self.y[i];
            let targeted = self.targeted;
            candidates.sort_by_key(|&o| {
                let likely = if targeted {
                    pool_labels[o] == y
                } else {
                    pool_labels[o] != y
                };
                !likely
            });
            for &o in candidates.iter().take(trials) {
                if self.quota[i] == 0 {
                    break;
                }
                let image = &pool[o * self.n..(o + 1) * self.n];
                let (adv, labels) = self.decide(&[i], image)?;
                if adv[0] {
                    *slot = Some((image.to_vec(), labels[0]));
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The point at `alpha` on the path from `x0` of input `i` to `far`.
    pub fn along(&self, i: usize, far: &[f32], alpha: f32, path: Path) -> Vec<f32> {
        let x0 = &self.x0[i];
        match path {
            Path::Blend => x0
                .iter()
                .zip(far)
                .map(|(a, b)| (1.0 - alpha) * a + alpha * b)
                .collect(),
            Path::Linf => x0
                .iter()
                .zip(far)
                .map(|(a, b)| b.clamp(a - alpha, a + alpha))
                .collect(),
        }
    }

    /// Binary searches, in lockstep, for the adversarial point closest to `x0` on the
    /// path from `x0` (α = 0) to each adversarial `far[j]` (α = `high[j]`), until
    /// `high − low ≤ tol[j]` or the input's quota is spent. Returns the points at the
    /// final `high` and the labels seen there (`far_labels` where `high` never moved).
    pub fn binary_search(
        &mut self,
        who: &[usize],
        far: &[Vec<f32>],
        far_labels: &[u32],
        mut high: Vec<f32>,
        tol: &[f32],
        path: Path,
    ) -> Result<(Vec<Vec<f32>>, Vec<u32>), AttackError> {
        let mut low = vec![0.0f32; who.len()];
        let mut labels = far_labels.to_vec();
        loop {
            let searching: Vec<usize> = (0..who.len())
                .filter(|&j| high[j] - low[j] > tol[j] && self.quota[who[j]] > 0)
                .collect();
            if searching.is_empty() {
                break;
            }
            let mut images = Vec::with_capacity(searching.len() * self.n);
            let mut mids = Vec::with_capacity(searching.len());
            for &j in &searching {
                let mid = 0.5 * (low[j] + high[j]);
                mids.push(mid);
                images.extend(self.along(who[j], &far[j], mid, path));
            }
            let ids: Vec<usize> = searching.iter().map(|&j| who[j]).collect();
            let (adv, seen) = self.decide(&ids, &images)?;
            for (q, &j) in searching.iter().enumerate() {
                if adv[q] {
                    high[j] = mids[q];
                    labels[j] = seen[q];
                } else {
                    low[j] = mids[q];
                }
            }
        }
        let points = (0..who.len())
            .map(|j| self.along(who[j], &far[j], high[j], path))
            .collect();
        Ok((points, labels))
    }
}

/// L2 distance of two images.
pub(crate) fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt() as f32
}

/// L∞ distance of two images.
pub(crate) fn linf(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

//! Near-duplicate search: every pair of records whose root-mean-square pixel difference is
//! at most a threshold, without comparing all pairs.
//!
//! Two records `a`, `b` of `D` values are near duplicates when
//! `sqrt(Σ (a_i − b_i)² / D) ≤ threshold`, i.e. their Euclidean distance is at most
//! `r = threshold · √D`. The search is exact (it finds every such pair) and avoids O(n²):
//!
//! 1. Each record is projected onto `K ≤ 49` orthonormal vectors, the normalised indicators
//!    of a 7×7 grid of image blocks (`f_k = Σ_{i∈block k} x_i / √|block k|`), and the
//!    projections are rotated onto their principal axes (an eigendecomposition of their
//!    `K×K` covariance). An orthonormal projection followed by a rotation never increases
//!    distances, so near duplicates are within `r` of each other in every coordinate.
//! 2. Records go into a hash grid over the first three principal coordinates, with cells
//!    `r` wide: near duplicates lie in the same or adjacent cells. Within a cell, records
//!    are sorted by the fourth coordinate, and only those within `r` in it are candidates.
//! 3. Candidates are compared first on the projected coordinates
//!    (largest variance first, stopping as soon as the partial distance exceeds `r`), then
//!    on all pixels with exactly the same arithmetic as a brute-force comparison.
//!
//! On Fashion-MNIST (70,000 images, threshold 0.04) this looks at about a thousand
//! candidates per image instead of 70,000, and at all 784 pixels of about one pair in a
//! thousand of those.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::{DataError, Result};

/// The largest number of pairs a search returns; beyond it the result is marked truncated.
pub const MAX_NEAR_DUPLICATE_PAIRS: usize = 100_000;

/// Blocks per side of the projection grid.
const GRID: usize = 7;
/// Principal coordinates used as hash-grid keys.
const KEY_DIMS: usize = 3;

/// Settings of the near-duplicate search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearDuplicateConfig {
    /// Largest root-mean-square pixel difference (values in `[0, 1]`) at which two
    /// records count as near duplicates. Default 0.04 (about 10/255): in Fashion-MNIST the
    /// closest pair of images with different labels is 0.057 apart, while an image with
    /// a few pixels changed, or with ±8/255 noise, is well within it.
    pub threshold_rms: f32,
}

impl Default for NearDuplicateConfig {
    fn default() -> Self {
        NearDuplicateConfig {
            threshold_rms: 0.04,
        }
    }
}

impl NearDuplicateConfig {
    /// Checks the settings: the threshold must be a number in `(0, 0.5]`.
    pub fn build(self) -> Result<NearDuplicates> {
        let t = self.threshold_rms;
        if !(t > 0.0 && t <= 0.5) {
            return Err(DataError::InvalidOption {
                name: "--near-threshold",
                reason: format!(
                    "{t} is not in (0, 0.5]; it is a root-mean-square pixel difference on the [0, 1] scale (0.04 ≈ 10/255)"
                ),
            });
        }
        Ok(NearDuplicates { threshold_rms: t })
    }
}

/// A configured near-duplicate search (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearDuplicates {
    threshold_rms: f32,
}

/// Two near-duplicate records, `a < b`, and their root-mean-square difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearPair {
    /// The first record's index.
    pub a: usize,
    /// The second record's index.
    pub b: usize,
    /// `sqrt(Σ (a_i − b_i)² / D)`.
    pub rms: f32,
}

/// The pairs found, sorted, and whether [`MAX_NEAR_DUPLICATE_PAIRS`] cut the list short.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NearPairs {
    /// The pairs, sorted by `(a, b)`.
    pub pairs: Vec<NearPair>,
    /// Whether more pairs exist than were returned.
    pub truncated: bool,
}

impl NearDuplicates {
    /// The threshold in use.
    pub fn threshold_rms(&self) -> f32 {
        self.threshold_rms
    }

    /// Every pair of `records` (each `C·H·W` values of `shape`) that are near duplicates and
    /// for which `keep(a, b)` holds (e.g. "the labels differ"). Records holding NaN or
    /// infinite values are skipped.
    pub fn pairs(
        &self,
        records: &[&[f32]],
        shape: [usize; 3],
        keep: impl Fn(usize, usize) -> bool + Sync,
    ) -> NearPairs {
        let dim: usize = shape.iter().product();
        if dim == 0 {
            return NearPairs::default();
        }
        let limit = self.squared_limit(dim);
        // A little slack so that rounding in the projection never loses a pair; the final
        // decision is made on the pixels.
        let radius = limit.sqrt() * (1.0 + 1e-3) + 1e-6;
        let radius_sq = radius * radius;
        let usable: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].len() == dim && records[i].iter().all(|v| v.is_finite()))
            .collect();
        if usable.len() < 2 {
            return NearPairs::default();
        }
        let coords = Projection::fit(records, &usable, shape);
        let k = coords.dims;
        let key_dims = KEY_DIMS.min(k);

        // The coordinate after the grid's: each cell's members are sorted by it, and only
        // members within `radius` of each other in it are compared.
        let sweep = key_dims.min(k - 1);
        let mut grid: HashMap<[i64; KEY_DIMS], Vec<usize>> = HashMap::new();
        for pos in 0..usable.len() {
            grid.entry(cell(coords.row(pos), key_dims, radius))
                .or_default()
                .push(pos);
        }
        for members in grid.values_mut() {
            members.sort_by(|&p, &q| coords.row(p)[sweep].total_cmp(&coords.row(q)[sweep]));
        }
        let cells: Vec<(&[i64; KEY_DIMS], &Vec<usize>)> = grid.iter().collect();
        let offsets = neighbour_offsets(key_dims);
        let found = AtomicUsize::new(0);

        let mut pairs: Vec<NearPair> = cells
            .par_iter()
            .flat_map_iter(|&(key, members)| {
                let mut out = Vec::new();
                for off in &offsets {
                    if found.load(Ordering::Relaxed) > MAX_NEAR_DUPLICATE_PAIRS {
                        break;
                    }
                    let mut other = *key;
                    for (o, d) in other.iter_mut().zip(off) {
                        *o += d;
                    }
                    // Each unordered pair of cells once: the cell itself, and the
                    // neighbours that come after it.
                    if other < *key {
                        continue;
                    }
                    let Some(neighbours) = grid.get(&other) else {
                        continue;
                    };
                    let same = other == *key;
                    for (x, &p) in members.iter().enumerate() {
                        let fp = coords.row(p);
                        let lowest = fp[sweep] - radius;
                        let start = if same {
                            x + 1
                        } else {
                            neighbours.partition_point(|&q| coords.row(q)[sweep] < lowest)
                        };
                        for &q in &neighbours[start..] {
                            let fq = coords.row(q);
                            if fq[sweep] > fp[sweep] + radius {
                                break;
                            }
                            if !within(fp, fq, radius_sq) {
                                continue;
                            }
                            let (a, b) = (usable[p].min(usable[q]), usable[p].max(usable[q]));
                            let sq = squared_distance(records[a], records[b]);
                            if sq <= limit && keep(a, b) {
                                found.fetch_add(1, Ordering::Relaxed);
                                out.push(NearPair {
                                    a,
                                    b,
                                    rms: (sq / dim as f64).sqrt() as f32,
                                });
                            }
                        }
                    }
                }
                out
            })
            .collect();
        pairs.sort_by_key(|p| (p.a, p.b));
        let truncated = pairs.len() > MAX_NEAR_DUPLICATE_PAIRS;
        pairs.truncate(MAX_NEAR_DUPLICATE_PAIRS);
        NearPairs { pairs, truncated }
    }

    /// The squared Euclidean distance at and below which records of `dim` values are near
    /// duplicates.
    fn squared_limit(&self, dim: usize) -> f64 {
        let t = f64::from(self.threshold_rms);
        t * t * dim as f64
    }
}

/// `Σ (a_i − b_i)²`, accumulated in `f64`.
fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            let d = f64::from(x[l]) - f64::from(y[l]);
            acc[l] += d * d;
        }
    }
    let mut tail = 0f64;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = f64::from(*x) - f64::from(*y);
        tail += d * d;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Whether the squared distance of two projected rows is at most `limit`, adding the
/// coordinates in order (largest variance first) and stopping early.
fn within(a: &[f64], b: &[f64], limit: f64) -> bool {
    let mut sum = 0.0;
    for (x, y) in a.iter().zip(b) {
        sum += (x - y) * (x - y);
        if sum > limit {
            return false;
        }
    }
    true
}

/// The block (of a `GRID`×`GRID` grid over height and width, all channels together) each
/// value of a `shape` record belongs to.
fn block_index(shape: [usize; 3]) -> Vec<usize> {
    let [c, h, w] = shape;
    let (gh, gw) = (GRID.min(h.max(1)), GRID.min(w.max(1)));
    let mut out = Vec::with_capacity(c * h * w);
    for _ in 0..c {
        for y in 0..h {
            for x in 0..w {
                out.push((y * gh / h) * gw + x * gw / w);
            }
        }
    }
    out
}

/// The orthonormal block projection of one record.
fn project(record: &[f32], blocks: &[usize], block_len: &[usize]) -> Vec<f64> {
    let mut f = vec![0f64; block_len.len()];
    for (&v, &b) in record.iter().zip(blocks) {
        f[b] += f64::from(v);
    }
    for (x, &n) in f.iter_mut().zip(block_len) {
        *x /= (n.max(1) as f64).sqrt();
    }
    f
}

/// Records projected onto the blocks and rotated onto the principal axes of the
/// projections, one row of `dims` coordinates per usable record, largest variance first.
struct Projection {
    dims: usize,
    rows: Vec<f64>,
}

impl Projection {
    fn fit(records: &[&[f32]], usable: &[usize], shape: [usize; 3]) -> Self {
        let blocks = block_index(shape);
        let k = blocks.iter().copied().max().map_or(0, |m| m + 1);
        let mut block_len = vec![0usize; k];
        for &b in &blocks {
            block_len[b] += 1;
        }
        let features: Vec<Vec<f64>> = usable
            .par_iter()
            .map(|&i| project(records[i], &blocks, &block_len))
            .collect();
        let n = features.len() as f64;
        let mut mean = vec![0f64; k];
        for f in &features {
            for (m, x) in mean.iter_mut().zip(f) {
                *m += x / n;
            }
        }
        let cov = features
            .par_iter()
            .fold(
                || vec![0f64; k * k],
                |mut acc, f| {
                    for i in 0..k {
                        let di = f[i] - mean[i];
                        for j in i..k {
                            acc[i * k + j] += di * (f[j] - mean[j]);
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![0f64; k * k],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        *x += y;
                    }
                    a
                },
            );
        let mut sym = vec![0f64; k * k];
        for i in 0..k {
            for j in i..k {
                sym[i * k + j] = cov[i * k + j] / n;
                sym[j * k + i] = cov[i * k + j] / n;
            }
        }
        let (values, vectors) = symmetric_eigen(sym, k);
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let rows = features
            .par_iter()
            .flat_map_iter(|f| {
                order
                    .iter()
                    .map(|&e| {
                        (0..k)
                            .map(|i| vectors[i * k + e] * (f[i] - mean[i]))
                            .sum::<f64>()
                    })
                    .collect::<Vec<f64>>()
            })
            .collect();
        Projection { dims: k, rows }
    }

    fn row(&self, pos: usize) -> &[f64] {
        &self.rows[pos * self.dims..(pos + 1) * self.dims]
    }
}

/// Eigenvalues and eigenvectors of the symmetric `n×n` matrix `a` (row-major) by cyclic
/// Jacobi rotations; eigenvector `e` is column `e` of the returned row-major matrix, and
/// the eigenvectors are orthonormal to rounding error.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= total * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (x, y) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * x - s * y;
                    a[r * n + q] = s * x + c * y;
                }
                for r in 0..n {
                    let (x, y) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * x - s * y;
                    a[q * n + r] = s * x + c * y;
                }
                for r in 0..n {
                    let (x, y) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * x - s * y;
                    v[r * n + q] = s * x + c * y;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The grid cell of a projected record: its first `dims` coordinates divided by `width`.
fn cell(f: &[f64], dims: usize, width: f64) -> [i64; KEY_DIMS] {
    let mut key = [0i64; KEY_DIMS];
    for (k, x) in key.iter_mut().zip(&f[..dims]) {
        *k = (x / width).floor() as i64;
    }
    key
}

/// Every offset in `{-1, 0, 1}^dims` (zero in the unused key positions).
fn neighbour_offsets(dims: usize) -> Vec<[i64; KEY_DIMS]> {
    let mut out = vec![[0i64; KEY_DIMS]];
    for d in 0..dims {
        out = out
            .into_iter()
            .flat_map(|o| {
                [-1, 0, 1].map(|s| {
                    let mut n = o;
                    n[d] = s;
                    n
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The O(n²) reference: every pair, the same distance function and limit.
    fn brute_force(
        finder: &NearDuplicates,
        records: &[&[f32]],
        shape: [usize; 3],
        keep: impl Fn(usize, usize) -> bool,
    ) -> Vec<(usize, usize)> {
        let dim: usize = shape.iter().product();
        let limit = finder.squared_limit(dim);
        let mut out = Vec::new();
        for a in 0..records.len() {
            for b in a + 1..records.len() {
                let finite = records[a].iter().chain(records[b]).all(|v| v.is_finite());
                if finite && squared_distance(records[a], records[b]) <= limit && keep(a, b) {
                    out.push((a, b));
                }
            }
        }
        out
    }

    fn found(p: &NearPairs) -> Vec<(usize, usize)> {
        p.pairs.iter().map(|p| (p.a, p.b)).collect()
    }

    #[test]
    fn invalid_thresholds_are_refused() {
        for t in [0.0, -0.1, 0.6, f32::NAN, f32::INFINITY] {
            let err = NearDuplicateConfig { threshold_rms: t }
                .build()
                .unwrap_err();
            assert!(err.to_string().contains("--near-threshold"), "{err}");
        }
        assert!(NearDuplicateConfig::default().build().is_ok());
    }

    #[test]
    fn a_slightly_noisy_copy_is_found_and_a_different_image_is_not() {
        let a: Vec<f32> = (0..64).map(|i| (i % 7) as f32 / 7.0).collect();
        let noisy: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| (v + if i % 2 == 0 { 0.02 } else { -0.02 }).clamp(0.0, 1.0))
            .collect();
        let other: Vec<f32> = a.iter().map(|v| 1.0 - v).collect();
        let records = [&a[..], &noisy[..], &other[..]];
        let finder = NearDuplicateConfig::default().build().unwrap();
        let p = finder.pairs(&records, [1, 8, 8], |_, _| true);
        assert_eq!(found(&p), vec![(0, 1)]);
        assert!(p.pairs[0].rms <= 0.02 + 1e-6 && p.pairs[0].rms > 0.01);
        assert!(
            finder
                .pairs(&records, [1, 8, 8], |_, _| false)
                .pairs
                .is_empty()
        );
    }

    #[test]
    fn the_offsets_cover_the_neighbourhood_once() {
        let o = neighbour_offsets(3);
        assert_eq!(o.len(), 27);
        let unique: std::collections::HashSet<_> = o.iter().collect();
        assert_eq!(unique.len(), 27);
        assert!(o.iter().all(|d| d.iter().all(|x| (-1..=1).contains(x))));
        assert_eq!(neighbour_offsets(0), vec![[0; KEY_DIMS]]);
    }

    #[test]
    fn the_rotated_block_projection_never_increases_distances() {
        let shape = [3, 5, 9];
        assert_eq!(block_index(shape).iter().max(), Some(&34));
        let records: Vec<Vec<f32>> = (0..40)
            .map(|r| {
                (0..135)
                    .map(|i| (((i * 37 + r * 11) % 17) as f32 / 17.0).powi(1 + r % 3))
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = records.iter().map(Vec::as_slice).collect();
        let usable: Vec<usize> = (0..refs.len()).collect();
        let p = Projection::fit(&refs, &usable, shape);
        assert_eq!(p.dims, 35);
        for a in 0..refs.len() {
            for b in 0..refs.len() {
                let projected: f64 = p
                    .row(a)
                    .iter()
                    .zip(p.row(b))
                    .map(|(x, y)| (x - y).powi(2))
                    .sum();
                let full = squared_distance(refs[a], refs[b]);
                assert!(
                    projected <= full * (1.0 + 1e-9) + 1e-9,
                    "{a} {b}: {projected} > {full}"
                );
            }
        }
    }

    #[test]
    fn jacobi_eigenvectors_are_orthonormal_and_diagonalise() {
        let n = 6;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = ((i + 1) * (j + 1)) as f64 / 7.0
                    + if i == j { i as f64 } else { 0.0 }
                    + ((i * j) % 3) as f64;
            }
        }
        let (values, v) = symmetric_eigen(a.clone(), n);
        for e in 0..n {
            for f in 0..n {
                let dot: f64 = (0..n).map(|i| v[i * n + e] * v[i * n + f]).sum();
                assert!((dot - if e == f { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
            // A v = λ v.
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j * n + e]).sum();
                assert!((av - values[e] * v[i * n + e]).abs() < 1e-9, "{e} {i}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The bucketed search returns exactly the pairs of the O(n²) reference, on random
        /// sets built around a few prototypes (so that near pairs exist), with labels.
        #[test]
        fn matches_the_brute_force_reference(
            seeds in proptest::collection::vec((0usize..4, proptest::collection::vec(-0.06f32..0.06, 48), 0u32..3), 2..60),
            prototypes in proptest::collection::vec(proptest::collection::vec(0f32..1.0, 48), 4),
            threshold in 0.005f32..0.08,
            shape_pick in 0usize..3,
        ) {
            let shape = [[1, 6, 8], [3, 4, 4], [1, 1, 48]][shape_pick];
            let records: Vec<Vec<f32>> = seeds
                .iter()
                .map(|(p, noise, _)| {
                    prototypes[*p].iter().zip(noise).map(|(v, n)| (v + n).clamp(0.0, 1.0)).collect()
                })
                .collect();
            let labels: Vec<u32> = seeds.iter().map(|s| s.2).collect();
            let refs: Vec<&[f32]> = records.iter().map(Vec::as_slice).collect();
            let finder = NearDuplicateConfig { threshold_rms: threshold }.build().unwrap();
            let conflicting = |a: usize, b: usize| labels[a] != labels[b];
            let fast = finder.pairs(&refs, shape, conflicting);
            prop_assert_eq!(found(&fast), brute_force(&finder, &refs, shape, conflicting));
            let all = finder.pairs(&refs, shape, |_, _| true);
            prop_assert_eq!(found(&all), brute_force(&finder, &refs, shape, |_, _| true));
        }
    }

    #[test]
    fn a_clustered_set_of_a_thousand_records_matches_the_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let prototypes: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..100).map(|_| rng.random::<f32>()).collect())
            .collect();
        let records: Vec<Vec<f32>> = (0..1000)
            .map(|_| {
                let p = &prototypes[rng.random_range(0..20)];
                let spread = rng.random_range(0.0..0.08f32);
                p.iter()
                    .map(|v| (v + rng.random_range(-spread..=spread)).clamp(0.0, 1.0))
                    .collect()
            })
            .collect();
        let labels: Vec<u32> = (0..1000).map(|_| rng.random_range(0..4)).collect();
        let refs: Vec<&[f32]> = records.iter().map(Vec::as_slice).collect();
        let finder = NearDuplicateConfig::default().build().unwrap();
        let conflicting = |a: usize, b: usize| labels[a] != labels[b];
        let expected = brute_force(&finder, &refs, [1, 10, 10], conflicting);
        assert!(
            expected.len() > 100,
            "only {} pairs: the test would be weak",
            expected.len()
        );
        assert_eq!(
            found(&finder.pairs(&refs, [1, 10, 10], conflicting)),
            expected
        );
    }

    #[test]
    fn records_with_nan_are_skipped() {
        let a = [0.5f32; 16];
        let mut b = [0.5f32; 16];
        b[3] = f32::NAN;
        let records = [&a[..], &b[..], &a[..]];
        let finder = NearDuplicateConfig::default().build().unwrap();
        assert_eq!(
            found(&finder.pairs(&records, [1, 4, 4], |_, _| true)),
            vec![(0, 2)]
        );
    }
}

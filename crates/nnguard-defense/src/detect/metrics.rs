//! Detection metrics: ROC AUC, a threshold calibrated on clean scores for a target false
//! positive rate, and the rates at a threshold. Scores are "higher means more likely
//! adversarial"; an input is flagged when its score is strictly above the threshold.

/// The area under the ROC curve of `positive` (adversarial) against `negative` (clean)
/// scores: the probability that a random positive scores higher than a random negative,
/// ties counting one half (the Mann-Whitney U statistic divided by `|pos|·|neg|`). Computed
/// from ranks in `O(n log n)`; `None` when either side is empty or a score is NaN.
pub fn auc(negative: &[f32], positive: &[f32]) -> Option<f64> {
    if negative.is_empty()
        || positive.is_empty()
        || negative.iter().chain(positive).any(|v| v.is_nan())
    {
        return None;
    }
    let mut all: Vec<(f32, bool)> = negative
        .iter()
        .map(|&s| (s, false))
        .chain(positive.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos = all[i..=j].iter().filter(|e| e.1).count();
        rank_sum += mean_rank * pos as f64;
        i = j + 1;
    }
    let (np, nn) = (positive.len() as f64, negative.len() as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// The smallest observed clean score `t` such that at most a fraction `fpr` of `clean`
/// scores lie strictly above it: the threshold for a target false positive rate, calibrated
/// on clean data only. `None` for no scores, a NaN score or `fpr` outside `[0, 1]`.
pub fn calibrate(clean: &[f32], fpr: f64) -> Option<f32> {
    if clean.is_empty() || clean.iter().any(|v| v.is_nan()) || !(0.0..=1.0).contains(&fpr) {
        return None;
    }
    let mut s = clean.to_vec();
    s.sort_by(f32::total_cmp);
    let n = s.len();
    // At most k = floor(fpr·n) scores may exceed t: t = the (n − k)-th smallest score.
    let k = ((fpr * n as f64) + 1e-9).floor() as usize;
    Some(s[n - 1 - k.min(n - 1)])
}

/// The fraction of `scores` strictly above `threshold` (a TPR on adversarial scores, an FPR
/// on clean ones); `None` for no scores.
pub fn rate_above(scores: &[f32], threshold: f32) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    Some(scores.iter().filter(|&&s| s > threshold).count() as f64 / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// The definition itself: every (positive, negative) pair compared.
    fn brute_force_auc(neg: &[f32], pos: &[f32]) -> f64 {
        let mut wins = 0.0;
        for &p in pos {
            for &n in neg {
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (pos.len() * neg.len()) as f64
    }

    #[test]
    fn auc_matches_the_pairwise_definition_with_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        for (shift, quantise) in [(0.0f32, false), (0.8, false), (1.5, true), (-0.5, true)] {
            let q = |v: f32| if quantise { (v * 2.0).round() / 2.0 } else { v };
            let neg: Vec<f32> = (0..300).map(|_| q(normal.sample(&mut rng))).collect();
            let pos: Vec<f32> = (0..200)
                .map(|_| q(normal.sample(&mut rng) + shift))
                .collect();
            let fast = auc(&neg, &pos).unwrap();
            let slow = brute_force_auc(&neg, &pos);
            assert!((fast - slow).abs() < 1e-12, "{fast} vs {slow}");
        }
        assert_eq!(auc(&[0.0, 1.0], &[2.0, 3.0]), Some(1.0));
        assert_eq!(auc(&[2.0, 3.0], &[0.0, 1.0]), Some(0.0));
        assert_eq!(auc(&[1.0; 4], &[1.0; 3]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
        assert_eq!(auc(&[f32::NAN], &[1.0]), None);
    }

    #[test]
    fn calibration_recovers_known_quantiles() {
        // 1000 evenly spaced scores i/1000: at 5% FPR the threshold is 0.949 and exactly 50
        // scores lie above it.
        let grid: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let t = calibrate(&grid, 0.05).unwrap();
        assert!((t - 0.949).abs() < 1e-6, "{t}");
        assert_eq!(rate_above(&grid, t), Some(0.05));
        assert_eq!(calibrate(&grid, 0.0), Some(0.999));
        assert_eq!(calibrate(&grid, 1.0), Some(0.0));
        // Standard normal clean scores: the 95% quantile is 1.6449; adversarial scores from
        // N(2, 1) are flagged with probability Φ(2 − 1.6449) = 0.6387; the AUC is Φ(2/√2) =
        // 0.9214.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let clean: Vec<f32> = (0..200_000).map(|_| normal.sample(&mut rng)).collect();
        let adv: Vec<f32> = (0..200_000)
            .map(|_| normal.sample(&mut rng) + 2.0)
            .collect();
        let t = calibrate(&clean, 0.05).unwrap();
        assert!((t - 1.6449).abs() < 0.01, "{t}");
        let tpr = rate_above(&adv, t).unwrap();
        assert!((tpr - 0.6387).abs() < 0.01, "{tpr}");
        let a = auc(&clean[..20_000], &adv[..20_000]).unwrap();
        assert!((a - 0.9214).abs() < 0.01, "{a}");
        // Fresh clean data keeps (close to) the target false positive rate.
        let fresh: Vec<f32> = (0..200_000).map(|_| normal.sample(&mut rng)).collect();
        let fpr = rate_above(&fresh, t).unwrap();
        assert!((fpr - 0.05).abs() < 0.003, "{fpr}");
        assert_eq!(calibrate(&[], 0.05), None);
        assert_eq!(calibrate(&[1.0], 1.5), None);
    }
}

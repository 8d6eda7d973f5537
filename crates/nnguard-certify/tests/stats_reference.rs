//! The statistics of randomized smoothing against SciPy 1.17.1.
//!
//! Reference values computed once with SciPy 1.17.1 (NumPy 2.4, Python 3.11):
//! ```text
//! from scipy.stats import beta, norm, binomtest
//! beta.ppf(a, k, n - k + 1)          # one-sided Clopper–Pearson lower bound
//! norm.ppf(p)                        # standard normal quantile
//! binomtest(k, n, 0.5).pvalue        # two-sided exact binomial test
//! ```

use nnguard_certify::stats::{binomial_test_half, clopper_pearson_lower, normal_quantile};

/// (k, n, α, beta.ppf(α, k, n − k + 1)).
const CLOPPER_PEARSON: &[(u64, u64, f64, f64)] = &[
    (1, 1, 0.05, 0.05),
    (5, 10, 0.05, 0.2224411010081294),
    (9, 10, 0.001, 0.37627691091117454),
    (10, 10, 0.001, 0.5011872336272722),
    (95, 100, 0.001, 0.8446326941895317),
    (990, 1000, 0.001, 0.9760361871553114),
    (9990, 10000, 0.001, 0.9975883080325683),
    (10000, 10000, 0.001, 0.9993094630025899),
    (5000, 10000, 0.001, 0.484502946113578),
    (5200, 10000, 0.001, 0.5045018488791799),
    (7000, 10000, 0.01, 0.6892115802641136),
    (100000, 100000, 0.001, 0.9999309248330094),
    (1, 100, 0.05, 0.0005128014162622921),
];

/// (p, norm.ppf(p)).
const NORMAL_QUANTILE: &[(f64, f64)] = &[
    (1e-300, -37.0470962993612),
    (1e-20, -9.262340089798409),
    (1e-10, -6.361340902404056),
    (1e-05, -4.264890793922825),
    (0.001, -3.090232306167813),
    (0.02425, -1.972961051311885),
    (0.1, -1.2815515655446004),
    (0.3, -0.5244005127080409),
    (0.5, 0.0),
    (0.7, 0.5244005127080407),
    (0.9, 1.2815515655446004),
    (0.97575, 1.972961051311885),
    (0.999, 3.090232306167813),
    (0.99931, 3.1988018147048107),
    (0.9999999999, 6.361340889697422),
];

/// (k, n, binomtest(k, n, 0.5).pvalue).
const BINOMIAL_TEST: &[(u64, u64, f64)] = &[
    (5, 10, 1.0),
    (9, 10, 0.021484375),
    (10, 10, 0.001953125),
    (60, 100, 0.05688793364098089),
    (70, 100, 7.85013964559367e-05),
    (530, 1000, 0.06202319509836343),
    (0, 20, 1.9073486328125e-06),
    (3, 4, 0.625),
];

fn rel_err(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        ((a - b) / b).abs()
    }
}

#[test]
fn clopper_pearson_matches_scipy_beta_ppf() {
    for &(k, n, alpha, expected) in CLOPPER_PEARSON {
        let got = clopper_pearson_lower(k, n, alpha);
        assert!(
            rel_err(got, expected) < 1e-10,
            "k={k} n={n} α={alpha}: {got} vs {expected}"
        );
    }
    assert_eq!(clopper_pearson_lower(0, 100, 0.001), 0.0);
}

#[test]
fn normal_quantile_matches_scipy_norm_ppf() {
    for &(p, expected) in NORMAL_QUANTILE {
        let got = normal_quantile(p);
        assert!(
            (got - expected).abs() <= 1e-13 * expected.abs().max(1.0),
            "p={p}: {got} vs {expected}"
        );
    }
}

#[test]
fn binomial_test_matches_scipy_binomtest() {
    for &(k, n, expected) in BINOMIAL_TEST {
        let got = binomial_test_half(k, n);
        assert!(
            rel_err(got, expected) < 1e-10,
            "k={k} n={n}: {got} vs {expected}"
        );
    }
}

//! Class-balance shift between a data set and a reference: total-variation distance (the
//! flag) and Pearson's chi-square goodness-of-fit test (for the record).

use crate::{DataError, Result};

/// Settings of the class-balance comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceConfig {
    /// Total-variation distance between the class distributions above which the balance
    /// counts as shifted. Default 0.05: five percent of the records would have to change
    /// class to explain the difference (removing one of ten equal classes gives 0.1).
    pub max_total_variation: f64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            max_total_variation: 0.05,
        }
    }
}

impl BalanceConfig {
    /// Checks the settings: the threshold must be in `[0, 1)`.
    pub fn build(self) -> Result<Self> {
        let t = self.max_total_variation;
        if !(0.0..1.0).contains(&t) {
            return Err(DataError::InvalidOption {
                name: "--balance-threshold",
                reason: format!(
                    "{t} is not in [0, 1); it is a total-variation distance between class distributions (0.05 = 5% of records)"
                ),
            });
        }
        Ok(self)
    }
}

/// How the class counts of a data set differ from a reference's.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceShift {
    /// `½ Σ |p_c − q_c|` between the two class distributions, in `[0, 1]`.
    pub total_variation: f64,
    /// Pearson's statistic of the counts against the reference proportions scaled to the
    /// data set's size, over the classes the reference has.
    pub chi_square: f64,
    /// Degrees of freedom of the test (classes in the reference minus one).
    pub degrees_of_freedom: usize,
    /// Probability of a statistic at least this large if the data were drawn with the
    /// reference proportions. With tens of thousands of records even a harmless shift has a
    /// tiny p-value, which is why the flag is the total-variation distance.
    pub p_value: f64,
    /// Classes the reference has and the data set lacks.
    pub missing: Vec<usize>,
    /// Classes the data set has and the reference lacks.
    pub appeared: Vec<usize>,
}

/// Compares class counts (`actual`) with a reference's; a shorter list counts as zeros.
pub fn compare_class_counts(reference: &[u64], actual: &[u64]) -> BalanceShift {
    let k = reference.len().max(actual.len());
    let at = |v: &[u64], c: usize| v.get(c).copied().unwrap_or(0);
    let (n_ref, n_act) = (
        reference.iter().sum::<u64>() as f64,
        actual.iter().sum::<u64>() as f64,
    );
    let share = |count: u64, total: f64| {
        if total > 0.0 {
            count as f64 / total
        } else {
            0.0
        }
    };
    let mut tv = 0.0;
    let mut chi = 0.0;
    let mut present = 0usize;
    let (mut missing, mut appeared) = (Vec::new(), Vec::new());
    for c in 0..k {
        let (r, a) = (at(reference, c), at(actual, c));
        tv += (share(r, n_ref) - share(a, n_act)).abs();
        if r > 0 {
            present += 1;
            let expected = share(r, n_ref) * n_act;
            chi += (a as f64 - expected).powi(2) / expected;
            if a == 0 {
                missing.push(c);
            }
        } else if a > 0 {
            appeared.push(c);
        }
    }
    let dof = present.saturating_sub(1);
    BalanceShift {
        total_variation: tv / 2.0,
        chi_square: chi,
        degrees_of_freedom: dof,
        p_value: chi_square_sf(chi, dof),
        missing,
        appeared,
    }
}

/// The survival function `P(X ≥ x)` of the chi-square distribution with `dof` degrees of
/// freedom: the regularised upper incomplete gamma function `Q(dof/2, x/2)`
/// (series and continued fraction as in Numerical Recipes, §6.2).
pub fn chi_square_sf(x: f64, dof: usize) -> f64 {
    if dof == 0 || x.is_nan() {
        return if x > 0.0 { 0.0 } else { 1.0 };
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    gamma_q(dof as f64 / 2.0, x / 2.0)
}

fn gamma_q(a: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-15;
    const TINY: f64 = 1e-300;
    let prefactor = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut ap, mut del) = (a, 1.0 / a);
        let mut sum = del;
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * EPS {
                break;
            }
        }
        (1.0 - sum * prefactor).clamp(0.0, 1.0)
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < EPS {
                break;
            }
        }
        (prefactor * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, n = 9; relative error ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let mut sum = COEF[0];
    for (i, &c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn chi_square_survival_matches_published_critical_values() {
        // 95% and 99% points of the chi-square distribution (any statistics table).
        assert!(close(chi_square_sf(3.841_458_820_694_124, 1), 0.05, 1e-9));
        assert!(close(chi_square_sf(18.307_038_053_275_146, 10), 0.05, 1e-9));
        assert!(close(chi_square_sf(23.209_251_158_954_356, 10), 0.01, 1e-9));
        assert!(close(chi_square_sf(21.665_994_333_461_924, 9), 0.01, 1e-9));
        // Two degrees of freedom: exactly exp(−x/2), in both branches of the algorithm.
        for x in [0.1, 1.0, 2.5, 7.0, 40.0] {
            assert!(
                close(chi_square_sf(x, 2), (-x / 2.0f64).exp(), 1e-12),
                "{x}"
            );
        }
        assert_eq!(chi_square_sf(0.0, 5), 1.0);
        assert_eq!(chi_square_sf(f64::INFINITY, 5), 0.0);
        assert!(chi_square_sf(5000.0, 9) < 1e-300);
    }

    #[test]
    fn ln_gamma_is_exact_at_integers_and_halves() {
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        assert!(ln_gamma(1.0).abs() < 1e-14);
    }

    #[test]
    fn removing_one_of_ten_equal_classes_is_a_shift_of_a_tenth() {
        let reference = [100u64; 10];
        let mut actual = [100u64; 10];
        actual[3] = 0;
        let shift = compare_class_counts(&reference, &actual);
        assert!(close(shift.total_variation, 0.1, 1e-12));
        assert_eq!(shift.missing, vec![3]);
        assert_eq!(shift.degrees_of_freedom, 9);
        assert!(shift.p_value < 1e-10);

        let same = compare_class_counts(&reference, &[10; 10]);
        assert_eq!(same.total_variation, 0.0);
        assert_eq!(same.chi_square, 0.0);
        assert_eq!(same.p_value, 1.0);

        let grown = compare_class_counts(&[5, 5], &[5, 5, 10]);
        assert_eq!(grown.appeared, vec![2]);
        assert!(close(grown.total_variation, 0.5, 1e-12));
    }

    #[test]
    fn invalid_thresholds_are_refused() {
        for t in [-0.1, 1.0, f64::NAN] {
            let err = BalanceConfig {
                max_total_variation: t,
            }
            .build()
            .unwrap_err();
            assert!(err.to_string().contains("--balance-threshold"), "{err}");
        }
    }
}

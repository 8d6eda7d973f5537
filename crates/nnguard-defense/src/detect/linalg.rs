//! The small dense linear algebra the detectors need (covariances of a few hundred
//! features): Cholesky factorisation and triangular solves in `f64`, row-major.

/// The lower-triangular `L` with `A = L·Lᵀ` for a symmetric positive-definite `n×n` matrix,
/// or `None` when `A` is not positive definite.
pub fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    if a.len() != n * n {
        return None;
    }
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if !(s.is_finite() && s > 0.0) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L·y = b` for lower-triangular `L`.
pub fn forward_solve(l: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    y
}

/// Solves `Lᵀ·x = y` for lower-triangular `L`.
pub fn backward_solve(l: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0.0f64; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// Solves `A·x = b` for symmetric positive-definite `A`, adding `ridge·I` (and more, tenfold
/// at a time, if needed) until the factorisation succeeds.
pub fn solve_spd(a: &[f64], b: &[f64], n: usize, ridge: f64) -> Option<Vec<f64>> {
    let (l, _) = regularised_cholesky(a, n, ridge)?;
    Some(backward_solve(&l, &forward_solve(&l, b, n), n))
}

/// Cholesky factor of `A + r·I` for the smallest `r = ridge·10^k` (k = 0..12) that makes it
/// positive definite; returns the factor and the ridge used.
pub fn regularised_cholesky(a: &[f64], n: usize, ridge: f64) -> Option<(Vec<f64>, f64)> {
    let mut r = ridge.max(0.0);
    for _ in 0..13 {
        let mut m = a.to_vec();
        for i in 0..n {
            m[i * n + i] += r;
        }
        if let Some(l) = cholesky(&m, n) {
            return Some((l, r));
        }
        r = if r == 0.0 { 1e-12 } else { r * 10.0 };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_hand_made_system() {
        // A = [[4, 2], [2, 3]] = L·Lᵀ with L = [[2, 0], [1, √2]].
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        assert!((l[0] - 2.0).abs() < 1e-12 && (l[2] - 1.0).abs() < 1e-12);
        assert!((l[3] - 2f64.sqrt()).abs() < 1e-12);
        // A·[1, -1] = [2, -1].
        let x = solve_spd(&a, &[2.0, -1.0], 2, 0.0).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-12 && (x[1] + 1.0).abs() < 1e-12,
            "{x:?}"
        );
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        // A singular matrix is made solvable by the ridge.
        assert!(solve_spd(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0], 2, 1e-9).is_some());
    }
}

//! Test helpers shared by nnguard's crates.
//!
//! [`assert_close`] is the one way tests compare floats: with an explicit relative and
//! absolute tolerance, never a number of "decimals".

use std::path::PathBuf;

/// Tolerance of a float comparison: `|a − e| ≤ abs + rel·|e|` must hold.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Relative tolerance.
    pub rel: f64,
    /// Absolute tolerance.
    pub abs: f64,
}

impl Tol {
    /// Only an absolute tolerance.
    pub const fn abs(abs: f64) -> Self {
        Self { rel: 0.0, abs }
    }
    /// Only a relative tolerance.
    pub const fn rel(rel: f64) -> Self {
        Self { rel, abs: 0.0 }
    }
}

/// Panics with the first offending index unless every `actual[i]` is within `tol` of
/// `expected[i]` (and the lengths agree). NaN never passes.
#[track_caller]
pub fn assert_close(actual: &[f64], expected: &[f64], tol: Tol) {
    assert_eq!(actual.len(), expected.len(), "length differs");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = (a - e).abs() <= tol.abs + tol.rel * e.abs();
        assert!(
            ok,
            "element {i}: {a} vs expected {e} (difference {}, tolerance {tol:?})",
            (a - e).abs()
        );
    }
}

/// [`assert_close`] for `f32` values.
#[track_caller]
pub fn assert_close_f32(actual: &[f32], expected: &[f64], tol: Tol) {
    let a: Vec<f64> = actual.iter().map(|&v| f64::from(v)).collect();
    assert_close(&a, expected, tol);
}

/// The directory of the package under test, read when the test runs.
///
/// `cargo test` sets `CARGO_MANIFEST_DIR` for the test process; the compile-time value is
/// only the fallback, because a build directory shared by several checkouts can keep an
/// artifact compiled in another checkout.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The workspace's `testdata/` directory: the nearest one above the package under test.
pub fn testdata() -> PathBuf {
    let start = manifest_dir();
    start
        .ancestors()
        .map(|d| d.join("testdata"))
        .find(|d| d.join("reference").is_dir())
        .unwrap_or_else(|| start.join("../../testdata"))
}

/// Reads a JSON fixture under `testdata/`.
pub fn json(rel: &str) -> serde_json::Value {
    let path = testdata().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// A JSON array of numbers as `f64`s.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_are_honoured() {
        assert_close(
            &[1.0, 100.5],
            &[1.0005, 100.0],
            Tol {
                rel: 0.01,
                abs: 1e-3,
            },
        );
        let r = std::panic::catch_unwind(|| assert_close(&[1.0], &[1.1], Tol::abs(0.01)));
        assert!(r.is_err());
        let r = std::panic::catch_unwind(|| assert_close(&[f64::NAN], &[0.0], Tol::abs(1.0)));
        assert!(r.is_err());
    }
}

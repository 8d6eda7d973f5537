//! Robust accuracy not monotone in ε: a larger ball contains the smaller one, so robust
//! accuracy can only fall as ε grows. A rise means the attack failed at the larger ε on
//! inputs it broke at a smaller one.

use super::{CheckResult, Status};
use crate::report::Summary;

/// The verdict on the accuracy-vs-ε curve (ε ascending).
pub fn judge(s: &Summary) -> CheckResult {
    const ID: &str = "monotone-in-eps";
    const TITLE: &str = "robust accuracy falls as ε grows";
    if s.curve.len() < 2 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "one ε only; pass a list (--eps 0.01,0.03,0.1) for the curve",
        );
    }
    let rises: Vec<String> = s
        .curve
        .windows(2)
        .filter(|w| w[1].robust > w[0].robust)
        .map(|w| {
            format!(
                "{} robust at ε={} but {} at ε={}",
                w[0].robust, w[0].eps, w[1].robust, w[1].eps
            )
        })
        .collect();
    if rises.is_empty() {
        CheckResult::new(
            ID,
            TITLE,
            Status::Passed,
            format!("non-increasing over {} values of ε", s.curve.len()),
        )
    } else {
        CheckResult::new(ID, TITLE, Status::Failed, rises.join("; ")).with_action(
            "the attack is not reliable at the larger ε (too few steps, a bad step size, or masked gradients)",
        )
    }
}

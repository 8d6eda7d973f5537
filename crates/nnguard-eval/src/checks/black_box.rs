//! Black-box beating white-box: a query-only attack that breaks inputs every gradient
//! attack left standing is the classic sign of gradient masking; a white-box attack sees
//! strictly more and should not lose. White-box attacks run first, black-box attacks on
//! what remains, so every black-box success here is an input the gradients missed.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status, tolerance};

/// One ε's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlackBoxEvidence {
    /// Correctly classified inputs attacked.
    pub correct: u64,
    /// Inputs still robust after every white-box attack (what black-box attacks ran on).
    pub white_box_survivors: u64,
    /// Of those, inputs a black-box attack broke.
    pub black_box_successes: u64,
    /// Whether both kinds of attack ran.
    pub compared: bool,
}

impl BlackBoxEvidence {
    pub(crate) fn merge(&mut self, o: &Self) {
        self.correct += o.correct;
        self.white_box_survivors += o.white_box_survivors;
        self.black_box_successes += o.black_box_successes;
        self.compared |= o.compared;
    }
}

/// The verdict over every ε.
pub fn judge(per_eps: &[BlackBoxEvidence], eps: &[f32]) -> CheckResult {
    const ID: &str = "black-box-not-stronger";
    const TITLE: &str = "black-box attacks do not beat white-box attacks";
    if !per_eps.iter().any(|e| e.compared) {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "needs both a white-box and a black-box attack in the ensemble",
        );
    }
    let worst = per_eps
        .iter()
        .zip(eps)
        .filter(|(e, _)| e.compared)
        .max_by_key(|(e, _)| e.black_box_successes);
    let Some((e, &at)) = worst else {
        return CheckResult::new(ID, TITLE, Status::Skipped, "nothing compared");
    };
    let detail = format!(
        "at ε={at}, black-box attacks broke {} of the {} inputs that every white-box attack left robust ({} correct)",
        e.black_box_successes, e.white_box_survivors, e.correct
    );
    if e.black_box_successes > tolerance(e.correct) {
        CheckResult::new(ID, TITLE, Status::Failed, detail).with_action(
            "gradients are likely masked; the robust accuracy includes the black-box successes, but stronger adaptive attacks may find more",
        )
    } else {
        CheckResult::new(ID, TITLE, Status::Passed, detail)
    }
}

//! Non-converged optimisation: the inputs still robust at the headline ε are attacked again
//! with more restarts (and twice the steps when `--steps` is given). If that breaks more
//! than a handful, the first run had not converged and its robust accuracy was too high.
//! The extra successes are counted in the reported number.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status, tolerance};

/// Counts of the second run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceEvidence {
    /// Correctly classified inputs.
    pub correct: u64,
    /// Robust inputs attacked again.
    pub attempted: u64,
    /// Of those, inputs the longer run broke.
    pub extra_successes: u64,
    /// The attack rerun, and how.
    #[serde(default)]
    pub attack: String,
}

impl ConvergenceEvidence {
    pub(crate) fn merge(&mut self, o: &Self) {
        self.correct += o.correct;
        self.attempted += o.attempted;
        self.extra_successes += o.extra_successes;
        if self.attack.is_empty() {
            self.attack.clone_from(&o.attack);
        }
    }
}

/// The verdict.
pub fn judge(e: &ConvergenceEvidence) -> CheckResult {
    const ID: &str = "converged";
    const TITLE: &str = "more steps and restarts find nothing new";
    if e.attack.is_empty() {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "needs an iterative white-box attack",
        );
    }
    let detail = format!(
        "{} broke {} of the {} inputs still robust ({} correct)",
        e.attack, e.extra_successes, e.attempted, e.correct
    );
    if e.extra_successes > tolerance(e.correct) {
        CheckResult::new(ID, TITLE, Status::Failed, detail).with_action(
            "the attacks had not converged; the extra successes are counted, but raise --steps and --restarts until this passes",
        )
    } else {
        CheckResult::new(ID, TITLE, Status::Passed, detail)
    }
}

//! An unbounded attack not reaching 0%: with ε covering the whole input range, any input
//! can be turned into any other, so a working gradient attack breaks every input. Survivors
//! mean the attack cannot follow the model's gradients.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status};

/// Counts of the unbounded run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnboundedEvidence {
    /// Inputs attacked.
    pub attempted: u64,
    /// Inputs still correctly classified.
    pub survived: u64,
    /// The ε used.
    pub eps: f32,
    /// The attack used.
    #[serde(default)]
    pub attack: String,
}

impl UnboundedEvidence {
    pub(crate) fn merge(&mut self, o: &Self) {
        self.attempted += o.attempted;
        self.survived += o.survived;
        self.eps = self.eps.max(o.eps);
        if self.attack.is_empty() {
            self.attack.clone_from(&o.attack);
        }
    }
}

/// The verdict.
pub fn judge(e: &UnboundedEvidence) -> CheckResult {
    const ID: &str = "unbounded-reaches-zero";
    const TITLE: &str = "an unbounded attack breaks every input";
    if e.attempted == 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "needs gradients and a correct input",
        );
    }
    let detail = format!(
        "{} at ε={} (the whole input range) left {} of {} inputs correctly classified",
        e.attack, e.eps, e.survived, e.attempted
    );
    if e.survived > 0 {
        CheckResult::new(ID, TITLE, Status::Failed, detail).with_action(
            "gradient attacks cannot follow this model (masked or obfuscated gradients); do not trust their bounded results",
        )
    } else {
        CheckResult::new(ID, TITLE, Status::Passed, detail)
    }
}

//! The harness's re-check of every attack result: each adversarial example must lie in the
//! ε-ball and the valid range, contain no NaN, and be misclassified by a fresh query. A
//! result that fails is discarded (the input counts as robust) and reported here, as are
//! successes an attack claimed that the model's fresh prediction does not reproduce.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status};

/// Counts of the re-check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntegrityEvidence {
    /// Attack results re-checked.
    pub checked: u64,
    /// Results outside the ε-ball.
    pub outside_ball: u64,
    /// Results outside the valid input range.
    pub outside_bounds: u64,
    /// Results with NaN or infinite values.
    pub non_finite: u64,
    /// Successes recorded during an attack that a fresh prediction did not reproduce.
    pub not_reproduced: u64,
    /// Attacks with such discrepancies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<String>,
}

impl IntegrityEvidence {
    /// Notes an attack with a discrepancy.
    pub fn blame(&mut self, attack: &str) {
        if !self.attacks.iter().any(|a| a == attack) {
            self.attacks.push(attack.into());
        }
    }

    /// Results that broke the threat model.
    pub fn violations(&self) -> u64 {
        self.outside_ball + self.outside_bounds + self.non_finite
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.checked += o.checked;
        self.outside_ball += o.outside_ball;
        self.outside_bounds += o.outside_bounds;
        self.non_finite += o.non_finite;
        self.not_reproduced += o.not_reproduced;
        for a in &o.attacks {
            self.blame(a);
        }
    }
}

/// The verdict; claims not reproduced by a randomised model are expected and only warned.
pub fn judge(e: &IntegrityEvidence, random: bool) -> CheckResult {
    const ID: &str = "verified-results";
    const TITLE: &str = "every attack result re-checked by the harness";
    if e.violations() > 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "{} of {} results broke the threat model ({} outside the ε-ball, {} outside the input range, {} not finite); attacks: {}",
                e.violations(),
                e.checked,
                e.outside_ball,
                e.outside_bounds,
                e.non_finite,
                e.attacks.join(", ")
            ),
        )
        .with_action("those results were discarded; the attack implementation is faulty");
    }
    if e.not_reproduced > 0 {
        let detail = format!(
            "{} successes recorded during attacks were not reproduced by a fresh prediction and count as robust; attacks: {}",
            e.not_reproduced,
            e.attacks.join(", ")
        );
        return if random {
            CheckResult::new(ID, TITLE, Status::Warning, detail)
                .with_action("expected for a randomised model; see the deterministic check")
        } else {
            CheckResult::new(ID, TITLE, Status::Failed, detail).with_action(
                "the attack reports scores the model does not give (a buggy attack); its claims were discarded, which can hide real successes",
            )
        };
    }
    CheckResult::new(
        ID,
        TITLE,
        Status::Passed,
        format!(
            "{} results in the ε-ball and the input range, finite, and confirmed by fresh predictions",
            e.checked
        ),
    )
}

//! Single-step beating iterative: FGSM is one step of the iterative attacks' first
//! iteration, so an input FGSM breaks but the iterative attacks do not points to a
//! loss surface that misleads iterative optimisation (gradient masking, too small steps).

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status, tolerance};

/// One ε's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SingleStepEvidence {
    /// Correctly classified inputs.
    pub correct: u64,
    /// Inputs FGSM broke.
    pub fgsm_successes: u64,
    /// Inputs FGSM broke that every iterative attack left robust.
    pub fgsm_only: u64,
    /// Whether FGSM ran next to an iterative white-box attack.
    pub compared: bool,
}

impl SingleStepEvidence {
    pub(crate) fn merge(&mut self, o: &Self) {
        self.correct += o.correct;
        self.fgsm_successes += o.fgsm_successes;
        self.fgsm_only += o.fgsm_only;
        self.compared |= o.compared;
    }
}

/// The verdict over every ε.
pub fn judge(per_eps: &[SingleStepEvidence], eps: &[f32]) -> CheckResult {
    const ID: &str = "iterative-beats-single-step";
    const TITLE: &str = "iterative attacks beat a single step";
    let worst = per_eps
        .iter()
        .zip(eps)
        .filter(|(e, _)| e.compared)
        .max_by_key(|(e, _)| e.fgsm_only);
    let Some((e, &at)) = worst else {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "needs gradients and an iterative white-box attack",
        );
    };
    let detail = format!(
        "at ε={at}, FGSM broke {} inputs, {} of which every iterative attack missed ({} correct)",
        e.fgsm_successes, e.fgsm_only, e.correct
    );
    if e.fgsm_only > tolerance(e.correct) {
        CheckResult::new(ID, TITLE, Status::Failed, detail).with_action(
            "the iterative attacks are misled (gradient masking or a too small step); FGSM's successes are counted",
        )
    } else {
        CheckResult::new(ID, TITLE, Status::Passed, detail)
    }
}

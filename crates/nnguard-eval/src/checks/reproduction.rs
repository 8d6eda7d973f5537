//! The wrapped model not reproducing the user's clean predictions: a wrong normalisation,
//! channel order or input range, or an ONNX export that differs from the trained model,
//! makes every robustness number describe a different model. Compared against reference
//! predictions or logits when the user gives them; otherwise clean accuracy near chance is
//! flagged.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status, pct};
use crate::report::Summary;

/// Largest logit difference (relative to the logit scale) that still counts as the same.
pub const LOGIT_TOLERANCE: f32 = 1e-3;

/// Comparisons with the user's reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReproductionEvidence {
    /// Inputs whose prediction was compared with a reference prediction.
    pub compared: u64,
    /// Of those, inputs predicted differently.
    pub mismatched: u64,
    /// First few mismatching input indices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<usize>,
    /// Inputs whose logits were compared with reference logits.
    pub logits_compared: u64,
    /// Largest absolute logit difference.
    pub max_logit_difference: f32,
    /// Largest absolute reference logit (the scale of the difference).
    pub logit_scale: f32,
    /// Number of classes (for the chance level).
    pub classes: u64,
}

impl ReproductionEvidence {
    /// Records one input's prediction against the reference's.
    pub fn compare_prediction(&mut self, index: usize, ours: u32, theirs: u32) {
        self.compared += 1;
        if ours != theirs {
            self.mismatched += 1;
            if self.examples.len() < 5 {
                self.examples.push(index);
            }
        }
    }

    /// Records one input's logits against the reference's.
    pub fn compare_logits(&mut self, ours: &[f32], theirs: &[f32]) {
        self.logits_compared += 1;
        for (a, b) in ours.iter().zip(theirs) {
            let d = (a - b).abs();
            self.max_logit_difference =
                self.max_logit_difference
                    .max(if d.is_nan() { f32::INFINITY } else { d });
            self.logit_scale = self.logit_scale.max(b.abs());
        }
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.compared += o.compared;
        self.mismatched += o.mismatched;
        self.examples.extend(&o.examples);
        self.examples.sort_unstable();
        self.examples.truncate(5);
        self.logits_compared += o.logits_compared;
        self.max_logit_difference = self.max_logit_difference.max(o.max_logit_difference);
        self.logit_scale = self.logit_scale.max(o.logit_scale);
        self.classes = self.classes.max(o.classes);
    }
}

/// The verdict.
pub fn judge(e: &ReproductionEvidence, s: &Summary) -> CheckResult {
    const ID: &str = "reproduces-clean-predictions";
    const TITLE: &str = "the wrapped model reproduces the user's model";
    let hint = "check --normalize (mean/std), the channel order and the input range [0, 1]";
    if e.compared > 0 && e.mismatched * 1000 > e.compared {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "predictions differ from the reference on {} of {} inputs ({}; e.g. inputs {:?})",
                e.mismatched,
                e.compared,
                pct(e.mismatched, e.compared),
                e.examples
            ),
        )
        .with_action(format!(
            "the evaluation describes a different model: {hint}"
        ));
    }
    if e.logits_compared > 0 && e.max_logit_difference > LOGIT_TOLERANCE * e.logit_scale.max(1.0) {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "logits differ from the reference logits by up to {:.3e} on {} inputs (scale {:.3})",
                e.max_logit_difference, e.logits_compared, e.logit_scale
            ),
        )
        .with_action(format!("the exported model does not compute the reference: {hint}"));
    }
    if e.compared > 0 || e.logits_compared > 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Passed,
            format!(
                "{} of {} predictions differ; logits within {:.1e} on {} inputs",
                e.mismatched, e.compared, e.max_logit_difference, e.logits_compared
            ),
        );
    }
    let chance = 1.0 / e.classes.max(1) as f64;
    if s.inputs >= 20 && e.classes > 1 && s.clean_accuracy < 1.5 * chance {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Warning,
            format!(
                "clean accuracy {:.1}% is near chance ({:.1}%): the model likely sees its inputs differently than in training",
                100.0 * s.clean_accuracy,
                100.0 * chance
            ),
        )
        .with_action(format!(
            "{hint}; pass --reference-predictions with the original model's predictions to compare"
        ));
    }
    CheckResult::new(
        ID,
        TITLE,
        Status::Passed,
        format!(
            "no reference given; clean accuracy {:.1}% is far above chance ({:.1}%)",
            100.0 * s.clean_accuracy,
            100.0 * chance
        ),
    )
}

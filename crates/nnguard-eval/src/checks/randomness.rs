//! Randomness across identical forward passes: a randomised model (noise layers, dropout
//! left on, random transforms) makes single gradients and single predictions misleading.
//! The harness then attacks with EOT and counts an input as robust only if every one of
//! several repeated predictions is correct.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status};

/// Largest difference between two passes that still counts as identical, relative to the
/// largest output magnitude.
pub const RELATIVE_TOLERANCE: f32 = 1e-5;

/// Two passes over the same inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RandomnessEvidence {
    /// Rows compared.
    pub rows: u64,
    /// Rows whose outputs differ.
    pub differing_rows: u64,
    /// Largest absolute difference seen.
    pub max_difference: f32,
    /// Passes averaged by EOT when randomness was found.
    pub eot_samples: usize,
    /// Repeated predictions per input when randomness was found.
    pub repeats: usize,
}

impl RandomnessEvidence {
    /// Compares two passes of `[rows, k]` outputs.
    pub fn observe(&mut self, a: &[f32], b: &[f32], k: usize) {
        for (ra, rb) in a.chunks(k.max(1)).zip(b.chunks(k.max(1))) {
            self.rows += 1;
            let scale = ra.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = ra
                .iter()
                .zip(rb)
                .map(|(x, y)| {
                    if x.is_nan() && y.is_nan() {
                        0.0
                    } else {
                        (x - y).abs()
                    }
                })
                .fold(
                    0.0f32,
                    |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                );
            if diff > RELATIVE_TOLERANCE * scale {
                self.differing_rows += 1;
            }
            self.max_difference = self.max_difference.max(diff);
        }
    }

    /// Whether any pass differed.
    pub fn is_random(&self) -> bool {
        self.differing_rows > 0
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.rows += o.rows;
        self.differing_rows += o.differing_rows;
        self.max_difference = self.max_difference.max(o.max_difference);
        self.eot_samples = self.eot_samples.max(o.eot_samples);
        self.repeats = self.repeats.max(o.repeats);
    }
}

/// The verdict.
pub fn judge(e: &RandomnessEvidence) -> CheckResult {
    const ID: &str = "deterministic";
    const TITLE: &str = "identical forward passes agree";
    if e.rows == 0 {
        return CheckResult::new(ID, TITLE, Status::Skipped, "no passes were compared");
    }
    if e.is_random() {
        CheckResult::new(
            ID,
            TITLE,
            Status::Warning,
            format!(
                "outputs differ between two identical passes on {} of {} inputs (up to {:.3e}): the model is randomised",
                e.differing_rows, e.rows, e.max_difference
            ),
        )
        .with_action(format!(
            "attacked with EOT over {} passes; an input counts as robust only if all {} repeated predictions are correct",
            e.eot_samples, e.repeats
        ))
    } else {
        CheckResult::new(
            ID,
            TITLE,
            Status::Passed,
            format!("{} inputs gave identical outputs twice", e.rows),
        )
    }
}

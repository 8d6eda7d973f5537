//! Softmax instead of logits: a model whose outputs are probabilities (every row in
//! `[0, 1]`, summing to 1) saturates the cross-entropy gradient, so gradient attacks
//! under-report. The harness then attacks the log-probabilities.

use serde::{Deserialize, Serialize};

use super::{CheckResult, Status};

/// How far a row's sum may be from 1 and still count as probabilities.
pub const SUM_TOLERANCE: f32 = 1e-3;

/// Output rows looked at and how many of them are probability vectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputEvidence {
    /// Rows looked at.
    pub rows: u64,
    /// Rows in `[0, 1]` summing to 1.
    pub probability_rows: u64,
}

impl OutputEvidence {
    /// Looks at `[rows, k]` outputs.
    pub fn observe(&mut self, outputs: &[f32], k: usize) {
        for row in outputs.chunks(k.max(1)) {
            self.rows += 1;
            let in_range = row.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v));
            let sum: f32 = row.iter().sum();
            if in_range && (sum - 1.0).abs() <= SUM_TOLERANCE {
                self.probability_rows += 1;
            }
        }
    }

    /// Whether most rows are probabilities.
    pub fn is_probabilities(&self) -> bool {
        self.rows > 0 && 2 * self.probability_rows > self.rows
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.rows += o.rows;
        self.probability_rows += o.probability_rows;
    }
}

/// The verdict.
pub fn judge(e: &OutputEvidence) -> CheckResult {
    const ID: &str = "probabilities-not-logits";
    const TITLE: &str = "model outputs logits, not probabilities";
    if e.rows == 0 {
        return CheckResult::new(ID, TITLE, Status::Skipped, "no outputs were looked at");
    }
    if e.is_probabilities() {
        CheckResult::new(
            ID,
            TITLE,
            Status::Warning,
            format!(
                "{} of {} output rows are probability vectors (in [0, 1], summing to 1): the model ends in a softmax, which flattens cross-entropy gradients",
                e.probability_rows, e.rows
            ),
        )
        .with_action("attacked the log-probabilities instead; export the model without its final softmax")
    } else {
        CheckResult::new(
            ID,
            TITLE,
            Status::Passed,
            format!(
                "{} of {} rows look like probabilities",
                e.probability_rows, e.rows
            ),
        )
    }
}

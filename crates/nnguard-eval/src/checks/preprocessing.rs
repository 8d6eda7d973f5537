//! Non-differentiable preprocessing (quantisation, JPEG, thermometer encoding, ...): input
//! gradients vanish, yet the loss changes when the input is perturbed. Gradients are then
//! obfuscated (Athalye et al. 2018), and the harness adds a PGD that follows gradients
//! estimated from queries (SPSA); with the preprocessing known, BPDA
//! ([`crate::adapt::Bpda`]) gives exact forward passes and identity gradients through it.

use super::gradients::GradientEvidence;
use super::{CheckResult, Status};

/// The verdict.
pub fn judge(e: &GradientEvidence) -> CheckResult {
    const ID: &str = "obfuscated-gradients";
    const TITLE: &str = "no non-differentiable preprocessing";
    if e.rows == 0 {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Skipped,
            "no gradients (query-only target)",
        );
    }
    if e.obfuscated() {
        return CheckResult::new(
            ID,
            TITLE,
            Status::Failed,
            format!(
                "gradients are zero on {} inputs, yet the loss changed under random perturbations of size {} on {} of the {} probed: a non-differentiable step (quantisation, rounding, JPEG) hides the gradients",
                e.zero_rows, e.probe, e.moving_rows, e.probed_rows
            ),
        )
        .with_action(
            "added spsa-pgd (PGD on query-estimated gradients) to the ensemble; for a known preprocessing, attack through it with BPDA (nnguard_eval::adapt::Bpda: exact forward, identity backward)",
        );
    }
    CheckResult::new(
        ID,
        TITLE,
        Status::Passed,
        if e.probed_rows == 0 {
            "gradients do not vanish".to_string()
        } else {
            format!(
                "the loss stayed flat around {} of the {} zero-gradient inputs",
                e.probed_rows - e.moving_rows,
                e.probed_rows
            )
        },
    )
}

//! Validity checks: every evaluation gathers evidence for each of them and prints their
//! verdicts beside the robust accuracy, so that a number is never shown without the
//! symptoms of a broken evaluation (Carlini et al. 2019, "On Evaluating Adversarial
//! Robustness"; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of Security").
//!
//! Each check owns one file: its evidence (counts that add across shards, so merged reports
//! judge exactly like an unsharded run) and its judgement.

pub mod black_box;
pub mod convergence;
pub mod gradients;
pub mod integrity;
pub mod monotonic;
pub mod preprocessing;
pub mod randomness;
pub mod reproduction;
pub mod single_step;
pub mod softmax;
pub mod unbounded;

use serde::{Deserialize, Serialize};

use crate::report::Summary;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No symptom found.
    Passed,
    /// Not applicable to this evaluation (e.g. no black-box attack ran).
    Skipped,
    /// A symptom was found and the harness compensated for it (EOT, log-probabilities, ...).
    Warning,
    /// A symptom that makes the robust accuracy an overestimate.
    Failed,
}

impl Status {
    /// A one-word label for terminals.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::Skipped => "skip",
            Status::Warning => "WARN",
            Status::Failed => "FAIL",
        }
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable identifier (`probabilities-not-logits`, ...).
    pub id: String,
    /// What is checked, in a few words.
    pub title: String,
    /// The verdict.
    pub status: Status,
    /// What was measured.
    pub detail: String,
    /// What the harness did about it, or what the user should do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl CheckResult {
    pub(crate) fn new(id: &str, title: &str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            status,
            detail: detail.into(),
            action: None,
        }
    }

    pub(crate) fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }
}

/// Everything the checks judge, gathered during an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Output ranges (softmax instead of logits).
    pub outputs: softmax::OutputEvidence,
    /// Identical forward passes.
    pub randomness: randomness::RandomnessEvidence,
    /// Input gradients, and whether the loss moves where they vanish.
    pub gradients: gradients::GradientEvidence,
    /// Black-box successes after every white-box attack, per ε.
    pub black_box: Vec<black_box::BlackBoxEvidence>,
    /// FGSM successes that the iterative attacks missed, per ε.
    pub single_step: Vec<single_step::SingleStepEvidence>,
    /// An attack with an ε covering the whole input range.
    pub unbounded: unbounded::UnboundedEvidence,
    /// A second, longer run on the inputs still robust.
    pub convergence: convergence::ConvergenceEvidence,
    /// Clean predictions against the user's reference.
    pub reproduction: reproduction::ReproductionEvidence,
    /// The harness's re-check of every attack's result.
    pub integrity: integrity::IntegrityEvidence,
}

impl Evidence {
    /// Empty evidence for `eps` radii.
    pub fn new(eps: usize) -> Self {
        Self {
            black_box: vec![Default::default(); eps],
            single_step: vec![Default::default(); eps],
            ..Default::default()
        }
    }

    /// Adds another shard's evidence.
    pub fn merge(&mut self, o: &Evidence) {
        self.outputs.merge(&o.outputs);
        self.randomness.merge(&o.randomness);
        self.gradients.merge(&o.gradients);
        merge_vec(
            &mut self.black_box,
            &o.black_box,
            black_box::BlackBoxEvidence::merge,
        );
        merge_vec(
            &mut self.single_step,
            &o.single_step,
            single_step::SingleStepEvidence::merge,
        );
        self.unbounded.merge(&o.unbounded);
        self.convergence.merge(&o.convergence);
        self.reproduction.merge(&o.reproduction);
        self.integrity.merge(&o.integrity);
    }
}

fn merge_vec<T: Default + Clone>(a: &mut Vec<T>, b: &[T], f: impl Fn(&mut T, &T)) {
    if a.len() < b.len() {
        a.resize(b.len(), T::default());
    }
    for (x, y) in a.iter_mut().zip(b) {
        f(x, y);
    }
}

/// Judges every check, in a fixed order.
pub fn judge_all(e: &Evidence, summary: &Summary, eps: &[f32]) -> Vec<CheckResult> {
    vec![
        softmax::judge(&e.outputs),
        randomness::judge(&e.randomness),
        gradients::judge(&e.gradients),
        preprocessing::judge(&e.gradients),
        black_box::judge(&e.black_box, eps),
        single_step::judge(&e.single_step, eps),
        monotonic::judge(summary),
        unbounded::judge(&e.unbounded),
        convergence::judge(&e.convergence),
        reproduction::judge(&e.reproduction, summary),
        integrity::judge(&e.integrity, e.randomness.is_random()),
    ]
}

/// How many inputs may show a symptom before it counts: at least one, or 1% of `n`.
pub(crate) fn tolerance(n: u64) -> u64 {
    n.div_ceil(100).max(1)
}

/// `a` of `b` as a percentage string.
pub(crate) fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

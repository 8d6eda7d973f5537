//! The evaluation report: per-input records from which every number is derived, attack
//! statistics and check evidence that add across shards, and the derived summary and check
//! verdicts. Partial reports of shards merge into exactly the report of an unsharded run.

use std::collections::BTreeSet;
use std::path::Path;

use nnguard_attack::Norm;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::checks::{CheckResult, Evidence, Status, judge_all};
use crate::shard::Shard;

/// Schema version of the JSON report.
pub const SCHEMA: &str = "nnguard-eval/v1";

/// One evaluation, possibly of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// Version of nnguard that wrote it.
    pub nnguard_version: String,
    /// The model (file or remote target).
    pub model: String,
    /// The data set and split.
    pub data: String,
    /// Norm of the threat model.
    pub norm: Norm,
    /// Radii evaluated, ascending.
    pub eps: Vec<f32>,
    /// Valid input range.
    pub bounds: (f32, f32),
    /// Attacks of the ensemble, in the order they ran.
    pub attacks: Vec<AttackInfo>,
    /// Settings that shape the results.
    pub settings: Settings,
    /// Inputs of the whole evaluation (all shards together).
    pub total_inputs: usize,
    /// Shards this report covers (empty: the whole evaluation).
    pub shards: Vec<Shard>,
    /// Whether every input of the covered shards was evaluated.
    pub complete: bool,
    /// Why the evaluation stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Derived: headline numbers and the accuracy-vs-ε curve.
    pub summary: Summary,
    /// Derived: the validity checks' verdicts.
    pub checks: Vec<CheckResult>,
    /// Per attack and ε: work done and successes.
    pub attack_stats: Vec<AttackStats>,
    /// What the checks judge.
    pub evidence: Evidence,
    /// Wall-clock seconds by phase.
    pub timings: Timings,
    /// A few adversarial examples at the headline ε, for the HTML page.
    pub examples: Vec<Example>,
    /// Every input's result.
    pub inputs: Vec<InputRecord>,
    /// Adversarial images at the headline ε, NCHW, one per input (clean where not broken);
    /// kept only on request and never serialised.
    #[serde(skip)]
    pub adversarials: Option<Vec<f32>>,
}

/// An attack of the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackInfo {
    /// What ran.
    pub name: String,
    /// The ensemble slot it filled.
    pub role: String,
    /// Whether it stands in for an attack that is not available.
    pub stand_in: bool,
    /// `white-box` or `black-box`.
    pub kind: String,
}

/// Settings recorded with the results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Base seed.
    pub seed: u64,
    /// Inputs per batch (shards are cut on batch boundaries).
    pub batch_size: usize,
    /// `--steps`, when given.
    pub steps: Option<usize>,
    /// `--step`, when given.
    pub step: Option<f32>,
    /// `--restarts`, when given.
    pub restarts: Option<usize>,
    /// `--queries`, when given.
    pub queries: Option<u64>,
    /// `--loss`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<nnguard_model::Loss>,
    /// Passes averaged by EOT for randomised models.
    pub eot_samples: usize,
    /// Repeated predictions for randomised models.
    pub repeats: usize,
}

/// Work and successes of one attack at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackStats {
    /// The attack (diagnostic runs carry a suffix, e.g. `fgsm` or `pgd-ce+restarts`).
    pub attack: String,
    /// Index into [`Report::eps`].
    pub eps_index: usize,
    /// Inputs it ran on.
    pub attempted: u64,
    /// Inputs it broke that no earlier attack had broken.
    pub successes: u64,
    /// Model queries spent (black-box attacks).
    pub queries: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Wall-clock seconds by phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Clean predictions and the checks run before attacking.
    pub preflight_seconds: f64,
    /// The ensemble's attacks.
    pub attack_seconds: f64,
    /// Diagnostic attacks of the checks.
    pub check_seconds: f64,
    /// Everything.
    pub total_seconds: f64,
}

/// One input's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Index in the data set.
    pub index: usize,
    /// True class.
    pub label: u32,
    /// Clean prediction.
    pub clean: u32,
    /// Results per ε (empty for misclassified inputs, which are not attacked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eps: Vec<EpsRecord>,
}

/// One input's result at one ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpsRecord {
    /// The first attack that broke it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_by: Option<String>,
    /// Prediction on the adversarial example (the clean prediction if unbroken).
    pub predicted: u32,
    /// Perturbation size in the threat's norm (0 if unbroken).
    pub distance: f32,
    /// L2 size of the perturbation.
    pub l2: f32,
    /// L∞ size of the perturbation.
    pub linf: f32,
    /// Black-box queries spent on it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// An adversarial example for the HTML grid; images are PNG files, base64-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Index in the data set.
    pub index: usize,
    /// True class.
    pub label: u32,
    /// Prediction on the adversarial example.
    pub adversarial: u32,
    /// The attack that found it.
    pub attack: String,
    /// Its perturbation size.
    pub distance: f32,
    /// The clean image.
    pub clean_png: String,
    /// The adversarial image.
    pub adversarial_png: String,
    /// The perturbation, scaled to the full grey range.
    pub perturbation_png: String,
}

/// Headline numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Inputs evaluated.
    pub inputs: usize,
    /// Correctly classified inputs.
    pub correct: usize,
    /// `correct / inputs`.
    pub clean_accuracy: f64,
    /// Index of the headline ε (the largest).
    pub headline: usize,
    /// Robust accuracy at each ε, ascending.
    pub curve: Vec<CurvePoint>,
    /// Whether robust accuracy never rises with ε.
    pub monotone: bool,
    /// Checks passed, skipped, warned and failed.
    pub checks: CheckCounts,
}

/// Check verdicts by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckCounts {
    /// Passed.
    pub passed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Warnings.
    pub warnings: usize,
    /// Failures.
    pub failed: usize,
}

/// Robust accuracy at one ε.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The radius.
    pub eps: f32,
    /// Inputs correct and unbroken.
    pub robust: usize,
    /// `robust / inputs`.
    pub robust_accuracy: f64,
    /// Robust accuracy after each attack in turn (worst case so far).
    pub after_attack: Vec<AttackStep>,
    /// Sizes of the successful perturbations.
    pub perturbation: PerturbationStats,
    /// Black-box queries spent.
    pub queries: u64,
    /// Mean queries per attacked input.
    pub mean_queries: f64,
}

/// Robust accuracy after one attack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackStep {
    /// The attack.
    pub attack: String,
    /// Inputs it broke.
    pub broken: usize,
    /// Inputs robust after it.
    pub robust: usize,
    /// `robust / inputs`.
    pub robust_accuracy: f64,
}

/// Median and mean sizes of successful perturbations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerturbationStats {
    /// Successful attacks.
    pub successes: usize,
    /// Median size in the threat's norm.
    pub median: f32,
    /// Mean size in the threat's norm.
    pub mean: f32,
    /// Median L2 size.
    pub median_l2: f32,
    /// Median L∞ size.
    pub median_linf: f32,
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Report {
    /// Recomputes the summary and the check verdicts from the records and evidence.
    pub fn finalize(&mut self) {
        let inputs = self.inputs.len();
        let correct_records: Vec<&InputRecord> =
            self.inputs.iter().filter(|r| r.clean == r.label).collect();
        let correct = correct_records.len();
        let curve: Vec<CurvePoint> = self
            .eps
            .iter()
            .enumerate()
            .map(|(ei, &eps)| {
                let at: Vec<&EpsRecord> = correct_records
                    .iter()
                    .filter_map(|r| r.eps.get(ei))
                    .collect();
                let broken: Vec<&&EpsRecord> =
                    at.iter().filter(|e| e.broken_by.is_some()).collect();
                let robust = correct - broken.len();
                let mut after_attack = Vec::new();
                let mut remaining = correct;
                let mut names: Vec<&str> = Vec::new();
                for s in self.attack_stats.iter().filter(|s| s.eps_index == ei) {
                    if !names.contains(&s.attack.as_str()) {
                        names.push(&s.attack);
                    }
                }
                for name in names {
                    let n = broken
                        .iter()
                        .filter(|e| e.broken_by.as_deref() == Some(name))
                        .count();
                    remaining -= n.min(remaining);
                    after_attack.push(AttackStep {
                        attack: name.to_string(),
                        broken: n,
                        robust: remaining,
                        robust_accuracy: ratio(remaining, inputs),
                    });
                }
                let d: Vec<f32> = broken.iter().map(|e| e.distance).collect();
                let mean = if d.is_empty() {
                    0.0
                } else {
                    (d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64) as f32
                };
                let queries: u64 = at.iter().map(|e| e.queries).sum();
                CurvePoint {
                    eps,
                    robust,
                    robust_accuracy: ratio(robust, inputs),
                    after_attack,
                    perturbation: PerturbationStats {
                        successes: broken.len(),
                        median: median(d),
                        mean,
                        median_l2: median(broken.iter().map(|e| e.l2).collect()),
                        median_linf: median(broken.iter().map(|e| e.linf).collect()),
                    },
                    queries,
                    mean_queries: if at.is_empty() {
                        0.0
                    } else {
                        queries as f64 / at.len() as f64
                    },
                }
            })
            .collect();
        let monotone = curve.windows(2).all(|w| w[1].robust <= w[0].robust);
        self.evidence.reproduction.classes = self.evidence.reproduction.classes.max(
            self.inputs
                .iter()
                .map(|r| u64::from(r.label) + 1)
                .max()
                .unwrap_or(0),
        );
        self.summary = Summary {
            inputs,
            correct,
            clean_accuracy: ratio(correct, inputs),
            headline: self.eps.len().saturating_sub(1),
            curve,
            monotone,
            checks: CheckCounts::default(),
        };
        self.checks = judge_all(&self.evidence, &self.summary, &self.eps);
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        self.summary.checks = CheckCounts {
            passed: count(Status::Passed),
            skipped: count(Status::Skipped),
            warnings: count(Status::Warning),
            failed: count(Status::Failed),
        };
    }

    /// The headline point of the curve.
    pub fn headline(&self) -> Option<&CurvePoint> {
        self.summary.curve.get(self.summary.headline)
    }

    /// The one line that must accompany a robust accuracy: the checks' counts.
    pub fn checks_line(&self) -> String {
        let c = &self.summary.checks;
        format!(
            "checks: {} passed, {} warnings, {} failed, {} skipped",
            c.passed, c.warnings, c.failed, c.skipped
        )
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Result<String, EvalError> {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .map_err(|e| EvalError::Merge {
                reason: format!("cannot serialise the report: {e}"),
            })
    }

    /// Reads a report written by [`Report::to_json`], checking its schema.
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EvalError::BadFile {
                path: path.into(),
                reason: format!("not JSON: {e}"),
            })?;
        let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != SCHEMA {
            return Err(EvalError::BadFile {
                path: path.into(),
                reason: format!(
                    "schema {schema:?} is not {SCHEMA:?}; is this an `nnguard eval` report?"
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| EvalError::BadFile {
            path: path.into(),
            reason: format!("not a valid report: {e}"),
        })
    }

    /// Merges partial reports of disjoint shards of one evaluation into one report.
    pub fn merge(parts: &[Report]) -> Result<Report, EvalError> {
        let Some(first) = parts.first() else {
            return Err(EvalError::Merge {
                reason: "no reports given".into(),
            });
        };
        let mut out = first.clone();
        let mut seen: BTreeSet<usize> = first.inputs.iter().map(|r| r.index).collect();
        for (i, p) in parts.iter().enumerate().skip(1) {
            let differ = |what: &str| EvalError::Merge {
                reason: format!("report {} has a different {what} than report 1", i + 1),
            };
            if p.schema != out.schema {
                return Err(differ("schema"));
            }
            if p.model != out.model {
                return Err(differ("model"));
            }
            if p.data != out.data {
                return Err(differ("data set"));
            }
            if p.norm != out.norm || p.eps != out.eps || p.bounds != out.bounds {
                return Err(differ("threat model (norm, ε or bounds)"));
            }
            if p.attacks != out.attacks {
                return Err(differ("attack list"));
            }
            if p.settings != out.settings {
                return Err(differ("settings (seed, batch size, steps, ...)"));
            }
            if p.total_inputs != out.total_inputs {
                return Err(differ("number of inputs (--limit)"));
            }
            for r in &p.inputs {
                if !seen.insert(r.index) {
                    return Err(EvalError::Merge {
                        reason: format!(
                            "input {} is in more than one report (overlapping shards or the same report twice)",
                            r.index
                        ),
                    });
                }
            }
            out.inputs.extend(p.inputs.iter().cloned());
            out.shards.extend(p.shards.iter().copied());
            out.complete &= p.complete;
            if out.stopped.is_none() {
                out.stopped.clone_from(&p.stopped);
            }
            for s in &p.attack_stats {
                match out
                    .attack_stats
                    .iter_mut()
                    .find(|o| o.attack == s.attack && o.eps_index == s.eps_index)
                {
                    Some(o) => {
                        o.attempted += s.attempted;
                        o.successes += s.successes;
                        o.queries += s.queries;
                        o.seconds += s.seconds;
                    }
                    None => out.attack_stats.push(s.clone()),
                }
            }
            out.evidence.merge(&p.evidence);
            out.timings.preflight_seconds += p.timings.preflight_seconds;
            out.timings.attack_seconds += p.timings.attack_seconds;
            out.timings.check_seconds += p.timings.check_seconds;
            out.timings.total_seconds += p.timings.total_seconds;
            out.examples.extend(p.examples.iter().cloned());
        }
        out.inputs.sort_by_key(|r| r.index);
        out.shards.sort_by_key(|s| s.index);
        out.shards.dedup();
        let keep = first
            .examples
            .len()
            .max(parts.iter().map(|p| p.examples.len()).max().unwrap_or(0));
        out.examples.sort_by_key(|e| e.index);
        out.examples.truncate(keep);
        if out.inputs.len() == out.total_inputs && out.complete {
            out.shards.clear();
        }
        out.adversarials = None;
        out.finalize();
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, renamed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    Ok(nnguard_model::weights::write_atomic(path, bytes)?)
}

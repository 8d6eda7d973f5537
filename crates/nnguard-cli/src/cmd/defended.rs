//! Defended-model options of `eval` and `attack` (`--transform`, `--transform-gradient`,
//! `--ensemble`), and the findings a defended evaluation adds to its report: how much of a
//! defence's robustness is gradient masking.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use nnguard_attack::evasion::AttackParams;
use nnguard_data::Dataset;
use nnguard_defense::defended::masking_comparison;
use nnguard_defense::transform::TRANSFORMS;
use nnguard_defense::{DefenseSpec, GradientMode, Transformed, defend};
use nnguard_eval::{CheckResult, Report, Status};
use nnguard_model::{Differentiable, LoadOptions, Model};

/// `--transform`, `--transform-gradient`, `--ensemble`.
#[derive(Debug, Clone, Default, Args)]
pub struct DefendedArgs {
    /// Input transformations in front of the model, applied in order:
    /// `squeeze:bits=N`, `median:K`, `jpeg:quality=Q`, `smooth:sigma=S`, `tv:weight=W`,
    /// `resize-pad:min=M` (e.g. `squeeze:bits=4,median:2`). Attacks go through
    /// non-differentiable ones with BPDA and average randomised ones with EOT (`--eot`).
    #[arg(long, value_name = "T[:ARGS][,T...]", help_heading = "Defences")]
    pub transform: Option<String>,
    /// How attacks differentiate non-differentiable transforms: `bpda` (adaptive, the
    /// default) or `plain` (their true, zero gradient: what a naive evaluation measures).
    #[arg(long, default_value = "bpda", value_parser = parse_gradient, help_heading = "Defences")]
    pub transform_gradient: GradientMode,
    /// Further models averaged with `--model` (mean of the logits), attacked as one model.
    #[arg(
        long,
        value_name = "A,B,...",
        value_delimiter = ',',
        help_heading = "Defences"
    )]
    pub ensemble: Vec<PathBuf>,
}

fn parse_gradient(s: &str) -> Result<GradientMode, String> {
    match s {
        "bpda" => Ok(GradientMode::Bpda),
        "plain" => Ok(GradientMode::Plain),
        other => Err(format!(
            "unknown gradient mode {other:?} (expected bpda or plain)"
        )),
    }
}

/// A loaded model with its defences.
pub struct DefendedModel {
    /// What is evaluated.
    pub model: Arc<dyn Differentiable>,
    /// The name in reports.
    pub name: String,
    /// The transformation wrapper, if any.
    pub transformed: Option<Arc<Transformed>>,
    /// One line per defence.
    pub description: Vec<String>,
    /// The distillation temperature, when the model's sidecar says it was distilled.
    pub distilled: Option<f64>,
}

impl DefendedArgs {
    /// Wraps `model` (loaded from `name`) in the requested defences. Randomised transforms
    /// are left to the evaluation's own EOT (`--eot`), so each forward pass is one draw.
    pub fn apply(
        &self,
        model: Model,
        name: &str,
        options: &LoadOptions,
    ) -> anyhow::Result<DefendedModel> {
        let distilled = model
            .sidecar()
            .and_then(|s| s.training.as_ref())
            .filter(|t| t.mode == "distill")
            .map(|t| {
                t.defense
                    .as_ref()
                    .and_then(|d| d.get("temperature"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(f64::NAN)
            });
        let mut members: Vec<Arc<dyn Differentiable>> = vec![Arc::new(model)];
        let mut names = vec![name.to_string()];
        for path in &self.ensemble {
            let m = Model::load(path, options)
                .map_err(|e| anyhow::anyhow!("--ensemble {}: {e}", path.display()))?;
            members.push(Arc::new(m));
            names.push(path.display().to_string());
        }
        let spec = DefenseSpec {
            transform: self.transform.clone(),
            eot: self.transform.as_ref().map(|_| 1),
            gradient: self.transform_gradient,
            seed: 0,
        };
        if self.transform.is_none() && self.transform_gradient != GradientMode::Bpda {
            anyhow::bail!("--transform-gradient needs --transform");
        }
        let defended = defend(members, &spec).map_err(|e| match &e {
            nnguard_defense::DefenseError::InvalidConfig { flag, .. } if *flag == "--transform" => {
                anyhow::anyhow!(
                    "{e} (transforms: {})",
                    TRANSFORMS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            _ => anyhow::anyhow!(e),
        })?;
        let mut description: Vec<String> = defended
            .description
            .into_iter()
            .filter(|d| !d.contains("--eot has no effect"))
            .collect();
        if defended
            .transformed
            .as_ref()
            .is_some_and(|t| t.is_randomized())
        {
            description.push(
                "randomised transforms: one draw per forward pass; the evaluation detects the randomness and attacks with EOT over --eot draws".into(),
            );
        }
        let mut shown = names.join(" + ");
        if let Some(t) = &self.transform {
            shown = format!("{shown} behind {t}");
        }
        Ok(DefendedModel {
            model: defended.model,
            name: shown,
            transformed: defended.transformed,
            description,
            distilled,
        })
    }
}

fn check(
    id: &str,
    title: &str,
    status: Status,
    detail: String,
    action: Option<&str>,
) -> CheckResult {
    CheckResult {
        id: id.into(),
        title: title.into(),
        status,
        detail,
        action: action.map(str::to_string),
    }
}

/// Adds checks to a finished report, keeping its counts in step.
pub fn add_checks(report: &mut Report, checks: Vec<CheckResult>) {
    for c in checks {
        let counts = &mut report.summary.checks;
        match c.status {
            Status::Passed => counts.passed += 1,
            Status::Skipped => counts.skipped += 1,
            Status::Warning => counts.warnings += 1,
            Status::Failed => counts.failed += 1,
        }
        report.checks.push(c);
    }
}

/// The findings of a defended evaluation:
///
/// - `defence`: which defences were evaluated and how attacks went through them;
/// - `gradient-masking` (transforms with a non-differentiable step): PGD on the true
///   gradient against PGD through BPDA on the same inputs; a large gap is reported as
///   gradient masking, a finding, never as robustness;
/// - `distillation`: for a distilled model, how much the cross-entropy attack missed and the
///   logit-margin attacks of the ensemble caught.
pub fn findings(
    defended: &DefendedModel,
    report: &Report,
    data: &Dataset,
    range: std::ops::Range<usize>,
    params: &AttackParams,
) -> anyhow::Result<Vec<CheckResult>> {
    let seed = report.settings.seed;
    let mut out = Vec::new();
    if !defended.description.is_empty() {
        out.push(check(
            "defence",
            "defences evaluated adaptively",
            Status::Passed,
            defended.description.join("; "),
            None,
        ));
    }
    if let Some(t) = defended
        .transformed
        .as_ref()
        .filter(|t| t.has_non_differentiable())
    {
        let per = data.image_len();
        let c = masking_comparison(
            t,
            "pgd",
            params,
            &data.images[range.start * per..range.end * per],
            &data.labels[range.clone()],
            report.settings.batch_size.max(1),
            seed,
        )?;
        let detail = format!(
            "PGD ({} {}, {} inputs classified correctly): {:.2}% survive on the true gradient of the transforms, {:.2}% through BPDA",
            params.norm,
            params.eps,
            c.attempted,
            100.0 * c.plain_rate(),
            100.0 * c.bpda_rate()
        );
        let bpda_headline = t.config().gradient == GradientMode::Bpda;
        out.push(if c.masks_gradients() {
            check(
                "gradient-masking",
                "robustness is not gradient masking",
                Status::Failed,
                format!(
                    "{detail}: the transforms hide gradients (obfuscated gradients, Athalye et al. 2018); their apparent robustness is gradient masking, not a defence"
                ),
                Some(if bpda_headline {
                    "the robust accuracy above attacks through BPDA; do not report the true-gradient figure as robustness"
                } else {
                    "the robust accuracy above used the true (zero) gradients and overstates robustness; rerun with --transform-gradient bpda"
                }),
            )
        } else {
            check(
                "gradient-masking",
                "robustness is not gradient masking",
                Status::Passed,
                format!("{detail}: BPDA breaks no more than the true gradient"),
                None,
            )
        });
    }
    if let (Some(temperature), Some(p)) = (defended.distilled, report.headline()) {
        let ce: usize = p
            .after_attack
            .iter()
            .filter(|a| a.attack.contains("-ce"))
            .map(|a| a.broken)
            .sum();
        let margin: usize = p
            .after_attack
            .iter()
            .filter(|a| {
                ["-t", "dlr", "cw", "fab", "margin"]
                    .iter()
                    .any(|k| a.attack.contains(k))
            })
            .map(|a| a.broken)
            .sum();
        let detail = format!(
            "defensive distillation (T = {temperature}): the cross-entropy attack broke {ce} inputs, the logit-margin attacks that followed broke {margin} more"
        );
        out.push(if margin > ce {
            check(
                "distillation",
                "distillation is not gradient masking",
                Status::Failed,
                format!(
                    "{detail}: distillation saturates the softmax and hides cross-entropy gradients, while attacks on the logits (C&W, APGD-DLR) are unaffected (Carlini and Wagner 2016); this is gradient masking, not robustness"
                ),
                Some("the robust accuracy above includes the logit-margin attacks; judge the model by it"),
            )
        } else {
            check(
                "distillation",
                "distillation is not gradient masking",
                Status::Passed,
                detail,
                None,
            )
        });
    }
    Ok(out)
}

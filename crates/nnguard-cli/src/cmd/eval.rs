//! `nnguard eval`: robust accuracy of a model under an attack ensemble, with the validity
//! checks printed beside every number, a JSON report, an HTML page and sharding.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nnguard_attack::{Norm, RemoteOptions, RemoteScorer};
use nnguard_eval::{
    EvalConfig, EvalError, EvalInputs, Reference, Report, Shard, Status, Subject, evaluate,
    parse_attacks,
};
use nnguard_model::arch::Arch;
use nnguard_model::{Loss, Normalize};

use super::common::{
    DataArgs, ModelArgs, check_output_path, parse_arch, parse_normalize, print_json, progress,
};
use crate::exit::Outcome;
use nnguard_data::Dataset;

/// Where the evaluated model comes from: a file, or a remote endpoint.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Model file: `.onnx`, or `.safetensors` with a JSON sidecar (or `--arch`).
    #[arg(long, value_name = "FILE", required_unless_present = "target")]
    pub model: Option<PathBuf>,
    /// Architecture of a `.safetensors` file that has no sidecar.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Per-channel normalisation inside the model: `MEAN,STD`.
    #[arg(long, value_name = "MEAN,STD", value_parser = parse_normalize)]
    pub normalize: Option<Normalize>,
    /// A model served over the Open Inference Protocol v2
    /// (`http://HOST:PORT/v2/models/NAME/infer`); only black-box attacks apply.
    #[arg(long, value_name = "URL", conflicts_with = "model")]
    pub target: Option<String>,
    /// Seconds one request to `--target` may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Requests per second to `--target` at most.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<f64>,
    #[command(flatten)]
    pub defense: super::defended::DefendedArgs,
}

/// What an evaluation attacks: the subject, its name in reports and, for a model file, the
/// model with its defences (for the findings a defended evaluation adds).
pub struct Target {
    /// The model as attacks see it.
    pub subject: Subject,
    /// The name in reports.
    pub name: String,
    /// The loaded model with its defences; `None` for a remote target.
    pub defended: Option<super::defended::DefendedModel>,
}

impl TargetArgs {
    /// Loads the model or connects to the target.
    pub fn load(&self) -> anyhow::Result<Target> {
        if let Some(url) = &self.target {
            if !(self.timeout.is_finite() && self.timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds");
            }
            let options = RemoteOptions {
                timeout: Duration::from_secs_f64(self.timeout),
                rate_limit: self.rate_limit,
                ..RemoteOptions::default()
            };
            let scorer = RemoteScorer::connect(url, options)?;
            return Ok(Target {
                subject: Subject::BlackBox(Arc::new(scorer)),
                name: url.clone(),
                defended: None,
            });
        }
        let Some(path) = &self.model else {
            anyhow::bail!("give --model FILE or --target URL");
        };
        let model = ModelArgs {
            model: path.clone(),
            arch: self.arch,
            normalize: self.normalize.clone(),
        }
        .load()?;
        let options = nnguard_model::LoadOptions {
            arch: self.arch,
            normalize: self.normalize.clone(),
            input_shape: None,
        };
        let defended = self
            .defense
            .apply(model, &path.display().to_string(), &options)?;
        Ok(Target {
            subject: Subject::WhiteBox(defended.model.clone()),
            name: defended.name.clone(),
            defended: Some(defended),
        })
    }
}

/// The attack settings `eval` and `attack` share.
#[derive(Debug, Clone, Args)]
pub struct AttackArgs {
    /// Norm of the threat model: linf, l2 or l1.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Radius of the ball; a comma-separated list gives the accuracy-vs-ε curve. Fractions
    /// like `8/255` are accepted.
    #[arg(long, value_name = "EPS[,EPS...]", default_value = "8/255")]
    pub eps: String,
    /// Iterations of each attack (default: each attack's own).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Step size of gradient attacks (default: each attack's own).
    #[arg(long)]
    pub step: Option<f32>,
    /// Random restarts of each attack.
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Query budget per input of black-box attacks.
    #[arg(long)]
    pub queries: Option<u64>,
    /// Loss of the gradient attacks that take one: ce, margin (C&W) or dlr (default: each
    /// attack's own).
    #[arg(long, value_parser = parse_loss)]
    pub loss: Option<Loss>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Inputs per batch (shards are cut on batch boundaries).
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Passes averaged by EOT when the model turns out to be randomised.
    #[arg(long, default_value_t = 8)]
    pub eot: usize,
    /// Repeated predictions per input when the model turns out to be randomised.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

impl AttackArgs {
    /// The norm, checked.
    pub fn norm(&self) -> anyhow::Result<Norm> {
        Ok(self.norm.parse::<Norm>()?)
    }

    /// The radii, checked.
    pub fn eps(&self) -> anyhow::Result<Vec<f32>> {
        parse_eps(&self.eps)
    }

    /// An evaluation config with these settings.
    pub fn config(&self) -> anyhow::Result<EvalConfig> {
        Ok(EvalConfig {
            norm: self.norm()?,
            eps: self.eps()?,
            steps: self.steps,
            step: self.step,
            restarts: self.restarts,
            queries: self.queries,
            loss: self.loss,
            seed: self.seed,
            batch_size: self.batch_size,
            eot_samples: self.eot,
            repeats: self.repeats,
            ..EvalConfig::default()
        })
    }
}

fn parse_loss(s: &str) -> Result<Loss, String> {
    match s {
        "ce" | "cross-entropy" => Ok(Loss::CrossEntropy),
        "margin" | "cw" => Ok(Loss::Margin),
        "dlr" => Ok(Loss::Dlr),
        other => Err(format!(
            "unknown loss {other:?} (expected ce, margin or dlr)"
        )),
    }
}

/// Parses `--eps 0.01,0.03,8/255`.
pub fn parse_eps(s: &str) -> anyhow::Result<Vec<f32>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let v = match p.split_once('/') {
                Some((a, b)) => {
                    let a: f32 = a.trim().parse().ok().unwrap_or(f32::NAN);
                    let b: f32 = b.trim().parse().ok().unwrap_or(f32::NAN);
                    a / b
                }
                None => p.parse().ok().unwrap_or(f32::NAN),
            };
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                anyhow::bail!("invalid --eps: {p:?} is not a finite number ≥ 0")
            }
        })
        .collect::<anyhow::Result<Vec<f32>>>()
        .and_then(|v| {
            if v.is_empty() {
                anyhow::bail!("invalid --eps: give at least one radius")
            }
            Ok(v)
        })
}

/// Arguments of `nnguard eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    attack: AttackArgs,
    /// Attacks, run in order on the inputs still robust: names from `nnguard attack --list`,
    /// `standard` (APGD-CE, APGD-T, FAB-T, Square) or `fast` (APGD-CE, Square).
    #[arg(long, value_name = "A,B,...", default_value = "standard")]
    attacks: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Evaluate shard I of N (0-based) and write a partial report; also read from
    /// `JOB_COMPLETION_INDEX` or `SLURM_ARRAY_TASK_ID`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Number of shards when the index comes from the environment.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// The original model's predictions on the data (a JSON array of class indices, or an
    /// array of logit rows), to check that the loaded model reproduces them.
    #[arg(long, value_name = "FILE")]
    reference_predictions: Option<PathBuf>,
    /// Exit with 1 when the headline robust accuracy is below this fraction.
    #[arg(long, value_name = "FRACTION")]
    fail_under: Option<f64>,
}

/// Reads `--reference-predictions`.
pub fn read_reference(path: &Path, classes: usize) -> anyhow::Result<Reference> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--reference-predictions {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--reference-predictions {}: not JSON", path.display()))?;
    let v = match &v {
        serde_json::Value::Object(m) => m
            .get("predictions")
            .or_else(|| m.get("logits"))
            .cloned()
            .unwrap_or(serde_json::Value::Null),
        _ => v,
    };
    let bad = || {
        anyhow::anyhow!(
            "--reference-predictions {}: expected a JSON array of class indices or of logit rows with {classes} values each",
            path.display()
        )
    };
    let items = v.as_array().ok_or_else(bad)?;
    if items.iter().all(serde_json::Value::is_u64) {
        let predictions = items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or_else(bad)
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        return Ok(Reference {
            predictions: Some(predictions),
            ..Reference::default()
        });
    }
    let mut logits = Vec::with_capacity(items.len() * classes);
    for row in items {
        let row = row
            .as_array()
            .filter(|r| r.len() == classes)
            .ok_or_else(bad)?;
        for x in row {
            logits.push(x.as_f64().ok_or_else(bad)? as f32);
        }
    }
    Ok(Reference {
        logits: Some(logits),
        classes,
        ..Reference::default()
    })
}

/// The shard to run: `--shard`, or the scheduler's environment.
pub fn shard(flag: Option<&str>, shards: Option<usize>) -> anyhow::Result<Option<Shard>> {
    if let Some(s) = flag {
        return Ok(Some(s.parse()?));
    }
    Ok(Shard::from_env(|k| std::env::var(k).ok(), shards)?)
}

/// Writes the JSON and HTML reports atomically.
pub fn write_reports(
    report: &Report,
    out: Option<&Path>,
    html: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(p) = out {
        nnguard_eval::write_atomic(p, report.to_json()?.as_bytes())
            .with_context(|| format!("--out {}", p.display()))?;
    }
    if let Some(p) = html {
        nnguard_eval::write_atomic(p, nnguard_eval::html::render(report).as_bytes())
            .with_context(|| format!("--report {}", p.display()))?;
    }
    Ok(())
}

/// Prints the headline numbers with the checks beside them.
pub fn print_summary(r: &Report) {
    let s = &r.summary;
    println!(
        "{} on {}: {} inputs{}, {} threat model",
        r.model,
        r.data,
        s.inputs,
        match r.shards.as_slice() {
            [] => String::new(),
            shards => format!(
                " (shard {})",
                shards
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        r.norm
    );
    println!(
        "clean accuracy   {:6.2}% ({}/{})",
        100.0 * s.clean_accuracy,
        s.correct,
        s.inputs
    );
    for (i, p) in s.curve.iter().enumerate() {
        println!(
            "robust accuracy  {:6.2}% ({}/{}) at ε={}{}   [{}]",
            100.0 * p.robust_accuracy,
            p.robust,
            s.inputs,
            p.eps,
            if i == s.headline && s.curve.len() > 1 {
                " (headline)"
            } else {
                ""
            },
            r.checks_line()
        );
    }
    if let Some(p) = r.headline() {
        let steps: Vec<String> = p
            .after_attack
            .iter()
            .map(|a| {
                format!(
                    "{} −{} → {:.2}%",
                    a.attack,
                    a.broken,
                    100.0 * a.robust_accuracy
                )
            })
            .collect();
        println!("  at ε={}: {}", p.eps, steps.join(", "));
        if p.perturbation.successes > 0 {
            let mut others = String::new();
            if r.norm != Norm::L2 {
                others.push_str(&format!(", median l2 {:.4}", p.perturbation.median_l2));
            }
            if r.norm != Norm::Linf {
                others.push_str(&format!(", median linf {:.4}", p.perturbation.median_linf));
            }
            println!(
                "  perturbations of {} successes: median {} {:.4} (mean {:.4}){others}{}",
                p.perturbation.successes,
                r.norm,
                p.perturbation.median,
                p.perturbation.mean,
                if p.queries > 0 {
                    format!("; {} queries ({:.1} per input)", p.queries, p.mean_queries)
                } else {
                    String::new()
                }
            );
        }
    }
    let stand_ins: Vec<String> = r
        .attacks
        .iter()
        .filter(|a| a.stand_in)
        .map(|a| format!("{} for {}", a.name, a.role))
        .collect();
    if !stand_ins.is_empty() {
        println!("  stand-ins: {}", stand_ins.join(", "));
    }
    println!(
        "validity checks (monotone in ε: {}):",
        if s.monotone { "yes" } else { "NO" }
    );
    for c in &r.checks {
        println!("  {:4} {:30} {}", c.status.label(), c.id, c.detail);
        if let Some(a) = &c.action
            && matches!(c.status, Status::Warning | Status::Failed)
        {
            println!("       → {a}");
        }
    }
    println!(
        "time: {:.1} s (attacks {:.1} s, checks {:.1} s)",
        r.timings.total_seconds, r.timings.attack_seconds, r.timings.check_seconds
    );
}

/// The inputs of `shard` (all of them without one), cut on batch boundaries.
pub fn shard_range(shard: Option<Shard>, len: usize, batch_size: usize) -> std::ops::Range<usize> {
    match shard {
        Some(s) => s.range(len, batch_size.max(1)),
        None => 0..len,
    }
}

/// Runs an evaluation for `eval` and `attack`, keeping a partial report on failure.
pub struct Run<'a> {
    /// The data, loaded once by the caller.
    pub data: &'a Dataset,
    /// The settings; attacks already resolved.
    pub config: EvalConfig,
    /// `--shard`, resolved.
    pub shard: Option<Shard>,
    /// Reference predictions file.
    pub reference: Option<&'a Path>,
    /// Where the JSON report goes (and the partial one on failure).
    pub out: Option<&'a Path>,
    /// Where the HTML report goes.
    pub html: Option<&'a Path>,
}

impl Run<'_> {
    /// Runs it; on a failure part way the partial report is written before the error.
    pub fn go(self, subject: &Subject, model_name: String) -> anyhow::Result<Report> {
        let data = self.data;
        let range = shard_range(self.shard, data.len(), self.config.batch_size);
        let per = data.image_len();
        let classes = match subject {
            Subject::WhiteBox(m) => m.num_classes(),
            Subject::BlackBox(s) => s.num_classes(),
        };
        let reference = self
            .reference
            .map(|p| read_reference(p, classes))
            .transpose()?;
        let inputs = EvalInputs {
            images: &data.images[range.start * per..range.end * per],
            labels: &data.labels[range.clone()],
            shape: data.shape,
            first_index: range.start,
            total: data.len(),
            shard: self.shard,
            model: model_name,
            data: data.name.clone(),
            reference: reference.as_ref(),
        };
        let bar = progress(
            range.len() as u64,
            "evaluating [{bar:30}] {pos}/{len} inputs ({elapsed})",
        );
        let result = evaluate(subject, &inputs, &self.config, &mut |p| {
            bar.set_position(p.done as u64)
        });
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                write_reports(&report, self.out, self.html)?;
                Ok(report)
            }
            Err(EvalError::Interrupted {
                source,
                done,
                total,
                partial,
            }) => {
                let fallback = PathBuf::from("nnguard-eval.partial.json");
                let out = self.out.unwrap_or(&fallback);
                write_reports(&partial, Some(out), self.html)?;
                anyhow::bail!(
                    "{source}; the partial report of the {done} of {total} inputs finished was written to {}",
                    out.display()
                )
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs `nnguard eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<Outcome> {
    for (p, flag) in [(&args.out, "--out"), (&args.report, "--report")] {
        if let Some(p) = p {
            check_output_path(p, flag)?;
        }
    }
    let mut config = args.attack.config()?;
    let shard = shard(args.shard.as_deref(), args.shards)?;
    let target = args.target.load()?;
    config.attacks = parse_attacks(&args.attacks, config.norm, target.subject.is_white_box())?;
    let headline = config.sorted_eps()?.last().copied().unwrap_or(0.0);
    let params = config.params(headline);
    let batch_size = config.batch_size;
    let data = args.data.load()?;
    let mut report = Run {
        data: &data,
        config,
        shard,
        reference: args.reference_predictions.as_deref(),
        out: args.out.as_deref(),
        html: args.report.as_deref(),
    }
    .go(&target.subject, target.name)?;
    if let Some(defended) = &target.defended {
        let range = shard_range(shard, data.len(), batch_size);
        let checks = super::defended::findings(defended, &report, &data, range, &params)?;
        if !checks.is_empty() {
            super::defended::add_checks(&mut report, checks);
            write_reports(&report, args.out.as_deref(), args.report.as_deref())?;
        }
    }
    if args.json {
        print_json(&report)?;
    } else {
        print_summary(&report);
        for (p, what) in [(&args.out, "report"), (&args.report, "html")] {
            if let Some(p) = p {
                println!("{what}: {}", p.display());
            }
        }
    }
    Ok(outcome(&report, args.fail_under))
}

/// Findings when a check failed or robust accuracy is below `fail_under`.
pub fn outcome(report: &Report, fail_under: Option<f64>) -> Outcome {
    let below = fail_under
        .zip(report.headline())
        .is_some_and(|(t, p)| p.robust_accuracy < t);
    if below || nnguard_eval::html::any_failed(report) {
        Outcome::Findings
    } else {
        Outcome::Clean
    }
}

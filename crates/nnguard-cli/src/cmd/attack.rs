//! `nnguard attack NAME`: runs one attack on a data set and saves the adversarial batch
//! (with labels and predictions) as safetensors; the robust accuracy is printed with the
//! validity checks like `nnguard eval`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use nnguard_attack::evasion::ATTACKS;
use nnguard_eval::{AttackSpec, Report};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::common::{DataArgs, check_output_path, print_json};
use super::eval::{AttackArgs, Run, TargetArgs, print_summary, shard, shard_range};
use crate::exit::Outcome;

/// Arguments of `nnguard attack`.
#[derive(Debug, Args)]
pub struct AttackCmdArgs {
    /// The attack (see `--list`).
    #[arg(value_name = "NAME", required_unless_present = "list")]
    name: Option<String>,
    /// List the attacks and exit.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    attack: AttackArgs,
    /// Save the adversarial batch here (safetensors: `x_adv`, `x`, `labels`,
    /// `clean_predictions`, `predictions`, `success`, `distance`).
    #[arg(long, value_name = "FILE.safetensors")]
    out: Option<PathBuf>,
    /// Also write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Attack shard I of N (0-based).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Number of shards when the index comes from the environment.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `nnguard attack`.
pub fn run(args: AttackCmdArgs) -> anyhow::Result<Outcome> {
    if args.list {
        for (name, about) in ATTACKS {
            println!("{name:12} {about}");
        }
        return Ok(Outcome::Clean);
    }
    let Some(name) = args.name.as_deref() else {
        anyhow::bail!("name an attack (nnguard attack --list)");
    };
    if let Some(p) = &args.out {
        check_output_path(p, "--out")?;
    }
    if let Some(p) = &args.report {
        check_output_path(p, "--report")?;
    }
    let mut config = args.attack.config()?;
    if config.eps.len() != 1 {
        anyhow::bail!(
            "invalid --eps: `nnguard attack` takes one radius; use `nnguard eval` for a curve"
        );
    }
    config.attacks = vec![AttackSpec::registered(name)?];
    config.keep_adversarials = true;
    let shard = shard(args.shard.as_deref(), args.shards)?;
    let target = args.target.load()?;
    let data = args.data.load()?;
    let report = Run {
        data: &data,
        config,
        shard,
        reference: None,
        out: args.report.as_deref(),
        html: None,
    }
    .go(&target.subject, target.name)?;
    if let Some(out) = &args.out {
        let range = shard_range(shard, data.len(), args.attack.batch_size);
        let per = data.image_len();
        save(
            &report,
            &data.images[range.start * per..range.end * per],
            data.shape,
            name,
            out,
        )?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        print_summary(&report);
        if let Some(out) = &args.out {
            println!("adversarial batch: {}", out.display());
        }
    }
    Ok(super::eval::outcome(&report, None))
}

fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> anyhow::Result<TensorView<'_>> {
    TensorView::new(dtype, shape, data).map_err(|e| anyhow::anyhow!("{e}"))
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_i64(v: impl Iterator<Item = i64>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the adversarial batch of `report` atomically.
fn save(
    report: &Report,
    clean: &[f32],
    shape: [usize; 3],
    attack: &str,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let n = report.inputs.len();
    let adv = report
        .adversarials
        .as_deref()
        .filter(|a| a.len() == clean.len())
        .context("the evaluation kept no adversarial images")?;
    let dims = vec![n, shape[0], shape[1], shape[2]];
    let last = |r: &nnguard_eval::report::InputRecord| r.eps.last().cloned();
    let x_adv = bytes_f32(adv);
    let x = bytes_f32(clean);
    let labels = bytes_i64(report.inputs.iter().map(|r| i64::from(r.label)));
    let clean_pred = bytes_i64(report.inputs.iter().map(|r| i64::from(r.clean)));
    let pred = bytes_i64(
        report
            .inputs
            .iter()
            .map(|r| i64::from(last(r).map_or(r.clean, |e| e.predicted))),
    );
    let success: Vec<u8> = report
        .inputs
        .iter()
        .map(|r| u8::from(last(r).is_some_and(|e| e.broken_by.is_some())))
        .collect();
    let distance = bytes_f32(
        &report
            .inputs
            .iter()
            .map(|r| last(r).map_or(0.0, |e| e.distance))
            .collect::<Vec<f32>>(),
    );
    let tensors = vec![
        ("x_adv", view(Dtype::F32, dims.clone(), &x_adv)?),
        ("x", view(Dtype::F32, dims, &x)?),
        ("labels", view(Dtype::I64, vec![n], &labels)?),
        ("clean_predictions", view(Dtype::I64, vec![n], &clean_pred)?),
        ("predictions", view(Dtype::I64, vec![n], &pred)?),
        ("success", view(Dtype::U8, vec![n], &success)?),
        ("distance", view(Dtype::F32, vec![n], &distance)?),
    ];
    let meta = HashMap::from([
        ("attack".to_string(), attack.to_string()),
        ("norm".to_string(), report.norm.to_string()),
        (
            "eps".to_string(),
            report.eps.first().map_or(String::new(), |e| e.to_string()),
        ),
        ("model".to_string(), report.model.clone()),
        ("data".to_string(), report.data.clone()),
        (
            "first_index".to_string(),
            report.inputs.first().map_or(0, |r| r.index).to_string(),
        ),
        (
            "robust_accuracy".to_string(),
            report
                .headline()
                .map_or(0.0, |p| p.robust_accuracy)
                .to_string(),
        ),
        ("checks".to_string(), report.checks_line()),
    ]);
    let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| anyhow::anyhow!("{e}"))?;
    nnguard_eval::write_atomic(out, &bytes).with_context(|| format!("--out {}", out.display()))?;
    Ok(())
}

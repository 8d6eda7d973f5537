//! `nnguard assess`: the security assessment of one model on one data set.
//!
//! With no arguments it trains the reference CNN on the bundled Fashion-MNIST subset, so a
//! newcomer sees the whole pipeline in one command with no download. It reports clean
//! accuracy and evasion robustness (a fast attack ensemble with the validity checks beside
//! the number) in `report.json` and `report.html`; privacy and certification results join
//! the same report as they are added.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use nnguard_data::{DataSource, Split};
use nnguard_model::arch::Arch;
use nnguard_model::predict::evaluate_accuracy;
use nnguard_model::train::{Silent, TrainConfig, train};
use nnguard_model::{Classifier, LoadOptions, Model};
use serde::Serialize;

use super::common::{parse_data, print_json};
use crate::exit::Outcome;

/// Schema version of the assessment report.
pub const REPORT_SCHEMA: &str = "nnguard-assess/v2";

/// Arguments of `nnguard assess`.
#[derive(Debug, Args)]
pub struct AssessArgs {
    /// Model to assess; without it, a CNN is trained on the data set's train split first.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Data set to assess on (its test split).
    #[arg(long, default_value = "bundled", value_parser = parse_data)]
    data: DataSource,
    /// Assess on the first N test images only.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Epochs when training the default model.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Directory for the report (and the trained model).
    #[arg(long, default_value = "nnguard-report", value_name = "DIR")]
    out: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Radius of the evasion evaluation (L∞ unless `--norm`); a list gives the curve.
    #[arg(long, value_name = "EPS[,EPS...]", default_value = "0.1")]
    eps: String,
    /// Norm of the evasion evaluation.
    #[arg(long, default_value = "linf")]
    norm: String,
    /// Attacks of the evasion evaluation (`fast`, `standard` or names).
    #[arg(long, value_name = "A,B,...", default_value = "fast")]
    attacks: String,
    /// Query budget per input of black-box attacks in the evasion evaluation.
    #[arg(long, default_value_t = 1000)]
    queries: u64,
    /// Skip the evasion evaluation.
    #[arg(long)]
    no_eval: bool,
}

/// The assessment report (`report.json`).
#[derive(Debug, Serialize)]
pub struct AssessReport {
    /// Report schema version.
    pub schema: &'static str,
    /// nnguard version.
    pub version: &'static str,
    /// The model assessed.
    pub model: String,
    /// The data set and split.
    pub data: String,
    /// Test images used.
    pub images: usize,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Per-class clean accuracy.
    pub per_class: Vec<nnguard_model::predict::ClassAccuracy>,
    /// Evasion robustness with its validity checks (absent with `--no-eval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evasion: Option<nnguard_eval::Report>,
}

/// Runs `nnguard assess`.
pub fn run(args: AssessArgs) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create the directory", args.out.display()))?;
    let mut test = args
        .data
        .load(Split::Test)
        .with_context(|| format!("loading --data {}", args.data))?;
    if let Some(n) = args.limit {
        test = test.take(n);
    }
    let (model, model_name) = match &args.model {
        Some(path) => (
            Model::load(path, &LoadOptions::default())?,
            path.display().to_string(),
        ),
        None => {
            let train_set = args.data.load(Split::Train)?;
            eprintln!(
                "no --model given: training the reference CNN on {} ({} images, {} epochs)",
                args.data,
                train_set.len(),
                args.epochs
            );
            let config = TrainConfig {
                arch: Arch::Cnn,
                epochs: args.epochs,
                ..TrainConfig::default()
            };
            let (model, record) = train(&config, &train_set, None, &mut Silent)?;
            let path = args.out.join("model.safetensors");
            super::train::save(&model, &path, record, None)?;
            (model, path.display().to_string())
        }
    };
    let accuracy = evaluate_accuracy(&model, &test, 500)?;
    let evasion = if args.no_eval {
        None
    } else {
        Some(evaluate_evasion(&args, model.clone(), &model_name, &test)?)
    };
    let report = AssessReport {
        schema: REPORT_SCHEMA,
        version: env!("CARGO_PKG_VERSION"),
        model: model_name,
        data: test.name.clone(),
        images: accuracy.n,
        clean_accuracy: accuracy.accuracy,
        per_class: accuracy.per_class,
        evasion,
    };
    let report_path = args.out.join("report.json");
    let text = serde_json::to_string_pretty(&report)? + "\n";
    nnguard_model::weights::write_atomic(&report_path, text.as_bytes())?;
    let html_path = args.out.join("report.html");
    if let Some(e) = &report.evasion {
        nnguard_eval::write_atomic(&html_path, nnguard_eval::html::render(e).as_bytes())?;
    }
    let outcome = report
        .evasion
        .as_ref()
        .map_or(Outcome::Clean, |e| super::eval::outcome(e, None));
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "{} on {}: clean accuracy {:.2}% ({} images, {} classes)",
            report.model,
            report.data,
            100.0 * report.clean_accuracy,
            report.images,
            model.num_classes()
        );
        if let Some(e) = &report.evasion {
            super::eval::print_summary(e);
            println!("report: {}, {}", report_path.display(), html_path.display());
        } else {
            println!("report: {}", report_path.display());
        }
    }
    Ok(outcome)
}

/// The evasion part of the assessment: the fast ensemble on the test images.
fn evaluate_evasion(
    args: &AssessArgs,
    model: Model,
    model_name: &str,
    test: &nnguard_data::Dataset,
) -> anyhow::Result<nnguard_eval::Report> {
    let norm: nnguard_attack::Norm = args.norm.parse()?;
    let config = nnguard_eval::EvalConfig {
        norm,
        eps: super::eval::parse_eps(&args.eps)?,
        attacks: nnguard_eval::parse_attacks(&args.attacks, norm, true)?,
        queries: Some(args.queries),
        ..nnguard_eval::EvalConfig::default()
    };
    let inputs = nnguard_eval::EvalInputs {
        images: &test.images,
        labels: &test.labels,
        shape: test.shape,
        first_index: 0,
        total: test.len(),
        shard: None,
        model: model_name.to_string(),
        data: test.name.clone(),
        reference: None,
    };
    let bar = super::common::progress(
        test.len() as u64,
        "attacking [{bar:30}] {pos}/{len} inputs ({elapsed})",
    );
    let subject = nnguard_eval::Subject::WhiteBox(std::sync::Arc::new(model));
    let result = nnguard_eval::evaluate(&subject, &inputs, &config, &mut |p| {
        bar.set_position(p.done as u64)
    });
    bar.finish_and_clear();
    Ok(result?)
}

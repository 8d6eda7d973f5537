//! `nnguard predict`: accuracy and per-class accuracy of a model on a data set.

use std::time::Instant;

use clap::Args;
use nnguard_model::Classifier;
use nnguard_model::predict::{Accuracy, predict};
use serde::Serialize;

use super::common::{DataArgs, ModelArgs, print_json, progress};
use crate::exit::Outcome;

/// Arguments of `nnguard predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Images per forward pass.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What `nnguard predict --json` prints.
#[derive(Debug, Serialize)]
pub struct PredictReport {
    /// The model file.
    pub model: String,
    /// The data set and split.
    pub data: String,
    /// Seconds spent predicting.
    pub seconds: f64,
    /// Images per second.
    pub images_per_second: f64,
    /// The scores.
    #[serde(flatten)]
    pub accuracy: Accuracy,
}

/// Runs `nnguard predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<Outcome> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let model = args.model.load()?;
    let data = args.data.load()?;
    nnguard_model::predict::check_fit(&model, &data)?;
    let bar = progress(
        data.len() as u64,
        "predicting [{bar:30}] {pos}/{len} ({per_sec})",
    );
    let t0 = Instant::now();
    let predicted = predict(&model, &data, args.batch_size, |done| {
        bar.set_position(done as u64)
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let names = model.class_names().map(<[String]>::to_vec);
    let accuracy = Accuracy::score(&predicted, &data.labels, model.num_classes(), |c| {
        names
            .as_ref()
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| data.class_name(c))
    });
    let report = PredictReport {
        model: args.model.model.display().to_string(),
        data: data.name.clone(),
        seconds,
        images_per_second: data.len() as f64 / seconds.max(1e-9),
        accuracy,
    };
    if args.json {
        print_json(&report)?;
    } else {
        let a = &report.accuracy;
        println!(
            "{} on {}: accuracy {:.2}% ({}/{}) in {:.2} s",
            report.model,
            report.data,
            100.0 * a.accuracy,
            a.correct,
            a.n,
            report.seconds
        );
        println!(
            "{:>5}  {:<14} {:>8} {:>9}",
            "class", "name", "images", "accuracy"
        );
        for c in &a.per_class {
            println!(
                "{:>5}  {:<14} {:>8} {:>8.2}%",
                c.class,
                c.name,
                c.support,
                100.0 * c.accuracy
            );
        }
    }
    Ok(Outcome::Clean)
}

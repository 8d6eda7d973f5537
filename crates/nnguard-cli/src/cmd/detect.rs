//! `nnguard detect`: how well a detector of adversarial inputs separates PGD and C&W examples
//! from clean inputs, with its threshold calibrated on clean data only.

use clap::Args;
use nnguard_data::{DataSource, Split};
use nnguard_defense::detect::{DetectConfig, DetectorKind, run as run_detection};

use super::common::{ModelArgs, parse_data, print_json};
use crate::exit::Outcome;

/// Arguments of `nnguard detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Data set: the train split fits the detector and calibrates its threshold, the test
    /// split measures it.
    #[arg(long, default_value = "bundled", value_parser = parse_data)]
    data: DataSource,
    /// The detector: squeeze (feature squeezing), mahalanobis (penultimate features), learned
    /// (logistic regression on activations).
    #[arg(long, value_parser = parse_detector)]
    detector: DetectorKind,
    /// Test images to measure on (the first N; only correctly classified ones are used).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: usize,
    /// Training images to fit the detector on (mahalanobis, learned).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    fit: usize,
    /// Further clean training images to calibrate the threshold on.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    calibration: usize,
    /// False positive rate the threshold is calibrated for.
    #[arg(long, default_value_t = 0.05)]
    fpr: f64,
    /// L∞ radius of the PGD examples.
    #[arg(long, default_value_t = 0.1)]
    eps: f32,
    /// L2 radius of the PGD-L2 examples that stand in for C&W when it is not available.
    #[arg(long, default_value_t = 1.5)]
    l2_eps: f32,
    /// PGD steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// C&W steps per binary-search step (default: the attack's own).
    #[arg(long)]
    cw_steps: Option<usize>,
    /// Squeezers of the squeeze detector, as a transform list (default: 1-bit depth and a
    /// 2×2 median for grey images, 5-bit depth and a 2×2 median otherwise).
    #[arg(long, value_name = "T[,T...]")]
    squeezers: Option<String>,
    /// Layers of the learned detector (default: the penultimate layer and the logits).
    #[arg(long, value_name = "L,L,...", value_delimiter = ',')]
    layers: Vec<String>,
    /// Inputs per batch.
    #[arg(long, default_value_t = 250)]
    batch_size: usize,
    /// Seed of the attacks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_detector(s: &str) -> Result<DetectorKind, String> {
    s.parse()
        .map_err(|e: nnguard_defense::DefenseError| e.to_string())
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

/// Runs `nnguard detect`.
pub fn run(args: DetectArgs) -> anyhow::Result<Outcome> {
    if args.limit == 0 {
        anyhow::bail!("invalid --limit: must be at least 1");
    }
    let config = DetectConfig {
        detector: args.detector,
        eps: args.eps,
        l2_eps: args.l2_eps,
        steps: args.steps,
        cw_steps: args.cw_steps,
        fit_images: args.fit,
        calibration_images: args.calibration,
        fpr: args.fpr,
        batch_size: args.batch_size,
        seed: args.seed,
        squeezers: args.squeezers.clone(),
        layers: (!args.layers.is_empty()).then(|| args.layers.clone()),
    };
    config.validate()?;
    let model = args.model.load()?;
    let load = |split| {
        args.data
            .load(split)
            .map_err(|e| anyhow::anyhow!("loading --data {}: {e}", args.data))
    };
    let train = load(Split::Train)?;
    let test = load(Split::Test)?.take(args.limit);
    eprintln!(
        "detect: {} on {} ({} test images), fitting on {} and calibrating on {} training images",
        args.detector.name(),
        args.data,
        test.len(),
        if args.detector == DetectorKind::Squeeze {
            0
        } else {
            args.fit
        },
        args.calibration
    );
    let report = run_detection(&model, &config, &train, &test)?;
    if args.json {
        print_json(&report)?;
        return Ok(Outcome::Clean);
    }
    println!(
        "{} detector on {} ({}): threshold {:.4} calibrated for {:.0}% false positives on {} clean training images",
        report.detector,
        args.model.model.display(),
        args.data,
        report.threshold,
        100.0 * report.target_fpr,
        report.calibration_images
    );
    println!(
        "clean test images: {} (false positive rate at the threshold: {})",
        report.clean_test,
        pct(report.test_fpr)
    );
    println!(
        "{:<10} {:>6} {:>8} {:>14} {:>8} {:>12}",
        "attack",
        "norm",
        "eps",
        "adversarial",
        "AUC",
        format!("TPR@{}%FPR", 100.0 * report.target_fpr)
    );
    for a in &report.attacks {
        println!(
            "{:<10} {:>6} {:>8} {:>8}/{:<5} {:>8} {:>12}",
            if a.stand_in {
                format!("{}*", a.attack)
            } else {
                a.attack.clone()
            },
            a.norm.to_string(),
            a.eps.map_or_else(|| "min".to_string(), |e| e.to_string()),
            a.adversarial,
            a.attempted,
            a.auc
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}")),
            pct(a.tpr)
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    Ok(Outcome::Clean)
}

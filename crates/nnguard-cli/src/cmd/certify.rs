//! `nnguard certify`: certified robustness of a model on a data set.
//!
//! - `certify smooth`: randomized smoothing (Cohen et al. 2019); certified accuracy by L2
//!   radius, each certificate holding with probability at least 1 − α.
//! - `certify ibp` / `certify crown`: verified accuracy in an L∞ ball by interval bound
//!   propagation or CROWN linear bounds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use nnguard_certify::bounds::{BoundMethod, BoundNet, VerifierConfig};
use nnguard_certify::smoothing::{CurvePoint, SmoothingConfig, certified_accuracy, radius_grid};
use nnguard_model::Classifier;
use serde::Serialize;

use super::common::{DataArgs, ModelArgs, check_output_path, print_json, progress};
use crate::exit::Outcome;

/// Version of the JSON reports written by `nnguard certify`.
pub const SCHEMA_VERSION: u32 = 1;

/// Arguments of `nnguard certify`.
#[derive(Debug, Args)]
pub struct CertifyArgs {
    #[command(subcommand)]
    method: CertifyCommand,
}

/// The certification methods.
#[derive(Debug, Subcommand)]
enum CertifyCommand {
    /// Randomized smoothing (Cohen et al. 2019): certified accuracy by L2 radius.
    Smooth(SmoothArgs),
    /// Interval bound propagation: verified accuracy in an L∞ ball.
    Ibp(BoundArgs),
    /// CROWN linear bounds (tighter than IBP, slower): verified accuracy in an L∞ ball.
    Crown(BoundArgs),
}

/// Options shared by every method.
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Certify only shard I of N (0-based) of the selected images, e.g. `0/4`; partial
    /// reports of all shards together cover every image once.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `nnguard certify smooth`.
#[derive(Debug, Args)]
struct SmoothArgs {
    #[command(flatten)]
    common: Common,
    /// Standard deviation σ of the Gaussian noise (pixel scale).
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    sigma: f32,
    /// Noise samples that choose the class to certify.
    #[arg(long, default_value_t = 100)]
    n0: usize,
    /// Noise samples that estimate its probability (at least --n0).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Failure probability of each certificate, in (0, 1).
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    alpha: f64,
    /// Noisy copies per forward pass.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Spacing of the radii in the certified-accuracy table.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    radius_step: f64,
}

/// Arguments of `nnguard certify ibp|crown`.
#[derive(Debug, Args)]
struct BoundArgs {
    #[command(flatten)]
    common: Common,
    /// Radius of the L∞ ball in pixel scale; several as a comma-separated list.
    #[arg(
        long,
        value_name = "E[,E...]",
        value_delimiter = ',',
        required = true,
        allow_negative_numbers = true
    )]
    eps: Vec<f32>,
    /// Images per interval pass.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected I/N (e.g. 0/4), got {s:?}"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("{i:?} is not a shard index"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a shard count"))?;
    if n == 0 || i >= n {
        return Err(format!("need 0 ≤ I < N, got {i}/{n} (indices are 0-based)"));
    }
    Ok((i, n))
}

/// Runs `nnguard certify`.
pub fn run(args: CertifyArgs) -> anyhow::Result<Outcome> {
    match args.method {
        CertifyCommand::Smooth(a) => smooth(a),
        CertifyCommand::Ibp(a) => bounds(a, BoundMethod::Ibp),
        CertifyCommand::Crown(a) => bounds(a, BoundMethod::Crown),
    }
}

/// What a run covers: the images of the shard and their position in the data set.
struct Selection {
    model: nnguard_model::Model,
    data: nnguard_data::Dataset,
    first_index: usize,
}

fn select(common: &Common) -> anyhow::Result<Selection> {
    if let Some(out) = &common.out {
        check_output_path(out, "--out")?;
    }
    let model = common.model.load()?;
    select_data(common, model)
}

/// The images of `--data`, `--limit` and `--shard` for a loaded model.
fn select_data(common: &Common, model: nnguard_model::Model) -> anyhow::Result<Selection> {
    let data = common.data.load()?;
    nnguard_model::predict::check_fit(&model, &data)?;
    let range = match common.shard {
        Some((i, n)) => data.shard_range(i, n),
        None => 0..data.len(),
    };
    let first_index = range.start;
    Ok(Selection {
        data: data.slice(range),
        model,
        first_index,
    })
}

fn write_report<T: Serialize>(common: &Common, report: &T) -> anyhow::Result<()> {
    if let Some(out) = &common.out {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(out, text + "\n")
            .with_context(|| format!("writing --out {}", out.display()))?;
    }
    if common.json {
        print_json(report)?;
    }
    Ok(())
}

fn shard_label(common: &Common) -> Option<String> {
    common.shard.map(|(i, n)| format!("{i}/{n}"))
}

/// One input of a smoothing report.
#[derive(Debug, Serialize)]
struct SmoothInput {
    index: usize,
    label: u32,
    /// The certified class, `null` when CERTIFY abstained.
    class: Option<u32>,
    radius: f64,
    selected: u32,
    count: u64,
    p_lower: f64,
}

/// The report of `nnguard certify smooth`.
#[derive(Debug, Serialize)]
struct SmoothReport {
    schema_version: u32,
    method: &'static str,
    norm: &'static str,
    model: String,
    data: String,
    shard: Option<String>,
    first_index: usize,
    images: usize,
    params: SmoothingConfig,
    /// Fraction certified correct at radius 0 (the smoothed classifier's certified accuracy).
    certified_accuracy: f64,
    abstained: usize,
    /// Mean certified radius over correctly certified inputs.
    mean_radius_correct: f64,
    seconds: f64,
    seconds_per_image: f64,
    noisy_samples_per_second: f64,
    /// Certified accuracy at each radius of the grid (`--radius-step`).
    curve: Vec<CurvePoint>,
    /// Radii of the correctly certified inputs, sorted: the exact curve is the fraction of
    /// `images` at or above each radius.
    certified_radii: Vec<f64>,
    inputs: Vec<SmoothInput>,
}

fn smooth(a: SmoothArgs) -> anyhow::Result<Outcome> {
    let smoothing = SmoothingConfig {
        sigma: a.sigma,
        n0: a.n0,
        n: a.n,
        alpha: a.alpha,
        batch: a.batch,
        seed: a.seed,
    }
    .build()?;
    if !(a.radius_step.is_finite() && a.radius_step > 0.0) {
        anyhow::bail!("--radius-step: must be a number > 0, got {}", a.radius_step);
    }
    let sel = select(&a.common)?;
    let n = sel.data.len();
    if n == 0 {
        eprintln!("no images to certify (empty data set or shard)");
        return Ok(Outcome::NothingToDo);
    }
    let bar = progress(
        n as u64,
        "certifying [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
    );
    let t0 = Instant::now();
    let mut inputs = Vec::with_capacity(n);
    for i in 0..n {
        let index = sel.first_index + i;
        let c = smoothing.certify(&sel.model, sel.data.image(i), index as u64)?;
        inputs.push(SmoothInput {
            index,
            label: sel.data.labels[i],
            class: c.class,
            radius: c.radius,
            selected: c.selected,
            count: c.count,
            p_lower: c.p_lower,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let certs: Vec<(u32, Option<u32>, f64)> = inputs
        .iter()
        .map(|r| (r.label, r.class, r.radius))
        .collect();
    let mut certified_radii: Vec<f64> = certs
        .iter()
        .filter(|(l, c, _)| *c == Some(*l))
        .map(|(_, _, r)| *r)
        .collect();
    certified_radii.sort_by(f64::total_cmp);
    let max_radius = certified_radii.last().copied().unwrap_or(0.0);
    let curve = certified_accuracy(&certs, &radius_grid(max_radius, a.radius_step));
    let cfg = smoothing.config().clone();
    let samples = (cfg.n0 + cfg.n) as f64 * n as f64;
    let report = SmoothReport {
        schema_version: SCHEMA_VERSION,
        method: "randomized-smoothing",
        norm: "l2",
        model: a.common.model.model.display().to_string(),
        data: sel.data.name.clone(),
        shard: shard_label(&a.common),
        first_index: sel.first_index,
        images: n,
        certified_accuracy: curve.first().map_or(0.0, |p| p.certified_accuracy),
        abstained: inputs.iter().filter(|r| r.class.is_none()).count(),
        mean_radius_correct: if certified_radii.is_empty() {
            0.0
        } else {
            certified_radii.iter().sum::<f64>() / certified_radii.len() as f64
        },
        seconds,
        seconds_per_image: seconds / n as f64,
        noisy_samples_per_second: samples / seconds.max(1e-9),
        params: cfg,
        curve,
        certified_radii,
        inputs,
    };
    write_report(&a.common, &report)?;
    if !a.common.json {
        let p = &report.params;
        println!(
            "randomized smoothing of {} on {} ({} images): σ={} n0={} n={} α={}",
            report.model, report.data, n, p.sigma, p.n0, p.n, p.alpha
        );
        println!("certified accuracy by L2 radius:");
        println!("  {:>6}  {:>9}  {:>8}", "radius", "certified", "accuracy");
        for pt in &report.curve {
            println!(
                "  {:>6.2}  {:>9}  {:>7.1}%",
                pt.radius,
                pt.certified,
                100.0 * pt.certified_accuracy
            );
        }
        println!(
            "abstained on {} ({:.1}%); mean radius of correct certificates {:.3}",
            report.abstained,
            100.0 * report.abstained as f64 / n as f64,
            report.mean_radius_correct
        );
        println!(
            "{:.2} s per image, {:.0} noisy samples/s",
            report.seconds_per_image, report.noisy_samples_per_second
        );
    }
    Ok(Outcome::Clean)
}

/// Verified accuracy at one ε.
#[derive(Debug, Serialize)]
struct EpsResult {
    eps: f32,
    verified: usize,
    verified_accuracy: f64,
    seconds: f64,
}

/// One input of a bound report.
#[derive(Debug, Serialize)]
struct BoundInput {
    index: usize,
    label: u32,
    predicted: u32,
    /// Per ε of `results`: whether the input is verified.
    verified: Vec<bool>,
    /// Per ε: the lower bound of the smallest margin z_y − z_j.
    margin_lower: Vec<f32>,
}

/// The report of `nnguard certify ibp|crown`.
#[derive(Debug, Serialize)]
struct BoundReport {
    schema_version: u32,
    method: BoundMethod,
    norm: &'static str,
    model: String,
    data: String,
    shard: Option<String>,
    first_index: usize,
    images: usize,
    clean_accuracy: f64,
    results: Vec<EpsResult>,
    inputs: Vec<BoundInput>,
}

fn bounds(a: BoundArgs, method: BoundMethod) -> anyhow::Result<Outcome> {
    let verifiers = a
        .eps
        .iter()
        .map(|&eps| {
            VerifierConfig {
                method,
                eps,
                batch: a.batch,
            }
            .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(out) = &a.common.out {
        check_output_path(out, "--out")?;
    }
    // The architecture is checked before any data is read.
    let model = a.common.model.load()?;
    let net = BoundNet::from_model(&model, method)?;
    let sel = select_data(&a.common, model)?;
    let n = sel.data.len();
    if n == 0 {
        eprintln!("no images to certify (empty data set or shard)");
        return Ok(Outcome::NothingToDo);
    }
    let logits = sel.model.logits_vec(&sel.data.images)?;
    let predicted = nnguard_model::tensor::argmax_rows(&logits, sel.model.num_classes());
    let mut inputs: Vec<BoundInput> = (0..n)
        .map(|i| BoundInput {
            index: sel.first_index + i,
            label: sel.data.labels[i],
            predicted: predicted[i],
            verified: Vec::new(),
            margin_lower: Vec::new(),
        })
        .collect();
    let correct = predicted
        .iter()
        .zip(&sel.data.labels)
        .filter(|(p, l)| p == l)
        .count();
    let model_name = a.common.model.model.display().to_string();
    if !a.common.json {
        // Rows are printed as each ε finishes: long CROWN runs show results as they come.
        println!(
            "{method} verification of {model_name} on {} ({n} images, clean accuracy {:.1}%):",
            sel.data.name,
            100.0 * correct as f64 / n as f64
        );
        println!(
            "  {:>8}  {:>8}  {:>8}  {:>8}",
            "ε (L∞)", "verified", "accuracy", "seconds"
        );
    }
    let mut results = Vec::with_capacity(verifiers.len());
    for v in &verifiers {
        let eps = v.config().eps;
        let bar = progress(
            n as u64,
            &format!("{method} ε={eps} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"),
        );
        let t0 = Instant::now();
        let verdicts = v.verify(&net, &sel.data.images, &sel.data.labels, &mut |done| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        let verified = verdicts.iter().filter(|r| r.verified).count();
        for (input, r) in inputs.iter_mut().zip(&verdicts) {
            input.verified.push(r.verified);
            input.margin_lower.push(r.margin_lower);
        }
        let r = EpsResult {
            eps,
            verified,
            verified_accuracy: verified as f64 / n as f64,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if !a.common.json {
            println!(
                "  {:>8}  {:>8}  {:>7.1}%  {:>8.1}",
                r.eps,
                r.verified,
                100.0 * r.verified_accuracy,
                r.seconds
            );
        }
        results.push(r);
    }
    let report = BoundReport {
        schema_version: SCHEMA_VERSION,
        method,
        norm: "linf",
        model: model_name,
        data: sel.data.name.clone(),
        shard: shard_label(&a.common),
        first_index: sel.first_index,
        images: n,
        clean_accuracy: correct as f64 / n as f64,
        results,
        inputs,
    };
    write_report(&a.common, &report)?;
    Ok(Outcome::Clean)
}

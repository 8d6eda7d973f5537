//! `nnguard train`: train a built-in architecture and write safetensors plus a sidecar.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;
use nnguard_data::Split;
use nnguard_defense::DefenseError;
use nnguard_defense::training::{Defense, DefenseConfig, EpsSchedule};
use nnguard_model::arch::Arch;
use nnguard_model::sidecar::{EpochLog, SIDECAR_FORMAT, Sidecar, TensorEntry};
use nnguard_model::train::{TrainConfig, TrainObserver, train, train_with};
use nnguard_model::{Backbone, Classifier, Differentiable, LoadOptions, Model, Normalize, weights};

use super::common::{DataArgs, check_output_path, parse_arch, parse_normalize, progress};
use crate::exit::Outcome;

/// Arguments of `nnguard train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture to train.
    #[arg(long, default_value = "cnn", value_parser = parse_arch)]
    pub arch: Arch,
    /// Data set (the train split trains, the test split measures accuracy).
    #[arg(long, default_value = "bundled", value_parser = super::common::parse_data)]
    pub data: nnguard_data::DataSource,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed for weights and batch order (training is deterministic for a seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Normalisation inside the model (`MEAN,STD`).
    #[arg(long, value_name = "MEAN,STD", value_parser = parse_normalize)]
    pub normalize: Option<Normalize>,
    /// Output weights (`.safetensors`); the sidecar goes beside it as `.json`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print the sidecar as JSON on stdout when done.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub defense: DefenseArgs,
}

/// Robust-training options of `nnguard train`.
#[derive(Debug, Clone, Args)]
pub struct DefenseArgs {
    /// Robust training: pgd-at (Madry et al.), trades (Zhang et al.), fgsm-at (Wong et al.),
    /// noise (Gaussian augmentation), distill (defensive distillation), ibp (Gowal et al.).
    #[arg(long, value_parser = parse_defense, help_heading = "Robust training")]
    pub defense: Option<Defense>,
    /// L∞ training radius (pgd-at, trades, fgsm-at, ibp).
    #[arg(long, help_heading = "Robust training")]
    pub eps: Option<f32>,
    /// Steps of the inner attack (pgd-at, trades; default 10).
    #[arg(long, value_name = "N", help_heading = "Robust training")]
    pub attack_steps: Option<usize>,
    /// Step size of the inner attack (default 2.5·eps/steps; 1.25·eps for fgsm-at).
    #[arg(long, value_name = "ALPHA", help_heading = "Robust training")]
    pub attack_step: Option<f32>,
    /// TRADES' weight of the robustness term (default 6).
    #[arg(long, help_heading = "Robust training")]
    pub beta: Option<f32>,
    /// Standard deviation of the Gaussian noise (noise; default 0.25).
    #[arg(long, help_heading = "Robust training")]
    pub sigma: Option<f32>,
    /// Teacher model whose soft labels the student learns (distill).
    #[arg(long, value_name = "FILE", help_heading = "Robust training")]
    pub teacher: Option<PathBuf>,
    /// Distillation temperature (distill; default 100).
    #[arg(long, value_name = "T", help_heading = "Robust training")]
    pub temperature: Option<f32>,
    /// ε ramp as fractions of the run: 0 before START, full at END (`START,END` or
    /// `constant`; ibp default 0.1,0.6, others constant).
    #[arg(long, value_name = "START,END", value_parser = parse_eps_schedule, help_heading = "Robust training")]
    pub eps_schedule: Option<EpsSchedule>,
}

fn parse_defense(s: &str) -> Result<Defense, String> {
    s.parse().map_err(|e: DefenseError| e.to_string())
}

fn parse_eps_schedule(s: &str) -> Result<EpsSchedule, String> {
    EpsSchedule::parse(s).map_err(|e| e.to_string())
}

impl DefenseArgs {
    /// The defence configuration, or `None` for plain training; flags without `--defense`
    /// are an error.
    pub fn config(&self, seed: u64) -> anyhow::Result<Option<DefenseConfig>> {
        let Some(defense) = self.defense else {
            let stray = [
                ("--eps", self.eps.is_some()),
                ("--attack-steps", self.attack_steps.is_some()),
                ("--attack-step", self.attack_step.is_some()),
                ("--beta", self.beta.is_some()),
                ("--sigma", self.sigma.is_some()),
                ("--teacher", self.teacher.is_some()),
                ("--temperature", self.temperature.is_some()),
                ("--eps-schedule", self.eps_schedule.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                anyhow::bail!("{flag} needs --defense (plain training has no such setting)");
            }
            return Ok(None);
        };
        Ok(Some(DefenseConfig {
            eps: self.eps,
            attack_steps: self.attack_steps,
            attack_step: self.attack_step,
            beta: self.beta,
            sigma: self.sigma,
            teacher: self.teacher.clone(),
            temperature: self.temperature,
            eps_schedule: self.eps_schedule,
            ..DefenseConfig::new(defense, seed)
        }))
    }
}

/// Loads a teacher model for distillation.
fn load_teacher(
    path: &std::path::Path,
) -> Result<std::sync::Arc<dyn Differentiable>, DefenseError> {
    Ok(std::sync::Arc::new(Model::load(
        path,
        &LoadOptions::default(),
    )?))
}

struct Bars {
    bar: Option<ProgressBar>,
    epochs: usize,
    batch_size: usize,
}

impl TrainObserver for Bars {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f64) {
        let bar = self.bar.get_or_insert_with(|| {
            progress(
                total as u64,
                "{prefix} [{bar:30}] {pos}/{len} batches {msg} ({per_sec}, eta {eta})",
            )
        });
        bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        bar.set_position(done as u64);
        bar.set_message(format!("loss {loss:.4}, {} img/batch", self.batch_size));
    }

    fn epoch(&mut self, log: &EpochLog) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let acc = log
            .test_acc
            .map(|a| format!(", test accuracy {:.2}%", 100.0 * a))
            .unwrap_or_default();
        eprintln!(
            "epoch {}/{}: loss {:.4}{acc}, {:.1} s ({:.0} images/s)",
            log.epoch,
            self.epochs,
            log.train_loss,
            log.epoch_seconds,
            log.images_per_second.unwrap_or(0.0)
        );
    }
}

/// Runs `nnguard train`.
pub fn run(args: TrainArgs) -> anyhow::Result<Outcome> {
    check_output_path(&args.out, "--out")?;
    let config = TrainConfig {
        arch: args.arch,
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.seed,
        normalize: args.normalize.clone(),
    };
    config.validate()?;
    let defense = args.defense.config(args.seed)?;
    let mut objective = match defense.clone() {
        Some(d) => Some(d.build(load_teacher)?),
        None => None,
    };
    let load = |split| {
        DataArgs {
            data: args.data.clone(),
            split,
            limit: None,
        }
        .load()
    };
    let mut train_set = load(Split::Train)?;
    if let Some(n) = args.limit {
        train_set = train_set.take(n);
    }
    let test_set = load(Split::Test)?;
    eprintln!(
        "training {}{} on {} ({} train / {} test images, {}×{}×{}), {} epochs, Adam lr {}, batch {}, seed {}",
        args.arch,
        defense
            .as_ref()
            .map(|d| format!(" with --defense {}", d.defense))
            .unwrap_or_default(),
        args.data,
        train_set.len(),
        test_set.len(),
        train_set.shape[0],
        train_set.shape[1],
        train_set.shape[2],
        args.epochs,
        args.lr,
        args.batch_size,
        args.seed
    );
    let mut bars = Bars {
        bar: None,
        epochs: args.epochs,
        batch_size: args.batch_size,
    };
    let (model, mut record) = match objective.as_mut() {
        Some(o) => train_with(&config, &train_set, Some(&test_set), o.as_mut(), &mut bars)?,
        None => train(&config, &train_set, Some(&test_set), &mut bars)?,
    };
    record.data = Some(args.data.to_string());
    let test_acc = record.log.last().and_then(|l| l.test_acc);
    let sidecar = save(&model, &args.out, record, test_acc)?;
    eprintln!(
        "wrote {} and {} (test accuracy {:.2}%, sha256 {})",
        args.out.display(),
        Sidecar::path_for(&args.out).display(),
        100.0 * test_acc.unwrap_or(0.0),
        sidecar.sha256.as_deref().unwrap_or("")
    );
    if args.json {
        super::common::print_json(&sidecar)?;
    }
    Ok(Outcome::Clean)
}

/// Writes a trained model's weights and sidecar (each atomically) and returns the sidecar.
pub fn save(
    model: &Model,
    out: &std::path::Path,
    record: nnguard_model::sidecar::TrainingRecord,
    test_accuracy: Option<f64>,
) -> anyhow::Result<Sidecar> {
    let Backbone::Native(net) = model.backbone() else {
        anyhow::bail!("only built-in architectures can be saved as safetensors");
    };
    let arch = net.arch();
    let bytes = weights::to_bytes(
        net,
        &[("format", "pt".to_string()), ("arch", arch.to_string())],
    )?;
    let tensors = weights::read_header(out, &bytes)?
        .into_iter()
        .map(|(key, shape, dtype)| TensorEntry {
            key,
            shape,
            dtype: dtype.to_lowercase().replace("f32", "float32"),
        })
        .collect();
    let sidecar = Sidecar {
        format: SIDECAR_FORMAT.into(),
        arch: Some(arch),
        input_shape: Some(model.input_shape()),
        input_range: Some([model.bounds().0, model.bounds().1]),
        num_classes: Some(model.num_classes()),
        class_names: model.class_names().map(<[String]>::to_vec),
        normalize: model.normalization().cloned(),
        num_parameters: Some(model.parameter_count()),
        tensors,
        training: Some(record),
        test_accuracy,
        sha256: Some(weights::sha256_hex(&bytes)),
        architecture: None,
    };
    let sidecar_path = Sidecar::path_for(out);
    weights::write_atomic(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    sidecar.write(&sidecar_path)?;
    Ok(sidecar)
}

//! `nnguard bench`: throughput measurements that BENCHMARKS.md records next to PyTorch's
//! (bench/train_vs_pytorch.sh runs both in one go).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use nnguard_data::{BatchOrder, Batches, DataSource, Split};
use nnguard_model::arch::{Arch, Network};
use nnguard_model::tensor::{batch_tensor, cpu};
use nnguard_model::train::{Silent, TrainConfig, rayon_threads, train};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model};
use serde::Serialize;

use super::common::{parse_arch, parse_data, print_json};
use crate::exit::Outcome;

/// Arguments of `nnguard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
    /// Print the measurement as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Training throughput: epochs of Adam on the train split (images/s).
    Train {
        /// Architecture.
        #[arg(long, default_value = "cnn", value_parser = parse_arch)]
        arch: Arch,
        /// Data set.
        #[arg(long, default_value = "fashion-mnist", value_parser = parse_data)]
        data: DataSource,
        /// Training images per epoch.
        #[arg(long, default_value_t = 60_000)]
        images: usize,
        /// Mini-batch size.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Epochs to time (each is reported).
        #[arg(long, default_value_t = 1)]
        epochs: usize,
    },
    /// Forward + backward to the input (the work of a gradient attack), images/s.
    Grad {
        /// Model file; without it, a freshly initialised `--arch` network.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Architecture when no model file is given.
        #[arg(long, default_value = "cnn", value_parser = parse_arch)]
        arch: Arch,
        /// Images per pass over the batch loop.
        #[arg(long, default_value_t = 1000)]
        images: usize,
        /// Batch size.
        #[arg(long, default_value_t = 250)]
        batch_size: usize,
        /// Timed passes (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
}

/// One measurement.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// What was measured.
    pub what: String,
    /// Threads the CPU backend used.
    pub threads: usize,
    /// Images processed per timed unit.
    pub images: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Seconds of each timed unit.
    pub seconds: Vec<f64>,
    /// Images per second of the median unit.
    pub images_per_second: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `nnguard bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let result = match args.what {
        BenchWhat::Train {
            arch,
            data,
            images,
            batch_size,
            epochs,
        } => {
            let train_set = data.load(Split::Train)?.take(images);
            let config = TrainConfig {
                arch,
                epochs,
                batch_size,
                ..TrainConfig::default()
            };
            let (_, record) = train(&config, &train_set, None, &mut Silent)?;
            let seconds: Vec<f64> = record.log.iter().map(|l| l.epoch_seconds).collect();
            BenchResult {
                what: format!("train {arch} on {data} (Adam, one epoch)"),
                threads: rayon_threads(),
                images: train_set.len(),
                batch_size,
                images_per_second: train_set.len() as f64 / median(&seconds),
                seconds,
            }
        }
        BenchWhat::Grad {
            model,
            arch,
            images,
            batch_size,
            repeat,
        } => {
            let model = match model {
                Some(p) => Model::load(&p, &LoadOptions::default())?,
                None => {
                    let d = cpu();
                    let shape = nnguard_model::model::default_input_shape(arch);
                    Model::from_network(
                        Network::init_seeded(arch, shape, 10, 0, &d)?,
                        shape,
                        10,
                        None,
                    )
                }
            };
            let data = DataSource::Bundled.load(Split::Test)?;
            let shape = model.input_shape();
            if data.shape != shape {
                anyhow::bail!(
                    "bench grad uses the bundled 1×28×28 images; the model takes {shape:?}"
                );
            }
            let data = data.take(images);
            let batches: Vec<(Vec<f32>, Vec<u32>)> =
                Batches::new(&data, batch_size, BatchOrder::Sequential).collect();
            let mut seconds = Vec::with_capacity(repeat);
            for _ in 0..repeat.max(1) + 1 {
                let t0 = Instant::now();
                for (x, y) in &batches {
                    let g = model.input_gradient(
                        batch_tensor(x, shape, model.device()),
                        y,
                        Loss::CrossEntropy,
                    );
                    // Force the computation to finish before the clock stops.
                    let _ = g.grad.into_data();
                }
                seconds.push(t0.elapsed().as_secs_f64());
            }
            seconds.remove(0); // warm-up
            BenchResult {
                what: "forward + backward to the input (cross-entropy)".into(),
                threads: rayon_threads(),
                images: data.len(),
                batch_size,
                images_per_second: data.len() as f64 / median(&seconds),
                seconds,
            }
        }
    };
    if args.json {
        print_json(&result)?;
    } else {
        println!(
            "{}: {:.0} images/s ({} images, batch {}, {} threads; seconds {:?})",
            result.what,
            result.images_per_second,
            result.images,
            result.batch_size,
            result.threads,
            result
                .seconds
                .iter()
                .map(|s| (s * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
    }
    Ok(Outcome::Clean)
}

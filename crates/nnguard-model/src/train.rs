//! Supervised training of the built-in architectures with Adam and cross-entropy.
//!
//! Deterministic for a given seed: the weights are initialised from the seeded backend RNG
//! and every epoch visits the training set in a ChaCha permutation derived from the seed.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use nnguard_data::{BatchOrder, Batches, Dataset};

use crate::arch::{Arch, Network};
use crate::error::ModelError;
use crate::loss::Loss;
use crate::model::Model;
use crate::normalize::Normalize;
use crate::predict::evaluate_accuracy;
use crate::sidecar::{EpochLog, TrainingRecord};
use crate::tensor::{Tensor, batch_tensor, cpu, to_vec};

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The architecture to train.
    pub arch: Arch,
    /// Passes over the training set (at least 1).
    pub epochs: usize,
    /// Adam's learning rate (positive and finite).
    pub lr: f64,
    /// Images per mini-batch (at least 1).
    pub batch_size: usize,
    /// Seed for the initial weights and the batch order.
    pub seed: u64,
    /// Normalisation inside the model.
    pub normalize: Option<Normalize>,
}

impl Default for TrainConfig {
    /// The reference recipe: 3 epochs of Adam at 1e-3, batches of 128, seed 0.
    fn default() -> Self {
        Self {
            arch: Arch::Cnn,
            epochs: 3,
            lr: 1e-3,
            batch_size: 128,
            seed: 0,
            normalize: None,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the flag.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |name, reason: String| Err(ModelError::InvalidParameter { name, reason });
        if self.epochs == 0 {
            return bad("--epochs", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "--lr",
                format!("must be positive and finite, got {}", self.lr),
            );
        }
        if self.batch_size == 0 {
            return bad("--batch-size", "must be at least 1".into());
        }
        Ok(())
    }
}

/// What a training run reports while it goes.
pub trait TrainObserver {
    /// After each mini-batch: epoch (1-based), batches done and in total, the batch loss.
    fn batch(&mut self, _epoch: usize, _done: usize, _total: usize, _loss: f64) {}
    /// After each epoch.
    fn epoch(&mut self, _log: &EpochLog) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

/// One mini-batch, as a [`TrainObjective`] sees it.
pub struct Batch<'a> {
    /// The network being trained (parameters on the autodiff device).
    pub net: &'a Network,
    /// Pixel-space inputs `[B, C, H, W]` (plain tensors, not tracked).
    pub x: Tensor<4>,
    /// True labels.
    pub labels: &'a [u32],
    /// 1-based epoch.
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// 0-based batch index within the epoch.
    pub index: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Number of classes.
    pub classes: usize,
    normalize: Option<&'a Normalize>,
    input_shape: [usize; 3],
}

impl Batch<'_> {
    /// Logits of pixel-space inputs through the model's normalisation, recording the graph
    /// of the network's parameters (what a training loss is built from).
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let x = match self.normalize {
            Some(n) => {
                let device = x.device();
                n.apply(x, &device)
            }
            None => x,
        };
        self.net.forward(x)
    }

    /// A frozen inference copy of the current network in pixel space (normalisation
    /// inside), for attacks that craft the training inputs of adversarial training.
    pub fn snapshot(&self) -> Model {
        Model::from_network(
            self.net.valid(),
            self.input_shape,
            self.classes,
            self.normalize.cloned(),
        )
    }

    /// The normalisation inside the model, for objectives that propagate through the
    /// network themselves (interval bounds).
    pub fn normalization(&self) -> Option<&Normalize> {
        self.normalize
    }

    /// Fraction of the run completed at this batch, in `[0, 1)` (for ε and κ schedules).
    pub fn progress(&self) -> f64 {
        ((self.epoch - 1) * self.batches + self.index) as f64
            / (self.epochs * self.batches).max(1) as f64
    }
}

/// What a training run minimises for each mini-batch. The default is [`CrossEntropy`];
/// robust training (adversarial, TRADES, noise, distillation, IBP) supplies its own.
pub trait TrainObjective {
    /// A short name recorded in the sidecar (`clean`, `pgd-at`, ...).
    fn name(&self) -> String;
    /// The scalar loss `[1]` of a batch, differentiable with respect to the network.
    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError>;
    /// The objective's settings, recorded in the sidecar.
    fn settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Plain training: mean cross-entropy on the clean batch.
pub struct CrossEntropy;

impl TrainObjective for CrossEntropy {
    fn name(&self) -> String {
        "clean".into()
    }
    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let logits = batch.logits(batch.x.clone());
        Ok(Loss::CrossEntropy.per_sample(logits, batch.labels).mean())
    }
}

/// Trains `config.arch` on `train` with plain cross-entropy, measuring test accuracy on
/// `test` after every epoch.
///
/// Returns the trained model (inference mode) and the training record for its sidecar.
pub fn train(
    config: &TrainConfig,
    train: &Dataset,
    test: Option<&Dataset>,
    observer: &mut dyn TrainObserver,
) -> Result<(Model, TrainingRecord), ModelError> {
    train_with(config, train, test, &mut CrossEntropy, observer)
}

/// Trains `config.arch` on `train`, minimising `objective` for every mini-batch.
pub fn train_with(
    config: &TrainConfig,
    train: &Dataset,
    test: Option<&Dataset>,
    objective: &mut dyn TrainObjective,
    observer: &mut dyn TrainObserver,
) -> Result<(Model, TrainingRecord), ModelError> {
    config.validate()?;
    if train.is_empty() {
        return Err(ModelError::InvalidParameter {
            name: "--data",
            reason: format!("{} has no training images", train.name),
        });
    }
    if let Some(n) = &config.normalize {
        n.check(Some(train.shape[0]))?;
    }
    let classes = train
        .num_classes
        .max(test.map_or(0, |t| t.num_classes))
        .max(2);
    let device = cpu().autodiff();
    let mut net = Network::init_seeded(config.arch, train.shape, classes, config.seed, &device)?;
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let mut record = TrainingRecord {
        arch: Some(config.arch),
        data: Some(train.name.clone()),
        epochs: config.epochs,
        lr: config.lr,
        batch_size: config.batch_size,
        seed: config.seed,
        optimizer: "Adam".into(),
        train_images: train.len(),
        threads: rayon_threads(),
        mode: objective.name(),
        defense: match objective.settings() {
            serde_json::Value::Null => None,
            v => Some(v),
        },
        ..TrainingRecord::default()
    };
    let plain = cpu();
    let started = Instant::now();
    for epoch in 1..=config.epochs {
        let t0 = Instant::now();
        let order = BatchOrder::Shuffled(
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
        );
        let batches = Batches::new(train, config.batch_size, order);
        let total = batches.num_batches();
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for (i, (x, y)) in batches.enumerate() {
            let batch = Batch {
                net: &net,
                x: batch_tensor(&x, train.shape, &plain),
                labels: &y,
                epoch,
                epochs: config.epochs,
                index: i,
                batches: total,
                classes,
                normalize: config.normalize.as_ref(),
                input_shape: train.shape,
            };
            let loss = objective.loss(&batch)?;
            let value = f64::from(
                to_vec(loss.clone().detach())
                    .first()
                    .copied()
                    .unwrap_or(f32::NAN),
            );
            if !value.is_finite() {
                return Err(ModelError::Eval(format!(
                    "training diverged at epoch {epoch}, batch {} (loss {value}); lower --lr",
                    i + 1
                )));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(config.lr, net, grads);
            loss_sum += value * y.len() as f64;
            seen += y.len();
            observer.batch(epoch, i + 1, total, value);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let test_acc = match test {
            Some(t) => {
                let model = Model::from_network(
                    net.valid(),
                    train.shape,
                    classes,
                    config.normalize.clone(),
                );
                Some(evaluate_accuracy(&model, t, 500)?.accuracy)
            }
            None => None,
        };
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            test_acc,
            epoch_seconds: seconds,
            images_per_second: Some(seen as f64 / seconds.max(1e-9)),
        };
        observer.epoch(&log);
        record.log.push(log);
    }
    record.train_seconds = started.elapsed().as_secs_f64();
    let model = Model::from_network(net.valid(), train.shape, classes, config.normalize.clone())
        .with_class_names(train.class_names.clone());
    Ok((model, record))
}

/// Threads the CPU backend uses (rayon's global pool, sized by `RAYON_NUM_THREADS`).
pub fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

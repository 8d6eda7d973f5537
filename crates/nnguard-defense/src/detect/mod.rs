//! Detectors of adversarial inputs, one file each, and [`run`], the evaluation `nnguard
//! detect` performs:
//!
//! | name | detector |
//! |---|---|
//! | `squeeze` | [`SqueezeDetector`]: feature squeezing (Xu, Evans and Qi 2018) |
//! | `mahalanobis` | [`Mahalanobis`]: Mahalanobis distance on penultimate features (Lee et al. 2018) |
//! | `learned` | [`LearnedDetector`]: logistic regression on layer activations, trained on clean and PGD inputs |
//!
//! A detector gives every input a score, higher meaning more likely adversarial. [`run`] fits
//! the detector on one part of the training split, calibrates its threshold for a 5% false
//! positive rate on another part with clean inputs only, and reports the ROC AUC and the true
//! positive rate at that threshold on PGD and C&W examples of the test split (PGD-L2 where no
//! C&W attack is registered, and the report says so).
//!
//! Detectors are not a defence against an adaptive attacker who knows them (Carlini and
//! Wagner 2017, "Adversarial Examples Are Not Easily Detected"): the figures here are for
//! attacks that ignore the detector.

mod learned;
pub mod linalg;
mod mahalanobis;
pub mod metrics;
mod squeeze;

pub use learned::{LearnedConfig, LearnedDetector};
pub use mahalanobis::{Mahalanobis, MahalanobisConfig};
pub use squeeze::{SqueezeConfig, SqueezeDetector};

use nnguard_attack::evasion::{ATTACKS, AnyAttack, AttackParams, Inputs, build, run_white_box};
use nnguard_attack::{Norm, Threat};
use nnguard_data::Dataset;
use nnguard_model::Differentiable;
use nnguard_model::tensor::{Tensor, argmax_rows, batch_tensor, to_vec};
use serde::Serialize;

use crate::DefenseError;

/// A detector of adversarial inputs.
pub trait Detector: Send + Sync {
    /// The detector's name in reports.
    fn name(&self) -> String;
    /// One score per input of `x` (higher: more likely adversarial).
    fn scores(&self, model: &dyn Differentiable, x: Tensor<4>) -> Result<Vec<f32>, DefenseError>;
    /// The detector's settings, for reports.
    fn settings(&self) -> serde_json::Value;
}

/// The detectors, by the name `--detector` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// Feature squeezing.
    Squeeze,
    /// Mahalanobis distance.
    Mahalanobis,
    /// Logistic regression on activations.
    Learned,
}

impl DetectorKind {
    /// Every detector.
    pub const ALL: [DetectorKind; 3] = [
        DetectorKind::Squeeze,
        DetectorKind::Mahalanobis,
        DetectorKind::Learned,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Squeeze => "squeeze",
            DetectorKind::Mahalanobis => "mahalanobis",
            DetectorKind::Learned => "learned",
        }
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = DefenseError;
    fn from_str(s: &str) -> Result<Self, DefenseError> {
        DetectorKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                DefenseError::config(
                    "--detector",
                    format!("unknown detector {s:?}; available: squeeze, mahalanobis, learned"),
                )
            })
    }
}

/// Settings of a detection evaluation ([`run`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// The detector.
    pub detector: DetectorKind,
    /// L∞ radius of the PGD examples (`--eps`).
    pub eps: f32,
    /// L2 radius of the PGD-L2 examples used when no C&W attack is registered (`--l2-eps`).
    pub l2_eps: f32,
    /// PGD steps (`--steps`).
    pub steps: usize,
    /// C&W Adam steps per binary-search step (`--cw-steps`); `None` for the attack's default.
    pub cw_steps: Option<usize>,
    /// Training images the detector is fitted on (`--fit`; Mahalanobis and learned).
    pub fit_images: usize,
    /// Further training images, clean, on which the threshold is calibrated (`--calibration`).
    pub calibration_images: usize,
    /// The false positive rate the threshold is calibrated for.
    pub fpr: f64,
    /// Inputs per batch.
    pub batch_size: usize,
    /// Seed of the attacks.
    pub seed: u64,
    /// Squeezers of the feature-squeezing detector, as a transform spec (`--squeezers`).
    pub squeezers: Option<String>,
    /// Layers of the learned detector (`--layers`); default the penultimate layer and the
    /// logits.
    pub layers: Option<Vec<String>>,
}

impl Default for DetectConfig {
    /// Mahalanobis; PGD-L∞ at ε = 0.1 and PGD-L2 at 1.5 with 20 steps; 5,000 fitting and
    /// 1,000 calibration images; 5% false positives; batches of 250; seed 0.
    fn default() -> Self {
        Self {
            detector: DetectorKind::Mahalanobis,
            eps: 0.1,
            l2_eps: 1.5,
            steps: 20,
            cw_steps: None,
            fit_images: 5000,
            calibration_images: 1000,
            fpr: 0.05,
            batch_size: 250,
            seed: 0,
            squeezers: None,
            layers: None,
        }
    }
}

impl DetectConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn validate(&self) -> Result<(), DefenseError> {
        for (flag, v) in [("--eps", self.eps), ("--l2-eps", self.l2_eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(DefenseError::config(
                    flag,
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        if self.steps == 0 {
            return Err(DefenseError::config("--steps", "must be at least 1"));
        }
        if self.cw_steps == Some(0) {
            return Err(DefenseError::config("--cw-steps", "must be at least 1"));
        }
        if self.calibration_images == 0 {
            return Err(DefenseError::config("--calibration", "must be at least 1"));
        }
        if self.fit_images < 2 && self.detector != DetectorKind::Squeeze {
            return Err(DefenseError::config("--fit", "must be at least 2"));
        }
        if !(self.fpr > 0.0 && self.fpr < 1.0) {
            return Err(DefenseError::config(
                "--fpr",
                format!("must be in (0, 1), got {}", self.fpr),
            ));
        }
        if self.batch_size == 0 {
            return Err(DefenseError::config("--batch-size", "must be at least 1"));
        }
        Ok(())
    }
}

/// Detection of one kind of adversarial example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackDetection {
    /// The attack that made the examples (`pgd`, `cw`, `pgd-l2`).
    pub attack: String,
    /// The attack that was asked for (`cw` when PGD-L2 stands in for it).
    pub role: String,
    /// Whether `attack` stands in for `role`.
    pub stand_in: bool,
    /// Threat model of the examples.
    pub norm: Norm,
    /// Their radius (`None` for a minimal-perturbation attack).
    pub eps: Option<f32>,
    /// Correctly classified test inputs attacked.
    pub attempted: usize,
    /// Successful adversarial examples (the positives).
    pub adversarial: usize,
    /// ROC AUC of adversarial against clean test scores.
    pub auc: Option<f64>,
    /// True positive rate at the calibrated threshold.
    pub tpr: Option<f64>,
}

/// What [`run`] reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionReport {
    /// The detector.
    pub detector: String,
    /// Its settings.
    pub settings: serde_json::Value,
    /// Training images it was fitted on.
    pub fit_images: usize,
    /// Clean training images its threshold was calibrated on.
    pub calibration_images: usize,
    /// The false positive rate the threshold is set for.
    pub target_fpr: f64,
    /// The threshold: inputs scoring above it are flagged.
    pub threshold: f32,
    /// Correctly classified clean test inputs (the negatives).
    pub clean_test: usize,
    /// False positive rate on the clean test inputs at the threshold.
    pub test_fpr: Option<f64>,
    /// Per attack.
    pub attacks: Vec<AttackDetection>,
    /// What a reader should know (stand-ins, the adaptive-attack caveat).
    pub notes: Vec<String>,
}

/// Flattened features of `layer` for contiguous `images`, in batches; returns the values and
/// the feature count.
pub fn layer_features(
    model: &dyn Differentiable,
    images: &[f32],
    layer: &str,
    batch_size: usize,
) -> Result<(Vec<f32>, usize), DefenseError> {
    let shape = model.input_shape();
    let per: usize = shape.iter().product();
    let mut out = Vec::new();
    let mut dim = 0;
    for chunk in images.chunks(per * batch_size.max(1)) {
        let f = model.features(batch_tensor(chunk, shape, model.device()), layer)?;
        dim = f.dims()[1];
        out.extend(to_vec(f));
    }
    Ok((out, dim))
}

/// The name of the layer before the logits.
pub fn penultimate_layer(model: &dyn Differentiable) -> Result<String, DefenseError> {
    let names = model.layer_names();
    if names.len() < 2 {
        return Err(DefenseError::Unsupported {
            what: "a feature-space detector".into(),
            reason: format!(
                "the model exposes no layer before its logits (layers: {})",
                names.join(", ")
            ),
        });
    }
    Ok(names[names.len() - 2].clone())
}

/// Scores of contiguous `images` in batches.
pub fn batch_scores(
    detector: &dyn Detector,
    model: &dyn Differentiable,
    images: &[f32],
    batch_size: usize,
) -> Result<Vec<f32>, DefenseError> {
    let shape = model.input_shape();
    let per: usize = shape.iter().product();
    let mut out = Vec::with_capacity(images.len() / per.max(1));
    for chunk in images.chunks(per * batch_size.max(1)) {
        out.extend(detector.scores(model, batch_tensor(chunk, shape, model.device()))?);
    }
    Ok(out)
}

/// Predicted classes of contiguous `images`.
fn predictions(model: &dyn Differentiable, images: &[f32], batch: usize) -> Vec<u32> {
    let shape = model.input_shape();
    let per: usize = shape.iter().product();
    let mut out = Vec::new();
    for chunk in images.chunks(per * batch.max(1)) {
        let logits = to_vec(model.logits(batch_tensor(chunk, shape, model.device())));
        out.extend(argmax_rows(&logits, model.num_classes()));
    }
    out
}

/// The correctly classified images of `images` and their labels.
fn correct_only(
    model: &dyn Differentiable,
    images: &[f32],
    labels: &[u32],
    batch: usize,
) -> (Vec<f32>, Vec<u32>) {
    let per: usize = model.input_shape().iter().product();
    let pred = predictions(model, images, batch);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, (&p, &l)) in pred.iter().zip(labels).enumerate() {
        if p == l {
            x.extend_from_slice(&images[i * per..(i + 1) * per]);
            y.push(l);
        }
    }
    (x, y)
}

/// An attack whose successful examples become positives.
struct AttackPlan {
    name: String,
    role: String,
    stand_in: bool,
    norm: Norm,
    eps: Option<f32>,
    params: AttackParams,
}

/// PGD-L∞, then C&W-L2 if registered, else PGD-L2.
fn attack_plans(config: &DetectConfig) -> Vec<AttackPlan> {
    let pgd = AttackParams {
        norm: Norm::Linf,
        eps: config.eps,
        steps: Some(config.steps),
        ..AttackParams::default()
    };
    let mut plans = vec![AttackPlan {
        name: "pgd".into(),
        role: "pgd".into(),
        stand_in: false,
        norm: Norm::Linf,
        eps: Some(config.eps),
        params: pgd,
    }];
    let cw = ["cw-l2", "cw"]
        .into_iter()
        .find(|n| ATTACKS.iter().any(|(a, _)| a == n));
    plans.push(match cw {
        Some(name) => AttackPlan {
            name: name.into(),
            role: "cw".into(),
            stand_in: false,
            norm: Norm::L2,
            eps: None,
            params: AttackParams {
                norm: Norm::L2,
                eps: config.l2_eps,
                steps: config.cw_steps,
                ..AttackParams::default()
            },
        },
        None => AttackPlan {
            name: "pgd-l2".into(),
            role: "cw".into(),
            stand_in: true,
            norm: Norm::L2,
            eps: Some(config.l2_eps),
            params: AttackParams {
                norm: Norm::L2,
                eps: config.l2_eps,
                steps: Some(config.steps),
                ..AttackParams::default()
            },
        },
    });
    plans
}

/// Runs a white-box registry attack on contiguous `images` and returns the successful
/// adversarial examples, contiguous.
#[allow(clippy::too_many_arguments)]
pub fn adversarial_examples(
    model: &(dyn Differentiable + 'static),
    attack: &str,
    params: &AttackParams,
    threat_eps: Option<f32>,
    images: &[f32],
    labels: &[u32],
    batch_size: usize,
    seed: u64,
) -> Result<Vec<f32>, DefenseError> {
    let shape = model.input_shape();
    let per: usize = shape.iter().product();
    let AnyAttack::WhiteBox(a) = build(attack, params)? else {
        return Err(DefenseError::Unsupported {
            what: format!("attack {attack}"),
            reason: "detection is evaluated with white-box attacks".into(),
        });
    };
    let threat = Threat {
        norm: params.norm,
        eps: threat_eps,
        bounds: model.bounds(),
    };
    let mut out = Vec::new();
    for (bi, (x, y)) in images
        .chunks(per * batch_size.max(1))
        .zip(labels.chunks(batch_size.max(1)))
        .enumerate()
    {
        let inputs = Inputs {
            x: batch_tensor(x, shape, model.device()),
            labels: y,
            targets: None,
        };
        let r = run_white_box(
            model,
            a.as_ref(),
            threat,
            inputs,
            seed.wrapping_add(bi as u64),
        )?;
        for (i, &ok) in r.success.iter().enumerate() {
            if ok {
                out.extend_from_slice(&r.x_adv[i * per..(i + 1) * per]);
            }
        }
    }
    Ok(out)
}

/// Fits the chosen detector on the first `fit_images` training images (the learned detector
/// also on PGD examples of them), calibrates its threshold on the next `calibration_images`
/// clean training images, and measures it on the correctly classified images of `test` and
/// on PGD and C&W (or PGD-L2) examples made from them.
pub fn run(
    model: &(dyn Differentiable + 'static),
    config: &DetectConfig,
    train: &Dataset,
    test: &Dataset,
) -> Result<DetectionReport, DefenseError> {
    config.validate()?;
    let shape = model.input_shape();
    for (d, flag) in [
        (train, "--data (train split)"),
        (test, "--data (test split)"),
    ] {
        if d.shape != shape {
            return Err(DefenseError::ShapeMismatch {
                what: format!("{flag} {}", d.name),
                shape,
                reason: format!("its images are {:?}", d.shape),
            });
        }
    }
    let fit_n = if config.detector == DetectorKind::Squeeze {
        0
    } else {
        config.fit_images
    };
    let needed = fit_n + config.calibration_images;
    if train.len() < needed {
        return Err(DefenseError::config(
            "--fit",
            format!(
                "{} training images are needed ({fit_n} to fit, {} to calibrate) but {} has {}",
                needed,
                config.calibration_images,
                train.name,
                train.len()
            ),
        ));
    }
    let per: usize = shape.iter().product();
    let bs = config.batch_size;
    let fit_x = &train.images[..fit_n * per];
    let fit_y = &train.labels[..fit_n];
    let cal_x = &train.images[fit_n * per..needed * per];
    let mut notes = Vec::new();
    let detector: Box<dyn Detector> = match config.detector {
        DetectorKind::Squeeze => Box::new(
            SqueezeConfig {
                squeezers: config.squeezers.clone(),
            }
            .build(shape, model.bounds())?,
        ),
        DetectorKind::Mahalanobis => {
            Box::new(MahalanobisConfig::default().fit(model, fit_x, fit_y, bs)?)
        }
        DetectorKind::Learned => {
            let (cx, cy) = correct_only(model, fit_x, fit_y, bs);
            let plan = &attack_plans(config)[0];
            let adv = adversarial_examples(
                model,
                &plan.name,
                &plan.params,
                plan.eps,
                &cx,
                &cy,
                bs,
                config.seed.wrapping_add(10_000),
            )?;
            notes.push(format!(
                "the learned detector was trained on {} clean and {} PGD-L∞ (ε = {}) training images",
                cx.len() / per,
                adv.len() / per,
                config.eps
            ));
            Box::new(
                LearnedConfig {
                    layers: config.layers.clone(),
                    ..LearnedConfig::default()
                }
                .fit(model, &cx, &adv, bs)?,
            )
        }
    };
    let calibration = batch_scores(detector.as_ref(), model, cal_x, bs)?;
    let threshold =
        metrics::calibrate(&calibration, config.fpr).ok_or_else(|| DefenseError::Unsupported {
            what: detector.name(),
            reason: "the calibration scores are empty or not finite".into(),
        })?;
    let (tx, ty) = correct_only(model, &test.images, &test.labels, bs);
    let clean = batch_scores(detector.as_ref(), model, &tx, bs)?;
    let mut attacks = Vec::new();
    for (i, plan) in attack_plans(config).into_iter().enumerate() {
        if plan.stand_in {
            notes.push(format!(
                "no C&W attack is registered: PGD-L2 (ε = {}) stands in for it",
                config.l2_eps
            ));
        }
        let adv = adversarial_examples(
            model,
            &plan.name,
            &plan.params,
            plan.eps,
            &tx,
            &ty,
            bs,
            config.seed.wrapping_add(i as u64 * 1_000_003),
        )?;
        let scores = batch_scores(detector.as_ref(), model, &adv, bs)?;
        attacks.push(AttackDetection {
            attack: plan.name,
            role: plan.role,
            stand_in: plan.stand_in,
            norm: plan.norm,
            eps: plan.eps,
            attempted: ty.len(),
            adversarial: scores.len(),
            auc: metrics::auc(&clean, &scores),
            tpr: metrics::rate_above(&scores, threshold),
        });
    }
    notes.push(
        "the attacks ignore the detector; an adaptive attacker who knows it can evade it (Carlini and Wagner 2017)"
            .into(),
    );
    Ok(DetectionReport {
        detector: detector.name(),
        settings: detector.settings(),
        fit_images: fit_n,
        calibration_images: config.calibration_images,
        target_fpr: config.fpr,
        threshold,
        clean_test: ty.len(),
        test_fpr: metrics::rate_above(&clean, threshold),
        attacks,
        notes,
    })
}

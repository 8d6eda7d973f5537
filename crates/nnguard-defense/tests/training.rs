#![allow(clippy::unwrap_used)]
// Tests unwrap: a failure is a test failure with the error shown.

//! Robust training on small subsets of the bundled Fashion-MNIST: the inner attacks stay in
//! the ball and raise the loss, runs are deterministic for a seed, PGD-AT and IBP buy the
//! robustness they are for, IBP bounds are sound, and distillation only masks gradients.

use std::sync::Arc;

use burn::tensor::activation::softmax;
use nnguard_attack::evasion::{Inputs, PgdConfig, run_white_box};
use nnguard_attack::{Norm, Threat};
use nnguard_data::{DataSource, Dataset, Split};
use nnguard_defense::DefenseError;
use nnguard_defense::training::{
    Defense, DefenseConfig, EpsSchedule, FgsmAtConfig, IbpConfig, PgdAtConfig, TradesConfig,
    interval_logits, model_interval_logits, worst_case_logits,
};
use nnguard_model::arch::{Arch, Network};
use nnguard_model::tensor::{Tensor, TensorData, argmax_rows, batch_tensor, cpu, to_vec};
use nnguard_model::train::{Batch, Silent, TrainConfig, TrainObjective, train, train_with};
use nnguard_model::{
    Backbone, Classifier, Differentiable, LoadOptions, Loss, Model, ModelError, Normalize,
};
use nnguard_testkit::testdata;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bundled(split: Split, n: usize) -> Dataset {
    DataSource::Bundled.load(split).unwrap().take(n)
}

fn mlp_config(epochs: usize, batch_size: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        arch: Arch::Mlp,
        epochs,
        batch_size,
        seed,
        ..TrainConfig::default()
    }
}

fn no_teacher(_: &std::path::Path) -> Result<Arc<dyn Differentiable>, DefenseError> {
    Err(DefenseError::config("--teacher", "not used"))
}

/// Robust accuracy on the correctly classified inputs among the first `n` test images, under
/// 20-step L∞ PGD on `loss`.
fn robust_accuracy(model: &dyn Differentiable, n: usize, eps: f32, loss: Loss) -> (f64, usize) {
    let test = bundled(Split::Test, n);
    let x = batch_tensor(&test.images, test.shape, model.device());
    let pred = argmax_rows(&to_vec(model.logits(x)), model.num_classes());
    let keep: Vec<usize> = (0..test.len())
        .filter(|&i| pred[i] == test.labels[i])
        .collect();
    let (images, labels) = test.gather(&keep);
    let pgd = PgdConfig {
        eps,
        steps: 20,
        step: Some(eps / 8.0),
        loss,
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let threat = Threat {
        norm: Norm::Linf,
        eps: Some(eps),
        bounds: (0.0, 1.0),
    };
    let inputs = Inputs {
        x: batch_tensor(&images, test.shape, model.device()),
        labels: &labels,
        targets: None,
    };
    let r = run_white_box(model, &pgd, threat, inputs, 5).unwrap();
    let robust = r.success.iter().filter(|s| !**s).count();
    (robust as f64 / n as f64, keep.len())
}

/// What a training objective's inner attack produced for one batch.
struct Seen {
    max_delta: f32,
    in_range: bool,
    clean_loss: f64,
    adv_loss: f64,
}

/// Wraps an objective and records, per batch, what its adversarial inputs look like.
struct Probe<F: FnMut(&Batch<'_>) -> Tensor<4>> {
    craft: F,
    seen: Vec<Seen>,
}

impl<F: FnMut(&Batch<'_>) -> Tensor<4>> TrainObjective for Probe<F> {
    fn name(&self) -> String {
        "probe".into()
    }
    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let x_adv = (self.craft)(batch);
        let delta = to_vec(x_adv.clone().sub(batch.x.clone()).abs().max())[0];
        let values = to_vec(x_adv.clone());
        let snapshot = batch.snapshot();
        let mean_ce = |x: Tensor<4>| {
            let l = to_vec(Loss::CrossEntropy.per_sample(snapshot.logits(x), batch.labels));
            l.iter().map(|&v| f64::from(v)).sum::<f64>() / l.len() as f64
        };
        self.seen.push(Seen {
            max_delta: delta,
            in_range: values.iter().all(|v| (0.0..=1.0).contains(v)),
            clean_loss: mean_ce(batch.x.clone()),
            adv_loss: mean_ce(x_adv.clone()),
        });
        Ok(Loss::CrossEntropy
            .per_sample(batch.logits(x_adv), batch.labels)
            .mean())
    }
}

#[test]
fn inner_attacks_stay_in_the_ball_and_raise_the_loss() {
    let data = bundled(Split::Train, 384);
    let config = mlp_config(2, 128, 1);
    let eps = 0.1;
    let mut pgd = PgdAtConfig {
        eps,
        steps: 5,
        ..PgdAtConfig::default()
    }
    .build()
    .unwrap();
    let mut fgsm = FgsmAtConfig {
        eps,
        ..FgsmAtConfig::default()
    }
    .build()
    .unwrap();
    let mut trades = TradesConfig {
        eps,
        steps: 5,
        ..TradesConfig::default()
    }
    .build()
    .unwrap();
    type Craft = Box<dyn FnMut(&Batch<'_>) -> Tensor<4>>;
    let probes: Vec<(&str, Craft)> = vec![
        ("pgd-at", Box::new(move |b: &Batch<'_>| pgd.adversarial(b))),
        (
            "fgsm-at",
            Box::new(move |b: &Batch<'_>| fgsm.adversarial(b)),
        ),
        (
            "trades",
            Box::new(move |b: &Batch<'_>| trades.adversarial(b)),
        ),
    ];
    for (name, craft) in probes {
        let mut probe = Probe {
            craft,
            seen: Vec::new(),
        };
        train_with(&config, &data, None, &mut probe, &mut Silent).unwrap();
        assert_eq!(probe.seen.len(), 6, "{name}");
        for s in &probe.seen {
            assert!(s.max_delta <= eps + 1e-6, "{name}: moved {}", s.max_delta);
            assert!(
                s.max_delta >= 0.9 * eps,
                "{name}: only moved {}",
                s.max_delta
            );
            assert!(s.in_range, "{name}: left [0, 1]");
        }
        let raised = probe
            .seen
            .iter()
            .filter(|s| s.adv_loss > s.clean_loss)
            .count();
        assert_eq!(
            raised,
            probe.seen.len(),
            "{name}: the attack did not raise the loss"
        );
    }
}

#[test]
fn robust_training_is_deterministic_for_a_seed() {
    let data = bundled(Split::Train, 256);
    let test = bundled(Split::Test, 64);
    let run = |defense: Defense, seed: u64| {
        let objective = DefenseConfig {
            eps: defense.uses_eps().then_some(0.1),
            attack_steps: (defense == Defense::PgdAt).then_some(2),
            ..DefenseConfig::new(defense, seed)
        }
        .build(no_teacher)
        .unwrap();
        let mut objective = objective;
        let (model, record) = train_with(
            &mlp_config(1, 64, seed),
            &data,
            None,
            objective.as_mut(),
            &mut Silent,
        )
        .unwrap();
        assert_eq!(record.mode, defense.name());
        assert!(record.defense.is_some());
        to_vec(model.logits(batch_tensor(&test.images, test.shape, model.device())))
    };
    for d in [Defense::PgdAt, Defense::Noise, Defense::FgsmAt] {
        let a = run(d, 3);
        assert_eq!(a, run(d, 3), "{d}: two runs with one seed differ");
        assert_ne!(a, run(d, 4), "{d}: two seeds gave the same model");
    }
}

#[test]
fn pgd_at_buys_robustness_that_clean_training_lacks() {
    let data = bundled(Split::Train, 2000);
    let config = mlp_config(4, 64, 0);
    let (clean, _) = train(&config, &data, None, &mut Silent).unwrap();
    let mut objective = PgdAtConfig {
        eps: 0.1,
        steps: 5,
        ..PgdAtConfig::default()
    }
    .build()
    .unwrap();
    let (robust, _) = train_with(&config, &data, None, &mut objective, &mut Silent).unwrap();
    let (clean_acc, _) = robust_accuracy(&clean, 200, 0.1, Loss::CrossEntropy);
    let (robust_acc, _) = robust_accuracy(&robust, 200, 0.1, Loss::CrossEntropy);
    assert!(
        robust_acc >= clean_acc + 0.2,
        "PGD-AT {robust_acc} vs clean {clean_acc}"
    );
}

/// Samples `count` points of the L∞ box around each input (corners included) and checks that
/// every logit lies inside the interval bounds, and every margin under the elided bound.
fn assert_sound(model: &Model, x: &Tensor<4>, eps: f32, labels: &[u32], rng: &mut ChaCha8Rng) {
    let Backbone::Native(net) = model.backbone() else {
        panic!("not a built-in network")
    };
    let bounds = model.bounds();
    let iv = interval_logits(net, model.normalization(), x, eps, bounds).unwrap();
    let (lo, hi) = (to_vec(iv.lower), to_vec(iv.upper));
    let worst =
        to_vec(worst_case_logits(net, model.normalization(), x, eps, bounds, labels).unwrap());
    let dims = x.dims();
    let x0 = to_vec(x.clone());
    let k = model.num_classes();
    for trial in 0..24 {
        let v: Vec<f32> = x0
            .iter()
            .map(|&p| {
                let d = if trial < 4 {
                    // Corners of the box.
                    if rng.random::<bool>() { eps } else { -eps }
                } else {
                    rng.random_range(-eps..=eps)
                };
                (p + d).clamp(bounds.0, bounds.1)
            })
            .collect();
        let z = to_vec(model.logits(Tensor::from_data(TensorData::new(v, dims), &cpu())));
        for i in 0..z.len() {
            let tol = 1e-4 * (1.0 + z[i].abs());
            assert!(
                z[i] >= lo[i] - tol && z[i] <= hi[i] + tol,
                "logit {i}: {} outside [{}, {}]",
                z[i],
                lo[i],
                hi[i]
            );
        }
        for (b, &y) in labels.iter().enumerate() {
            for j in 0..k {
                let margin = z[b * k + j] - z[b * k + y as usize];
                let bound = worst[b * k + j];
                assert!(
                    margin <= bound + 1e-4 * (1.0 + margin.abs()),
                    "margin {margin} above its bound {bound}"
                );
            }
        }
    }
    // The elided bound is never looser than subtracting the logit bounds.
    for (b, &y) in labels.iter().enumerate() {
        for j in 0..k {
            let naive = hi[b * k + j] - lo[b * k + y as usize];
            assert!(worst[b * k + j] <= naive + 1e-4 * (1.0 + naive.abs()));
        }
    }
}

#[test]
fn interval_bounds_contain_every_sampled_output() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let device = cpu();
    // The reference CNN (trained weights) and fresh networks of every architecture, with a
    // normalisation inside.
    let cnn = Model::load(
        &testdata().join("reference/cnn.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    let test = bundled(Split::Test, 4);
    let x = batch_tensor(&test.images, test.shape, &device);
    assert_sound(&cnn, &x, 0.03, &test.labels, &mut rng);
    // At ε = 0 the bounds collapse onto the logits.
    let iv = model_interval_logits(&cnn, &x, 0.0).unwrap();
    let z = to_vec(cnn.logits(x.clone()));
    for (a, b) in to_vec(iv.upper).iter().zip(&z) {
        assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let normalize = Normalize::parse("0.3,0.4").unwrap();
    for (arch, shape) in [
        (Arch::Mlp, [1, 28, 28]),
        (Arch::Cnn, [1, 28, 28]),
        (Arch::Resnet8, [3, 16, 16]),
    ] {
        // A few steps of training give batch norm non-trivial running statistics.
        let n = 32;
        let images: Vec<f32> = (0..n * shape.iter().product::<usize>())
            .map(|_| rng.random::<f32>())
            .collect();
        let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
        let data = Dataset::new("random", shape, images.clone(), labels.clone(), 10).unwrap();
        let config = TrainConfig {
            arch,
            epochs: 1,
            batch_size: 8,
            seed: 5,
            normalize: Some(normalize.clone()),
            ..TrainConfig::default()
        };
        let (model, _) = train(&config, &data, None, &mut Silent).unwrap();
        let per: usize = shape.iter().product();
        let x = batch_tensor(&images[..3 * per], shape, &device);
        assert_sound(&model, &x, 0.02, &labels[..3], &mut rng);
    }
    let fresh = Network::init(Arch::Mlp, [1, 4, 4], 3, &device).unwrap();
    assert!(
        interval_logits(
            &fresh,
            None,
            &Tensor::zeros([1, 1, 4, 4], &device),
            0.1,
            (0.0, 1.0)
        )
        .is_ok()
    );
}

/// The fraction of the first `n` test images whose IBP bounds prove the label at `eps`.
fn verified(model: &Model, n: usize, eps: f32) -> f64 {
    let Backbone::Native(net) = model.backbone() else {
        panic!("not a built-in network")
    };
    let test = bundled(Split::Test, n);
    let x = batch_tensor(&test.images, test.shape, &cpu());
    let worst = to_vec(
        worst_case_logits(
            net,
            model.normalization(),
            &x,
            eps,
            (0.0, 1.0),
            &test.labels,
        )
        .unwrap(),
    );
    let k = model.num_classes();
    let proven = (0..n)
        .filter(|&b| (0..k).all(|j| j == test.labels[b] as usize || worst[b * k + j] < 0.0))
        .count();
    proven as f64 / n as f64
}

#[test]
fn ibp_training_makes_bounds_provable() {
    let data = bundled(Split::Train, 2000);
    let config = mlp_config(4, 64, 0);
    let eps = 0.05;
    let (clean, _) = train(&config, &data, None, &mut Silent).unwrap();
    let mut ibp = IbpConfig {
        eps,
        schedule: EpsSchedule {
            start: 0.0,
            end: 0.5,
        },
        ..IbpConfig::default()
    }
    .build()
    .unwrap();
    let (robust, record) = train_with(&config, &data, None, &mut ibp, &mut Silent).unwrap();
    assert_eq!(record.mode, "ibp");
    let (v_clean, v_ibp) = (verified(&clean, 200, eps), verified(&robust, 200, eps));
    assert!(v_ibp >= v_clean + 0.3, "IBP {v_ibp} vs clean {v_clean}");
    // Verified inputs are robust: PGD breaks none of them (checked through robust accuracy).
    let (pgd_robust, _) = robust_accuracy(&robust, 200, eps, Loss::CrossEntropy);
    assert!(
        pgd_robust + 1e-9 >= v_ibp,
        "PGD {pgd_robust} below verified {v_ibp}"
    );
}

#[test]
fn distillation_masks_cross_entropy_gradients_and_margin_attacks_still_break_it() {
    let data = bundled(Split::Train, 2000);
    let config = TrainConfig {
        lr: 1e-2,
        ..mlp_config(5, 64, 0)
    };
    let t = 100.0;
    // Stage 1: the teacher, trained on hard labels at temperature T.
    let mut stage1 = DefenseConfig {
        temperature: Some(t),
        ..DefenseConfig::new(Defense::Distill, 0)
    }
    .build(no_teacher)
    .unwrap();
    let (teacher, _) = train_with(&config, &data, None, stage1.as_mut(), &mut Silent).unwrap();
    let teacher: Arc<dyn Differentiable> = Arc::new(teacher);
    // Stage 2: the student, on the teacher's soft labels at T.
    let mut stage2 = DefenseConfig {
        teacher: Some("teacher".into()),
        temperature: Some(t),
        ..DefenseConfig::new(Defense::Distill, 1)
    }
    .build(|_| Ok(teacher.clone()))
    .unwrap();
    let (student, record) = train_with(&config, &data, None, stage2.as_mut(), &mut Silent).unwrap();
    assert_eq!(record.mode, "distill");
    let (ce, n) = robust_accuracy(&student, 200, 0.1, Loss::CrossEntropy);
    let (margin, _) = robust_accuracy(&student, 200, 0.1, Loss::Margin);
    // Deployed at T = 1 the softmax saturates and cross-entropy gradients vanish.
    let test = bundled(Split::Test, 200);
    let x = batch_tensor(&test.images, test.shape, &cpu());
    let g = to_vec(
        student
            .input_gradient(x.clone(), &test.labels, Loss::CrossEntropy)
            .grad,
    );
    let zero = g
        .chunks(784)
        .filter(|r| r.iter().all(|&v| v == 0.0))
        .count();
    let p = to_vec(softmax(student.logits(x), 1));
    let saturated = p.chunks(10).filter(|r| r.contains(&1.0)).count();
    eprintln!(
        "distilled MLP: {n} of 200 correct, robust accuracy {ce} (CE) vs {margin} (margin), {zero} zero CE gradients, {saturated} saturated"
    );
    assert!(
        n >= 120,
        "the student classifies only {n} of 200 test images"
    );
    assert!(
        zero >= 60 && saturated >= 100,
        "{zero} zero gradients, {saturated} saturated outputs of 200"
    );
    assert!(
        margin <= ce - 0.3,
        "the margin attack ({margin}) should break what cross-entropy PGD ({ce}) does not"
    );
}

#[test]
fn the_teacher_must_fit_the_data() {
    let data = bundled(Split::Train, 64);
    let device = cpu();
    let other: Arc<dyn Differentiable> = Arc::new(Model::from_network(
        Network::init(Arch::Mlp, [1, 8, 8], 10, &device).unwrap(),
        [1, 8, 8],
        10,
        None,
    ));
    let mut objective = DefenseConfig {
        teacher: Some("t".into()),
        ..DefenseConfig::new(Defense::Distill, 0)
    }
    .build(|_| Ok(other.clone()))
    .unwrap();
    let e = train_with(
        &mlp_config(1, 64, 0),
        &data,
        None,
        objective.as_mut(),
        &mut Silent,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("--teacher"), "{e}");
}

//! Soundness and tightness of IBP and CROWN on the reference models, the ONNX fixtures and
//! the built-in architectures, and an independent check against PGD.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use nnguard_attack::evasion::{Inputs, PgdConfig, run_white_box};
use nnguard_attack::{Norm, Threat};
use nnguard_certify::CertifyError;
use nnguard_certify::bounds::{BoundMethod, BoundNet, LogitBounds, VerifierConfig};
use nnguard_data::{DataSource, Dataset, Split};
use nnguard_model::arch::{Arch, Network};
use nnguard_model::tensor::{batch_tensor, cpu};
use nnguard_model::{Classifier, LoadOptions, Model, Normalize};
use nnguard_testkit::{floats, json, testdata};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn load(rel: &str) -> Model {
    Model::load(&testdata().join(rel), &LoadOptions::default()).unwrap()
}

fn data(n: usize) -> Dataset {
    DataSource::Bundled.load(Split::Test).unwrap().take(n)
}

fn bounds(model: &Model, method: BoundMethod, images: &[f32], eps: f32) -> LogitBounds {
    let net = BoundNet::from_model(model, method).unwrap();
    VerifierConfig {
        method,
        eps,
        batch: 16,
    }
    .build()
    .unwrap()
    .logit_bounds(&net, images)
    .unwrap()
}

/// A tolerance for `f32` rounding in bounds and forward passes.
fn slack(v: f32) -> f32 {
    1e-4 * (1.0 + v.abs())
}

/// The residual fixture (batch norm, residual Add, grouped strided conv, global pooling) and
/// its recorded input.
fn residual() -> (Model, Vec<f32>) {
    let model = load("onnx/residual_bn.onnx");
    let input: Vec<f32> = floats(&json("onnx/residual_bn.json")["input"])
        .into_iter()
        .map(|v| v as f32)
        .collect();
    (model, input)
}

/// A seeded resnet8 with per-channel normalisation inside (batch norm, residual blocks).
fn resnet8() -> Model {
    let device = cpu();
    let net = Network::init_seeded(Arch::Resnet8, [3, 32, 32], 10, 3, &device).unwrap();
    let norm = Normalize::parse("0.49/0.48/0.45,0.25/0.24/0.26").unwrap();
    Model::from_network(net, [3, 32, 32], 10, Some(norm))
}

#[test]
fn bounds_at_zero_eps_equal_the_model_output() {
    let d = data(4);
    let mut cases: Vec<(String, Model, Vec<f32>)> = [
        "reference/mlp.onnx",
        "reference/cnn.onnx",
        "reference/mlp.safetensors",
        "reference/cnn.safetensors",
    ]
    .iter()
    .map(|r| (r.to_string(), load(r), d.images.clone()))
    .collect();
    let (m, x) = residual();
    cases.push(("residual_bn.onnx".into(), m, x));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|_| rng.random::<f32>()).collect();
    cases.push(("resnet8 (normalised)".into(), resnet8(), x));
    for (name, model, x) in cases {
        let logits = model.logits_vec(&x).unwrap();
        for method in [BoundMethod::Ibp, BoundMethod::Crown] {
            let b = bounds(&model, method, &x, 0.0);
            for (i, &z) in logits.iter().enumerate() {
                assert!(
                    (b.lower[i] - z).abs() <= slack(z) && (b.upper[i] - z).abs() <= slack(z),
                    "{name} {method} logit {i}: [{}, {}] vs {z}",
                    b.lower[i],
                    b.upper[i]
                );
            }
        }
    }
}

/// Checks that the logits of many points of the box around each image lie in the bounds:
/// random vertices (where linear pieces reach their extremes) and uniform points.
fn check_sampled(model: &Model, images: &[f32], eps: f32, method: BoundMethod, seed: u64) {
    let per: usize = model.input_shape().iter().product();
    let k = model.num_classes();
    let b = bounds(model, method, images, eps);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (img, x0) in images.chunks(per).enumerate() {
        let mut pts = Vec::with_capacity(64 * per);
        for s in 0..64 {
            for &x in x0 {
                let (lo, hi) = ((x - eps).max(0.0), (x + eps).min(1.0));
                let t: f32 = if s % 2 == 0 {
                    if rng.random::<bool>() { 1.0 } else { 0.0 }
                } else {
                    rng.random()
                };
                pts.push(lo + t * (hi - lo));
            }
        }
        let logits = model.logits_vec(&pts).unwrap();
        for (s, row) in logits.chunks(k).enumerate() {
            for (j, &z) in row.iter().enumerate() {
                let (l, u) = (b.lower[img * k + j], b.upper[img * k + j]);
                assert!(
                    z >= l - slack(l) && z <= u + slack(u),
                    "{method} ε={eps} image {img} sample {s} logit {j}: {z} outside [{l}, {u}]"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn mlp_outputs_stay_inside_the_bounds(index in 0usize..200, eps in 0.0f32..0.1, seed in any::<u64>()) {
        let model = load("reference/mlp.onnx");
        let d = DataSource::Bundled.load(Split::Test).unwrap().slice(index..index + 1);
        for method in [BoundMethod::Ibp, BoundMethod::Crown] {
            check_sampled(&model, &d.images, eps, method, seed);
        }
    }
}

#[test]
fn cnn_and_residual_outputs_stay_inside_the_bounds() {
    let model = load("reference/cnn.onnx");
    let d = data(2);
    for (method, eps) in [
        (BoundMethod::Ibp, 0.05),
        (BoundMethod::Crown, 0.003),
        (BoundMethod::Crown, 0.01),
    ] {
        check_sampled(&model, &d.images, eps, method, 7);
    }
    let (model, x) = residual();
    for method in [BoundMethod::Ibp, BoundMethod::Crown] {
        for eps in [0.01, 0.1] {
            check_sampled(&model, &x, eps, method, 11);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..3 * 32 * 32).map(|_| rng.random::<f32>()).collect();
    check_sampled(&resnet8(), &x, 0.01, BoundMethod::Ibp, 5);
}

#[test]
fn crown_is_at_least_as_tight_as_ibp_and_strictly_tighter_overall() {
    let d = data(3);
    for (rel, eps) in [("reference/mlp.onnx", 0.02), ("reference/cnn.onnx", 0.005)] {
        let model = load(rel);
        let ibp = bounds(&model, BoundMethod::Ibp, &d.images, eps);
        let crown = bounds(&model, BoundMethod::Crown, &d.images, eps);
        let mut widths = (0.0f64, 0.0f64);
        for i in 0..ibp.lower.len() {
            assert!(crown.lower[i] >= ibp.lower[i] - 1e-5, "{rel} lower {i}");
            assert!(crown.upper[i] <= ibp.upper[i] + 1e-5, "{rel} upper {i}");
            widths.0 += f64::from(ibp.upper[i] - ibp.lower[i]);
            widths.1 += f64::from(crown.upper[i] - crown.lower[i]);
        }
        assert!(
            widths.1 < 0.9 * widths.0,
            "{rel}: CROWN width {} not clearly below IBP's {}",
            widths.1,
            widths.0
        );
    }
    // Verified inputs: CROWN's set contains IBP's.
    let model = load("reference/mlp.onnx");
    let d = data(100);
    let verdicts = |method| {
        let net = BoundNet::from_model(&model, method).unwrap();
        VerifierConfig {
            method,
            eps: 0.02,
            batch: 50,
        }
        .build()
        .unwrap()
        .verify(&net, &d.images, &d.labels, &mut |_| {})
        .unwrap()
    };
    let (ibp, crown) = (verdicts(BoundMethod::Ibp), verdicts(BoundMethod::Crown));
    for (i, (a, b)) in ibp.iter().zip(&crown).enumerate() {
        assert!(!a.verified || b.verified, "image {i} verified by IBP only");
        assert!(b.margin_lower >= a.margin_lower - 1e-5);
    }
    let count = |v: &[nnguard_certify::bounds::Verdict]| v.iter().filter(|r| r.verified).count();
    assert!(
        count(&crown) > count(&ibp),
        "CROWN verified no more than IBP"
    );
}

/// Verified inputs must survive PGD at the same ε: verified accuracy can never exceed PGD's
/// robust accuracy. An independent check with nnguard-attack's PGD.
#[test]
fn verified_accuracy_never_exceeds_pgd_robust_accuracy() {
    for (rel, n, eps) in [
        ("reference/mlp.onnx", 100, 0.01f32),
        ("reference/mlp.onnx", 100, 0.03),
        ("reference/cnn.onnx", 25, 0.005),
    ] {
        let model = load(rel);
        let d = data(n);
        let pgd = PgdConfig {
            eps,
            steps: 20,
            restarts: 2,
            ..PgdConfig::default()
        }
        .build()
        .unwrap();
        let attacked = run_white_box(
            &model,
            &pgd,
            Threat {
                norm: Norm::Linf,
                eps: Some(eps),
                bounds: (0.0, 1.0),
            },
            Inputs {
                x: batch_tensor(&d.images, d.shape, model.device()),
                labels: &d.labels,
                targets: None,
            },
            0,
        )
        .unwrap();
        let clean = model.logits_vec(&d.images).unwrap();
        let correct: Vec<bool> = nnguard_model::tensor::argmax_rows(&clean, 10)
            .iter()
            .zip(&d.labels)
            .map(|(p, y)| p == y)
            .collect();
        let robust = (0..n)
            .filter(|&i| correct[i] && !attacked.success[i])
            .count();
        for method in [BoundMethod::Ibp, BoundMethod::Crown] {
            let net = BoundNet::from_model(&model, method).unwrap();
            let v = VerifierConfig {
                method,
                eps,
                batch: 50,
            }
            .build()
            .unwrap()
            .verify(&net, &d.images, &d.labels, &mut |_| {})
            .unwrap();
            let verified = v.iter().filter(|r| r.verified).count();
            for (i, r) in v.iter().enumerate() {
                assert!(
                    !r.verified || (correct[i] && !attacked.success[i]),
                    "{rel} {method} ε={eps}: image {i} verified but PGD broke it"
                );
            }
            assert!(
                verified <= robust,
                "{rel} {method} ε={eps}: {verified} > {robust}"
            );
            if method == BoundMethod::Crown {
                assert!(
                    verified > 0,
                    "{rel} ε={eps}: nothing verified, the check is vacuous"
                );
            }
        }
    }
}

#[test]
fn unsupported_onnx_ops_are_named_at_build_time() {
    for (rel, method) in [
        ("onnx/ops_mix.onnx", BoundMethod::Ibp),
        ("onnx/avg_pad.onnx", BoundMethod::Crown),
    ] {
        let model = load(rel);
        let err = BoundNet::from_model(&model, method).unwrap_err();
        assert!(matches!(err, CertifyError::UnsupportedOp { .. }), "{err}");
        let msg = err.to_string();
        let prefix = format!("{} does not support ONNX op \"", method.name());
        assert!(
            msg.starts_with(&prefix) && msg.contains("\" in node \""),
            "{msg}"
        );
    }
}

#[test]
fn verifier_config_rejects_invalid_parameters_by_flag() {
    for (cfg, flag) in [
        (
            VerifierConfig {
                eps: -0.01,
                ..VerifierConfig::default()
            },
            "--eps",
        ),
        (
            VerifierConfig {
                eps: f32::NAN,
                ..VerifierConfig::default()
            },
            "--eps",
        ),
        (
            VerifierConfig {
                batch: 0,
                ..VerifierConfig::default()
            },
            "--batch",
        ),
    ] {
        match cfg.build() {
            Err(CertifyError::Config { flag: f, .. }) => assert_eq!(f, flag),
            other => panic!("{cfg:?}: {other:?}"),
        }
    }
}

//! Attacks against the reference CNN on the first 1000 Fashion-MNIST test images, compared
//! with torchattacks, ART and foolbox (testdata/reference/attacks-cnn.json).

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use nnguard_attack::evasion::{EvasionAttack, FgsmConfig, Inputs, PgdConfig, run_white_box};
use nnguard_attack::{Norm, Threat};
use nnguard_data::{DataSource, Split};
use nnguard_model::predict::predict;
use nnguard_model::tensor::batch_tensor;
use nnguard_model::{Classifier, LoadOptions, Model};
use nnguard_testkit::{json, testdata};

fn setup() -> (Model, nnguard_data::Dataset, Vec<bool>) {
    let model = Model::load(
        &testdata().join("reference/cnn.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = DataSource::Bundled.load(Split::Test).unwrap().take(1000);
    let pred = predict(&model, &data, 500, |_| {}).unwrap();
    let correct = pred.iter().zip(&data.labels).map(|(p, l)| p == l).collect();
    (model, data, correct)
}

fn robust_accuracy(model: &Model, attack: &dyn EvasionAttack<Model>, threat: Threat) -> f64 {
    let (_, data, correct) = setup();
    let x = batch_tensor(&data.images, data.shape, model.device());
    let r = run_white_box(
        model,
        attack,
        threat,
        Inputs {
            x,
            labels: &data.labels,
            targets: None,
        },
        0,
    )
    .unwrap();
    assert!(r.not_reproduced.is_empty());
    for (i, &d) in r.distance.iter().enumerate() {
        if let Some(eps) = threat.eps {
            assert!(d <= eps * (1.0 + 1e-5) + 1e-6, "input {i}: {d} > {eps}");
        }
    }
    let robust = correct
        .iter()
        .zip(&r.success)
        .filter(|(c, s)| **c && !**s)
        .count();
    robust as f64 / correct.len() as f64
}

fn reference(run: &str) -> f64 {
    json("reference/attacks-cnn.json")["runs"][run]["robust_accuracy"]
        .as_f64()
        .unwrap()
}

#[test]
fn fgsm_matches_torchattacks_within_1_5_points() {
    let (model, _, _) = setup();
    let fgsm = FgsmConfig {
        norm: Norm::Linf,
        eps: 0.1,
        ..FgsmConfig::default()
    }
    .build()
    .unwrap();
    let acc = robust_accuracy(&model, &fgsm, fgsm.threat(model.bounds()));
    let expected = reference("cnn|fgsm|torchattacks");
    assert!(
        (acc - expected).abs() <= 0.015,
        "FGSM robust accuracy {acc} vs torchattacks {expected}"
    );
}

#[test]
fn pgd_linf_matches_torchattacks_within_1_5_points() {
    let (model, _, _) = setup();
    let pgd = PgdConfig {
        norm: Norm::Linf,
        eps: 0.1,
        step: Some(0.01),
        steps: 20,
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let acc = robust_accuracy(&model, &pgd, pgd.threat(model.bounds()));
    let expected = reference("cnn|pgd_linf|torchattacks");
    assert!(
        (acc - expected).abs() <= 0.015,
        "PGD-L∞ robust accuracy {acc} vs torchattacks {expected}"
    );
}

#[test]
fn pgd_l2_lands_inside_the_spread_of_the_three_tools() {
    let (model, _, _) = setup();
    let pgd = PgdConfig {
        norm: Norm::L2,
        eps: 1.5,
        step: Some(0.15),
        steps: 20,
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let acc = robust_accuracy(&model, &pgd, pgd.threat(model.bounds()));
    let tools: Vec<f64> = ["torchattacks", "art", "foolbox"]
        .iter()
        .map(|t| reference(&format!("cnn|pgd_l2|{t}")))
        .collect();
    let (lo, hi) = tools
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(
        acc >= lo && acc <= hi,
        "PGD-L2 robust accuracy {acc} outside [{lo}, {hi}]"
    );
}

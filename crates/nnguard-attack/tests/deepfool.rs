//! DeepFool against closed forms on an affine classifier and against torchattacks, ART and
//! foolbox on the reference CNN (testdata/reference/attacks-cnn.json).

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::Norm;
use nnguard_attack::evasion::DeepFoolConfig;
use nnguard_model::Classifier;
use nnguard_testkit::{Tol, assert_close, json};
use support::*;

fn exact_on_affine(norm: Norm, classes: usize) {
    let shape = [1, 4, 4];
    let model = Affine::random(shape, classes, (-100.0, 100.0), 7);
    let x = random_inputs(16, shape, (0.0, 1.0), 8);
    let labels = predictions(&model, &x);
    let overshoot = 1e-3;
    let df = DeepFoolConfig {
        norm,
        overshoot,
        candidates: classes,
        ..DeepFoolConfig::default()
    }
    .build()
    .unwrap();
    let threat = df.threat(model.bounds());
    let r = attack(&model, &df, threat, &x, &labels, None, 0);
    check_result(&model, threat, &x, &labels, None, &r);
    assert!(r.success.iter().all(|&s| s), "{:?}", r.success);
    let found: Vec<f64> = r
        .distance
        .iter()
        .map(|&d| f64::from(d) / (1.0 + f64::from(overshoot)))
        .collect();
    let exact: Vec<f64> = x
        .chunks(16)
        .map(|xi| model.boundary_distance(xi, norm))
        .collect();
    assert_close(
        &found,
        &exact,
        Tol {
            rel: 1e-4,
            abs: 1e-6,
        },
    );
}

#[test]
fn l2_step_is_the_exact_distance_to_the_nearest_hyperplane() {
    exact_on_affine(Norm::L2, 2);
    exact_on_affine(Norm::L2, 5);
}

#[test]
fn linf_step_is_the_exact_distance_to_the_nearest_hyperplane() {
    exact_on_affine(Norm::Linf, 2);
    exact_on_affine(Norm::Linf, 5);
}

#[test]
fn median_l2_matches_torchattacks_within_10_percent() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, 1000);
    let df = DeepFoolConfig {
        norm: Norm::L2,
        steps: 50,
        overshoot: 0.02,
        candidates: 10,
    }
    .build()
    .unwrap();
    let threat = df.threat(model.bounds());
    let start = std::time::Instant::now();
    let r = attack(&model, &df, threat, &data.images, &data.labels, None, 0);
    let secs = start.elapsed().as_secs_f64();
    assert!(r.not_reproduced.is_empty());
    let acc = robust_accuracy(&correct, &r);
    let median = median_success(&data.images, &r, &correct, Norm::L2);
    let refs = json("reference/attacks-cnn.json");
    let run = |tool: &str, key: &str| {
        refs["runs"][format!("cnn|deepfool|{tool}")][key]
            .as_f64()
            .unwrap()
    };
    eprintln!(
        "DeepFool-L2: robust accuracy {acc:.3} (torchattacks {}, ART {}, foolbox {}), median L2 {median:.4} (torchattacks {:.4}, ART {:.4}, foolbox {:.4}), {secs:.1} s",
        run("torchattacks", "robust_accuracy"),
        run("art", "robust_accuracy"),
        run("foolbox", "robust_accuracy"),
        run("torchattacks", "median_l2_success"),
        run("art", "median_l2_success"),
        run("foolbox", "median_l2_success"),
    );
    let expected = run("torchattacks", "median_l2_success");
    assert!(
        (median - expected).abs() <= 0.1 * expected,
        "median L2 {median} vs torchattacks {expected}"
    );
    // A correct DeepFool succeeds on nearly every input, as foolbox's and ART's do.
    assert!(acc <= 0.02, "robust accuracy {acc}");
}

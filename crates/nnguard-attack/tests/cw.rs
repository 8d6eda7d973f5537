//! Carlini-Wagner against torchattacks, ART and foolbox on the reference CNN
//! (testdata/reference/attacks-cnn.json), and its guarantees on an affine classifier.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::Norm;
use nnguard_attack::evasion::{CwL2Config, CwLinfConfig, PgdConfig};
use nnguard_model::Classifier;
use nnguard_testkit::json;
use support::*;

#[test]
fn l2_median_matches_torchattacks_within_10_percent() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, 1000);
    let settings = &json("reference/attacks-cnn.json")["meta"]["attacks"]["cw_l2"];
    let cw = CwL2Config {
        c: settings["c"].as_f64().unwrap() as f32,
        kappa: settings["kappa"].as_f64().unwrap() as f32,
        steps: settings["steps"].as_u64().unwrap() as usize,
        lr: settings["lr"].as_f64().unwrap() as f32,
        binary_search_steps: settings["binary_search_steps"].as_u64().unwrap() as usize,
        ..CwL2Config::default()
    }
    .build()
    .unwrap();
    let threat = cw.threat(model.bounds());
    let start = std::time::Instant::now();
    let r = attack(&model, &cw, threat, &data.images, &data.labels, None, 0);
    let secs = start.elapsed().as_secs_f64();
    assert!(r.not_reproduced.is_empty());
    let acc = robust_accuracy(&correct, &r);
    let median = median_success(&data.images, &r, &correct, Norm::L2);
    let refs = json("reference/attacks-cnn.json");
    let run = |tool: &str, key: &str| {
        refs["runs"][format!("cnn|cw_l2|{tool}")][key]
            .as_f64()
            .unwrap()
    };
    eprintln!(
        "CW-L2: robust accuracy {acc:.3} (torchattacks {}, foolbox {}), median L2 {median:.4} (torchattacks {:.4}, foolbox {:.4}), {secs:.1} s",
        run("torchattacks", "robust_accuracy"),
        run("foolbox", "robust_accuracy"),
        run("torchattacks", "median_l2_success"),
        run("foolbox", "median_l2_success"),
    );
    let expected = run("torchattacks", "median_l2_success");
    assert!(
        (median - expected).abs() <= 0.1 * expected,
        "median L2 {median} vs torchattacks {expected}"
    );
    let expected_acc = run("torchattacks", "robust_accuracy");
    assert!(
        (acc - expected_acc).abs() <= 0.05,
        "robust accuracy {acc} vs torchattacks {expected_acc}"
    );
}

#[test]
fn linf_is_as_strong_as_pgd_at_the_same_budget() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, 200);
    let cw = CwLinfConfig {
        eps: 0.1,
        step: Some(0.01),
        steps: 20,
        ..CwLinfConfig::default()
    }
    .build()
    .unwrap();
    let threat = cw.threat(model.bounds());
    let r = attack(&model, &cw, threat, &data.images, &data.labels, None, 0);
    check_result(&model, threat, &data.images, &data.labels, None, &r);
    let acc = robust_accuracy(&correct, &r);
    let pgd = PgdConfig {
        eps: 0.1,
        step: Some(0.01),
        steps: 20,
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let p = attack(
        &model,
        &pgd,
        pgd.threat(model.bounds()),
        &data.images,
        &data.labels,
        None,
        0,
    );
    let pgd_acc = robust_accuracy(&correct, &p);
    eprintln!("CW-Linf robust accuracy {acc:.3}, PGD {pgd_acc:.3}");
    assert!(acc <= pgd_acc + 0.01, "CW-Linf {acc} vs PGD {pgd_acc}");
}

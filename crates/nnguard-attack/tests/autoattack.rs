//! APGD-CE and APGD-T on the reference CNN and the first 200 bundled test images, against
//! AutoAttack (testdata/reference/attacks-cnn.json) and torchattacks 3.5.1's ports of the
//! same attacks.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::evasion::{ApgdConfig, EvasionAttack, PgdConfig};
use nnguard_attack::{Norm, Threat, TrackerResult};
use nnguard_model::{Classifier, Loss, Model};
use nnguard_testkit::json;
use support::*;

/// torchattacks 3.5.1 on the same model and images (CPU, seed 0): robust accuracies of
/// `APGD(norm='Linf', eps=0.1, steps=100, n_restarts=1, loss='ce')`, `APGDT(norm='Linf',
/// eps=0.1, steps=100, n_restarts=1, n_classes=10)` and `APGD(norm='L2', eps=1.5, ...)`.
const TORCHATTACKS_APGD_CE: f64 = 0.040;
const TORCHATTACKS_APGD_T: f64 = 0.040;
const TORCHATTACKS_APGD_CE_L2: f64 = 0.040;

const IMAGES: usize = 200;

fn run(model: &Model, attack: &dyn EvasionAttack<Model>, threat: Threat) -> (TrackerResult, f64) {
    let (data, correct) = test_images(model, IMAGES);
    let start = std::time::Instant::now();
    let r = attack_images(model, attack, threat, &data.images, &data.labels);
    eprintln!("{}: {:.1} s", attack.name(), start.elapsed().as_secs_f64());
    check_result(model, threat, &data.images, &data.labels, None, &r);
    assert!(r.not_reproduced.is_empty());
    let acc = robust_accuracy(&correct, &r);
    (r, acc)
}

fn attack_images(
    model: &Model,
    a: &dyn EvasionAttack<Model>,
    threat: Threat,
    x: &[f32],
    y: &[u32],
) -> TrackerResult {
    attack(model, a, threat, x, y, None, 0)
}

fn linf(eps: f32, bounds: (f32, f32)) -> Threat {
    Threat {
        norm: Norm::Linf,
        eps: Some(eps),
        bounds,
    }
}

#[test]
fn apgd_ce_and_apgd_t_reach_autoattack() {
    let model = reference_cnn();
    let (_, correct) = test_images(&model, IMAGES);
    let threat = linf(0.1, model.bounds());
    let ce = ApgdConfig {
        eps: 0.1,
        ..ApgdConfig::default()
    }
    .build()
    .unwrap();
    let (r_ce, acc_ce) = run(&model, &ce, threat);
    let t = ApgdConfig {
        eps: 0.1,
        ..ApgdConfig::targeted()
    }
    .build()
    .unwrap();
    let (r_t, acc_t) = run(&model, &t, threat);
    let pgd = PgdConfig {
        eps: 0.1,
        step: Some(0.01),
        steps: 20,
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let (_, acc_pgd) = run(&model, &pgd, threat);
    // The per-input worst case of the two, as AutoAttack counts it.
    let both = correct
        .iter()
        .zip(r_ce.success.iter().zip(&r_t.success))
        .filter(|(c, (a, b))| **c && !**a && !**b)
        .count() as f64
        / IMAGES as f64;
    let aa = json("reference/attacks-cnn.json")["runs"]["cnn|autoattack|torchattacks"]
        ["robust_accuracy"]
        .as_f64()
        .unwrap();
    eprintln!(
        "robust accuracy at ε=0.1: APGD-CE {acc_ce:.3} (torchattacks {TORCHATTACKS_APGD_CE}), APGD-T {acc_t:.3} (torchattacks {TORCHATTACKS_APGD_T}), both {both:.3} (AutoAttack {aa}), PGD-20 {acc_pgd:.3}"
    );
    assert!(
        acc_ce <= acc_pgd,
        "APGD-CE {acc_ce} weaker than PGD-20 {acc_pgd}"
    );
    assert!(
        (acc_ce - TORCHATTACKS_APGD_CE).abs() <= 0.015,
        "APGD-CE {acc_ce}"
    );
    assert!(
        (acc_t - TORCHATTACKS_APGD_T).abs() <= 0.015,
        "APGD-T {acc_t}"
    );
    assert!(
        (both - aa).abs() <= 0.01,
        "APGD-CE + APGD-T {both} vs AutoAttack {aa}"
    );
}

#[test]
fn apgd_l2_matches_torchattacks() {
    let model = reference_cnn();
    let ce = ApgdConfig {
        norm: Norm::L2,
        eps: 1.5,
        ..ApgdConfig::default()
    }
    .build()
    .unwrap();
    let (_, acc) = run(&model, &ce, ce.threat(model.bounds()));
    eprintln!("APGD-CE-L2 at ε=1.5: {acc:.3} (torchattacks {TORCHATTACKS_APGD_CE_L2})");
    assert!(
        (acc - TORCHATTACKS_APGD_CE_L2).abs() <= 0.015,
        "APGD-CE-L2 {acc}"
    );
}

#[test]
fn apgd_dlr_and_targeted_ce_break_the_cnn() {
    let model = reference_cnn();
    let threat = linf(0.1, model.bounds());
    for (loss, targets) in [(Loss::Dlr, None), (Loss::CrossEntropy, Some(3))] {
        let a = ApgdConfig {
            eps: 0.1,
            loss,
            target_classes: targets,
            ..ApgdConfig::default()
        }
        .build()
        .unwrap();
        let name = EvasionAttack::<Model>::name(&a);
        let (_, acc) = run(&model, &a, threat);
        eprintln!("{name}: {acc:.3}");
        assert!(acc <= TORCHATTACKS_APGD_CE + 0.02, "{name}: {acc}");
    }
}

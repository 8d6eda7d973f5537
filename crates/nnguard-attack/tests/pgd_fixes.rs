//! Regression tests for two PGD variants on the reference CNN and the first 200 bundled test
//! images, against foolbox 3.3.4 and torchattacks 3.5.1 on the same model and images.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::Norm;
use nnguard_attack::evasion::PgdConfig;
use nnguard_model::Classifier;
use support::*;

const IMAGES: usize = 200;

/// foolbox `SparseL1DescentAttack(quantile=0.99, abs_stepsize=2.5·ε/20, steps=20,
/// random_start=True)` at ε = 10: robust accuracy.
const FOOLBOX_SLIDE_EPS10: f64 = 0.195;
/// torchattacks `MIFGSM(eps, alpha=eps/10, steps=20, decay=1.0)`: robust accuracy at
/// ε = 0.05 and 0.1.
const TORCHATTACKS_MI_FGSM: [(f32, f64); 2] = [(0.05, 0.295), (0.1, 0.065)];

fn pgd_accuracy(config: PgdConfig) -> f64 {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, IMAGES);
    let pgd = config.build().unwrap();
    let threat = pgd.threat(model.bounds());
    let r = attack(&model, &pgd, threat, &data.images, &data.labels, None, 0);
    check_result(&model, threat, &data.images, &data.labels, None, &r);
    robust_accuracy(&correct, &r)
}

#[test]
fn pgd_l1_does_not_spend_its_steps_on_pixels_held_by_the_bounds() {
    let l1 = |steps| {
        pgd_accuracy(PgdConfig {
            norm: Norm::L1,
            eps: 10.0,
            steps,
            ..PgdConfig::default()
        })
    };
    let (short, long) = (l1(20), l1(100));
    eprintln!(
        "PGD-L1 ε=10: 20 steps {short:.3}, 100 steps {long:.3} (foolbox SLIDE {FOOLBOX_SLIDE_EPS10})"
    );
    assert!(short <= FOOLBOX_SLIDE_EPS10 + 0.015, "20 steps: {short}");
    assert!(
        long <= short + 0.01,
        "more steps weakened the attack: {long} vs {short}"
    );
}

#[test]
fn mi_fgsm_accumulates_dense_l1_normalised_gradients() {
    for (eps, expected) in TORCHATTACKS_MI_FGSM {
        let acc = pgd_accuracy(PgdConfig {
            eps,
            step: Some(eps / 10.0),
            steps: 20,
            random_start: false,
            momentum: Some(1.0),
            ..PgdConfig::default()
        });
        eprintln!("MI-FGSM ε={eps}: {acc:.3} (torchattacks {expected})");
        assert!(
            (acc - expected).abs() <= 0.015,
            "MI-FGSM ε={eps}: {acc} vs {expected}"
        );
    }
}

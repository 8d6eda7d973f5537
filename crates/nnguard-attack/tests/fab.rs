//! FAB-T against the closed-form boundary of an affine classifier, and against torchattacks
//! 3.5.1's port of AutoAttack's FAB-T on the reference CNN.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::evasion::FabConfig;
use nnguard_attack::{Norm, Threat};
use nnguard_model::Classifier;
use support::*;

/// torchattacks 3.5.1, `FAB(norm='Linf', eps=0.1, steps=100, n_restarts=1,
/// multi_targeted=True, n_classes=10, seed=0)` on the first 200 bundled test images: robust
/// accuracy, and the median L∞ of its successes.
const TORCHATTACKS_FAB_T: f64 = 0.040;
const TORCHATTACKS_FAB_T_MEDIAN_LINF: f64 = 0.0372;

#[test]
fn minimal_perturbation_converges_to_the_affine_boundary() {
    for norm in [Norm::L2, Norm::Linf] {
        let shape = [1, 4, 4];
        let model = Affine::random(shape, 2, (-100.0, 100.0), 11);
        let x = random_inputs(12, shape, (0.0, 1.0), 12);
        let labels = predictions(&model, &x);
        let fab = FabConfig {
            norm,
            steps: 30,
            target_classes: 1,
            ..FabConfig::default()
        }
        .build()
        .unwrap();
        let threat = fab.threat(model.bounds());
        let r = attack(&model, &fab, threat, &x, &labels, None, 0);
        check_result(&model, threat, &x, &labels, None, &r);
        for (i, xi) in x.chunks(16).enumerate() {
            let exact = model.boundary_distance(xi, norm);
            let found = f64::from(r.distance[i]);
            assert!(r.success[i], "{norm} input {i}");
            // Never inside the boundary; within 1% of it after the back-and-forth steps.
            assert!(
                found >= exact * (1.0 - 1e-5) && found <= exact * 1.01,
                "{norm} input {i}: {found} vs exact {exact}"
            );
        }
    }
}

#[test]
fn bounded_robust_accuracy_matches_torchattacks() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, 200);
    let fab = FabConfig::default().build().unwrap();
    let threat = Threat {
        norm: Norm::Linf,
        eps: Some(0.1),
        bounds: model.bounds(),
    };
    let start = std::time::Instant::now();
    let r = attack(&model, &fab, threat, &data.images, &data.labels, None, 0);
    let secs = start.elapsed().as_secs_f64();
    check_result(&model, threat, &data.images, &data.labels, None, &r);
    let acc = robust_accuracy(&correct, &r);
    let median = median_success(&data.images, &r, &correct, Norm::Linf);
    eprintln!(
        "FAB-T at ε=0.1: robust accuracy {acc:.3} (torchattacks {TORCHATTACKS_FAB_T}), median L∞ of successes {median:.4} (torchattacks {TORCHATTACKS_FAB_T_MEDIAN_LINF}, which keeps refining after the first success), {secs:.1} s"
    );
    assert!((acc - TORCHATTACKS_FAB_T).abs() <= 0.015, "FAB-T {acc}");
}

//! Every registered white-box attack, run through the tracker under random threat models
//! (L∞ or L2, bounded or not, targeted or not): results stay in the ball and the bounds,
//! hold no NaN, and `success` is the model's fresh prediction.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::evasion::{ATTACKS, AnyAttack, AttackParams, build};
use nnguard_attack::{Norm, Threat};
use nnguard_model::Differentiable;
use proptest::prelude::*;
use support::*;

/// Runs every white-box attack of the registry on `model` and checks each result.
fn check_all(
    model: &(dyn Differentiable + 'static),
    threat: Threat,
    x: &[f32],
    labels: &[u32],
    targets: Option<&[u32]>,
    steps: usize,
) -> usize {
    let params = AttackParams {
        norm: threat.norm,
        eps: threat.eps.unwrap_or(0.3),
        steps: Some(steps),
        ..AttackParams::default()
    };
    let mut checked = 0;
    for (name, _) in ATTACKS {
        let Ok(AnyAttack::WhiteBox(a)) = build(name, &params) else {
            continue;
        };
        let r = attack(model, a.as_ref(), threat, x, labels, targets, 3);
        check_result(model, threat, x, labels, targets, &r);
        assert!(r.not_reproduced.is_empty(), "{name}");
        checked += 1;
    }
    checked
}

proptest! {
    // Each case runs every attack; failures are shrunk and printed, not persisted.
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn results_respect_the_threat_model(
        seed in 0u64..1000,
        linf in any::<bool>(),
        eps in proptest::option::of(0.01f32..1.0),
        targeted in any::<bool>(),
    ) {
        let shape = [1, 6, 6];
        let classes = 5;
        let model = Affine::random(shape, classes, (0.0, 1.0), seed);
        let x = random_inputs(8, shape, (0.0, 1.0), seed + 1);
        // Mostly the model's own predictions, some wrong labels (already adversarial).
        let mut labels = predictions(&model, &x);
        labels[0] = (labels[0] + 1) % classes as u32;
        let targets: Vec<u32> = labels.iter().map(|&l| (l + 2) % classes as u32).collect();
        let threat = Threat {
            norm: if linf { Norm::Linf } else { Norm::L2 },
            eps: eps.map(|e| if linf { e * 0.3 } else { e * 3.0 }),
            bounds: (0.0, 1.0),
        };
        let checked = check_all(
            &model,
            threat,
            &x,
            &labels,
            targeted.then_some(&targets[..]),
            5,
        );
        prop_assert!(checked >= 13, "only {checked} white-box attacks ran");
    }
}

#[test]
fn results_on_the_reference_cnn_respect_the_threat_model() {
    let model = reference_cnn();
    let (data, _) = test_images(&model, 8);
    for eps in [Some(0.1), None] {
        let threat = Threat {
            norm: Norm::Linf,
            eps,
            bounds: (0.0, 1.0),
        };
        check_all(&model, threat, &data.images, &data.labels, None, 3);
    }
}

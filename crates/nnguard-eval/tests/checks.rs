//! Every validity check stays silent on the reference CNN and fires on a model broken in
//! the way it looks for.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use nnguard_attack::Norm;
use nnguard_eval::{EvalConfig, Status, fast_ensemble, parse_attacks};

fn config(eps: &[f32]) -> EvalConfig {
    EvalConfig {
        eps: eps.to_vec(),
        attacks: parse_attacks("pgd", Norm::Linf, true).unwrap(),
        steps: Some(10),
        queries: Some(100),
        batch_size: 64,
        ..EvalConfig::default()
    }
}

#[test]
fn silent_on_the_reference_cnn() {
    let d = data(128);
    let mut c = config(&[0.03, 0.1]);
    c.attacks = fast_ensemble(Norm::Linf, true);
    c.steps = None;
    let r = run(Arc::new(cnn()), &d, &c);
    for check in &r.checks {
        assert!(
            matches!(check.status, Status::Passed | Status::Skipped),
            "{check:?}"
        );
    }
    assert_eq!(status(&r, "monotone-in-eps"), Status::Passed);
    assert_eq!(status(&r, "unbounded-reaches-zero"), Status::Passed);
    let s = &r.summary;
    assert!(s.clean_accuracy > 0.8, "{}", s.clean_accuracy);
    assert!(s.curve[1].robust_accuracy < 0.2, "{:?}", s.curve[1]);
    assert!(s.curve[0].robust >= s.curve[1].robust);
}

#[test]
fn a_softmax_head_is_flagged_and_attacked_through_its_logarithm() {
    let d = data(64);
    let r = run(Arc::new(SoftmaxHead(cnn())), &d, &config(&[0.1]));
    assert_eq!(status(&r, "probabilities-not-logits"), Status::Warning);
    let plain = run(Arc::new(cnn()), &d, &config(&[0.1]));
    assert!(r.summary.curve[0].robust <= plain.summary.curve[0].robust + 2);
}

#[test]
fn a_quantising_input_layer_is_flagged_as_obfuscated_gradients() {
    let d = data(64);
    let r = run(Arc::new(Quantize(cnn(), 4.0)), &d, &config(&[0.1]));
    assert_eq!(status(&r, "gradients"), Status::Failed);
    assert_eq!(status(&r, "obfuscated-gradients"), Status::Failed);
    assert_eq!(status(&r, "unbounded-reaches-zero"), Status::Failed);
    assert!(r.attack_stats.iter().any(|s| s.attack == "spsa-pgd"));
}

#[test]
fn a_random_noise_layer_is_flagged_and_evaluated_with_eot() {
    let d = data(64);
    let r = run(Arc::new(Noise::new(cnn(), 0.1)), &d, &config(&[0.1]));
    assert_eq!(status(&r, "deterministic"), Status::Warning);
    assert!(
        r.attack_stats
            .iter()
            .any(|s| s.attack == "repeated-evaluation")
    );
}

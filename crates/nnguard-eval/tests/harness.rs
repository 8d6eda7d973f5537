//! The harness judges attacks itself: buggy attacks are corrected or flagged, sharded runs
//! merge into exactly the unsharded report, a failing remote target keeps the partial
//! report, and the wrapped model is checked against the user's own predictions.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use nnguard_attack::evasion::{AnyAttack, AttackContext, EvasionAttack};
use nnguard_attack::{AttackError, Norm, Scorer};
use nnguard_eval::{
    AttackSpec, EvalConfig, EvalError, EvalInputs, Reference, Report, Shard, Status, Subject,
    evaluate, parse_attacks,
};
use nnguard_model::tensor::{Tensor, TensorData};
use nnguard_model::{Classifier, Differentiable, Loss, Normalize};

fn config(attacks: Vec<AttackSpec>) -> EvalConfig {
    EvalConfig {
        eps: vec![0.1],
        attacks,
        steps: Some(5),
        queries: Some(50),
        batch_size: 32,
        ..EvalConfig::default()
    }
}

/// Offers `x + 2ε·sign(∇)`: twice outside the ball.
struct Overshoot(f32);

impl EvasionAttack<dyn Differentiable> for Overshoot {
    fn name(&self) -> String {
        "overshoot".into()
    }
    fn run(
        &self,
        model: &dyn Differentiable,
        ctx: &mut AttackContext<'_>,
    ) -> Result<(), AttackError> {
        let rows = ctx.tracker.active();
        let x0 = ctx.tracker.x0_rows(&rows);
        let y = ctx.tracker.objective_labels(&rows);
        let g = model.input_gradient(x0.clone(), &y, Loss::CrossEntropy);
        let x = x0.add(g.grad.sign().mul_scalar(2.0 * self.0));
        let logits = model.logits(x.clone());
        ctx.tracker.offer(&rows, x, Some(logits))?;
        Ok(())
    }
}

/// Offers the clean inputs with made-up logits that claim every one is misclassified.
struct Liar;

impl EvasionAttack<dyn Differentiable> for Liar {
    fn name(&self) -> String {
        "liar".into()
    }
    fn run(
        &self,
        model: &dyn Differentiable,
        ctx: &mut AttackContext<'_>,
    ) -> Result<(), AttackError> {
        let rows = ctx.tracker.active();
        let x0 = ctx.tracker.x0_rows(&rows);
        let k = model.num_classes();
        let mut fake = vec![0.0f32; rows.len() * k];
        for (i, &y) in ctx.tracker.objective_labels(&rows).iter().enumerate() {
            fake[i * k + (y as usize + 1) % k] = 10.0;
        }
        let logits = Tensor::<2>::from_data(TensorData::new(fake, [rows.len(), k]), &x0.device());
        ctx.tracker.offer(&rows, x0, Some(logits))?;
        Ok(())
    }
}

#[test]
fn an_attack_that_overshoots_the_ball_is_projected_back() {
    let d = data(64);
    let spec = AttackSpec::custom("overshoot", |p| {
        Ok(AnyAttack::WhiteBox(Box::new(Overshoot(p.eps))))
    });
    let r = run(Arc::new(cnn()), &d, &config(vec![spec]));
    assert_eq!(status(&r, "verified-results"), Status::Passed);
    let broken: Vec<_> = r
        .inputs
        .iter()
        .flat_map(|i| i.eps.iter())
        .filter(|e| e.broken_by.as_deref() == Some("overshoot"))
        .collect();
    assert!(!broken.is_empty());
    for e in broken {
        assert!(e.linf <= 0.1 + 1e-6, "{e:?}");
    }
}

#[test]
fn false_success_claims_are_discarded_and_flagged() {
    let d = data(64);
    let spec = AttackSpec::custom("liar", |_| Ok(AnyAttack::WhiteBox(Box::new(Liar))));
    let r = run(Arc::new(cnn()), &d, &config(vec![spec]));
    assert_eq!(status(&r, "verified-results"), Status::Failed);
    assert!(r.evidence.integrity.not_reproduced > 0);
    let liar = r.attack_stats.iter().find(|s| s.attack == "liar").unwrap();
    assert_eq!(liar.successes, 0);
}

#[test]
fn sharded_reports_merge_into_the_unsharded_report() {
    let d = data(100);
    let mut c = config(parse_attacks("pgd,square", Norm::Linf, true).unwrap());
    c.eps = vec![0.03, 0.1];
    let model: Arc<dyn Differentiable> = Arc::new(cnn());
    let whole = run(model.clone(), &d, &c);
    let parts: Vec<Report> = (0..3)
        .map(|i| {
            let shard = Shard::new(i, 3).unwrap();
            let range = shard.range(d.len(), c.batch_size);
            let per = d.image_len();
            let inputs = EvalInputs {
                images: &d.images[range.start * per..range.end * per],
                labels: &d.labels[range.clone()],
                first_index: range.start,
                shard: Some(shard),
                ..inputs(&d)
            };
            evaluate(&Subject::WhiteBox(model.clone()), &inputs, &c, &mut |_| {}).unwrap()
        })
        .collect();
    assert!(parts.iter().all(|p| p.summary.inputs < d.len()));
    let merged = Report::merge(&parts).unwrap();
    assert_eq!(merged.inputs, whole.inputs);
    assert_eq!(merged.summary.curve.len(), 2);
    for (a, b) in merged.summary.curve.iter().zip(&whole.summary.curve) {
        assert_eq!(
            (a.robust, &a.after_attack, a.queries),
            (b.robust, &b.after_attack, b.queries)
        );
        assert_eq!(a.perturbation, b.perturbation);
    }
    assert_eq!(merged.summary.correct, whole.summary.correct);
    assert_eq!(merged.checks, whole.checks);
    assert_eq!(merged.evidence, whole.evidence);
    assert!(merged.shards.is_empty() && merged.complete);
    let counts: Vec<(u64, u64)> = merged
        .attack_stats
        .iter()
        .map(|s| (s.attempted, s.successes))
        .collect();
    let expected: Vec<(u64, u64)> = whole
        .attack_stats
        .iter()
        .map(|s| (s.attempted, s.successes))
        .collect();
    assert_eq!(counts, expected);
    // The same shard twice is refused.
    let e = Report::merge(&[parts[0].clone(), parts[0].clone()]).unwrap_err();
    assert!(e.to_string().contains("more than one report"), "{e}");
}

/// A remote model that stops answering after `budget` batches.
struct Flaky {
    model: nnguard_model::Model,
    left: std::sync::Mutex<usize>,
}

impl Scorer for Flaky {
    fn input_shape(&self) -> [usize; 3] {
        Classifier::input_shape(&self.model)
    }
    fn num_classes(&self) -> usize {
        Classifier::num_classes(&self.model)
    }
    fn bounds(&self) -> (f32, f32) {
        (0.0, 1.0)
    }
    fn scores(&self, x: Tensor<4>) -> Result<Tensor<2>, AttackError> {
        let mut left = self.left.lock().unwrap();
        if *left == 0 {
            return Err(AttackError::Remote {
                url: "http://127.0.0.1:9/v2/models/m/infer".into(),
                reason: "timed out after 10 s".into(),
            });
        }
        *left -= 1;
        Ok(self.model.logits(x))
    }
}

#[test]
fn a_remote_target_that_stops_answering_keeps_the_partial_report() {
    let d = data(96);
    let flaky = Flaky {
        model: cnn(),
        left: std::sync::Mutex::new(60),
    };
    let c = config(parse_attacks("square", Norm::Linf, false).unwrap());
    let Err(err) = evaluate(
        &Subject::BlackBox(Arc::new(flaky)),
        &inputs(&d),
        &c,
        &mut |_| {},
    ) else {
        panic!("the evaluation survived a dead target");
    };
    let EvalError::Interrupted {
        partial,
        done,
        total,
        source,
    } = err
    else {
        panic!("expected an interrupted evaluation");
    };
    assert!(source.to_string().contains("timed out"), "{source}");
    assert_eq!(total, 96);
    assert!(done > 0 && done < 96, "{done}");
    assert!(!partial.complete && partial.stopped.is_some());
    assert_eq!(partial.summary.inputs, done);
    assert_eq!(status(&partial, "gradients"), Status::Skipped);
    // A white-box attack on a query-only target is refused before any query.
    let e = parse_attacks("pgd", Norm::Linf, false).unwrap();
    let flaky = Flaky {
        model: cnn(),
        left: std::sync::Mutex::new(0),
    };
    let err = evaluate(
        &Subject::BlackBox(Arc::new(flaky)),
        &inputs(&d),
        &config(e),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("--attacks"), "{err}");
}

#[test]
fn a_normalisation_mismatch_is_caught_against_reference_predictions() {
    let d = data(64);
    let plain = cnn();
    let reference = Reference {
        predictions: Some(nnguard_model::predict::predict(&plain, &d, 64, |_| {}).unwrap()),
        ..Reference::default()
    };
    let opts = nnguard_model::LoadOptions {
        normalize: Some(Normalize::parse("0.5,0.5").unwrap()),
        ..Default::default()
    };
    let skewed = nnguard_model::Model::load(
        &nnguard_testkit::testdata().join("reference/cnn.onnx"),
        &opts,
    )
    .unwrap();
    let c = config(parse_attacks("fgsm", Norm::Linf, true).unwrap());
    let with_ref = EvalInputs {
        reference: Some(&reference),
        ..inputs(&d)
    };
    let r = evaluate(
        &Subject::WhiteBox(Arc::new(skewed)),
        &with_ref,
        &c,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(status(&r, "reproduces-clean-predictions"), Status::Failed);
    let r = evaluate(
        &Subject::WhiteBox(Arc::new(plain)),
        &with_ref,
        &c,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(status(&r, "reproduces-clean-predictions"), Status::Passed);
}

#[test]
fn invalid_parameters_are_rejected_with_the_flag_name() {
    let d = data(8);
    let model: Arc<dyn Differentiable> = Arc::new(cnn());
    let cases: Vec<(EvalConfig, &str)> = vec![
        (
            EvalConfig {
                eps: vec![-0.1],
                ..config(parse_attacks("pgd", Norm::Linf, true).unwrap())
            },
            "--eps",
        ),
        (
            EvalConfig {
                eps: vec![],
                ..config(parse_attacks("pgd", Norm::Linf, true).unwrap())
            },
            "--eps",
        ),
        (
            EvalConfig {
                steps: Some(0),
                ..config(parse_attacks("pgd", Norm::Linf, true).unwrap())
            },
            "--steps",
        ),
        (
            EvalConfig {
                queries: Some(0),
                ..config(parse_attacks("square", Norm::Linf, true).unwrap())
            },
            "--queries",
        ),
        (
            EvalConfig {
                batch_size: 0,
                ..config(parse_attacks("pgd", Norm::Linf, true).unwrap())
            },
            "--batch-size",
        ),
        (
            EvalConfig {
                norm: Norm::L1,
                ..config(parse_attacks("fgsm", Norm::L1, true).unwrap())
            },
            "--norm",
        ),
    ];
    for (c, flag) in cases {
        let e = evaluate(
            &Subject::WhiteBox(model.clone()),
            &inputs(&d),
            &c,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains(flag), "{flag}: {e}");
    }
}

#[test]
fn an_ensemble_needing_more_classes_than_the_model_has_is_rejected_before_any_attack() {
    use nnguard_model::arch::{Arch, Network};
    let shape = [1, 28, 28];
    let net = Network::init_seeded(Arch::Mlp, shape, 3, 0, &nnguard_model::tensor::cpu()).unwrap();
    let model: Arc<dyn Differentiable> =
        Arc::new(nnguard_model::Model::from_network(net, shape, 3, None));
    let d = data(8);
    let labels = vec![0u32, 1, 2, 0, 1, 2, 0, 1];
    let inputs = EvalInputs {
        labels: &labels,
        ..inputs(&d)
    };
    let mut progressed = false;
    let e = evaluate(
        &Subject::WhiteBox(model),
        &inputs,
        &config(parse_attacks("standard", Norm::Linf, true).unwrap()),
        &mut |_| progressed = true,
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("--model") && message.contains("apgd-t") && message.contains("has 3"),
        "{message}"
    );
    assert!(!progressed, "attacks ran before the ensemble was checked");
}

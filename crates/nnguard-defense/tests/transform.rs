#![allow(clippy::unwrap_used)]
// Tests unwrap: a failure is a test failure with the error shown.

//! Input transformations in front of the reference CNN: BPDA breaks the non-differentiable
//! ones where the true gradient (zero) does not; exact gradients of the differentiable ones
//! against finite differences; EOT over randomised draws; misfits at build time.

use std::sync::Arc;

use nnguard_attack::evasion::{Inputs, PgdConfig, run_white_box};
use nnguard_attack::{Norm, Threat};
use nnguard_data::{DataSource, Split};
use nnguard_defense::transform::{GradientMode, Transformed, TransformedConfig, build_transforms};
use nnguard_defense::{DefenseError, DefenseSpec, defend};
use nnguard_model::tensor::{Device, Tensor, TensorData, batch_tensor, cpu, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model, ModelError};
use nnguard_testkit::testdata;

fn reference_cnn() -> Arc<dyn Differentiable> {
    Arc::new(
        Model::load(
            &testdata().join("reference/cnn.safetensors"),
            &LoadOptions::default(),
        )
        .unwrap(),
    )
}

/// The first `n` bundled test images the reference CNN classifies correctly under `model`.
fn correct_images(model: &dyn Differentiable, n: usize) -> (Tensor<4>, Vec<u32>) {
    let test = DataSource::Bundled.load(Split::Test).unwrap().take(200);
    let x = batch_tensor(&test.images, test.shape, model.device());
    let pred = nnguard_model::tensor::argmax_rows(&to_vec(model.logits(x)), 10);
    let keep: Vec<usize> = (0..test.len())
        .filter(|&i| pred[i] == test.labels[i])
        .take(n)
        .collect();
    let (images, labels) = test.gather(&keep);
    (batch_tensor(&images, test.shape, model.device()), labels)
}

/// Robust accuracy (over the given, correctly classified inputs) under L∞ PGD.
fn pgd_robust(model: &dyn Differentiable, x: Tensor<4>, y: &[u32], eps: f32) -> f64 {
    let pgd = PgdConfig {
        eps,
        steps: 20,
        step: Some(eps / 8.0),
        ..PgdConfig::default()
    }
    .build()
    .unwrap();
    let threat = Threat {
        norm: Norm::Linf,
        eps: Some(eps),
        bounds: (0.0, 1.0),
    };
    let inputs = Inputs {
        x,
        labels: y,
        targets: None,
    };
    let r = run_white_box(model, &pgd, threat, inputs, 1).unwrap();
    r.success.iter().filter(|s| !**s).count() as f64 / y.len() as f64
}

fn wrap(spec: &str, gradient: GradientMode) -> Transformed {
    let base = reference_cnn();
    let chain = build_transforms(spec, base.input_shape(), base.bounds(), 0).unwrap();
    Transformed::new(base, chain, TransformedConfig { eot: 4, gradient }).unwrap()
}

/// Honesty: bit-depth squeezing and JPEG look robust to an attack that follows the true
/// gradient (which is zero through them), and BPDA takes that robustness away.
#[test]
fn bpda_breaks_squeezing_and_jpeg_where_the_true_gradient_does_not() {
    for spec in ["squeeze:bits=2", "jpeg:quality=60"] {
        let plain = wrap(spec, GradientMode::Plain);
        let bpda = plain.with_gradient(GradientMode::Bpda);
        let (x, y) = correct_images(&bpda, 40);
        let g = plain.input_gradient(x.clone(), &y, Loss::CrossEntropy).grad;
        assert!(
            to_vec(g).iter().all(|v| *v == 0.0),
            "{spec}: the true gradient through the transform should be zero"
        );
        let g = bpda.input_gradient(x.clone(), &y, Loss::CrossEntropy).grad;
        assert!(
            to_vec(g).iter().any(|v| *v != 0.0),
            "{spec}: BPDA gradient is zero"
        );
        let plain_acc = pgd_robust(&plain, x.clone(), &y, 0.1);
        let bpda_acc = pgd_robust(&bpda, x, &y, 0.1);
        assert!(
            plain_acc >= 0.9,
            "{spec}: the plain attack should not move (robust accuracy {plain_acc})"
        );
        assert!(
            bpda_acc <= plain_acc - 0.5,
            "{spec}: BPDA {bpda_acc} vs plain {plain_acc}"
        );
    }
}

/// A linear classifier `logits = W·x` on 1×4×4 inputs, so finite differences are exact up to
/// the transform.
struct LinearModel {
    w: Vec<f32>,
    device: Device,
}

impl Classifier for LinearModel {
    fn input_shape(&self) -> [usize; 3] {
        [1, 4, 4]
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x.without_autodiff())
    }
}

impl Differentiable for LinearModel {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let b = x.dims()[0];
        let w = Tensor::<2>::from_data(TensorData::new(self.w.clone(), [16, 3]), &x.device());
        x.reshape([b, 16]).matmul(w)
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["logits".into()]
    }
    fn features(&self, x: Tensor<4>, _layer: &str) -> Result<Tensor<2>, ModelError> {
        Ok(self.logits(x))
    }
}

/// The exact gradients of the differentiable transforms agree with central differences of
/// the transformed model's loss.
#[test]
fn differentiable_transforms_have_exact_gradients() {
    let device = cpu();
    let w: Vec<f32> = (0..48)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    // Distinct values so that the median's choice is stable under small changes.
    let x0: Vec<f32> = (0..16)
        .map(|i| 0.2 + ((i * 7 % 16) as f32) / 40.0)
        .collect();
    for spec in ["median:2", "median:3", "smooth:sigma=0.8"] {
        let base: Arc<dyn Differentiable> = Arc::new(LinearModel {
            w: w.clone(),
            device: device.clone(),
        });
        let chain = build_transforms(spec, [1, 4, 4], (0.0, 1.0), 0).unwrap();
        assert!(chain[0].is_differentiable(), "{spec}");
        let m = Transformed::new(base, chain, TransformedConfig::default()).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(x0.clone(), [1, 1, 4, 4]), &device);
        let g = to_vec(m.input_gradient(x, &[1], Loss::CrossEntropy).grad);
        let loss = |v: &[f32]| {
            let t = Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, 4, 4]), &device);
            f64::from(to_vec(Loss::CrossEntropy.per_sample(m.logits(t), &[1]))[0])
        };
        let h = 1e-3f32;
        for i in 0..16 {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * f64::from(h));
            assert!(
                (f64::from(g[i]) - fd).abs() <= 1e-3 + 1e-2 * fd.abs(),
                "{spec}, pixel {i}: autodiff {} vs finite difference {fd}",
                g[i]
            );
        }
        assert!(g.iter().any(|v| v.abs() > 1e-3), "{spec}: zero gradient");
    }
}

/// Randomised transforms give different logits per call (the deployed defence) and an EOT
/// gradient that averages draws, whose spread shrinks as draws are added.
#[test]
fn randomised_transforms_are_attacked_with_eot() {
    let base = reference_cnn();
    let (x, y) = correct_images(base.as_ref(), 4);
    let chain = build_transforms("resize-pad:min=22", [1, 28, 28], (0.0, 1.0), 3).unwrap();
    let spread = |eot: usize| {
        let m = Transformed::new(
            base.clone(),
            chain.clone(),
            TransformedConfig {
                eot,
                gradient: GradientMode::Bpda,
            },
        )
        .unwrap();
        assert!(m.is_randomized());
        assert!(m.describe()[0].contains(&format!("EOT over {eot} draws")));
        let a = to_vec(m.input_gradient(x.clone(), &y, Loss::CrossEntropy).grad);
        let b = to_vec(m.input_gradient(x.clone(), &y, Loss::CrossEntropy).grad);
        let diff: f32 = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).sum();
        let size: f32 = a.iter().map(|p| p.abs()).sum();
        (m, diff / size)
    };
    let (m, one) = spread(1);
    let (_, many) = spread(16);
    assert!(one > 0.0, "two EOT-1 gradients were identical");
    assert!(
        many < 0.6 * one,
        "EOT-16 spread {many} vs single draw {one}"
    );
    let l1 = to_vec(m.logits(x.clone()));
    let l2 = to_vec(m.logits(x));
    assert_ne!(l1, l2, "a randomised defence gave identical logits twice");
}

/// Transforms that do not fit the input shape are errors when the defended model is built.
#[test]
fn misfitting_transforms_are_rejected_at_build_time() {
    let cnn = reference_cnn();
    let spec = |t: &str| DefenseSpec {
        transform: Some(t.into()),
        ..DefenseSpec::default()
    };
    for bad in ["median:29", "resize-pad:min=29", "smooth:sigma=20"] {
        let e = defend(vec![cnn.clone()], &spec(bad)).err().unwrap();
        assert!(
            matches!(e, DefenseError::ShapeMismatch { .. }),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("[1, 28, 28]"), "{bad}: {e}");
    }
    let e = defend(vec![cnn.clone()], &spec("jpeg:quality=200"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("--transform"), "{e}");
    let e = defend(
        vec![cnn.clone()],
        &DefenseSpec {
            eot: Some(4),
            ..DefenseSpec::default()
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("--eot"), "{e}");
    let ok = defend(vec![cnn], &spec("squeeze:bits=4,median:2")).unwrap();
    assert_eq!(ok.description.len(), 2);
    assert!(ok.description[0].contains("BPDA"), "{:?}", ok.description);
    assert!(
        ok.description[1].contains("exact gradient"),
        "{:?}",
        ok.description
    );
}

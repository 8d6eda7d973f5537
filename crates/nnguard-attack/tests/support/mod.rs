//! Fixtures shared by the attack integration tests: an affine classifier with a closed-form
//! decision boundary, the reference CNN with the bundled test images, and a runner.

// Not every test file uses every helper.
#![allow(dead_code)]

use nnguard_attack::evasion::{EvasionAttack, Inputs, run_white_box};
use nnguard_attack::{Norm, Threat, TrackerResult};
use nnguard_data::{DataSource, Dataset, Split};
use nnguard_model::error::ModelError;
use nnguard_model::predict::predict;
use nnguard_model::tensor::{Device, Tensor, TensorData, argmax_rows, batch_tensor, cpu, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Model};
use nnguard_testkit::testdata;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `z = W·flatten(x) + b`: every decision boundary is a hyperplane, so minimal perturbations
/// have a closed form.
pub struct Affine {
    /// Weights, row-major `[classes, inputs]` (host copy for the closed forms).
    pub w: Vec<f32>,
    /// Biases `[classes]`.
    pub b: Vec<f32>,
    shape: [usize; 3],
    bounds: (f32, f32),
    wt: Tensor<2>,
    bias: Tensor<2>,
    device: Device,
}

impl Affine {
    /// Random weights and biases for `classes` classes on images of `shape`.
    pub fn random(shape: [usize; 3], classes: usize, bounds: (f32, f32), seed: u64) -> Self {
        let n: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..classes * n)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b: Vec<f32> = (0..classes).map(|_| rng.random_range(-0.5..0.5)).collect();
        let device = cpu();
        let mut wt = vec![0.0f32; n * classes];
        for k in 0..classes {
            for j in 0..n {
                wt[j * classes + k] = w[k * n + j];
            }
        }
        Self {
            wt: Tensor::from_data(TensorData::new(wt, [n, classes]), &device),
            bias: Tensor::from_data(TensorData::new(b.clone(), [1, classes]), &device),
            w,
            b,
            shape,
            bounds,
            device,
        }
    }

    /// Logits of one flat input.
    pub fn logits_of(&self, x: &[f32]) -> Vec<f64> {
        let n = x.len();
        (0..self.b.len())
            .map(|k| {
                f64::from(self.b[k])
                    + self.w[k * n..(k + 1) * n]
                        .iter()
                        .zip(x)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
            })
            .collect()
    }

    /// The exact distance (in `norm`, without box constraints) from `x` to the nearest
    /// decision boundary of its predicted class: `min_k (z_y − z_k) / ‖w_y − w_k‖_dual`.
    pub fn boundary_distance(&self, x: &[f32], norm: Norm) -> f64 {
        let n = x.len();
        let z = self.logits_of(x);
        let y = (0..z.len()).fold(0, |m, k| if z[k] > z[m] { k } else { m });
        (0..z.len())
            .filter(|&k| k != y)
            .map(|k| {
                let diff = (0..n).map(|j| f64::from(self.w[y * n + j] - self.w[k * n + j]));
                let dual = match norm {
                    Norm::L2 => diff.map(|d| d * d).sum::<f64>().sqrt(),
                    Norm::Linf => diff.map(f64::abs).sum::<f64>(),
                    Norm::L1 => diff.map(f64::abs).fold(0.0, f64::max),
                };
                (z[y] - z[k]) / dual
            })
            .fold(f64::INFINITY, f64::min)
    }
}

impl Classifier for Affine {
    fn input_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.b.len()
    }
    fn bounds(&self) -> (f32, f32) {
        self.bounds
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x.without_autodiff())
    }
}

impl Differentiable for Affine {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let b = x.dims()[0];
        let n: usize = self.shape.iter().product();
        x.reshape([b, n])
            .matmul(self.wt.clone())
            .add(self.bias.clone())
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["logits".into()]
    }
    fn features(&self, x: Tensor<4>, _layer: &str) -> Result<Tensor<2>, ModelError> {
        Ok(self.forward(x))
    }
}

/// Random inputs in `[lo, hi]` for a model with inputs of `shape`.
pub fn random_inputs(count: usize, shape: [usize; 3], (lo, hi): (f32, f32), seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count * n).map(|_| rng.random_range(lo..hi)).collect()
}

/// The model's predictions for flat inputs.
pub fn predictions<M: Classifier + ?Sized>(model: &M, x: &[f32]) -> Vec<u32> {
    let k = model.num_classes();
    let t = batch_tensor(x, model.input_shape(), model.device());
    argmax_rows(&to_vec(model.logits(t)), k)
}

/// Runs `attack` on flat inputs `x` with `labels` (and `targets`).
pub fn attack<M: Classifier + ?Sized>(
    model: &M,
    attack: &dyn EvasionAttack<M>,
    threat: Threat,
    x: &[f32],
    labels: &[u32],
    targets: Option<&[u32]>,
    seed: u64,
) -> TrackerResult {
    let t = batch_tensor(x, model.input_shape(), model.device());
    run_white_box(
        model,
        attack,
        threat,
        Inputs {
            x: t,
            labels,
            targets,
        },
        seed,
    )
    .unwrap()
}

/// The reference CNN (testdata/reference/cnn.onnx).
pub fn reference_cnn() -> Model {
    Model::load(
        &testdata().join("reference/cnn.onnx"),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// The first `n` bundled test images (the first Fashion-MNIST t10k images) and whether the
/// model classifies each correctly.
pub fn test_images(model: &Model, n: usize) -> (Dataset, Vec<bool>) {
    let data = DataSource::Bundled.load(Split::Test).unwrap().take(n);
    let pred = predict(model, &data, 500, |_| {}).unwrap();
    let correct = pred.iter().zip(&data.labels).map(|(p, l)| p == l).collect();
    (data, correct)
}

/// Fraction of inputs classified correctly and not broken by the attack.
pub fn robust_accuracy(correct: &[bool], r: &TrackerResult) -> f64 {
    let robust = correct
        .iter()
        .zip(&r.success)
        .filter(|(c, s)| **c && !**s)
        .count();
    robust as f64 / correct.len() as f64
}

/// The median perturbation size (in `norm`) of the successful examples of inputs that were
/// classified correctly.
pub fn median_success(x0: &[f32], r: &TrackerResult, correct: &[bool], norm: Norm) -> f64 {
    let n = x0.len() / correct.len();
    let mut sizes: Vec<f64> = (0..correct.len())
        .filter(|&i| correct[i] && r.success[i])
        .map(|i| {
            let d: Vec<f32> = (0..n).map(|j| r.x_adv[i * n + j] - x0[i * n + j]).collect();
            f64::from(norm.of_rows(&d, n)[0])
        })
        .collect();
    sizes.sort_by(f64::total_cmp);
    if sizes.is_empty() {
        return f64::NAN;
    }
    let m = sizes.len() / 2;
    if sizes.len() % 2 == 1 {
        sizes[m]
    } else {
        (sizes[m - 1] + sizes[m]) / 2.0
    }
}

/// Checks the tracker's guarantees on a result: finite values inside the bounds (and the
/// ball, when bounded), and `success` equal to the model's fresh prediction.
pub fn check_result<M: Classifier + ?Sized>(
    model: &M,
    threat: Threat,
    x0: &[f32],
    labels: &[u32],
    targets: Option<&[u32]>,
    r: &TrackerResult,
) {
    let n = x0.len() / labels.len();
    assert!(
        r.x_adv.iter().all(|v| v.is_finite()),
        "NaN or infinite value"
    );
    let (lo, hi) = threat.bounds;
    assert!(
        r.x_adv.iter().all(|v| (lo..=hi).contains(v)),
        "outside the bounds"
    );
    let fresh = predictions(model, &r.x_adv);
    for i in 0..labels.len() {
        let d: Vec<f32> = (0..n).map(|j| r.x_adv[i * n + j] - x0[i * n + j]).collect();
        let size = threat.norm.of_rows(&d, n)[0];
        if let Some(eps) = threat.eps {
            assert!(
                size <= eps * (1.0 + 1e-5) + 1e-6,
                "input {i}: {size} > {eps}"
            );
        }
        let adv = match targets {
            Some(t) => fresh[i] == t[i],
            None => fresh[i] != labels[i],
        };
        assert_eq!(
            r.success[i], adv,
            "input {i}: success disagrees with the model"
        );
        assert_eq!(r.predicted[i], fresh[i], "input {i}");
    }
}

//! Models and inputs shared by the integration tests: the reference CNN, and deliberately
//! broken wrappers around it (a softmax head, a quantising input layer that zeroes
//! gradients, a random-noise layer).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use nnguard_data::{DataSource, Dataset, Split};
use nnguard_eval::{EvalConfig, EvalInputs, Report, Subject, evaluate};
use nnguard_model::tensor::{Device, Tensor, TensorData, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Model, ModelError};
use nnguard_testkit::testdata;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub fn cnn() -> Model {
    Model::load(
        &testdata().join("reference/cnn.onnx"),
        &LoadOptions::default(),
    )
    .unwrap()
}

pub fn data(n: usize) -> Dataset {
    DataSource::Bundled.load(Split::Test).unwrap().take(n)
}

pub fn inputs<'a>(d: &'a Dataset) -> EvalInputs<'a> {
    EvalInputs {
        images: &d.images,
        labels: &d.labels,
        shape: d.shape,
        first_index: 0,
        total: d.len(),
        shard: None,
        model: "cnn.onnx".into(),
        data: d.name.clone(),
        reference: None,
    }
}

pub fn run(model: Arc<dyn Differentiable>, d: &Dataset, config: &EvalConfig) -> Report {
    evaluate(&Subject::WhiteBox(model), &inputs(d), config, &mut |_| {}).unwrap()
}

pub fn status(r: &Report, id: &str) -> nnguard_eval::Status {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .status
}

macro_rules! delegate {
    () => {
        fn input_shape(&self) -> [usize; 3] {
            self.0.input_shape()
        }
        fn num_classes(&self) -> usize {
            self.0.num_classes()
        }
        fn device(&self) -> &Device {
            self.0.device()
        }
    };
}

macro_rules! layers {
    () => {
        fn layer_names(&self) -> Vec<String> {
            self.0.layer_names()
        }
        fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
            self.0.features(x, layer)
        }
    };
}

fn softmax(z: Tensor<2>) -> Tensor<2> {
    let e = z.clone().sub(z.max_dim(1).detach()).exp();
    e.clone().div(e.sum_dim(1))
}

/// The CNN with a softmax after its logits.
pub struct SoftmaxHead(pub Model);

impl Classifier for SoftmaxHead {
    delegate!();
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        softmax(self.0.logits(x))
    }
}
impl Differentiable for SoftmaxHead {
    layers!();
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        softmax(self.0.forward(x))
    }
}

/// The CNN behind an input layer that rounds every pixel to one of `levels` values and
/// passes no gradient.
pub struct Quantize(pub Model, pub f32);

impl Quantize {
    fn quantize(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let device = x.device();
        let l = self.1 - 1.0;
        let v: Vec<f32> = to_vec(x.clone().detach())
            .iter()
            .map(|p| (p * l).round() / l)
            .collect();
        // Kept on the tape with a zero gradient, like a rounding layer in a real graph.
        Tensor::from_data(TensorData::new(v, dims), &device).add(x.mul_scalar(0.0))
    }
}

impl Classifier for Quantize {
    delegate!();
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.logits(self.quantize(x))
    }
}
impl Differentiable for Quantize {
    layers!();
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.forward(self.quantize(x))
    }
}

/// The CNN with Gaussian noise of standard deviation `sigma` added to every input.
pub struct Noise(pub Model, pub f32, pub Mutex<ChaCha8Rng>);

impl Noise {
    pub fn new(model: Model, sigma: f32) -> Self {
        Self(model, sigma, Mutex::new(ChaCha8Rng::seed_from_u64(7)))
    }
    fn noise(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let mut rng = self.2.lock().unwrap();
        let v: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut *rng);
                z * self.1
            })
            .collect();
        let n = Tensor::<4>::from_data(TensorData::new(v, dims), &x.device());
        x.add(n)
    }
}

impl Classifier for Noise {
    delegate!();
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.logits(self.noise(x))
    }
}
impl Differentiable for Noise {
    layers!();
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.forward(self.noise(x))
    }
}

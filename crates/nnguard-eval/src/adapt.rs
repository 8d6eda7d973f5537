//! Model wrappers the harness puts between a model and the attacks when a validity check
//! finds that plain gradients cannot be trusted:
//!
//! - [`LogProbabilities`]: a model that outputs probabilities (a softmax head) is attacked
//!   through their logarithm, which restores the logit geometry the losses expect.
//! - [`Eot`]: a randomised model is attacked with Expectation over Transformation (Athalye
//!   et al. 2018): logits and gradients are averaged over several forward passes.
//! - [`Spsa`]: gradients estimated from queries only (Uesato et al. 2018), for models whose
//!   input gradients are zero or obfuscated by non-differentiable preprocessing.
//! - [`Bpda`]: Backward Pass Differentiable Approximation (Athalye et al. 2018) for a
//!   known preprocessing function: its exact output forward, the identity backward.

use std::sync::{Arc, Mutex};

use nnguard_model::tensor::{Tensor, TensorData};
use nnguard_model::{Classifier, Differentiable, InputGradient, Loss, ModelError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Smallest probability taken the logarithm of, so that saturated outputs stay finite.
pub const MIN_PROBABILITY: f32 = 1e-30;

/// A model whose outputs are probabilities, seen through their logarithm.
pub struct LogProbabilities(pub Arc<dyn Differentiable>);

impl Classifier for LogProbabilities {
    nnguard_model::delegate_classifier_geometry!(0);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.logits(x).clamp_min(MIN_PROBABILITY).log()
    }
}

impl Differentiable for LogProbabilities {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.forward(x).clamp_min(MIN_PROBABILITY).log()
    }
    fn layer_names(&self) -> Vec<String> {
        self.0.layer_names()
    }
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        self.0.features(x, layer)
    }
}

/// Expectation over Transformation: the mean of `samples` forward passes of a randomised
/// model, so that gradients are those of the expected logits.
pub struct Eot {
    inner: Arc<dyn Differentiable>,
    samples: usize,
}

impl Eot {
    /// Averages `samples` (at least 1) passes of `inner`.
    pub fn new(inner: Arc<dyn Differentiable>, samples: usize) -> Self {
        Self {
            inner,
            samples: samples.max(1),
        }
    }

    fn mean(&self, x: Tensor<4>, pass: impl Fn(Tensor<4>) -> Tensor<2>) -> Tensor<2> {
        let mut sum = pass(x.clone());
        for _ in 1..self.samples {
            sum = sum.add(pass(x.clone()));
        }
        sum.div_scalar(self.samples as f32)
    }
}

impl Classifier for Eot {
    nnguard_model::delegate_classifier_geometry!(inner);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.mean(x, |x| self.inner.logits(x))
    }
}

impl Differentiable for Eot {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.mean(x, |x| self.inner.forward(x))
    }
    fn layer_names(&self) -> Vec<String> {
        self.inner.layer_names()
    }
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        self.inner.features(x, layer)
    }
}

/// Input gradients estimated from queries with simultaneous perturbations (SPSA, Spall
/// 1992; used against obfuscated gradients by Uesato et al. 2018): the mean over random
/// ±1 directions `v` of `(L(x + δv) − L(x − δv)) / 2δ · v`. `forward` gives the model's
/// logits without a gradient path; attacks should use `input_gradient`.
pub struct Spsa {
    inner: Arc<dyn Differentiable>,
    pairs: usize,
    delta: f32,
    rng: Mutex<ChaCha8Rng>,
}

impl Spsa {
    /// An estimator over `pairs` antithetic pairs of directions of size `delta`.
    pub fn new(inner: Arc<dyn Differentiable>, pairs: usize, delta: f32, seed: u64) -> Self {
        Self {
            inner,
            pairs: pairs.max(1),
            delta,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }
}

impl Classifier for Spsa {
    nnguard_model::delegate_classifier_geometry!(inner);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.inner.logits(x)
    }
}

impl Differentiable for Spsa {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.inner.logits(x.without_autodiff())
    }
    fn layer_names(&self) -> Vec<String> {
        self.inner.layer_names()
    }
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        self.inner.features(x, layer)
    }
    fn input_gradient(&self, x: Tensor<4>, labels: &[u32], loss: Loss) -> InputGradient {
        let x = x.without_autodiff();
        let dims = x.dims();
        let device = x.device();
        let b = dims[0];
        let n = dims[1] * dims[2] * dims[3];
        let directions: Vec<f32> = {
            let mut rng = match self.rng.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            (0..self.pairs * b * n)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect()
        };
        let v = Tensor::<4>::from_data(
            TensorData::new(directions, [self.pairs * b, dims[1], dims[2], dims[3]]),
            &device,
        );
        let xs = Tensor::cat(vec![x.clone(); self.pairs], 0);
        let plus = xs.clone().add(v.clone().mul_scalar(self.delta));
        let minus = xs.sub(v.clone().mul_scalar(self.delta));
        let labels_rep: Vec<u32> = (0..self.pairs)
            .flat_map(|_| labels.iter().copied())
            .collect();
        let both = Tensor::cat(vec![plus, minus], 0);
        let all_labels: Vec<u32> = labels_rep.iter().chain(&labels_rep).copied().collect();
        let losses = loss.per_sample(self.inner.logits(both), &all_labels);
        let m = self.pairs * b;
        let diff = losses
            .clone()
            .narrow(0, 0, m)
            .sub(losses.narrow(0, m, m))
            .div_scalar(2.0 * self.delta * self.pairs as f32);
        let weighted = v.mul(diff.reshape([m, 1, 1, 1]));
        let grad = weighted
            .reshape([self.pairs, b, dims[1], dims[2], dims[3]])
            .sum_dim(0)
            .reshape(dims);
        let logits = self.inner.logits(x);
        InputGradient {
            grad,
            loss: loss.per_sample(logits.clone(), labels),
            logits,
        }
    }
}

/// A model behind a known preprocessing function that blocks gradients (quantisation,
/// JPEG, thermometer encoding, ...): forward applies the function exactly, backward treats
/// it as the identity.
pub struct Bpda<F> {
    inner: Arc<dyn Differentiable>,
    preprocess: F,
}

impl<F: Fn(Tensor<4>) -> Tensor<4> + Send + Sync> Bpda<F> {
    /// `inner` is the model after the preprocessing; `preprocess` the preprocessing.
    pub fn new(inner: Arc<dyn Differentiable>, preprocess: F) -> Self {
        Self { inner, preprocess }
    }
}

impl<F: Fn(Tensor<4>) -> Tensor<4> + Send + Sync> Classifier for Bpda<F> {
    nnguard_model::delegate_classifier_geometry!(inner);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.inner.logits((self.preprocess)(x))
    }
}

impl<F: Fn(Tensor<4>) -> Tensor<4> + Send + Sync> Differentiable for Bpda<F> {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let plain = x.clone().detach();
        let offset = (self.preprocess)(plain.clone()).sub(plain).detach();
        self.inner.forward(x.add(offset))
    }
    fn layer_names(&self) -> Vec<String> {
        self.inner.layer_names()
    }
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        self.inner.features((self.preprocess)(x), layer)
    }
}

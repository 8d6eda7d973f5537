//! Gaussian data augmentation: the network is trained on `x + N(0, σ²I)`, which is what
//! randomized smoothing (Cohen, Rosenfeld and Kolter 2019, "Certified Adversarial
//! Robustness via Randomized Smoothing") needs of its base classifier to certify at noise
//! level σ. Train with the σ you will certify with.

use nnguard_model::Loss;
use nnguard_model::ModelError;
use nnguard_model::tensor::Tensor;
use nnguard_model::train::{Batch, TrainObjective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::gaussian_like;
use crate::DefenseError;

/// Settings of [`NoiseAugmentation`].
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseConfig {
    /// Standard deviation of the noise, in pixel units (`--sigma`).
    pub sigma: f32,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for NoiseConfig {
    /// σ = 0.25 (the middle noise level of Cohen et al.), seed 0.
    fn default() -> Self {
        Self {
            sigma: 0.25,
            seed: 0,
        }
    }
}

impl NoiseConfig {
    /// Checks σ > 0 and finite.
    pub fn build(self) -> Result<NoiseAugmentation, DefenseError> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(DefenseError::config(
                "--sigma",
                format!("must be a positive number, got {}", self.sigma),
            ));
        }
        Ok(NoiseAugmentation {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            config: self,
        })
    }
}

/// A built noise-augmentation objective.
#[derive(Debug, Clone)]
pub struct NoiseAugmentation {
    config: NoiseConfig,
    rng: ChaCha8Rng,
}

impl NoiseAugmentation {
    /// The noisy inputs this objective trains on (not clipped to the input range, as in
    /// Cohen et al., so that the training distribution is the one smoothing samples from).
    pub fn noisy(&mut self, x: &Tensor<4>) -> Tensor<4> {
        x.clone()
            .add(gaussian_like(x, self.config.sigma, &mut self.rng))
    }
}

impl TrainObjective for NoiseAugmentation {
    fn name(&self) -> String {
        "noise".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let x = self.noisy(&batch.x);
        Ok(Loss::CrossEntropy
            .per_sample(batch.logits(x), batch.labels)
            .mean())
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "defense": "noise",
            "sigma": self.config.sigma,
            "reference": "Cohen, Rosenfeld and Kolter 2019",
        })
    }
}

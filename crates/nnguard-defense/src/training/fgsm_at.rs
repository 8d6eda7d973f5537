//! Fast adversarial training (Wong, Rice and Kolter 2020, "Fast is better than free:
//! Revisiting adversarial training"): one FGSM step of `α = 1.25·ε` from a uniformly random
//! start in the ε-ball, projected back onto the ball and the input range; the network
//! minimises cross-entropy on the result. The random start is what keeps single-step
//! training from the catastrophic overfitting of plain FGSM training.

use nnguard_model::ModelError;
use nnguard_model::tensor::Tensor;
use nnguard_model::train::{Batch, TrainObjective};
use nnguard_model::{Classifier, Differentiable, Loss};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{EpsSchedule, check_eps, check_step, linf_threat};
use crate::DefenseError;
use nnguard_attack::steps::random_start;

/// Settings of [`FgsmAt`].
#[derive(Debug, Clone, PartialEq)]
pub struct FgsmAtConfig {
    /// L∞ radius of the training ball (`--eps`).
    pub eps: f32,
    /// Step size (`--attack-step`); `None` means `1.25·ε` (Wong et al.).
    pub step: Option<f32>,
    /// How ε ramps up over the run (`--eps-schedule`).
    pub schedule: EpsSchedule,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for FgsmAtConfig {
    /// ε = 0.1, α = 1.25·ε, constant ε, seed 0.
    fn default() -> Self {
        Self {
            eps: 0.1,
            step: None,
            schedule: EpsSchedule::CONSTANT,
            seed: 0,
        }
    }
}

impl FgsmAtConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<FgsmAt, DefenseError> {
        check_eps(self.eps)?;
        check_step(self.step)?;
        let schedule = self.schedule.checked()?;
        Ok(FgsmAt {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            config: Self { schedule, ..self },
        })
    }

    /// The step size in use.
    pub fn step_size(&self) -> f32 {
        self.step.unwrap_or(1.25 * self.eps)
    }
}

/// A built fast adversarial-training objective.
#[derive(Debug, Clone)]
pub struct FgsmAt {
    config: FgsmAtConfig,
    rng: ChaCha8Rng,
}

impl FgsmAt {
    /// The adversarial inputs this objective trains on for `batch`.
    pub fn adversarial(&mut self, batch: &Batch<'_>) -> Tensor<4> {
        let c = &self.config;
        let scale = c.schedule.factor(batch.progress()) as f32;
        let eps = c.eps * scale;
        if eps <= 0.0 {
            return batch.x.clone();
        }
        let snapshot = batch.snapshot();
        let threat = linf_threat(eps, snapshot.bounds());
        let start = random_start(&batch.x, &threat, &mut self.rng);
        let g = snapshot
            .input_gradient(start.clone(), batch.labels, Loss::CrossEntropy)
            .grad;
        threat.project(
            &batch.x,
            start.add(g.sign().mul_scalar(c.step_size() * scale)),
        )
    }
}

impl TrainObjective for FgsmAt {
    fn name(&self) -> String {
        "fgsm-at".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let x_adv = self.adversarial(batch);
        Ok(Loss::CrossEntropy
            .per_sample(batch.logits(x_adv), batch.labels)
            .mean())
    }

    fn settings(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "defense": "fgsm-at",
            "norm": "linf",
            "eps": c.eps,
            "attack_step": c.step_size(),
            "random_start": true,
            "eps_schedule": c.schedule,
            "reference": "Wong, Rice and Kolter 2020",
        })
    }
}

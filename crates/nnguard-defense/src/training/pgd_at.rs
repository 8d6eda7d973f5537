//! PGD adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
//! Adversarial Attacks"): every mini-batch is replaced by L∞ PGD examples crafted against a
//! frozen snapshot of the current network (uniform random start, `steps` signed-gradient
//! steps of `step`, projection onto the ε-ball and the input range), and the network
//! minimises cross-entropy on them.

use nnguard_model::Loss;
use nnguard_model::ModelError;
use nnguard_model::tensor::Tensor;
use nnguard_model::train::{Batch, TrainObjective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{EpsSchedule, check_eps, check_step, pgd_linf};
use crate::DefenseError;

/// Settings of [`PgdAt`].
#[derive(Debug, Clone, PartialEq)]
pub struct PgdAtConfig {
    /// L∞ radius of the training ball (`--eps`).
    pub eps: f32,
    /// PGD steps per batch (`--attack-steps`).
    pub steps: usize,
    /// PGD step size (`--attack-step`); `None` means `2.5·ε/steps` (Madry et al.).
    pub step: Option<f32>,
    /// How ε ramps up over the run (`--eps-schedule`).
    pub schedule: EpsSchedule,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for PgdAtConfig {
    /// ε = 0.1, 10 steps of 2.5·ε/10 = 0.025, constant ε, seed 0.
    fn default() -> Self {
        Self {
            eps: 0.1,
            steps: 10,
            step: None,
            schedule: EpsSchedule::CONSTANT,
            seed: 0,
        }
    }
}

impl PgdAtConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<PgdAt, DefenseError> {
        check_eps(self.eps)?;
        if self.steps == 0 {
            return Err(DefenseError::config("--attack-steps", "must be at least 1"));
        }
        check_step(self.step)?;
        let schedule = self.schedule.checked()?;
        Ok(PgdAt {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            config: Self { schedule, ..self },
        })
    }

    /// The step size in use.
    pub fn step_size(&self) -> f32 {
        self.step.unwrap_or(2.5 * self.eps / self.steps as f32)
    }
}

/// A built PGD adversarial-training objective.
#[derive(Debug, Clone)]
pub struct PgdAt {
    config: PgdAtConfig,
    rng: ChaCha8Rng,
}

impl PgdAt {
    /// The adversarial inputs this objective trains on for `batch` (exposed for tests).
    pub fn adversarial(&mut self, batch: &Batch<'_>) -> Tensor<4> {
        let c = &self.config;
        let scale = c.schedule.factor(batch.progress()) as f32;
        let snapshot = batch.snapshot();
        pgd_linf(
            &snapshot,
            &batch.x,
            batch.labels,
            c.eps * scale,
            c.step_size() * scale,
            c.steps,
            &mut self.rng,
        )
    }
}

impl TrainObjective for PgdAt {
    fn name(&self) -> String {
        "pgd-at".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let x_adv = self.adversarial(batch);
        let logits = batch.logits(x_adv);
        Ok(Loss::CrossEntropy.per_sample(logits, batch.labels).mean())
    }

    fn settings(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "defense": "pgd-at",
            "norm": "linf",
            "eps": c.eps,
            "attack_steps": c.steps,
            "attack_step": c.step_size(),
            "random_start": true,
            "eps_schedule": c.schedule,
            "reference": "Madry et al. 2018",
        })
    }
}

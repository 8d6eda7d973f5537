//! TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
//! Accuracy"): minimise `CE(f(x), y) + β·KL(p(x) ‖ p(x′))`, where `x′` maximises the KL
//! divergence inside the L∞ ε-ball. The inner maximisation starts at `x + 0.001·N(0, I)`
//! and takes signed-gradient steps of the KL divergence computed on a frozen snapshot of
//! the network ([`kl_input_gradient`]); both terms of the outer loss are differentiated.

use burn::tensor::activation::{log_softmax, softmax};
use nnguard_model::tensor::Tensor;
use nnguard_model::train::{Batch, TrainObjective};
use nnguard_model::{Classifier, Differentiable, Loss, ModelError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{EpsSchedule, check_eps, check_step, gaussian_like, linf_threat};
use crate::DefenseError;

/// Scale of the Gaussian start of the inner maximisation (Zhang et al.'s code).
pub const START_NOISE: f32 = 0.001;

/// Settings of [`Trades`].
#[derive(Debug, Clone, PartialEq)]
pub struct TradesConfig {
    /// L∞ radius of the training ball (`--eps`).
    pub eps: f32,
    /// Steps of the inner maximisation (`--attack-steps`).
    pub steps: usize,
    /// Its step size (`--attack-step`); `None` means `2.5·ε/steps`.
    pub step: Option<f32>,
    /// Weight β of the robustness term (`--beta`).
    pub beta: f32,
    /// How ε ramps up over the run (`--eps-schedule`).
    pub schedule: EpsSchedule,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for TradesConfig {
    /// ε = 0.1, 10 steps of 2.5·ε/10, β = 6 (the paper's choice), constant ε, seed 0.
    fn default() -> Self {
        Self {
            eps: 0.1,
            steps: 10,
            step: None,
            beta: 6.0,
            schedule: EpsSchedule::CONSTANT,
            seed: 0,
        }
    }
}

impl TradesConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Trades, DefenseError> {
        check_eps(self.eps)?;
        if self.steps == 0 {
            return Err(DefenseError::config("--attack-steps", "must be at least 1"));
        }
        check_step(self.step)?;
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(DefenseError::config(
                "--beta",
                format!("must be a finite number ≥ 0, got {}", self.beta),
            ));
        }
        let schedule = self.schedule.checked()?;
        Ok(Trades {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            config: Self { schedule, ..self },
        })
    }

    /// The step size in use.
    pub fn step_size(&self) -> f32 {
        self.step.unwrap_or(2.5 * self.eps / self.steps as f32)
    }
}

/// A built TRADES objective.
#[derive(Debug, Clone)]
pub struct Trades {
    config: TradesConfig,
    rng: ChaCha8Rng,
}

/// `Σ_k p_k (log p_k − log q_k)` per row, where `q = softmax(logits)`: the KL divergence of
/// the fixed distribution `p` from the model's, differentiable through `logits`.
fn kl_rows(p: Tensor<2>, logits: Tensor<2>) -> Tensor<1> {
    let [b, _] = p.dims();
    let log_p = p.clone().clamp_min(1e-30).log();
    p.mul(log_p.sub(log_softmax(logits, 1)))
        .sum_dim(1)
        .reshape([b])
}

/// The input gradient of `Σ_i KL(p_i ‖ softmax(model(x_i)))` at `x`, with `p` fixed: what the
/// TRADES inner maximisation ascends. Written with Burn's autodiff on the (frozen) model.
pub fn kl_input_gradient(model: &dyn Differentiable, x: Tensor<4>, p: &Tensor<2>) -> Tensor<4> {
    let xa = x.detach().autodiff().require_grad();
    let logits = model.forward(xa.clone());
    let device = logits.device();
    let p = Tensor::<2>::from_data(p.clone().into_data(), &device);
    let kl = kl_rows(p, logits).sum();
    xa.grad(&kl.backward())
        .unwrap_or_else(|| xa.clone().without_autodiff().zeros_like())
}

impl Trades {
    /// The inputs `x′` of the robustness term for `batch`.
    pub fn adversarial(&mut self, batch: &Batch<'_>) -> Tensor<4> {
        let c = &self.config;
        let scale = c.schedule.factor(batch.progress()) as f32;
        let eps = c.eps * scale;
        if eps <= 0.0 {
            return batch.x.clone();
        }
        let snapshot = batch.snapshot();
        let threat = linf_threat(eps, snapshot.bounds());
        let p = softmax(snapshot.logits(batch.x.clone()), 1);
        let start = batch
            .x
            .clone()
            .add(gaussian_like(&batch.x, START_NOISE, &mut self.rng));
        let mut x = threat.project(&batch.x, start);
        for _ in 0..c.steps {
            let g = kl_input_gradient(&snapshot, x.clone(), &p);
            x = threat.project(&batch.x, x.add(g.sign().mul_scalar(c.step_size() * scale)));
        }
        x
    }
}

impl TrainObjective for Trades {
    fn name(&self) -> String {
        "trades".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let x_adv = self.adversarial(batch);
        let natural = batch.logits(batch.x.clone());
        let adversarial = batch.logits(x_adv);
        let ce = Loss::CrossEntropy
            .per_sample(natural.clone(), batch.labels)
            .mean();
        let kl = kl_rows(softmax(natural, 1), adversarial).mean();
        Ok(ce.add(kl.mul_scalar(self.config.beta)))
    }

    fn settings(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "defense": "trades",
            "norm": "linf",
            "eps": c.eps,
            "beta": c.beta,
            "attack_steps": c.steps,
            "attack_step": c.step_size(),
            "eps_schedule": c.schedule,
            "reference": "Zhang et al. 2019",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::Model;
    use nnguard_model::arch::{Arch, Network};
    use nnguard_model::tensor::{TensorData, cpu, to_vec};
    use nnguard_testkit::{Tol, assert_close};

    /// Central finite differences of the KL divergence agree with the autodiff gradient.
    #[test]
    fn kl_gradient_matches_finite_differences() {
        let device = cpu();
        let net = Network::init_seeded(Arch::Mlp, [1, 2, 3], 3, 3, &device).unwrap();
        let model = Model::from_network(net, [1, 2, 3], 3, None);
        let x0: Vec<f32> = vec![0.1, 0.7, 0.3, 0.9, 0.5, 0.2];
        let x = Tensor::<4>::from_data(TensorData::new(x0.clone(), [1, 1, 2, 3]), &device);
        let p = Tensor::<2>::from_data(TensorData::new(vec![0.2f32, 0.5, 0.3], [1, 3]), &device);
        let g = to_vec(kl_input_gradient(&model, x, &p));
        let kl_at = |v: &[f32]| -> f64 {
            let t = Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, 2, 3]), &device);
            f64::from(to_vec(kl_rows(p.clone(), model.logits(t)))[0])
        };
        let h = 1e-2f32;
        let fd: Vec<f64> = (0..6)
            .map(|i| {
                let mut up = x0.clone();
                let mut down = x0.clone();
                up[i] += h;
                down[i] -= h;
                (kl_at(&up) - kl_at(&down)) / (2.0 * f64::from(h))
            })
            .collect();
        let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
        assert!(g.iter().any(|v| v.abs() > 1e-4), "gradient vanished: {g:?}");
        assert_close(
            &g,
            &fd,
            Tol {
                rel: 2e-2,
                abs: 2e-4,
            },
        );
    }
}

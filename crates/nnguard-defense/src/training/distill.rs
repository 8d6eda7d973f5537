//! Defensive distillation (Papernot et al. 2016, "Distillation as a Defense to Adversarial
//! Perturbations against Deep Neural Networks"), in the paper's two stages:
//!
//! 1. without a teacher, the network is trained on the hard labels with its softmax at
//!    temperature `T` (`CE(softmax(z / T), y)`): this is the teacher;
//! 2. with a teacher, the student is trained on the teacher's soft labels
//!    `softmax(z_teacher / T)` with its own softmax at `T`.
//!
//! Both are deployed at `T = 1`, so their logits are about `T` times larger than a normally
//! trained network's. (A teacher trained at `T = 1` gives a student with ordinary logits: the
//! softened labels then carry the teacher's own logit scale.)
//!
//! This is a known case of gradient masking, not robustness: the softmax saturates at
//! `T = 1`, cross-entropy gradients underflow to zero, and attacks on the logits
//! (Carlini and Wagner 2017; APGD's DLR loss) break the student as easily as the teacher.
//! `nnguard eval` reports it that way.

use std::sync::Arc;

use burn::tensor::activation::{log_softmax, softmax};
use nnguard_model::tensor::{Tensor, one_hot};
use nnguard_model::train::{Batch, TrainObjective};
use nnguard_model::{Differentiable, ModelError};

use crate::DefenseError;

/// Settings of [`Distillation`].
#[derive(Debug, Clone, PartialEq)]
pub struct DistillationConfig {
    /// The temperature `T` of both softmaxes during training (`--temperature`).
    pub temperature: f32,
    /// The teacher's name for the sidecar (its file); with no teacher, stage 1 trains one.
    pub teacher_name: Option<String>,
}

impl Default for DistillationConfig {
    /// `T = 100`, the temperature Papernot et al. found most effective on MNIST.
    fn default() -> Self {
        Self {
            temperature: 100.0,
            teacher_name: None,
        }
    }
}

impl DistillationConfig {
    /// Checks `T ≥ 1` and builds the objective: stage 2 around `teacher`, or stage 1 (train
    /// a teacher at `T` on the hard labels) without one.
    pub fn build(
        self,
        teacher: Option<Arc<dyn Differentiable>>,
    ) -> Result<Distillation, DefenseError> {
        if !(self.temperature.is_finite() && self.temperature >= 1.0) {
            return Err(DefenseError::config(
                "--temperature",
                format!("must be a number ≥ 1, got {}", self.temperature),
            ));
        }
        Ok(Distillation {
            config: self,
            teacher,
        })
    }
}

/// A built distillation objective.
pub struct Distillation {
    config: DistillationConfig,
    teacher: Option<Arc<dyn Differentiable>>,
}

impl Distillation {
    /// The training targets at the temperature, `[B, K]`: the teacher's soft labels, or the
    /// one-hot labels when training the teacher.
    pub fn targets(&self, x: Tensor<4>, labels: &[u32], classes: usize) -> Tensor<2> {
        match &self.teacher {
            Some(t) => softmax(t.logits(x).div_scalar(self.config.temperature), 1),
            None => one_hot(labels, classes, &x.device()),
        }
    }
}

impl TrainObjective for Distillation {
    fn name(&self) -> String {
        "distill".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let dims = batch.x.dims();
        let shape = [dims[1], dims[2], dims[3]];
        if let Some(t) = &self.teacher
            && (t.input_shape() != shape || t.num_classes() != batch.classes)
        {
            return Err(ModelError::InvalidParameter {
                name: "--teacher",
                reason: format!(
                    "the teacher takes {:?} images and has {} classes, but the training data has {:?} images and {} classes",
                    t.input_shape(),
                    t.num_classes(),
                    shape,
                    batch.classes
                ),
            });
        }
        let soft = self.targets(batch.x.clone(), batch.labels, batch.classes);
        let student = batch.logits(batch.x.clone());
        let soft = Tensor::<2>::from_data(soft.into_data(), &student.device());
        let log_q = log_softmax(student.div_scalar(self.config.temperature), 1);
        let b = dims[0];
        Ok(soft.mul(log_q).sum_dim(1).reshape([b]).neg().mean())
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "defense": "distill",
            "temperature": self.config.temperature,
            "stage": if self.teacher.is_some() { "student (soft labels of the teacher at T)" } else { "teacher (hard labels at T)" },
            "teacher": self.config.teacher_name,
            "deployed_temperature": 1.0,
            "reference": "Papernot et al. 2016",
            "note": "masks cross-entropy gradients at T = 1; logit-margin attacks (C&W, APGD-DLR) are not affected",
        })
    }
}

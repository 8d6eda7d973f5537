//! Ensembles: the average of the logits of several models, which is itself a
//! [`Differentiable`] model, so attacks target the ensemble as one model (gradients of the
//! averaged logits), as an adaptive attacker would. Averaging models that share their
//! weaknesses adds little robustness (He et al. 2017, "Adversarial Example Defenses:
//! Ensembles of Weak Defenses are not Strong"); `nnguard eval` measures what it adds.

use std::sync::Arc;

use nnguard_model::tensor::{Device, Tensor};
use nnguard_model::{Classifier, Differentiable, ModelError};

use crate::DefenseError;

/// The mean of several models' logits.
pub struct Ensemble {
    members: Vec<Arc<dyn Differentiable>>,
}

impl Ensemble {
    /// An ensemble of at least two models that take the same inputs (shape and range) and
    /// have the same classes.
    pub fn new(members: Vec<Arc<dyn Differentiable>>) -> Result<Self, DefenseError> {
        let Some(first) = members.first() else {
            return Err(DefenseError::config("--ensemble", "no model given"));
        };
        if members.len() < 2 {
            return Err(DefenseError::config(
                "--ensemble",
                "an ensemble needs at least 2 models",
            ));
        }
        for (i, m) in members.iter().enumerate().skip(1) {
            if m.input_shape() != first.input_shape()
                || m.num_classes() != first.num_classes()
                || m.bounds() != first.bounds()
            {
                return Err(DefenseError::config(
                    "--ensemble",
                    format!(
                        "model {} takes {:?} inputs in {:?} with {} classes, but model 1 takes {:?} in {:?} with {}",
                        i + 1,
                        m.input_shape(),
                        m.bounds(),
                        m.num_classes(),
                        first.input_shape(),
                        first.bounds(),
                        first.num_classes()
                    ),
                ));
            }
        }
        Ok(Self { members })
    }

    /// The members.
    pub fn members(&self) -> &[Arc<dyn Differentiable>] {
        &self.members
    }

    fn mean(&self, f: impl Fn(&dyn Differentiable) -> Tensor<2>) -> Tensor<2> {
        let mut sum = f(self.members[0].as_ref());
        for m in &self.members[1..] {
            sum = sum.add(f(m.as_ref()));
        }
        sum.div_scalar(self.members.len() as f32)
    }
}

impl Classifier for Ensemble {
    fn input_shape(&self) -> [usize; 3] {
        self.members[0].input_shape()
    }
    fn num_classes(&self) -> usize {
        self.members[0].num_classes()
    }
    fn bounds(&self) -> (f32, f32) {
        self.members[0].bounds()
    }
    fn device(&self) -> &Device {
        self.members[0].device()
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.mean(|m| m.logits(x.clone()))
    }
}

impl Differentiable for Ensemble {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.mean(|m| m.forward(x.clone()))
    }

    /// Every member's layers, as `m1/NAME`, `m2/NAME`, ...; `logits` is the ensemble's.
    fn layer_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                m.layer_names()
                    .into_iter()
                    .map(move |n| format!("m{}/{n}", i + 1))
            })
            .collect();
        out.push("logits".into());
        out
    }

    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        if layer == "logits" {
            return Ok(self.logits(x));
        }
        let member = layer
            .strip_prefix('m')
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(i, name)| Some((i.parse::<usize>().ok()?, name)));
        match member {
            Some((i, name)) if i >= 1 && i <= self.members.len() => {
                self.members[i - 1].features(x, name)
            }
            _ => Err(ModelError::UnknownLayer {
                name: layer.into(),
                available: self.layer_names().join(", "),
            }),
        }
    }
}

//! The feature-squeezing detector (Xu, Evans and Qi 2018, "Feature Squeezing: Detecting
//! Adversarial Examples in Deep Neural Networks"): an input's score is the largest L1
//! distance between the model's softmax output on the input and on a squeezed copy of it
//! (reduced bit depth, median filtered). Adversarial perturbations tend not to survive
//! squeezing, so the prediction moves; clean inputs' predictions stay put.

use std::sync::Arc;

use burn::tensor::activation::softmax;
use nnguard_model::Differentiable;
use nnguard_model::tensor::{Tensor, to_vec};

use super::Detector;
use crate::DefenseError;
use crate::transform::{InputTransform, build_transforms};

/// Settings of [`SqueezeDetector`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqueezeConfig {
    /// The squeezers as a transform spec; `None` means Xu et al.'s choices: 1-bit depth and a
    /// 2×2 median filter for grey images, 5-bit depth and a 2×2 median filter otherwise.
    pub squeezers: Option<String>,
}

impl SqueezeConfig {
    /// Builds the squeezers for inputs of `shape` in `bounds`.
    pub fn build(
        self,
        shape: [usize; 3],
        bounds: (f32, f32),
    ) -> Result<SqueezeDetector, DefenseError> {
        let spec = self.squeezers.unwrap_or_else(|| {
            if shape[0] == 1 {
                "squeeze:bits=1,median:2".into()
            } else {
                "squeeze:bits=5,median:2".into()
            }
        });
        let squeezers = build_transforms(&spec, shape, bounds, 0)?;
        if let Some(t) = squeezers.iter().find(|t| t.is_randomized()) {
            return Err(DefenseError::config(
                "--squeezers",
                format!(
                    "{} is randomised; squeezers must be deterministic",
                    t.name()
                ),
            ));
        }
        Ok(SqueezeDetector { squeezers })
    }
}

/// L1 distance between the softmax outputs of raw and squeezed inputs, maximised over the
/// squeezers.
pub struct SqueezeDetector {
    squeezers: Vec<Arc<dyn InputTransform>>,
}

impl Detector for SqueezeDetector {
    fn name(&self) -> String {
        "squeeze".into()
    }

    fn scores(&self, model: &dyn Differentiable, x: Tensor<4>) -> Result<Vec<f32>, DefenseError> {
        let b = x.dims()[0];
        let p = softmax(model.logits(x.clone()), 1);
        let mut best = vec![0.0f32; b];
        for s in &self.squeezers {
            let q = softmax(model.logits(s.apply(x.clone()).without_autodiff()), 1);
            let d = to_vec(p.clone().sub(q).abs().sum_dim(1));
            for (m, v) in best.iter_mut().zip(d) {
                *m = m.max(v);
            }
        }
        Ok(best)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "squeezers": self.squeezers.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "score": "max L1 distance of softmax outputs, raw vs squeezed",
            "reference": "Xu, Evans and Qi 2018",
        })
    }
}

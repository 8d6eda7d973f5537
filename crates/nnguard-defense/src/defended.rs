//! Defended models from command-line flags: `--ensemble` members averaged
//! ([`Ensemble`]) and `--transform` input transformations in front ([`Transformed`], with
//! `--eot` draws for randomised ones). What `nnguard eval`, `predict` and `attack` evaluate
//! when given these flags.

use std::sync::Arc;

use nnguard_model::{Classifier, Differentiable};

use crate::DefenseError;
use crate::ensemble::Ensemble;
use crate::transform::{GradientMode, Transformed, TransformedConfig, build_transforms};

/// The defence options of a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DefenseSpec {
    /// Input transformations (`--transform squeeze:bits=4,median:2`).
    pub transform: Option<String>,
    /// Draws averaged for randomised transforms (`--eot N`; default 8).
    pub eot: Option<usize>,
    /// How attacks differentiate non-differentiable transforms.
    pub gradient: GradientMode,
    /// Seed of randomised transforms.
    pub seed: u64,
}

impl DefenseSpec {
    /// Whether the spec changes the model at all.
    pub fn is_empty(&self) -> bool {
        self.transform.is_none()
    }
}

/// A model with its defences.
pub struct Defended {
    /// What attacks and the evaluation see.
    pub model: Arc<dyn Differentiable>,
    /// The transformation wrapper, when there are transforms.
    pub transformed: Option<Arc<Transformed>>,
    /// Number of models averaged (1 for a single model).
    pub members: usize,
    /// One line per defence, for reports.
    pub description: Vec<String>,
}

/// Builds the defended model: the mean of `members` (one or more models), behind the
/// transforms of `spec`.
pub fn defend(
    members: Vec<Arc<dyn Differentiable>>,
    spec: &DefenseSpec,
) -> Result<Defended, DefenseError> {
    let count = members.len();
    let mut description = Vec::new();
    let mut model: Arc<dyn Differentiable> = match count {
        0 => return Err(DefenseError::config("--model", "no model given")),
        1 => members
            .into_iter()
            .next()
            .ok_or_else(|| DefenseError::config("--model", "no model given"))?,
        n => {
            description.push(format!(
                "ensemble: mean of the logits of {n} models, attacked as one model"
            ));
            Arc::new(Ensemble::new(members)?)
        }
    };
    if spec.eot == Some(0) {
        return Err(DefenseError::config("--eot", "must be at least 1"));
    }
    let mut transformed = None;
    match &spec.transform {
        Some(t) => {
            let chain = build_transforms(t, model.input_shape(), model.bounds(), spec.seed)?;
            let wrapper = Arc::new(Transformed::new(
                model,
                chain,
                TransformedConfig {
                    eot: spec.eot.unwrap_or(TransformedConfig::default().eot),
                    gradient: spec.gradient,
                },
            )?);
            if spec.eot.is_some() && !wrapper.is_randomized() {
                description.push("--eot has no effect: no transform is randomised".into());
            }
            description.extend(wrapper.describe());
            model = wrapper.clone();
            transformed = Some(wrapper);
        }
        None if spec.eot.is_some() => {
            return Err(DefenseError::config(
                "--eot",
                "applies to randomised input transformations; give --transform",
            ));
        }
        None => {}
    }
    Ok(Defended {
        model,
        transformed,
        members: count,
        description,
    })
}

/// The same attack run through the true gradient of a transformed model and through BPDA:
/// how much of the transforms' apparent robustness is gradient masking.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskingComparison {
    /// The attack (`pgd`).
    pub attack: String,
    /// Correctly classified inputs attacked.
    pub attempted: usize,
    /// Inputs still classified correctly after the attack on the true gradient.
    pub robust_plain: usize,
    /// Inputs still classified correctly after the same attack through BPDA.
    pub robust_bpda: usize,
}

impl MaskingComparison {
    /// Robust fraction (of the attempted inputs) under the true-gradient attack.
    pub fn plain_rate(&self) -> f64 {
        self.robust_plain as f64 / self.attempted.max(1) as f64
    }

    /// Robust fraction under the BPDA attack.
    pub fn bpda_rate(&self) -> f64 {
        self.robust_bpda as f64 / self.attempted.max(1) as f64
    }

    /// Whether BPDA broke clearly more inputs than the true gradient did (more than 5% of
    /// the attempted inputs and at least two): the transforms mask gradients.
    pub fn masks_gradients(&self) -> bool {
        let gap = self.robust_plain.saturating_sub(self.robust_bpda);
        gap >= 2 && gap as f64 > 0.05 * self.attempted as f64
    }
}

/// Runs the registry attack `attack` (with `params`) on the inputs `transformed` classifies
/// correctly, once on its true gradient ([`GradientMode::Plain`]) and once through BPDA, and
/// counts the survivors of each (Athalye, Carlini and Wagner 2018). The judge of both runs is
/// the deployed defence (`logits`), so only the gradients differ.
pub fn masking_comparison(
    transformed: &Transformed,
    attack: &str,
    params: &nnguard_attack::evasion::AttackParams,
    images: &[f32],
    labels: &[u32],
    batch_size: usize,
    seed: u64,
) -> Result<MaskingComparison, DefenseError> {
    let plain: Arc<dyn Differentiable> = Arc::new(transformed.with_gradient(GradientMode::Plain));
    let bpda: Arc<dyn Differentiable> = Arc::new(transformed.with_gradient(GradientMode::Bpda));
    let per: usize = transformed.input_shape().iter().product();
    let mut correct_x = Vec::new();
    let mut correct_y = Vec::new();
    for (x, y) in images
        .chunks(per * batch_size.max(1))
        .zip(labels.chunks(batch_size.max(1)))
    {
        let t =
            nnguard_model::tensor::batch_tensor(x, transformed.input_shape(), transformed.device());
        let pred = nnguard_model::tensor::argmax_rows(
            &nnguard_model::tensor::to_vec(transformed.logits(t)),
            transformed.num_classes(),
        );
        for (i, (&p, &l)) in pred.iter().zip(y).enumerate() {
            if p == l {
                correct_x.extend_from_slice(&x[i * per..(i + 1) * per]);
                correct_y.push(l);
            }
        }
    }
    let survivors = |model: &Arc<dyn Differentiable>| -> Result<usize, DefenseError> {
        let broken = crate::detect::adversarial_examples(
            model.as_ref(),
            attack,
            params,
            Some(params.eps),
            &correct_x,
            &correct_y,
            batch_size,
            seed,
        )?;
        Ok(correct_y.len() - broken.len() / per.max(1))
    };
    Ok(MaskingComparison {
        attack: attack.into(),
        attempted: correct_y.len(),
        robust_plain: survivors(&plain)?,
        robust_bpda: survivors(&bpda)?,
    })
}

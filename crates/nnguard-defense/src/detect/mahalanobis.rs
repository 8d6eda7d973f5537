//! The Mahalanobis detector (Lee, Lee, Lee and Shin 2018, "A Simple Unified Framework for
//! Detecting Out-of-Distribution Samples and Adversarial Attacks"): class-conditional
//! Gaussians with one shared ("tied") covariance are fitted to the penultimate features of
//! clean training images; an input's score is its smallest Mahalanobis distance to a class
//! mean, `min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c)`. This is the paper's basic score on one layer,
//! without its input preprocessing or layer ensemble.

use nnguard_model::Differentiable;
use nnguard_model::tensor::{Tensor, to_vec};

use super::linalg::{forward_solve, regularised_cholesky};
use super::{Detector, layer_features, penultimate_layer};
use crate::DefenseError;

/// Settings of [`Mahalanobis`].
#[derive(Debug, Clone, PartialEq)]
pub struct MahalanobisConfig {
    /// The layer whose features are modelled; `None` means the penultimate layer.
    pub layer: Option<String>,
    /// Ridge added to the covariance, relative to its mean diagonal, so that it can be
    /// inverted when features are (nearly) collinear, as ReLU features often are.
    pub ridge: f64,
}

impl Default for MahalanobisConfig {
    /// The penultimate layer, ridge 1e-6.
    fn default() -> Self {
        Self {
            layer: None,
            ridge: 1e-6,
        }
    }
}

impl MahalanobisConfig {
    /// Fits the class means and the tied covariance on contiguous clean `images` with their
    /// `labels`.
    pub fn fit(
        self,
        model: &dyn Differentiable,
        images: &[f32],
        labels: &[u32],
        batch_size: usize,
    ) -> Result<Mahalanobis, DefenseError> {
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return Err(DefenseError::config(
                "ridge",
                format!("must be a number ≥ 0, got {}", self.ridge),
            ));
        }
        let layer = match self.layer {
            Some(l) => l,
            None => penultimate_layer(model)?,
        };
        let (f, d) = layer_features(model, images, &layer, batch_size)?;
        let k = model.num_classes();
        let n = labels.len();
        if d == 0 || n < 2 || f.len() != n * d {
            return Err(DefenseError::config(
                "--fit",
                format!("need at least 2 fitting images with features, got {n}"),
            ));
        }
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for (row, &y) in f.chunks(d).zip(labels) {
            let y = y as usize;
            if y >= k {
                continue;
            }
            counts[y] += 1;
            for (s, &v) in sums[y * d..(y + 1) * d].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let classes: Vec<usize> = (0..k).filter(|&c| counts[c] > 0).collect();
        if classes.len() < 2 {
            return Err(DefenseError::config(
                "--fit",
                "the fitting images cover fewer than 2 classes",
            ));
        }
        let means: Vec<Vec<f64>> = classes
            .iter()
            .map(|&c| {
                sums[c * d..(c + 1) * d]
                    .iter()
                    .map(|s| s / counts[c] as f64)
                    .collect()
            })
            .collect();
        let index_of = |y: usize| classes.iter().position(|&c| c == y);
        let mut cov = vec![0.0f64; d * d];
        let mut used = 0usize;
        let mut centred = vec![0.0f64; d];
        for (row, &y) in f.chunks(d).zip(labels) {
            let Some(ci) = index_of(y as usize) else {
                continue;
            };
            used += 1;
            for j in 0..d {
                centred[j] = f64::from(row[j]) - means[ci][j];
            }
            for a in 0..d {
                let ca = centred[a];
                if ca == 0.0 {
                    continue;
                }
                for b in 0..=a {
                    cov[a * d + b] += ca * centred[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..=a {
                let v = cov[a * d + b] / used as f64;
                cov[a * d + b] = v;
                cov[b * d + a] = v;
            }
        }
        let mean_diag = (0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64;
        let (chol, ridge) = regularised_cholesky(&cov, d, self.ridge * mean_diag.max(1e-12))
            .ok_or_else(|| DefenseError::Unsupported {
                what: "the Mahalanobis detector".into(),
                reason: format!("the covariance of layer {layer} cannot be inverted"),
            })?;
        let whitened_means = means.iter().map(|m| forward_solve(&chol, m, d)).collect();
        Ok(Mahalanobis {
            layer,
            dim: d,
            chol,
            whitened_means,
            classes,
            ridge,
        })
    }
}

/// Smallest Mahalanobis distance of a layer's features to the class means.
#[derive(Debug, Clone)]
pub struct Mahalanobis {
    layer: String,
    dim: usize,
    /// Cholesky factor `L` of the covariance (`Σ = L·Lᵀ`), row-major.
    chol: Vec<f64>,
    /// `L⁻¹·μ_c` per class, so that the distance is `‖L⁻¹f − L⁻¹μ_c‖²`.
    whitened_means: Vec<Vec<f64>>,
    classes: Vec<usize>,
    ridge: f64,
}

impl Mahalanobis {
    /// The distance of one feature vector to each class mean, in class order.
    pub fn distances(&self, features: &[f32]) -> Vec<f64> {
        let f: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        let z = forward_solve(&self.chol, &f, self.dim);
        self.whitened_means
            .iter()
            .map(|m| z.iter().zip(m).map(|(a, b)| (a - b) * (a - b)).sum())
            .collect()
    }
}

impl Detector for Mahalanobis {
    fn name(&self) -> String {
        "mahalanobis".into()
    }

    fn scores(&self, model: &dyn Differentiable, x: Tensor<4>) -> Result<Vec<f32>, DefenseError> {
        let f = to_vec(model.features(x, &self.layer)?);
        Ok(f.chunks(self.dim.max(1))
            .map(|row| {
                self.distances(row)
                    .into_iter()
                    .fold(f64::INFINITY, f64::min) as f32
            })
            .collect())
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "layer": self.layer,
            "features": self.dim,
            "classes": self.classes,
            "covariance": "tied",
            "ridge": self.ridge,
            "score": "min over classes of the Mahalanobis distance",
            "reference": "Lee et al. 2018",
        })
    }
}

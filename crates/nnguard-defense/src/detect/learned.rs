//! A detector that learns from activations, in the spirit of Metzen et al. (2017, "On
//! Detecting Adversarial Perturbations"), with a linear model instead of a subnetwork: an
//! L2-regularised logistic regression on the standardised activations of chosen layers
//! (by default the penultimate layer and the logits), trained to separate clean inputs from
//! PGD examples of a held-out part of the training split. The score is the regression's
//! log-odds of "adversarial".

use nnguard_model::Differentiable;
use nnguard_model::tensor::Tensor;

use super::linalg::solve_spd;
use super::{Detector, layer_features, penultimate_layer};
use crate::DefenseError;

/// Settings of [`LearnedDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedConfig {
    /// Layers whose activations are concatenated; `None` means the penultimate layer and the
    /// logits.
    pub layers: Option<Vec<String>>,
    /// L2 penalty on the weights (per training example).
    pub l2: f64,
    /// Newton (IRLS) iterations.
    pub iterations: usize,
}

impl Default for LearnedConfig {
    /// Penultimate layer and logits, penalty 1e-3, 20 Newton iterations.
    fn default() -> Self {
        Self {
            layers: None,
            l2: 1e-3,
            iterations: 20,
        }
    }
}

/// Concatenated activations of `layers` for `images`; returns rows and their width.
fn activations(
    model: &dyn Differentiable,
    images: &[f32],
    layers: &[String],
    batch: usize,
) -> Result<(Vec<f64>, usize), DefenseError> {
    let per: usize = model.input_shape().iter().product();
    let n = images.len() / per.max(1);
    let mut parts = Vec::new();
    let mut width = 0;
    for l in layers {
        let (f, d) = layer_features(model, images, l, batch)?;
        width += d;
        parts.push((f, d));
    }
    let mut rows = Vec::with_capacity(n * width);
    for i in 0..n {
        for (f, d) in &parts {
            rows.extend(f[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)));
        }
    }
    Ok((rows, width))
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

impl LearnedConfig {
    /// Trains on contiguous `clean` and `adversarial` images.
    pub fn fit(
        self,
        model: &dyn Differentiable,
        clean: &[f32],
        adversarial: &[f32],
        batch_size: usize,
    ) -> Result<LearnedDetector, DefenseError> {
        if !(self.l2.is_finite() && self.l2 > 0.0) {
            return Err(DefenseError::config(
                "l2",
                format!("must be a positive number, got {}", self.l2),
            ));
        }
        if self.iterations == 0 {
            return Err(DefenseError::config("iterations", "must be at least 1"));
        }
        let layers = match self.layers {
            Some(l) if !l.is_empty() => l,
            Some(_) => return Err(DefenseError::config("--layers", "no layer given")),
            None => {
                let names = model.layer_names();
                let mut l = vec![penultimate_layer(model)?];
                if let Some(last) = names.last() {
                    l.push(last.clone());
                }
                l
            }
        };
        let (neg, d) = activations(model, clean, &layers, batch_size)?;
        let (pos, _) = activations(model, adversarial, &layers, batch_size)?;
        let (nn, np) = (neg.len() / d.max(1), pos.len() / d.max(1));
        if nn == 0 || np == 0 {
            return Err(DefenseError::config(
                "--fit",
                format!(
                    "the learned detector needs clean and adversarial training examples, got {nn} and {np}"
                ),
            ));
        }
        let n = nn + np;
        // Standardise every feature over both classes.
        let mut mean = vec![0.0f64; d];
        for row in neg.chunks(d).chain(pos.chunks(d)) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n as f64;
            }
        }
        let mut scale = vec![0.0f64; d];
        for row in neg.chunks(d).chain(pos.chunks(d)) {
            for j in 0..d {
                scale[j] += (row[j] - mean[j]).powi(2) / n as f64;
            }
        }
        for s in &mut scale {
            *s = if *s > 1e-12 { 1.0 / s.sqrt() } else { 0.0 };
        }
        // Design matrix with a leading 1 for the bias.
        let p = d + 1;
        let mut x = Vec::with_capacity(n * p);
        let mut y = Vec::with_capacity(n);
        for (row, label) in neg
            .chunks(d)
            .map(|r| (r, 0.0))
            .chain(pos.chunks(d).map(|r| (r, 1.0)))
        {
            x.push(1.0);
            x.extend((0..d).map(|j| (row[j] - mean[j]) * scale[j]));
            y.push(label);
        }
        // Class-balanced weights, so that the detector does not favour the larger set.
        let w_neg = n as f64 / (2.0 * nn as f64);
        let w_pos = n as f64 / (2.0 * np as f64);
        let mut beta = vec![0.0f64; p];
        let lambda = self.l2 * n as f64;
        for _ in 0..self.iterations {
            let mut grad = vec![0.0f64; p];
            let mut hess = vec![0.0f64; p * p];
            for i in 0..n {
                let xi = &x[i * p..(i + 1) * p];
                let t: f64 = xi.iter().zip(&beta).map(|(a, b)| a * b).sum();
                let mu = sigmoid(t);
                let w = if y[i] > 0.5 { w_pos } else { w_neg };
                let r = w * (mu - y[i]);
                let h = w * (mu * (1.0 - mu)).max(1e-10);
                for a in 0..p {
                    grad[a] += r * xi[a];
                    let ha = h * xi[a];
                    if ha == 0.0 {
                        continue;
                    }
                    for b in 0..=a {
                        hess[a * p + b] += ha * xi[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += lambda * beta[a];
                hess[a * p + a] += lambda;
            }
            for a in 0..p {
                for b in 0..a {
                    hess[b * p + a] = hess[a * p + b];
                }
            }
            let Some(step) = solve_spd(&hess, &grad, p, 1e-9) else {
                break;
            };
            let mut change = 0.0f64;
            for (b, s) in beta.iter_mut().zip(&step) {
                *b -= s;
                change = change.max(s.abs());
            }
            if change < 1e-8 {
                break;
            }
        }
        Ok(LearnedDetector {
            layers,
            mean,
            scale,
            beta,
            trained_on: (nn, np),
        })
    }
}

/// Logistic regression on standardised activations.
#[derive(Debug, Clone)]
pub struct LearnedDetector {
    layers: Vec<String>,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Bias, then one weight per feature.
    beta: Vec<f64>,
    trained_on: (usize, usize),
}

impl Detector for LearnedDetector {
    fn name(&self) -> String {
        "learned".into()
    }

    fn scores(&self, model: &dyn Differentiable, x: Tensor<4>) -> Result<Vec<f32>, DefenseError> {
        let b = x.dims()[0];
        let d = self.mean.len();
        let mut parts = Vec::new();
        for l in &self.layers {
            parts.push(nnguard_model::tensor::to_vec(model.features(x.clone(), l)?));
        }
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let mut t = self.beta[0];
            let mut j = 0;
            for f in &parts {
                let w = f.len() / b.max(1);
                for &v in &f[i * w..(i + 1) * w] {
                    if j < d {
                        t += self.beta[j + 1] * (f64::from(v) - self.mean[j]) * self.scale[j];
                    }
                    j += 1;
                }
            }
            out.push(t as f32);
        }
        Ok(out)
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "layers": self.layers,
            "features": self.mean.len(),
            "model": "L2-regularised logistic regression (IRLS) on standardised activations",
            "trained_on": {"clean": self.trained_on.0, "adversarial": self.trained_on.1},
            "score": "log-odds of adversarial",
        })
    }
}

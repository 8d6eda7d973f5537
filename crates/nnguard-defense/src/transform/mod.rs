//! Input transformations that wrap any model, one file each, and [`Transformed`], the model
//! they make.
//!
//! | spec | transform | gradient |
//! |---|---|---|
//! | `squeeze:bits=N` | [`BitDepth`]: colour-depth reduction (Xu, Evans and Qi 2018) | BPDA |
//! | `median:K` | [`MedianFilter`]: K×K median filter (Xu, Evans and Qi 2018) | exact |
//! | `jpeg:quality=Q` | [`Jpeg`]: JPEG compression (Dziugaite et al. 2016; Guo et al. 2018) | BPDA |
//! | `smooth:sigma=S` | [`GaussianSmoothing`]: Gaussian spatial smoothing | exact |
//! | `tv:weight=W` | [`TotalVariation`]: TV minimisation (Guo et al. 2018) | BPDA |
//! | `resize-pad:min=M` | [`ResizePad`]: random resize and pad (Xie et al. 2018) | exact, randomised |
//!
//! A transform either computes its output with Burn ops on the (tracked) input, so its exact
//! gradient is available, or it is a non-differentiable step whose backward pass is
//! approximated (BPDA, Athalye, Carlini and Wagner 2018): by default with the identity, the
//! straight-through estimator `x + (T(x) − x).detach()`. Randomised transforms are attacked
//! with Expectation over Transformation (EOT, Athalye et al. 2018): [`Transformed`] averages
//! `eot` passes in its differentiable forward.
//!
//! Transforms are built for an input shape and range, and one that does not fit (a JPEG of
//! two-channel images, a median window larger than the image) is an error at build time.

mod bit_depth;
mod jpeg;
mod median;
mod resize_pad;
mod smoothing;
mod tv;

pub use bit_depth::{BitDepth, BitDepthConfig};
pub use jpeg::{Jpeg, JpegConfig};
pub use median::{MedianConfig, MedianFilter};
pub use resize_pad::{ResizePad, ResizePadConfig};
pub use smoothing::{GaussianSmoothing, SmoothingConfig};
pub use tv::{TotalVariation, TvConfig};

use std::sync::Arc;

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use nnguard_model::{Classifier, Differentiable, ModelError};

use crate::DefenseError;

/// An input transformation placed in front of a model.
pub trait InputTransform: Send + Sync {
    /// The transform as a spec (`squeeze:bits=4`), for reports.
    fn name(&self) -> String;

    /// The transform's output for a batch `[B, C, H, W]`. A differentiable transform records
    /// the autodiff graph when `x` is tracked; any other returns plain values.
    fn apply(&self, x: Tensor<4>) -> Tensor<4>;

    /// Whether [`InputTransform::apply`] is built from differentiable Burn ops, so that its
    /// exact gradient is available.
    fn is_differentiable(&self) -> bool {
        false
    }

    /// The differentiable stand-in whose gradient replaces the transform's on the backward
    /// pass (BPDA, Athalye et al. 2018). The default is the identity: the backward pass is
    /// straight-through. Used only for transforms that are not differentiable.
    fn backward(&self, x: Tensor<4>) -> Tensor<4> {
        x
    }

    /// Whether two applications to the same input may differ (then EOT is needed).
    fn is_randomized(&self) -> bool {
        false
    }
}

/// How [`Transformed`] differentiates through transforms that are not differentiable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientMode {
    /// Backward Pass Differentiable Approximation: the transform's `backward` stand-in (the
    /// identity by default). What an adaptive attack uses.
    #[default]
    Bpda,
    /// The true gradient of the computation: zero through a non-differentiable step. What a
    /// naive evaluation sees; kept to show how much a transform hides.
    Plain,
}

/// Every transform spec name with a one-line description.
pub const TRANSFORMS: &[(&str, &str)] = &[
    (
        "squeeze",
        "bit-depth reduction to bits=N (1-8) bits per value (feature squeezing)",
    ),
    ("median", "K×K median filter (feature squeezing), median:K"),
    ("jpeg", "JPEG compression at quality=Q (1-100)"),
    ("smooth", "Gaussian spatial smoothing with sigma=S pixels"),
    (
        "tv",
        "total-variation minimisation (Chambolle) with weight=W and iters=N",
    ),
    (
        "resize-pad",
        "random resize to min=M..H pixels and random zero padding back (randomised)",
    ),
];

/// One parsed `name:args` item: positional value and `key=value` pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformSpec {
    /// The transform's name.
    pub name: String,
    /// `key=value` arguments; a bare value is stored under the key `""`.
    pub args: Vec<(String, String)>,
}

impl TransformSpec {
    /// The value of `key` (or of the bare value when `key` is the transform's main
    /// parameter), parsed; `None` when absent.
    pub fn get<T: std::str::FromStr>(
        &self,
        key: &str,
        main: bool,
    ) -> Result<Option<T>, DefenseError> {
        let found = self
            .args
            .iter()
            .find(|(k, _)| k == key || (main && k.is_empty()));
        match found {
            None => Ok(None),
            Some((_, v)) => v.parse::<T>().map(Some).map_err(|_| {
                DefenseError::config(
                    "--transform",
                    format!("{}: {key}={v:?} is not a valid value", self.name),
                )
            }),
        }
    }

    /// Rejects keys other than `known` (the bare value counts as the first of them).
    pub fn only(&self, known: &[&str]) -> Result<(), DefenseError> {
        if let Some((k, _)) = self
            .args
            .iter()
            .find(|(k, _)| !k.is_empty() && !known.contains(&k.as_str()))
        {
            return Err(DefenseError::config(
                "--transform",
                format!(
                    "{} takes {}, not {k:?}",
                    self.name,
                    if known.is_empty() {
                        "no parameters".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if self.args.iter().filter(|(k, _)| k.is_empty()).count() > 1 {
            return Err(DefenseError::config(
                "--transform",
                format!("{}: more than one bare value", self.name),
            ));
        }
        Ok(())
    }
}

/// Parses `name[:arg[:arg...]][,name...]` where each arg is `key=value` or a bare value for
/// the transform's main parameter: `squeeze:bits=4,median:2`.
pub fn parse_specs(spec: &str) -> Result<Vec<TransformSpec>, DefenseError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(DefenseError::config(
                "--transform",
                format!("empty transform in {spec:?}"),
            ));
        }
        let mut parts = item.split(':').map(str::trim);
        let name = parts.next().unwrap_or_default().to_string();
        let args = parts
            .map(|a| match a.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                None => (String::new(), a.to_string()),
            })
            .collect();
        out.push(TransformSpec { name, args });
    }
    Ok(out)
}

/// Builds the transforms of `spec` for inputs of `shape` in `bounds`; randomised transforms
/// draw from seeds derived from `seed`.
pub fn build_transforms(
    spec: &str,
    shape: [usize; 3],
    bounds: (f32, f32),
    seed: u64,
) -> Result<Vec<Arc<dyn InputTransform>>, DefenseError> {
    let mut out: Vec<Arc<dyn InputTransform>> = Vec::new();
    for (i, s) in parse_specs(spec)?.into_iter().enumerate() {
        let t: Arc<dyn InputTransform> = match s.name.as_str() {
            "squeeze" | "bits" => {
                s.only(&["bits"])?;
                let d = BitDepthConfig::default();
                Arc::new(
                    BitDepthConfig {
                        bits: s.get("bits", true)?.unwrap_or(d.bits),
                    }
                    .build(shape, bounds)?,
                )
            }
            "median" => {
                s.only(&["size"])?;
                let d = MedianConfig::default();
                Arc::new(
                    MedianConfig {
                        size: s.get("size", true)?.unwrap_or(d.size),
                    }
                    .build(shape)?,
                )
            }
            "jpeg" => {
                s.only(&["quality"])?;
                let d = JpegConfig::default();
                Arc::new(
                    JpegConfig {
                        quality: s.get("quality", true)?.unwrap_or(d.quality),
                    }
                    .build(shape, bounds)?,
                )
            }
            "smooth" => {
                s.only(&["sigma"])?;
                let d = SmoothingConfig::default();
                Arc::new(
                    SmoothingConfig {
                        sigma: s.get("sigma", true)?.unwrap_or(d.sigma),
                    }
                    .build(shape)?,
                )
            }
            "tv" => {
                s.only(&["weight", "iters"])?;
                let d = TvConfig::default();
                Arc::new(
                    TvConfig {
                        weight: s.get("weight", true)?.unwrap_or(d.weight),
                        iterations: s.get("iters", false)?.unwrap_or(d.iterations),
                    }
                    .build(shape)?,
                )
            }
            "resize-pad" => {
                s.only(&["min"])?;
                let d = ResizePadConfig::default();
                Arc::new(
                    ResizePadConfig {
                        min_size: s.get("min", true)?.or(d.min_size),
                        seed: seed.wrapping_add(i as u64),
                    }
                    .build(shape)?,
                )
            }
            other => {
                return Err(DefenseError::config(
                    "--transform",
                    format!(
                        "unknown transform {other:?}; available: {}",
                        TRANSFORMS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        out.push(t);
    }
    if out.is_empty() {
        return Err(DefenseError::config("--transform", "no transform given"));
    }
    Ok(out)
}

/// Settings of [`Transformed`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransformedConfig {
    /// Passes averaged by the differentiable forward when a transform is randomised
    /// (`--eot`); at least 1.
    pub eot: usize,
    /// How non-differentiable transforms are differentiated.
    pub gradient: GradientMode,
}

impl Default for TransformedConfig {
    /// EOT over 8 passes, BPDA.
    fn default() -> Self {
        Self {
            eot: 8,
            gradient: GradientMode::Bpda,
        }
    }
}

/// A model behind a chain of input transformations, itself a [`Differentiable`] model.
///
/// - `logits` applies the transforms exactly, one random draw per call for randomised ones
///   (the defence as deployed);
/// - `forward` (and so `input_gradient`) uses each transform's exact gradient where it has
///   one and BPDA elsewhere (or, in [`GradientMode::Plain`], the zero gradient of the
///   non-differentiable step), averaged over `eot` draws when a transform is randomised.
pub struct Transformed {
    inner: Arc<dyn Differentiable>,
    chain: Vec<Arc<dyn InputTransform>>,
    config: TransformedConfig,
}

impl Transformed {
    /// Wraps `inner` behind `chain` (applied in order).
    pub fn new(
        inner: Arc<dyn Differentiable>,
        chain: Vec<Arc<dyn InputTransform>>,
        config: TransformedConfig,
    ) -> Result<Self, DefenseError> {
        if config.eot == 0 {
            return Err(DefenseError::config("--eot", "must be at least 1"));
        }
        if chain.is_empty() {
            return Err(DefenseError::config("--transform", "no transform given"));
        }
        Ok(Self {
            inner,
            chain,
            config,
        })
    }

    /// The same defence with another gradient mode (for the gradient-masking comparison).
    pub fn with_gradient(&self, gradient: GradientMode) -> Self {
        Self {
            inner: self.inner.clone(),
            chain: self.chain.clone(),
            config: TransformedConfig {
                gradient,
                ..self.config
            },
        }
    }

    /// The transforms, in order.
    pub fn transforms(&self) -> &[Arc<dyn InputTransform>] {
        &self.chain
    }

    /// The settings.
    pub fn config(&self) -> TransformedConfig {
        self.config
    }

    /// Whether any transform is randomised.
    pub fn is_randomized(&self) -> bool {
        self.chain.iter().any(|t| t.is_randomized())
    }

    /// Whether any transform is differentiated with BPDA (or hides its gradient in plain
    /// mode).
    pub fn has_non_differentiable(&self) -> bool {
        self.chain.iter().any(|t| !t.is_differentiable())
    }

    /// One line per transform saying how attacks differentiate through it.
    pub fn describe(&self) -> Vec<String> {
        self.chain
            .iter()
            .map(|t| {
                let how = match (t.is_differentiable(), self.config.gradient) {
                    (true, _) => "exact gradient".to_string(),
                    (false, GradientMode::Bpda) => {
                        "BPDA (straight-through backward pass)".to_string()
                    }
                    (false, GradientMode::Plain) => {
                        "true gradient (zero through this non-differentiable step)".to_string()
                    }
                };
                let eot = if t.is_randomized() {
                    format!(", randomised: EOT over {} draws", self.config.eot)
                } else {
                    String::new()
                };
                format!("{}: {how}{eot}", t.name())
            })
            .collect()
    }

    /// The transformed inputs, exact values (no graph).
    pub fn transform(&self, x: Tensor<4>) -> Tensor<4> {
        self.chain
            .iter()
            .fold(x.without_autodiff(), |x, t| t.apply(x).without_autodiff())
    }

    fn transform_graph(&self, x: Tensor<4>) -> Tensor<4> {
        self.chain.iter().fold(x, |x, t| {
            if t.is_differentiable() {
                return t.apply(x);
            }
            let plain = x.clone().detach();
            let value = t.apply(plain.clone().without_autodiff());
            let device = x.device();
            let value = Tensor::<4>::from_data(value.into_data(), &device);
            match self.config.gradient {
                GradientMode::Bpda => {
                    let stand_in = t.backward(x);
                    let offset = value.sub(t.backward(plain)).detach();
                    stand_in.add(offset)
                }
                // Connected to the input with weight zero, so gradients are exactly zero.
                GradientMode::Plain => x.mul_scalar(0.0).add(value),
            }
        })
    }
}

impl Classifier for Transformed {
    nnguard_model::delegate_classifier_geometry!(inner);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.inner.logits(self.transform(x))
    }
}

impl Differentiable for Transformed {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let passes = if self.is_randomized() {
            self.config.eot
        } else {
            1
        };
        let mut sum = self.inner.forward(self.transform_graph(x.clone()));
        for _ in 1..passes {
            sum = sum.add(self.inner.forward(self.transform_graph(x.clone())));
        }
        if passes > 1 {
            sum.div_scalar(passes as f32)
        } else {
            sum
        }
    }
    fn layer_names(&self) -> Vec<String> {
        self.inner.layer_names()
    }
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        self.inner.features(self.transform(x), layer)
    }
}

/// Applies `f` to every `[H, W]` plane of a batch on the host and returns the result on the
/// batch's device.
pub(crate) fn map_planes(x: Tensor<4>, mut f: impl FnMut(&mut [f32], usize, usize)) -> Tensor<4> {
    let dims = x.dims();
    let device = x.device();
    let mut v = to_vec(x);
    let (h, w) = (dims[2], dims[3]);
    if h * w > 0 {
        for plane in v.chunks_mut(h * w) {
            f(plane, h, w);
        }
    }
    Tensor::from_data(TensorData::new(v, dims), &device)
}

/// A shape error for transform `what`.
pub(crate) fn misfit(what: &str, shape: [usize; 3], reason: impl Into<String>) -> DefenseError {
    DefenseError::ShapeMismatch {
        what: what.to_string(),
        shape,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_names_bare_values_and_keys() {
        let s = parse_specs("squeeze:bits=4, median:2,tv:weight=0.1:iters=5").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].get::<u32>("bits", true).unwrap(), Some(4));
        assert_eq!(s[1].get::<usize>("size", true).unwrap(), Some(2));
        assert_eq!(s[2].get::<usize>("iters", false).unwrap(), Some(5));
        assert!(s[0].get::<u32>("bits", true).is_ok());
        assert!(parse_specs("squeeze,,median").is_err());
    }

    #[test]
    fn every_listed_transform_builds_and_bad_ones_name_the_flag() {
        for (name, _) in TRANSFORMS {
            let t = build_transforms(name, [1, 28, 28], (0.0, 1.0), 0).unwrap();
            assert_eq!(t.len(), 1, "{name}");
        }
        for bad in [
            "nope",
            "squeeze:bits=0",
            "squeeze:bits=9",
            "squeeze:depth=3",
            "median:0",
            "median:40",
            "jpeg:quality=0",
            "jpeg:quality=101",
            "smooth:sigma=-1",
            "tv:weight=0",
            "tv:iters=0",
            "resize-pad:min=40",
            "resize-pad:min=0",
            "squeeze:bits=x",
            "median:2:3",
        ] {
            let e = build_transforms(bad, [1, 28, 28], (0.0, 1.0), 0)
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            let msg = e.to_string();
            assert!(
                msg.contains("--transform") || matches!(e, DefenseError::ShapeMismatch { .. }),
                "{bad}: {msg}"
            );
        }
        // JPEG codes grey or RGB images only.
        assert!(matches!(
            build_transforms("jpeg", [2, 28, 28], (0.0, 1.0), 0),
            Err(DefenseError::ShapeMismatch { .. })
        ));
    }
}

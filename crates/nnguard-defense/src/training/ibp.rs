//! Interval bound propagation training (Gowal et al. 2018, "On the Effectiveness of Interval
//! Bound Propagation for Training Verifiably Robust Models").
//!
//! The L∞ box `[x − ε, x + ε] ∩ [lo, hi]` is pushed through the built-in network layer by
//! layer with Burn ops, so the bounds are differentiable with respect to the weights:
//!
//! - affine layers (Linear, Conv2d, batch norm in its inference form with the running
//!   statistics) map the centre `m` and radius `r` of the box to `A·m + b` and `|A|·r`;
//! - monotone layers (ReLU, max-pool, average pool, the normalisation inside the model) map
//!   the lower and upper bounds separately;
//! - a residual add adds the bounds of its two branches.
//!
//! The last layer is folded into the specification (Gowal et al.'s elision): for every class
//! `j` the upper bound of `z_j − z_y` is taken directly from the penultimate box, which is
//! tighter than subtracting the logit bounds. Training minimises
//! `κ·CE(z(x), y) + (1 − κ)·CE(ẑ(x, ε), y)` with `ẑ_j` those upper bounds (`ẑ_y = 0`), while ε
//! ramps up from 0 on the [`EpsSchedule`] and κ falls from 1 to `kappa_end` with it.
//!
//! Batch norm is bounded with its running statistics (the network as deployed and certified);
//! the clean term still trains it with batch statistics.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, conv2d};
use burn::tensor::ops::ConvOptions;
use nnguard_model::arch::Network;
use nnguard_model::tensor::{Int, Tensor, TensorData};
use nnguard_model::train::{Batch, TrainObjective};
use nnguard_model::{Backbone, Loss, Model, ModelError, Normalize};

use super::{EpsSchedule, check_eps};
use crate::DefenseError;

/// Lower and upper bounds of a tensor, elementwise.
#[derive(Debug, Clone)]
pub struct Interval<const D: usize> {
    /// Elementwise lower bounds.
    pub lower: Tensor<D>,
    /// Elementwise upper bounds.
    pub upper: Tensor<D>,
}

impl<const D: usize> Interval<D> {
    fn centre_radius(&self) -> (Tensor<D>, Tensor<D>) {
        (
            self.lower.clone().add(self.upper.clone()).mul_scalar(0.5),
            self.upper.clone().sub(self.lower.clone()).mul_scalar(0.5),
        )
    }

    fn from_centre_radius(m: Tensor<D>, r: Tensor<D>) -> Self {
        Self {
            lower: m.clone().sub(r.clone()),
            upper: m.add(r),
        }
    }

    /// Applies a monotone non-decreasing function to both bounds.
    fn monotone(self, f: impl Fn(Tensor<D>) -> Tensor<D>) -> Self {
        Self {
            lower: f(self.lower),
            upper: f(self.upper),
        }
    }

    fn add(self, o: Self) -> Self {
        Self {
            lower: self.lower.add(o.lower),
            upper: self.upper.add(o.upper),
        }
    }
}

fn linear(l: &Linear, iv: Interval<2>) -> Interval<2> {
    let (m, r) = iv.centre_radius();
    let m = l.forward(m);
    let r = r.matmul(l.weight.val().abs());
    Interval::from_centre_radius(m, r)
}

fn conv_options(c: &Conv2d) -> Result<ConvOptions<2>, DefenseError> {
    let padding = match c.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => {
            return Err(DefenseError::Unsupported {
                what: "interval bound propagation".into(),
                reason: "Conv2d with `same` padding".into(),
            });
        }
    };
    Ok(ConvOptions::new_with_padding(
        c.stride, padding, c.dilation, c.groups,
    ))
}

fn conv(c: &Conv2d, iv: Interval<4>) -> Result<Interval<4>, DefenseError> {
    let options = conv_options(c)?;
    let (m, r) = iv.centre_radius();
    let m = c.forward(m);
    let r = conv2d(r, c.weight.val().abs(), None, options);
    Ok(Interval::from_centre_radius(m, r))
}

/// Batch norm in inference form: a per-channel affine map with the running statistics.
fn batch_norm(bn: &BatchNorm, iv: Interval<4>) -> Interval<4> {
    let c = bn.gamma.val().dims()[0];
    let scale = bn.gamma.val().div(
        bn.running_var
            .value_sync()
            .add_scalar(bn.epsilon as f32)
            .sqrt(),
    );
    let shift = bn
        .beta
        .val()
        .sub(bn.running_mean.value_sync().mul(scale.clone()));
    let (m, r) = iv.centre_radius();
    let m = m
        .mul(scale.clone().reshape([1, c, 1, 1]))
        .add(shift.reshape([1, c, 1, 1]));
    let r = r.mul(scale.abs().reshape([1, c, 1, 1]));
    Interval::from_centre_radius(m, r)
}

fn flatten(iv: Interval<4>) -> Interval<2> {
    let b = iv.lower.dims()[0];
    Interval {
        lower: iv.lower.reshape([b as i64, -1]),
        upper: iv.upper.reshape([b as i64, -1]),
    }
}

/// The box of the penultimate layer and the final linear layer of a built-in network.
fn penultimate(net: &Network, input: Interval<4>) -> Result<(Interval<2>, &Linear), DefenseError> {
    Ok(match net {
        Network::Mlp(m) => {
            let h = linear(&m.fc1, flatten(input)).monotone(relu);
            (h, &m.fc2)
        }
        Network::Cnn(m) => {
            let x = conv(&m.conv1, input)?
                .monotone(relu)
                .monotone(|t| m.pool.forward(t));
            let x = conv(&m.conv2, x)?
                .monotone(relu)
                .monotone(|t| m.pool.forward(t));
            let h = linear(&m.fc1, flatten(x)).monotone(relu);
            (h, &m.fc2)
        }
        Network::Resnet8(m) => {
            // The block type is private to the model crate; a macro reads its public fields.
            macro_rules! block {
                ($blk:expr, $x:expr) => {{
                    let x: Interval<4> = $x;
                    let h = batch_norm(&$blk.bn1, conv(&$blk.conv1, x.clone())?).monotone(relu);
                    let h = batch_norm(&$blk.bn2, conv(&$blk.conv2, h)?);
                    let s = match (&$blk.shortcut_conv, &$blk.shortcut_bn) {
                        (Some(c), Some(b)) => batch_norm(b, conv(c, x)?),
                        _ => x,
                    };
                    h.add(s).monotone(relu)
                }};
            }
            let x = batch_norm(&m.bn1, conv(&m.conv1, input)?).monotone(relu);
            let x = block!(m.layer1, x);
            let x = block!(m.layer2, x);
            let x = block!(m.layer3, x);
            let x = x.monotone(|t| adaptive_avg_pool2d(t, [1, 1]));
            (flatten(x), &m.fc)
        }
    })
}

/// The input box `[x − ε, x + ε] ∩ [lo, hi]`, normalised as the model does.
fn input_box(
    x: &Tensor<4>,
    eps: f32,
    bounds: (f32, f32),
    normalize: Option<&Normalize>,
) -> Interval<4> {
    let iv = Interval {
        lower: x.clone().sub_scalar(eps).clamp(bounds.0, bounds.1),
        upper: x.clone().add_scalar(eps).clamp(bounds.0, bounds.1),
    };
    match normalize {
        Some(n) => {
            let device = x.device();
            iv.monotone(|t| n.apply(t, &device))
        }
        None => iv,
    }
}

/// Bounds on every logit of `net` over the L∞ box of radius `eps` around each input of `x`
/// (pixel space, clipped to `bounds`, then normalised by `normalize`).
pub fn interval_logits(
    net: &Network,
    normalize: Option<&Normalize>,
    x: &Tensor<4>,
    eps: f32,
    bounds: (f32, f32),
) -> Result<Interval<2>, DefenseError> {
    let (h, fc) = penultimate(net, input_box(x, eps, bounds, normalize))?;
    Ok(linear(fc, h))
}

/// [`interval_logits`] of a loaded model (built-in architectures only).
pub fn model_interval_logits(
    model: &Model,
    x: &Tensor<4>,
    eps: f32,
) -> Result<Interval<2>, DefenseError> {
    match model.backbone() {
        Backbone::Native(net) => interval_logits(
            net,
            model.normalization(),
            x,
            eps,
            nnguard_model::Classifier::bounds(model),
        ),
        Backbone::Onnx(_) => Err(DefenseError::Unsupported {
            what: "interval bound propagation".into(),
            reason: "ONNX graphs (only the built-in mlp, cnn and resnet8 are propagated)".into(),
        }),
    }
}

/// Upper bounds of `z_j − z_y` over the box for every class `j` (0 at `j = y`), with the
/// last layer folded into the specification: the worst-case logits of IBP training.
pub fn worst_case_logits(
    net: &Network,
    normalize: Option<&Normalize>,
    x: &Tensor<4>,
    eps: f32,
    bounds: (f32, f32),
    labels: &[u32],
) -> Result<Tensor<2>, DefenseError> {
    let (h, fc) = penultimate(net, input_box(x, eps, bounds, normalize))?;
    let w = fc.weight.val(); // [H, K]
    let [_, k] = w.dims();
    let b = labels.len();
    let device = w.device();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| i64::from(l)).collect(), [b]),
        &device,
    );
    let w_y = w.clone().transpose().select(0, idx.clone()); // [B, H]
    let diff = w.unsqueeze_dim::<3>(0).sub(w_y.unsqueeze_dim::<3>(2)); // [B, H, K]
    let (m, r) = h.centre_radius();
    let upper = m
        .unsqueeze_dim::<3>(1)
        .matmul(diff.clone())
        .add(r.unsqueeze_dim::<3>(1).matmul(diff.abs()))
        .reshape([b, k]);
    Ok(match &fc.bias {
        Some(bias) => {
            let bias = bias.val();
            let b_y = bias.clone().select(0, idx).reshape([b, 1]);
            upper.add(bias.reshape([1, k]).sub(b_y))
        }
        None => upper,
    })
}

/// Settings of [`Ibp`].
#[derive(Debug, Clone, PartialEq)]
pub struct IbpConfig {
    /// The final L∞ training radius (`--eps`).
    pub eps: f32,
    /// How ε ramps up (`--eps-schedule`).
    pub schedule: EpsSchedule,
    /// The weight κ of the clean loss at the end of the ramp (it starts at 1).
    pub kappa_end: f32,
}

impl Default for IbpConfig {
    /// ε = 0.1; ε is 0 for the first 10% of the run and reaches its full value at 60%
    /// (Gowal et al.'s warm-up then ramp); κ falls from 1 to 0.5 over the ramp.
    fn default() -> Self {
        Self {
            eps: 0.1,
            schedule: EpsSchedule {
                start: 0.1,
                end: 0.6,
            },
            kappa_end: 0.5,
        }
    }
}

impl IbpConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Ibp, DefenseError> {
        check_eps(self.eps)?;
        let schedule = self.schedule.checked()?;
        if !(0.0..=1.0).contains(&self.kappa_end) {
            return Err(DefenseError::config(
                "kappa",
                format!("must be in [0, 1], got {}", self.kappa_end),
            ));
        }
        Ok(Ibp {
            config: Self { schedule, ..self },
        })
    }
}

/// A built IBP training objective.
#[derive(Debug, Clone)]
pub struct Ibp {
    config: IbpConfig,
}

/// The input range of training images.
const TRAIN_BOUNDS: (f32, f32) = (0.0, 1.0);

impl Ibp {
    /// ε and κ at a point of the run.
    pub fn at(&self, progress: f64) -> (f32, f32) {
        let c = &self.config;
        let f = c.schedule.factor(progress) as f32;
        (c.eps * f, 1.0 - f * (1.0 - c.kappa_end))
    }
}

impl TrainObjective for Ibp {
    fn name(&self) -> String {
        "ibp".into()
    }

    fn loss(&mut self, batch: &Batch<'_>) -> Result<Tensor<1>, ModelError> {
        let (eps, kappa) = self.at(batch.progress());
        let clean = Loss::CrossEntropy
            .per_sample(batch.logits(batch.x.clone()), batch.labels)
            .mean();
        if eps <= 0.0 {
            return Ok(clean);
        }
        let worst = worst_case_logits(
            batch.net,
            batch.normalization(),
            &batch.x,
            eps,
            TRAIN_BOUNDS,
            batch.labels,
        )?;
        let robust = Loss::CrossEntropy.per_sample(worst, batch.labels).mean();
        Ok(clean.mul_scalar(kappa).add(robust.mul_scalar(1.0 - kappa)))
    }

    fn settings(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "defense": "ibp",
            "norm": "linf",
            "eps": c.eps,
            "eps_schedule": c.schedule,
            "kappa_start": 1.0,
            "kappa_end": c.kappa_end,
            "batch_norm_bounds": "running statistics",
            "reference": "Gowal et al. 2018",
        })
    }
}

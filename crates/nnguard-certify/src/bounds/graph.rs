//! The network as bound propagation sees it: a graph of linear operators, ReLUs and max
//! pools on flattened per-image values, built from a built-in [`Network`] or an ONNX graph,
//! with the model's normalisation in front.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use nnguard_model::arch::{Cnn, Mlp, Network, Resnet8};
use nnguard_model::tensor::{Device, Tensor, TensorData, to_vec};
use nnguard_model::{Backbone, Classifier, Model};

use super::BoundMethod;
use super::propagate;
use crate::error::CertifyError;

/// Geometry of a 2-D convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `(begin, end)` padding per spatial axis.
    pub pads: [(usize, usize); 2],
    pub dilation: [usize; 2],
    pub ceil: bool,
}

/// One operator. Values are flattened per image (NCHW order), so reshapes cost nothing.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// The input image.
    Input,
    /// `x · w + b` on the flattened input; `w` is `[in, out]`.
    Linear { w: Tensor<2>, b: Option<Tensor<1>> },
    /// 2-D convolution with weight `[out, in/groups, kh, kw]`.
    Conv {
        w: Tensor<4>,
        b: Option<Tensor<1>>,
        window: Window,
        groups: usize,
    },
    /// Elementwise `x · s + t` (`[1, n]` each): normalisation, batch norm, constant arithmetic.
    Scale { s: Tensor<2>, t: Tensor<2> },
    /// Rectified linear unit.
    Relu,
    /// Max pooling.
    MaxPool { window: Window },
    /// Average pooling (a linear map with non-negative weights).
    AvgPool {
        window: Window,
        count_include_pad: bool,
    },
    /// Mean over each channel's spatial positions.
    GlobalAvgPool,
    /// A new shape for the same values.
    Reshape,
    /// Sum of two values of the same shape.
    Add,
    /// Difference of two values of the same shape.
    Sub,
}

impl Op {
    /// Whether the operator is non-linear (relaxed in CROWN, a stopping point for IBP's
    /// folding of linear layers).
    pub fn is_nonlinear(&self) -> bool {
        matches!(self, Op::Relu | Op::MaxPool { .. })
    }
}

/// A node: an operator applied to earlier nodes.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub op: Op,
    pub inputs: Vec<usize>,
    /// Per-image shape of the output.
    pub shape: Vec<usize>,
    /// The layer or ONNX node it comes from.
    pub name: String,
}

impl Node {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model prepared for interval bound propagation and CROWN: its layers as a graph of
/// supported operators, in pixel space (normalisation included).
#[derive(Debug, Clone)]
pub struct BoundNet {
    pub(crate) nodes: Vec<Node>,
    pub(crate) input_shape: [usize; 3],
    pub(crate) classes: usize,
    pub(crate) bounds: (f32, f32),
    pub(crate) device: Device,
}

/// Adds nodes one at a time, working out each output shape by running the operator once.
pub(crate) struct Builder {
    pub nodes: Vec<Node>,
    pub device: Device,
}

impl Builder {
    pub fn new(input_shape: [usize; 3], device: &Device) -> Self {
        Self {
            nodes: vec![Node {
                op: Op::Input,
                inputs: vec![],
                shape: input_shape.to_vec(),
                name: "input".into(),
            }],
            device: device.clone(),
        }
    }

    /// Appends `op` on `inputs`; `shape` is the output shape for reshapes (and is checked
    /// against the computed one otherwise, when given).
    pub fn push(
        &mut self,
        op: Op,
        inputs: Vec<usize>,
        shape: Option<Vec<usize>>,
        name: &str,
    ) -> Result<usize, String> {
        let out_shape = match (&op, shape) {
            (Op::Reshape, Some(s)) => {
                let n: usize = s.iter().product();
                let from = self.nodes[inputs[0]].len();
                if n != from {
                    return Err(format!(
                        "cannot reshape {from} values into {s:?} ({n} values)"
                    ));
                }
                s
            }
            (Op::Reshape, None) => vec![self.nodes[inputs[0]].len()],
            (_, given) => {
                let ins: Vec<(Tensor<2>, &[usize])> = inputs
                    .iter()
                    .map(|&i| {
                        let n = &self.nodes[i];
                        (
                            Tensor::<2>::zeros([1, n.len()], &self.device),
                            n.shape.as_slice(),
                        )
                    })
                    .collect();
                let (_, shape) = propagate::apply_exact(&op, &ins)?;
                if let Some(g) = given
                    && g != shape
                {
                    return Err(format!(
                        "computed output shape {shape:?} differs from the graph's {g:?}"
                    ));
                }
                shape
            }
        };
        self.nodes.push(Node {
            op,
            inputs,
            shape: out_shape,
            name: name.to_string(),
        });
        Ok(self.nodes.len() - 1)
    }

    pub fn last(&self) -> usize {
        self.nodes.len() - 1
    }
}

impl BoundNet {
    /// Prepares `model` for `method`, or names the first layer or ONNX operator that the
    /// method does not support.
    pub fn from_model(model: &Model, method: BoundMethod) -> Result<Self, CertifyError> {
        let input_shape = model.input_shape();
        let device = model.device().clone();
        let mut b = Builder::new(input_shape, &device);
        if let Some(norm) = model.normalization() {
            let [c, h, w] = input_shape;
            let per = h * w;
            let mut s = Vec::with_capacity(c * per);
            let mut t = Vec::with_capacity(c * per);
            for ch in 0..c {
                let pick = |v: &[f32]| v[if v.len() == 1 { 0 } else { ch }];
                let (m, sd) = (pick(&norm.mean), pick(&norm.std));
                s.extend(std::iter::repeat_n(1.0 / sd, per));
                t.extend(std::iter::repeat_n(-m / sd, per));
            }
            let op = scale_op(s, t, &device);
            b.push(op, vec![0], None, "normalize")
                .map_err(|reason| layer_error(method, "normalize", "input", reason))?;
        }
        match model.backbone() {
            Backbone::Native(net) => native(&mut b, net, method)?,
            Backbone::Onnx(graph) => super::onnx::convert(&mut b, graph, method)?,
        }
        let net = Self {
            nodes: b.nodes,
            input_shape,
            classes: model.num_classes(),
            bounds: model.bounds(),
            device,
        };
        let out = &net.nodes[net.nodes.len() - 1];
        if out.len() != net.classes {
            return Err(CertifyError::UnsupportedLayer {
                method: method.name(),
                arch: "model".into(),
                layer: out.name.clone(),
                reason: format!(
                    "the last layer gives {} values, not one per class ({})",
                    out.len(),
                    net.classes
                ),
            });
        }
        Ok(net)
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// Per-image input shape.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// Number of operators (the input included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is only its input (never true for a built network).
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The operators in order, as `(name, kind)` pairs, for display.
    pub fn layers(&self) -> Vec<(String, &'static str)> {
        self.nodes
            .iter()
            .map(|n| {
                let kind = match n.op {
                    Op::Input => "input",
                    Op::Linear { .. } => "linear",
                    Op::Conv { .. } => "conv",
                    Op::Scale { .. } => "affine",
                    Op::Relu => "relu",
                    Op::MaxPool { .. } => "maxpool",
                    Op::AvgPool { .. } => "avgpool",
                    Op::GlobalAvgPool => "global-avgpool",
                    Op::Reshape => "reshape",
                    Op::Add => "add",
                    Op::Sub => "sub",
                };
                (n.name.clone(), kind)
            })
            .collect()
    }
}

pub(crate) fn scale_op(s: Vec<f32>, t: Vec<f32>, device: &Device) -> Op {
    let n = s.len();
    Op::Scale {
        s: Tensor::from_data(TensorData::new(s, [1, n]), device),
        t: Tensor::from_data(TensorData::new(t, [1, n]), device),
    }
}

fn layer_error(method: BoundMethod, layer: &str, arch: &str, reason: String) -> CertifyError {
    CertifyError::UnsupportedLayer {
        method: method.name(),
        arch: arch.into(),
        layer: layer.into(),
        reason,
    }
}

/// Converts a built-in network.
fn native(b: &mut Builder, net: &Network, method: BoundMethod) -> Result<(), CertifyError> {
    let arch = net.arch().to_string();
    let err = |layer: &str, reason: String| layer_error(method, layer, &arch, reason);
    match net {
        Network::Mlp(m) => mlp(b, m).map_err(|(l, r)| err(l, r)),
        Network::Cnn(m) => cnn(b, m).map_err(|(l, r)| err(l, r)),
        Network::Resnet8(m) => resnet8(b, m).map_err(|(l, r)| err(l, r)),
    }
}

type LayerResult<T> = Result<T, (&'static str, String)>;

fn at<T>(layer: &'static str, r: Result<T, String>) -> LayerResult<T> {
    r.map_err(|e| (layer, e))
}

fn linear(b: &mut Builder, l: &Linear, from: usize, name: &'static str) -> LayerResult<usize> {
    let flat = at(name, b.push(Op::Reshape, vec![from], None, name))?;
    let op = Op::Linear {
        w: l.weight.val(),
        b: l.bias.as_ref().map(|p| p.val()),
    };
    at(name, b.push(op, vec![flat], None, name))
}

fn pads(p: &PaddingConfig2d, what: &str) -> Result<[(usize, usize); 2], String> {
    match p {
        PaddingConfig2d::Valid => Ok([(0, 0); 2]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            Ok([(*top, *bottom), (*left, *right)])
        }
        PaddingConfig2d::Same => Err(format!("{what} with \"same\" padding is not supported")),
    }
}

fn conv(b: &mut Builder, c: &Conv2d, from: usize, name: &'static str) -> LayerResult<usize> {
    let window = Window {
        kernel: c.kernel_size,
        stride: c.stride,
        pads: at(name, pads(&c.padding, "convolution"))?,
        dilation: c.dilation,
        ceil: false,
    };
    let op = Op::Conv {
        w: c.weight.val(),
        b: c.bias.as_ref().map(|p| p.val()),
        window,
        groups: c.groups,
    };
    at(name, b.push(op, vec![from], None, name))
}

/// Inference-mode batch norm `γ (x − μ) / √(σ² + ε) + β` as a per-channel affine map.
fn batch_norm(
    b: &mut Builder,
    bn: &BatchNorm,
    from: usize,
    name: &'static str,
) -> LayerResult<usize> {
    let gamma = to_vec(bn.gamma.val());
    let beta = to_vec(bn.beta.val());
    let mean = to_vec(bn.running_mean.value());
    let var = to_vec(bn.running_var.value());
    let shape = b.nodes[from].shape.clone();
    let c = shape.first().copied().unwrap_or(0);
    if [gamma.len(), beta.len(), mean.len(), var.len()] != [c; 4] {
        return Err((
            name,
            format!(
                "batch norm over {} channels on an input of shape {shape:?}",
                gamma.len()
            ),
        ));
    }
    let per: usize = shape.iter().skip(1).product();
    let (mut s, mut t) = (Vec::with_capacity(c * per), Vec::with_capacity(c * per));
    for ch in 0..c {
        let scale = gamma[ch] / (var[ch] + bn.epsilon as f32).sqrt();
        s.extend(std::iter::repeat_n(scale, per));
        t.extend(std::iter::repeat_n(beta[ch] - mean[ch] * scale, per));
    }
    let op = scale_op(s, t, &b.device);
    at(name, b.push(op, vec![from], None, name))
}

fn relu(b: &mut Builder, from: usize, name: &'static str) -> LayerResult<usize> {
    at(name, b.push(Op::Relu, vec![from], None, name))
}

fn mlp(b: &mut Builder, m: &Mlp) -> LayerResult<()> {
    let x = b.last();
    let h = linear(b, &m.fc1, x, "fc1")?;
    let h = relu(b, h, "fc1")?;
    linear(b, &m.fc2, h, "fc2")?;
    Ok(())
}

fn cnn(b: &mut Builder, m: &Cnn) -> LayerResult<()> {
    let window = Window {
        kernel: m.pool.kernel_size,
        stride: m.pool.stride,
        pads: at("pool", pads(&m.pool.padding, "max pooling"))?,
        dilation: m.pool.dilation,
        ceil: m.pool.ceil_mode,
    };
    let mut x = b.last();
    for (c, name) in [(&m.conv1, "conv1"), (&m.conv2, "conv2")] {
        x = conv(b, c, x, name)?;
        x = relu(b, x, name)?;
        x = at(name, b.push(Op::MaxPool { window }, vec![x], None, "pool"))?;
    }
    let h = linear(b, &m.fc1, x, "fc1")?;
    let h = relu(b, h, "fc1")?;
    linear(b, &m.fc2, h, "fc2")?;
    Ok(())
}

/// One residual block of [`Resnet8`] (a macro: the block type is private to the model crate).
macro_rules! block {
    ($b:expr, $blk:expr, $x:expr, $name:expr) => {{
        let (b, blk, x, name) = ($b, $blk, $x, $name);
        let h = conv(b, &blk.conv1, x, name)?;
        let h = batch_norm(b, &blk.bn1, h, name)?;
        let h = relu(b, h, name)?;
        let h = conv(b, &blk.conv2, h, name)?;
        let h = batch_norm(b, &blk.bn2, h, name)?;
        let s = match (&blk.shortcut_conv, &blk.shortcut_bn) {
            (Some(c), Some(bn)) => {
                let s = conv(b, c, x, name)?;
                batch_norm(b, bn, s, name)?
            }
            _ => x,
        };
        let sum = at(name, b.push(Op::Add, vec![h, s], None, name))?;
        relu(b, sum, name)?
    }};
}

fn resnet8(b: &mut Builder, m: &Resnet8) -> LayerResult<()> {
    let x = b.last();
    let x = conv(b, &m.conv1, x, "stem")?;
    let x = batch_norm(b, &m.bn1, x, "stem")?;
    let x = relu(b, x, "stem")?;
    let x = block!(&mut *b, &m.layer1, x, "layer1");
    let x = block!(&mut *b, &m.layer2, x, "layer2");
    let x = block!(&mut *b, &m.layer3, x, "layer3");
    let x = at("pool", b.push(Op::GlobalAvgPool, vec![x], None, "pool"))?;
    linear(b, &m.fc, x, "logits")?;
    Ok(())
}

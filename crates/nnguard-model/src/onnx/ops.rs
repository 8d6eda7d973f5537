//! Evaluation of each supported ONNX operator with Burn tensor ops (so gradients flow).
//!
//! Shapes are checked here before Burn sees them: a graph that does not fit together is an
//! error naming the node, not a panic deep in a kernel.

use burn::tensor::activation;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};

use super::proto::{Attr, Node};
use super::value::{FloatVal, MAX_RANK, Value, pad_shape};
use crate::tensor::{Device, Int, Tensor, TensorData};

/// Every operator the interpreter evaluates (the standard `ai.onnx` domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Div",
    "Dropout",
    "Erf",
    "Exp",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "LeakyRelu",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "Pow",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

type OpResult = Result<Vec<Value>, String>;

/// Evaluates `node` on its inputs (`None` for omitted optional inputs).
pub(crate) fn eval(node: &Node, inputs: &[Option<Value>], opset: i64, device: &Device) -> OpResult {
    let one = |v: Value| Ok(vec![v]);
    match node.op.as_str() {
        "Identity" | "Dropout" => one(req(inputs, 0)?.clone()),
        "Relu" => unary(inputs, device, activation::relu),
        "Sigmoid" => unary(inputs, device, activation::sigmoid),
        "Tanh" => unary(inputs, device, activation::tanh),
        "Erf" => unary(inputs, device, |t| t.erf()),
        "Exp" => unary(inputs, device, |t| t.exp()),
        "Sqrt" => unary(inputs, device, |t| t.sqrt()),
        "Neg" => unary(inputs, device, |t| t.neg()),
        "Abs" => unary(inputs, device, |t| t.abs()),
        "LeakyRelu" => {
            let alpha = f64::from(node.float("alpha").unwrap_or(0.01));
            unary(inputs, device, move |t| activation::leaky_relu(t, alpha))
        }
        "Gelu" => match node.string("approximate").as_deref() {
            None | Some("none") => unary(inputs, device, activation::gelu),
            Some("tanh") => unary(inputs, device, |x| {
                let c = (2.0f32 / std::f32::consts::PI).sqrt();
                let inner = x
                    .clone()
                    .add(x.clone().powi_scalar(3).mul_scalar(0.044715f32));
                x.clone()
                    .mul(activation::tanh(inner.mul_scalar(c)).add_scalar(1.0f32))
                    .mul_scalar(0.5f32)
            }),
            Some(other) => Err(format!("unknown approximate={other:?}")),
        },
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => binary(node, inputs, device),
        "Clip" => clip(node, inputs, opset, device),
        "Conv" => conv(node, inputs, device),
        "Gemm" => gemm(node, inputs, device),
        "MatMul" => matmul(inputs, device),
        "MaxPool" => max_pool(node, inputs, device),
        "AveragePool" => avg_pool(node, inputs, device),
        "GlobalAveragePool" => {
            let x = float4(inputs, 0, device, "GlobalAveragePool input")?;
            one(Value::Float(FloatVal::new(
                adaptive_avg_pool2d(x, [1, 1]),
                4,
            )))
        }
        "BatchNormalization" => batch_norm_op(node, inputs, device),
        "Softmax" | "LogSoftmax" => softmax(node, inputs, opset, device),
        "Flatten" => flatten(node, inputs),
        "Reshape" => reshape(node, inputs),
        "Transpose" => transpose(node, inputs, device),
        "Concat" => concat(node, inputs, device),
        "Constant" => constant(node, device),
        "Shape" => shape_op(node, inputs),
        "Gather" => gather(node, inputs, device),
        "Unsqueeze" => unsqueeze(node, inputs, opset),
        "Squeeze" => squeeze(node, inputs, opset),
        "Cast" => cast(node, inputs, device),
        other => Err(format!("operator {other} is not supported")),
    }
}

fn req(inputs: &[Option<Value>], i: usize) -> Result<&Value, String> {
    inputs
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("input {i} is required but missing"))
}

fn float(inputs: &[Option<Value>], i: usize, device: &Device) -> Result<FloatVal, String> {
    Ok(req(inputs, i)?.clone().into_float(device))
}

fn float4(
    inputs: &[Option<Value>],
    i: usize,
    device: &Device,
    what: &str,
) -> Result<Tensor<4>, String> {
    let f = float(inputs, i, device)?;
    if f.rank != 4 {
        return Err(format!(
            "{what} must have rank 4 (NCHW), found shape {:?}",
            f.shape()
        ));
    }
    Ok(f.t)
}

fn ints_of(inputs: &[Option<Value>], i: usize) -> Result<Vec<i64>, String> {
    Ok(req(inputs, i)?.clone().into_ints().0)
}

fn unary(
    inputs: &[Option<Value>],
    device: &Device,
    f: impl Fn(Tensor<4>) -> Tensor<4>,
) -> OpResult {
    let x = float(inputs, 0, device)?;
    Ok(vec![Value::Float(FloatVal::new(f(x.t), x.rank))])
}

/// The broadcast result shape of two padded shapes, or an error naming both.
fn broadcast(a: [usize; MAX_RANK], b: [usize; MAX_RANK]) -> Result<[usize; MAX_RANK], String> {
    let mut out = [1; MAX_RANK];
    for i in 0..MAX_RANK {
        out[i] = match (a[i], b[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

fn binary(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
    if let (Value::Int { data: x, shape: sx }, Value::Int { data: y, shape: sy }) = (a, b) {
        // Shape arithmetic: equal lengths or a scalar on one side.
        let (n, shape) = if x.len() >= y.len() {
            (x.len(), sx)
        } else {
            (y.len(), sy)
        };
        if !(x.len() == y.len() || x.len() == 1 || y.len() == 1) {
            return Err(format!(
                "integer operands of lengths {} and {} do not broadcast",
                x.len(),
                y.len()
            ));
        }
        let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (p, q) = (at(x, i), at(y, i));
            out.push(
                match node.op.as_str() {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    "Div" => p.checked_div(q),
                    _ => u32::try_from(q).ok().and_then(|e| p.checked_pow(e)),
                }
                .ok_or_else(|| format!("integer {} overflows or divides by zero", node.op))?,
            );
        }
        return Ok(vec![Value::Int {
            data: out,
            shape: shape.clone(),
        }]);
    }
    let (a, b) = (a.clone().into_float(device), b.clone().into_float(device));
    broadcast(a.t.dims(), b.t.dims())?;
    let rank = a.rank.max(b.rank);
    let t = match node.op.as_str() {
        "Add" => a.t.add(b.t),
        "Sub" => a.t.sub(b.t),
        "Mul" => a.t.mul(b.t),
        "Div" => a.t.div(b.t),
        _ => a.t.powf(b.t),
    };
    Ok(vec![Value::Float(FloatVal::new(t, rank))])
}

fn clip(node: &Node, inputs: &[Option<Value>], opset: i64, device: &Device) -> OpResult {
    let x = float(inputs, 0, device)?;
    let bound = |i: usize, attr: &str, default: f32| -> Result<f32, String> {
        if opset < 11 {
            return Ok(node.float(attr).unwrap_or(default));
        }
        match inputs.get(i).and_then(Option::as_ref) {
            Some(v) => {
                let f = v.clone().into_float(device);
                crate::tensor::to_vec(f.t)
                    .first()
                    .copied()
                    .ok_or_else(|| format!("Clip {attr} is empty"))
            }
            None => Ok(default),
        }
    };
    let (lo, hi) = (bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?);
    Ok(vec![Value::Float(FloatVal::new(x.t.clamp(lo, hi), x.rank))])
}

fn pair(node: &Node, name: &str, default: [usize; 2]) -> Result<[usize; 2], String> {
    match node.ints(name) {
        None => Ok(default),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!(
            "{name}={v:?}: expected two positive values (only 2-D is supported)"
        )),
    }
}

/// Explicit `[(top, bottom), (left, right)]` padding from `pads` or `auto_pad`.
fn padding(
    node: &Node,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<[(usize, usize); 2], String> {
    match node.string("auto_pad").as_deref() {
        None | Some("NOTSET") => match node.ints("pads") {
            None => Ok([(0, 0); 2]),
            Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => Ok([
                (p[0] as usize, p[2] as usize),
                (p[1] as usize, p[3] as usize),
            ]),
            Some(p) => Err(format!("pads={p:?}: expected four non-negative values")),
        },
        Some("VALID") => Ok([(0, 0); 2]),
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            let mut out = [(0, 0); 2];
            for i in 0..2 {
                let o = input[i].div_ceil(stride[i]);
                let eff = (kernel[i] - 1) * dilation[i] + 1;
                let total = ((o.saturating_sub(1)) * stride[i] + eff).saturating_sub(input[i]);
                let small = total / 2;
                out[i] = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            Ok(out)
        }
        Some(other) => Err(format!("auto_pad={other:?} is not supported")),
    }
}

fn out_size(
    input: usize,
    pad: (usize, usize),
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    let eff = (kernel - 1) * dilation + 1;
    let span = (input + pad.0 + pad.1).checked_sub(eff)?;
    Some(
        if ceil {
            span.div_ceil(stride)
        } else {
            span / stride
        } + 1,
    )
}

fn conv(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let x = float4(inputs, 0, device, "Conv input")?;
    let w = float4(inputs, 1, device, "Conv weight")?;
    let [_, c, h, wd] = x.dims();
    let [m, cg, kh, kw] = w.dims();
    let group = node.int("group").unwrap_or(1);
    if group < 1 {
        return Err(format!("group={group} must be positive"));
    }
    let group = group as usize;
    if cg * group != c || m % group != 0 {
        return Err(format!(
            "input has {c} channels but the weight {:?} with group={group} expects {}",
            [m, cg, kh, kw],
            cg * group
        ));
    }
    if let Some(k) = node.ints("kernel_shape")
        && k != [kh as i64, kw as i64]
    {
        return Err(format!(
            "kernel_shape={k:?} disagrees with the weight's {kh}×{kw}"
        ));
    }
    let stride = pair(node, "strides", [1, 1])?;
    let dilation = pair(node, "dilations", [1, 1])?;
    let pads = padding(node, [h, wd], [kh, kw], stride, dilation)?;
    for i in 0..2 {
        let (input, k) = if i == 0 { (h, kh) } else { (wd, kw) };
        if out_size(input, pads[i], k, stride[i], dilation[i], false).is_none() {
            return Err(format!("kernel {kh}×{kw} does not fit the {h}×{wd} input"));
        }
    }
    let bias = match inputs.get(2).and_then(Option::as_ref) {
        Some(b) => {
            let b = b.clone().into_float(device);
            if b.shape() != [m] {
                return Err(format!("bias shape {:?} should be [{m}]", b.shape()));
            }
            Some(b.t.reshape([m]))
        }
        None => None,
    };
    let options = ConvOptions::new_with_padding(stride, pads, dilation, group);
    Ok(vec![Value::Float(FloatVal::new(
        conv2d(x, w, bias, options),
        4,
    ))])
}

fn gemm(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let a = float(inputs, 0, device)?;
    let b = float(inputs, 1, device)?;
    if a.rank != 2 || b.rank != 2 {
        return Err(format!(
            "Gemm needs 2-D inputs, found {:?} and {:?}",
            a.shape(),
            b.shape()
        ));
    }
    let mut at = a.t;
    if node.int("transA").unwrap_or(0) != 0 {
        at = at.swap_dims(2, 3);
    }
    let mut bt = b.t;
    if node.int("transB").unwrap_or(0) != 0 {
        bt = bt.swap_dims(2, 3);
    }
    let (ka, kb) = (at.dims()[3], bt.dims()[2]);
    if ka != kb {
        return Err(format!("inner dimensions differ: {ka} vs {kb}"));
    }
    let mut y = at.matmul(bt);
    let alpha = node.float("alpha").unwrap_or(1.0);
    if alpha != 1.0 {
        y = y.mul_scalar(alpha);
    }
    if let Some(c) = inputs.get(2).and_then(Option::as_ref) {
        let c = c.clone().into_float(device);
        broadcast(y.dims(), c.t.dims())?;
        let beta = node.float("beta").unwrap_or(1.0);
        y = y.add(if beta == 1.0 {
            c.t
        } else {
            c.t.mul_scalar(beta)
        });
    }
    Ok(vec![Value::Float(FloatVal::new(y, 2))])
}

fn matmul(inputs: &[Option<Value>], device: &Device) -> OpResult {
    let mut a = float(inputs, 0, device)?;
    let mut b = float(inputs, 1, device)?;
    let (va, vb) = (a.rank == 1, b.rank == 1);
    if va {
        let k = a.shape()[0];
        a = a.reshape(&[1, k]);
    }
    if vb {
        let k = b.shape()[0];
        b = b.reshape(&[k, 1]);
    }
    if a.rank < 2 || b.rank < 2 {
        return Err("MatMul of scalars is not supported".into());
    }
    let (da, db) = (a.t.dims(), b.t.dims());
    if da[3] != db[2] {
        return Err(format!(
            "inner dimensions differ: {:?} × {:?}",
            a.shape(),
            b.shape()
        ));
    }
    broadcast([da[0], da[1], 1, 1], [db[0], db[1], 1, 1])?;
    let rank = a.rank.max(b.rank);
    let y = FloatVal::new(a.t.matmul(b.t), rank);
    let mut shape = y.shape();
    if vb {
        shape.remove(rank - 1);
    }
    if va {
        shape.remove(rank - 2);
    }
    Ok(vec![Value::Float(if va || vb {
        y.reshape(&shape)
    } else {
        y
    })])
}

/// Kernel, stride, `(begin, end)` padding and ceil mode of a pooling node.
type PoolGeometry = ([usize; 2], [usize; 2], [(usize, usize); 2], bool);

fn pool_geometry(node: &Node, x: &Tensor<4>) -> Result<PoolGeometry, String> {
    let kernel = match node.ints("kernel_shape") {
        Some(k) if k.len() == 2 && k.iter().all(|&v| v >= 1) => [k[0] as usize, k[1] as usize],
        other => {
            return Err(format!(
                "kernel_shape={other:?}: expected two positive values"
            ));
        }
    };
    let stride = pair(node, "strides", [1, 1])?;
    let dilation = pair(node, "dilations", [1, 1])?;
    let [_, _, h, w] = x.dims();
    let pads = padding(node, [h, w], kernel, stride, dilation)?;
    let ceil = node.int("ceil_mode").unwrap_or(0) != 0;
    for (i, input) in [h, w].into_iter().enumerate() {
        if out_size(input, pads[i], kernel[i], stride[i], dilation[i], ceil).is_none() {
            return Err(format!(
                "pooling window {kernel:?} does not fit the {h}×{w} input"
            ));
        }
        if pads[i].0 >= kernel[i] || pads[i].1 >= kernel[i] {
            return Err(format!(
                "padding {:?} must be smaller than the kernel {kernel:?}",
                pads[i]
            ));
        }
    }
    Ok((kernel, stride, pads, ceil))
}

fn max_pool(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
        return Err("the Indices output of MaxPool is not supported".into());
    }
    let x = float4(inputs, 0, device, "MaxPool input")?;
    let (kernel, stride, pads, ceil) = pool_geometry(node, &x)?;
    let dilation = pair(node, "dilations", [1, 1])?;
    let options = MaxPoolOptions::new(kernel)
        .with_stride(stride)
        .with_padding_pairs(pads)
        .with_dilation(dilation)
        .with_ceil_mode(ceil);
    Ok(vec![Value::Float(FloatVal::new(max_pool2d(x, options), 4))])
}

fn avg_pool(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let x = float4(inputs, 0, device, "AveragePool input")?;
    if node
        .ints("dilations")
        .is_some_and(|d| d.iter().any(|&v| v != 1))
    {
        return Err("dilated average pooling is not supported".into());
    }
    let (kernel, stride, pads, ceil) = pool_geometry(node, &x)?;
    let options = AvgPoolOptions::new(kernel)
        .with_stride(stride)
        .with_padding_pairs(pads)
        .with_count_include_pad(node.int("count_include_pad").unwrap_or(0) != 0)
        .with_ceil_mode(ceil);
    Ok(vec![Value::Float(FloatVal::new(avg_pool2d(x, options), 4))])
}

fn batch_norm_op(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let x = float(inputs, 0, device)?;
    if x.rank < 2 {
        return Err(format!(
            "input must have a channel axis, found shape {:?}",
            x.shape()
        ));
    }
    let c = x.shape()[1];
    let mut params = Vec::with_capacity(4);
    for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
        let p = float(inputs, i, device)?;
        if p.shape() != [c] {
            return Err(format!("{what} has shape {:?}, expected [{c}]", p.shape()));
        }
        params.push(p.t.reshape([c]));
    }
    let eps = f64::from(node.float("epsilon").unwrap_or(1e-5));
    let [scale, bias, mean, var]: [Tensor<1>; 4] = params
        .try_into()
        .map_err(|_| "BatchNormalization needs four parameters".to_string())?;
    if x.rank == 4 {
        return Ok(vec![Value::Float(FloatVal::new(
            batch_norm(x.t, scale, bias, mean, var, eps),
            4,
        ))]);
    }
    // [N, C] or [N, C, L]: broadcast the per-channel parameters along logical axis 1.
    let mut pshape = vec![1; x.rank];
    pshape[1] = c;
    let p = |t: Tensor<1>| t.reshape(pad_shape(&pshape));
    let y =
        x.t.sub(p(mean))
            .div(p(var).add_scalar(eps).sqrt())
            .mul(p(scale))
            .add(p(bias));
    Ok(vec![Value::Float(FloatVal::new(y, x.rank))])
}

fn softmax(node: &Node, inputs: &[Option<Value>], opset: i64, device: &Device) -> OpResult {
    let x = float(inputs, 0, device)?;
    let log = node.op == "LogSoftmax";
    let apply = |t: Tensor<4>, dim: usize| {
        if log {
            activation::log_softmax(t, dim)
        } else {
            activation::softmax(t, dim)
        }
    };
    let default_axis = if opset >= 13 { -1 } else { 1 };
    let axis = node.int("axis").unwrap_or(default_axis);
    let dim = x
        .axis(axis)
        .ok_or_else(|| format!("axis {axis} is out of range for shape {:?}", x.shape()))?;
    if opset >= 13 || dim == MAX_RANK - 1 {
        return Ok(vec![Value::Float(FloatVal::new(apply(x.t, dim), x.rank))]);
    }
    // Before opset 13 the input is coerced to 2-D at `axis` and normalised over the rest.
    let shape = x.shape();
    let split = dim - (MAX_RANK - x.rank);
    let rows: usize = shape[..split].iter().product();
    let cols: usize = shape[split..].iter().product();
    let y = apply(x.clone().reshape(&[rows, cols]).t, MAX_RANK - 1);
    Ok(vec![Value::Float(FloatVal::new(y, 2).reshape(&shape))])
}

fn flatten(node: &Node, inputs: &[Option<Value>]) -> OpResult {
    let v = req(inputs, 0)?.clone();
    let shape = v.shape();
    let r = shape.len() as i64;
    let mut axis = node.int("axis").unwrap_or(1);
    if axis < 0 {
        axis += r;
    }
    if !(0..=r).contains(&axis) {
        return Err(format!("axis {axis} is out of range for shape {shape:?}"));
    }
    let a = axis as usize;
    let out = [shape[..a].iter().product(), shape[a..].iter().product()];
    Ok(vec![reshape_value(v, &out)])
}

fn reshape_value(v: Value, shape: &[usize]) -> Value {
    match v {
        Value::Float(f) => Value::Float(f.reshape(shape)),
        Value::Int { data, .. } => Value::Int {
            data,
            shape: shape.to_vec(),
        },
    }
}

fn reshape(node: &Node, inputs: &[Option<Value>]) -> OpResult {
    let v = req(inputs, 0)?.clone();
    let spec = ints_of(inputs, 1)?;
    let input = v.shape();
    let total: usize = input.iter().product();
    let allow_zero = node.int("allowzero").unwrap_or(0) != 0;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            0 if !allow_zero => out.push(*input.get(i).ok_or_else(|| {
                format!("shape {spec:?} copies dimension {i}, which {input:?} lacks")
            })?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("invalid target shape {spec:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} into {spec:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} values) into {out:?}"
        ));
    }
    if out.len() > MAX_RANK {
        return Err(format!("target shape {out:?} has rank above {MAX_RANK}"));
    }
    Ok(vec![reshape_value(v, &out)])
}

fn transpose(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let x = float(inputs, 0, device)?;
    let r = x.rank;
    let perm: Vec<usize> = match node.ints("perm") {
        Some(p) => p.iter().map(|&v| v as usize).collect(),
        None => (0..r).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..r).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of 0..{r}"));
    }
    let off = MAX_RANK - r;
    let mut full = [0, 1, 2, 3];
    for (i, &p) in perm.iter().enumerate() {
        full[off + i] = off + p;
    }
    Ok(vec![Value::Float(FloatVal::new(x.t.permute(full), r))])
}

fn concat(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let values: Vec<&Value> = inputs.iter().flatten().collect();
    let first = values.first().ok_or("Concat has no inputs")?;
    let axis = node.int("axis").ok_or("Concat needs an axis")?;
    if values.iter().all(|v| matches!(v, Value::Int { .. })) {
        if first.shape().len() != 1 {
            return Err("integer Concat is only supported on 1-D values".into());
        }
        let data: Vec<i64> = values
            .iter()
            .flat_map(|v| (*v).clone().into_ints().0)
            .collect();
        let n = data.len();
        return Ok(vec![Value::Int {
            data,
            shape: vec![n],
        }]);
    }
    let floats: Vec<FloatVal> = values
        .iter()
        .map(|v| (*v).clone().into_float(device))
        .collect();
    let rank = floats[0].rank;
    let dim = floats[0]
        .axis(axis)
        .ok_or_else(|| format!("axis {axis} is out of range"))?;
    for f in &floats {
        let (a, b) = (f.t.dims(), floats[0].t.dims());
        if f.rank != rank || (0..MAX_RANK).any(|i| i != dim && a[i] != b[i]) {
            return Err(format!(
                "shapes {:?} and {:?} cannot be concatenated on axis {axis}",
                f.shape(),
                floats[0].shape()
            ));
        }
    }
    let t = Tensor::cat(floats.into_iter().map(|f| f.t).collect(), dim);
    Ok(vec![Value::Float(FloatVal::new(t, rank))])
}

fn constant(node: &Node, device: &Device) -> OpResult {
    let v = match node.attrs.iter().next().map(|(k, v)| (k.as_str(), v)) {
        Some(("value", Attr::Tensor(v))) => (**v).clone(),
        Some(("value_float", Attr::Float(f))) => {
            Value::Float(FloatVal::from_host(vec![*f], &[], device))
        }
        Some(("value_floats", Attr::Floats(f))) => {
            Value::Float(FloatVal::from_host(f.clone(), &[f.len()], device))
        }
        Some(("value_int", Attr::Int(i))) => Value::Int {
            data: vec![*i],
            shape: vec![],
        },
        Some(("value_ints", Attr::Ints(i))) => Value::Int {
            data: i.clone(),
            shape: vec![i.len()],
        },
        other => {
            return Err(format!(
                "unsupported Constant attribute {:?}",
                other.map(|o| o.0)
            ));
        }
    };
    Ok(vec![v])
}

fn shape_op(node: &Node, inputs: &[Option<Value>]) -> OpResult {
    let shape: Vec<i64> = req(inputs, 0)?.shape().iter().map(|&d| d as i64).collect();
    let r = shape.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clampi(node.int("start").unwrap_or(0));
    let end = clampi(node.int("end").unwrap_or(r));
    let data = shape[start..end.max(start)].to_vec();
    let n = data.len();
    Ok(vec![Value::Int {
        data,
        shape: vec![n],
    }])
}

fn gather(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let data = req(inputs, 0)?;
    let (idx, idx_shape) = req(inputs, 1)?.clone().into_ints();
    let axis = node.int("axis").unwrap_or(0);
    let dshape = data.shape();
    let r = dshape.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..r).contains(&a) {
        return Err(format!("axis {axis} is out of range for shape {dshape:?}"));
    }
    let a = a as usize;
    let n = dshape[a] as i64;
    let mut index = Vec::with_capacity(idx.len());
    for &i in &idx {
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(format!("index {i} is out of range for a dimension of {n}"));
        }
        index.push(j);
    }
    if idx_shape.len() > 1 {
        return Err("Gather with multi-dimensional indices is not supported".into());
    }
    let mut out_shape = dshape.clone();
    if idx_shape.is_empty() {
        out_shape.remove(a);
    } else {
        out_shape[a] = index.len();
    }
    match data {
        Value::Int { data, .. } if dshape.len() == 1 => Ok(vec![Value::Int {
            data: index.iter().map(|&j| data[j as usize]).collect(),
            shape: out_shape,
        }]),
        Value::Int { .. } => Err("integer Gather is only supported on 1-D data".into()),
        Value::Float(f) => {
            let dim = MAX_RANK - f.rank + a;
            let ids =
                Tensor::<1, Int>::from_data(TensorData::new(index.clone(), [index.len()]), device);
            let picked = FloatVal::new(f.t.clone().select(dim, ids), f.rank);
            Ok(vec![Value::Float(picked.reshape(&out_shape))])
        }
    }
}

fn axes_of(node: &Node, inputs: &[Option<Value>], opset: i64) -> Result<Option<Vec<i64>>, String> {
    if opset >= 13 {
        match inputs.get(1).and_then(Option::as_ref) {
            Some(v) => Ok(Some(v.clone().into_ints().0)),
            None => Ok(None),
        }
    } else {
        Ok(node.ints("axes"))
    }
}

fn unsqueeze(node: &Node, inputs: &[Option<Value>], opset: i64) -> OpResult {
    let v = req(inputs, 0)?.clone();
    let axes = axes_of(node, inputs, opset)?.ok_or("Unsqueeze needs axes")?;
    let mut shape = v.shape();
    let out_rank = (shape.len() + axes.len()) as i64;
    if out_rank as usize > MAX_RANK {
        return Err(format!(
            "result would have rank {out_rank} (at most {MAX_RANK} is supported)"
        ));
    }
    let mut norm: Vec<usize> = axes
        .iter()
        .map(|&a| if a < 0 { a + out_rank } else { a })
        .filter(|a| (0..out_rank).contains(a))
        .map(|a| a as usize)
        .collect();
    if norm.len() != axes.len() {
        return Err(format!("axes {axes:?} out of range"));
    }
    norm.sort_unstable();
    for a in norm {
        shape.insert(a, 1);
    }
    Ok(vec![reshape_value(v, &shape)])
}

fn squeeze(node: &Node, inputs: &[Option<Value>], opset: i64) -> OpResult {
    let v = req(inputs, 0)?.clone();
    let shape = v.shape();
    let r = shape.len() as i64;
    let out: Vec<usize> = match axes_of(node, inputs, opset)? {
        None => shape.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let norm: Vec<usize> = axes
                .iter()
                .map(|&a| (if a < 0 { a + r } else { a }) as usize)
                .collect();
            if norm.iter().any(|&a| a >= shape.len() || shape[a] != 1) {
                return Err(format!("cannot squeeze axes {axes:?} of shape {shape:?}"));
            }
            shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !norm.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    Ok(vec![reshape_value(v, &out)])
}

fn cast(node: &Node, inputs: &[Option<Value>], device: &Device) -> OpResult {
    let v = req(inputs, 0)?.clone();
    match node.int("to") {
        Some(1) | Some(10) | Some(11) | Some(16) => Ok(vec![Value::Float(v.into_float(device))]),
        Some(6) | Some(7) | Some(3) | Some(2) | Some(9) => {
            let (data, shape) = v.into_ints();
            Ok(vec![Value::Int { data, shape }])
        }
        other => Err(format!("Cast to ONNX type {other:?} is not supported")),
    }
}

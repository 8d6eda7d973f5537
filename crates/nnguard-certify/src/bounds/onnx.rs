//! ONNX graphs as bound-propagation graphs: Gemm, MatMul with a constant, Conv,
//! BatchNormalization, Add/Sub/Mul/Div with constants (affine) or of two activations
//! (Add/Sub), Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten/Reshape/Squeeze/
//! Unsqueeze, Identity and Dropout. Nodes that only compute constants (shape arithmetic of
//! the exporter) are skipped; any other node on the path of the input is an error naming it.

use std::collections::HashMap;

use nnguard_model::onnx::{NodeView, OnnxGraph};
use nnguard_model::tensor::{Tensor, TensorData};

use super::BoundMethod;
use super::graph::{Builder, Op, Window, scale_op};
use crate::error::CertifyError;

struct Ctx<'a> {
    graph: &'a OnnxGraph,
    method: BoundMethod,
    /// ONNX value name → graph node holding it (activations only).
    values: HashMap<String, usize>,
}

impl Ctx<'_> {
    fn unsupported(&self, node: &NodeView<'_>, detail: impl Into<String>) -> CertifyError {
        let detail = detail.into();
        CertifyError::UnsupportedOp {
            method: self.method.name(),
            op: node.op().to_string(),
            node: node.name().to_string(),
            detail: if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            },
        }
    }

    fn constant(
        &self,
        node: &NodeView<'_>,
        i: usize,
    ) -> Result<(Vec<f32>, Vec<usize>), CertifyError> {
        let name = node.inputs().get(i).map(String::as_str).unwrap_or("");
        self.graph.constant(name).ok_or_else(|| {
            self.unsupported(
                node,
                format!("input {i} ({name:?}) must be a constant (initializer or Constant node)"),
            )
        })
    }
}

/// Appends the graph's nodes to `b`, whose last node is the (normalised) input image.
pub(crate) fn convert(
    b: &mut Builder,
    graph: &OnnxGraph,
    method: BoundMethod,
) -> Result<(), CertifyError> {
    let mut ctx = Ctx {
        graph,
        method,
        values: HashMap::new(),
    };
    let mut x = b.last();
    if graph.declared_input().len() == 2 {
        x = b
            .push(Op::Reshape, vec![x], None, graph.input_name())
            .map_err(|e| CertifyError::UnsupportedLayer {
                method: method.name(),
                arch: "ONNX".into(),
                layer: graph.input_name().into(),
                reason: e,
            })?;
    }
    ctx.values.insert(graph.input_name().to_string(), x);
    let shapes: HashMap<&str, Vec<usize>> = graph
        .summary()
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.output_shape.iter().skip(1).copied().collect(),
            )
        })
        .collect();
    for node in graph.nodes() {
        let acts: Vec<usize> = node
            .inputs()
            .iter()
            .filter_map(|i| ctx.values.get(i).copied())
            .collect();
        if acts.is_empty() {
            continue; // a constant computation (Constant, shape arithmetic)
        }
        let shape = shapes.get(node.name()).cloned();
        let out = convert_node(b, &ctx, &node, shape)?;
        if let (Some(out), Some(name)) = (out, node.outputs().first()) {
            ctx.values.insert(name.clone(), out);
        }
    }
    let out = graph.output_name();
    let last = ctx
        .values
        .get(out)
        .copied()
        .ok_or_else(|| CertifyError::UnsupportedLayer {
            method: method.name(),
            arch: "ONNX".into(),
            layer: out.into(),
            reason: "the graph output does not depend on the input".into(),
        })?;
    if last != b.last() {
        // The output is an earlier value (e.g. through Identity): make it the last node.
        b.push(Op::Reshape, vec![last], None, out)
            .map_err(|e| CertifyError::UnsupportedLayer {
                method: method.name(),
                arch: "ONNX".into(),
                layer: out.into(),
                reason: e,
            })?;
    }
    Ok(())
}

/// Converts one node whose inputs include an activation; returns the node holding its first
/// output, or `None` when the output is not an activation (`Shape`).
fn convert_node(
    b: &mut Builder,
    ctx: &Ctx<'_>,
    node: &NodeView<'_>,
    shape: Option<Vec<usize>>,
) -> Result<Option<usize>, CertifyError> {
    let act = |i: usize| -> Option<usize> {
        node.inputs()
            .get(i)
            .and_then(|n| ctx.values.get(n).copied())
    };
    let x = act(0);
    let push = |op: Op, inputs: Vec<usize>, b: &mut Builder| -> Result<usize, CertifyError> {
        b.push(op, inputs, shape.clone(), node.name())
            .map_err(|e| ctx.unsupported(node, e))
    };
    let first = || x.ok_or_else(|| ctx.unsupported(node, "the activation must be its first input"));
    let out = match node.op() {
        "Identity" | "Dropout" => first()?,
        "Shape" => return Ok(None),
        "Relu" => push(Op::Relu, vec![first()?], b)?,
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
            let x = first()?;
            match &shape {
                Some(_) => push(Op::Reshape, vec![x], b)?,
                None => return Err(ctx.unsupported(node, "its output shape is unknown")),
            }
        }
        "Gemm" => {
            let x = first()?;
            if act(1).is_some() {
                return Err(ctx.unsupported(node, "a Gemm of two activations is not linear"));
            }
            if node.int_attr("transA").unwrap_or(0) != 0 {
                return Err(ctx.unsupported(node, "transA=1 is not supported"));
            }
            let (w, ws) = ctx.constant(node, 1)?;
            let [r, c] = ws[..] else {
                return Err(ctx.unsupported(node, format!("weight of shape {ws:?} is not 2-D")));
            };
            let alpha = node.float_attr("alpha").unwrap_or(1.0);
            // Burn's layout is [in, out].
            let (inp, out, wt) = if node.int_attr("transB").unwrap_or(0) != 0 {
                let mut t = vec![0f32; r * c];
                for o in 0..r {
                    for i in 0..c {
                        t[i * r + o] = w[o * c + i] * alpha;
                    }
                }
                (c, r, t)
            } else {
                (r, c, w.iter().map(|v| v * alpha).collect())
            };
            let bias = if node.inputs().get(2).is_some_and(|n| !n.is_empty()) {
                if act(2).is_some() {
                    return Err(ctx.unsupported(node, "the bias C must be a constant"));
                }
                let (cv, cs) = ctx.constant(node, 2)?;
                let beta = node.float_attr("beta").unwrap_or(1.0);
                let full = broadcast(&cv, &cs, &[out]).ok_or_else(|| {
                    ctx.unsupported(
                        node,
                        format!("bias of shape {cs:?} does not broadcast to [{out}]"),
                    )
                })?;
                Some(Tensor::<1>::from_data(
                    TensorData::new(full.iter().map(|v| v * beta).collect::<Vec<f32>>(), [out]),
                    &b.device,
                ))
            } else {
                None
            };
            let w = Tensor::<2>::from_data(TensorData::new(wt, [inp, out]), &b.device);
            push(Op::Linear { w, b: bias }, vec![x], b)?
        }
        "MatMul" => {
            let x = first()?;
            if act(1).is_some() {
                return Err(ctx.unsupported(node, "a product of two activations is not linear"));
            }
            let (w, ws) = ctx.constant(node, 1)?;
            let [inp, out] = ws[..] else {
                return Err(ctx.unsupported(
                    node,
                    format!("only a 2-D constant right operand is supported, found {ws:?}"),
                ));
            };
            if b.nodes[x].shape.len() != 1 {
                return Err(
                    ctx.unsupported(node, "only [batch, features] activations are supported")
                );
            }
            let w = Tensor::<2>::from_data(TensorData::new(w, [inp, out]), &b.device);
            push(Op::Linear { w, b: None }, vec![x], b)?
        }
        op @ ("Add" | "Sub" | "Mul" | "Div") => {
            match (act(0), act(1)) {
                (Some(p), Some(q)) => match op {
                    "Add" => push(Op::Add, vec![p, q], b)?,
                    "Sub" => push(Op::Sub, vec![p, q], b)?,
                    _ => {
                        return Err(ctx.unsupported(
                            node,
                            "a product or quotient of two activations is not linear",
                        ));
                    }
                },
                (Some(p), None) | (None, Some(p)) => {
                    let act_first = act(0).is_some();
                    let (cv, cs) = ctx.constant(node, if act_first { 1 } else { 0 })?;
                    let target = b.nodes[p].shape.clone();
                    let full = broadcast(&cv, &cs, &target).ok_or_else(|| {
                        ctx.unsupported(node, format!("constant of shape {cs:?} does not broadcast to {target:?} per image"))
                    })?;
                    let n = full.len();
                    let (s, t): (Vec<f32>, Vec<f32>) = match (op, act_first) {
                        ("Add", _) => (vec![1.0; n], full),
                        ("Sub", true) => (vec![1.0; n], full.iter().map(|v| -v).collect()),
                        ("Sub", false) => (vec![-1.0; n], full),
                        ("Mul", _) => (full, vec![0.0; n]),
                        ("Div", true) => {
                            if full.iter().any(|v| *v == 0.0 || !v.is_finite()) {
                                return Err(ctx.unsupported(
                                    node,
                                    "division by zero or a non-finite constant",
                                ));
                            }
                            (full.iter().map(|v| 1.0 / v).collect(), vec![0.0; n])
                        }
                        _ => {
                            return Err(ctx.unsupported(
                                node,
                                "a constant divided by an activation is not linear",
                            ));
                        }
                    };
                    let op = scale_op(s, t, &b.device);
                    push(op, vec![p], b)?
                }
                (None, None) => return Ok(None),
            }
        }
        "BatchNormalization" => {
            let x = first()?;
            let shape_in = b.nodes[x].shape.clone();
            let c = shape_in.first().copied().unwrap_or(0);
            let mut params = Vec::with_capacity(4);
            for i in 1..=4 {
                let (v, s) = ctx.constant(node, i)?;
                if v.len() != c {
                    return Err(ctx.unsupported(
                        node,
                        format!("parameter {i} has shape {s:?}, expected [{c}]"),
                    ));
                }
                params.push(v);
            }
            let eps = node.float_attr("epsilon").unwrap_or(1e-5);
            let per: usize = shape_in.iter().skip(1).product();
            let (mut s, mut t) = (Vec::with_capacity(c * per), Vec::with_capacity(c * per));
            let [gamma, beta, mean, var] = &params[..] else {
                return Err(ctx.unsupported(node, "four parameters are required"));
            };
            for (((g, bb), m), v) in gamma.iter().zip(beta).zip(mean).zip(var) {
                let scale = g / (v + eps).sqrt();
                s.extend(std::iter::repeat_n(scale, per));
                t.extend(std::iter::repeat_n(bb - m * scale, per));
            }
            let op = scale_op(s, t, &b.device);
            push(op, vec![x], b)?
        }
        "Conv" => {
            let x = first()?;
            let (w, ws) = ctx.constant(node, 1)?;
            let [m, cg, kh, kw] = ws[..] else {
                return Err(ctx.unsupported(
                    node,
                    format!("only 2-D convolutions are supported (weight {ws:?})"),
                ));
            };
            let bias = if node.inputs().get(2).is_some_and(|n| !n.is_empty()) {
                let (bv, _) = ctx.constant(node, 2)?;
                if bv.len() != m {
                    return Err(ctx
                        .unsupported(node, "the bias does not have one value per output channel"));
                }
                Some(Tensor::<1>::from_data(TensorData::new(bv, [m]), &b.device))
            } else {
                None
            };
            let group = node.int_attr("group").unwrap_or(1);
            if group < 1 {
                return Err(ctx.unsupported(node, format!("group={group}")));
            }
            let in_shape = b.nodes[x].shape.clone();
            let window = window(ctx, node, &in_shape, [kh, kw])?;
            let w = Tensor::<4>::from_data(TensorData::new(w, [m, cg, kh, kw]), &b.device);
            push(
                Op::Conv {
                    w,
                    b: bias,
                    window,
                    groups: group as usize,
                },
                vec![x],
                b,
            )?
        }
        "MaxPool" | "AveragePool" => {
            let x = first()?;
            if node.outputs().get(1).is_some_and(|o| !o.is_empty()) {
                return Err(ctx.unsupported(node, "the Indices output is not supported"));
            }
            let k = match node.ints_attr("kernel_shape") {
                Some(k) if k.len() == 2 && k.iter().all(|&v| v >= 1) => {
                    [k[0] as usize, k[1] as usize]
                }
                other => return Err(ctx.unsupported(node, format!("kernel_shape={other:?}"))),
            };
            let in_shape = b.nodes[x].shape.clone();
            let window = window(ctx, node, &in_shape, k)?;
            let op = if node.op() == "MaxPool" {
                Op::MaxPool { window }
            } else {
                if window.dilation != [1, 1] {
                    return Err(ctx.unsupported(node, "dilated average pooling is not supported"));
                }
                Op::AvgPool {
                    window,
                    count_include_pad: node.int_attr("count_include_pad").unwrap_or(0) != 0,
                }
            };
            push(op, vec![x], b)?
        }
        "GlobalAveragePool" => push(Op::GlobalAvgPool, vec![first()?], b)?,
        _ => return Err(ctx.unsupported(node, "")),
    };
    Ok(Some(out))
}

fn pair(ctx: &Ctx<'_>, node: &NodeView<'_>, name: &str) -> Result<[usize; 2], CertifyError> {
    match node.ints_attr(name) {
        None => Ok([1, 1]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(ctx.unsupported(node, format!("{name}={v:?}"))),
    }
}

/// Window geometry of a Conv or pooling node, with `auto_pad` resolved as ONNX defines it.
fn window(
    ctx: &Ctx<'_>,
    node: &NodeView<'_>,
    in_shape: &[usize],
    kernel: [usize; 2],
) -> Result<Window, CertifyError> {
    let stride = pair(ctx, node, "strides")?;
    let dilation = pair(ctx, node, "dilations")?;
    let [_, h, w] = in_shape[..] else {
        return Err(ctx.unsupported(
            node,
            format!("input of shape {in_shape:?} is not [C, H, W]"),
        ));
    };
    let pads = match node.string_attr("auto_pad").as_deref() {
        None | Some("NOTSET") => match node.ints_attr("pads") {
            None => [(0, 0); 2],
            Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => [
                (p[0] as usize, p[2] as usize),
                (p[1] as usize, p[3] as usize),
            ],
            Some(p) => return Err(ctx.unsupported(node, format!("pads={p:?}"))),
        },
        Some("VALID") => [(0, 0); 2],
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            let mut out = [(0, 0); 2];
            for (i, input) in [h, w].into_iter().enumerate() {
                let o = input.div_ceil(stride[i]);
                let eff = (kernel[i] - 1) * dilation[i] + 1;
                let total = (o.saturating_sub(1) * stride[i] + eff).saturating_sub(input);
                let small = total / 2;
                out[i] = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            out
        }
        Some(other) => return Err(ctx.unsupported(node, format!("auto_pad={other:?}"))),
    };
    Ok(Window {
        kernel,
        stride,
        pads,
        dilation,
        ceil: node.int_attr("ceil_mode").unwrap_or(0) != 0,
    })
}

/// `values` of shape `from` broadcast (NumPy rules, aligned on the right, with a leading
/// batch axis of 1 allowed) to the per-image shape `to`.
fn broadcast(values: &[f32], from: &[usize], to: &[usize]) -> Option<Vec<f32>> {
    let mut from = from.to_vec();
    if from.len() == to.len() + 1 {
        if from[0] != 1 {
            return None;
        }
        from.remove(0);
    }
    if from.len() > to.len() || values.len() != from.iter().product::<usize>() {
        return None;
    }
    let pad = to.len() - from.len();
    let full: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(from.iter().copied())
        .collect();
    if full.iter().zip(to).any(|(&f, &t)| f != 1 && f != t) {
        return None;
    }
    let n: usize = to.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut rem, mut src, mut stride) = (flat, 0usize, 1usize);
        let mut idx = vec![0usize; to.len()];
        for d in (0..to.len()).rev() {
            idx[d] = rem % to[d];
            rem /= to[d];
        }
        for d in (0..to.len()).rev() {
            if full[d] != 1 {
                src += idx[d] * stride;
            }
            stride *= full[d];
        }
        out.push(values[src]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::broadcast;

    #[test]
    fn broadcast_follows_numpy_rules() {
        // Per-channel constant [C, 1, 1] over [2, 2, 1].
        assert_eq!(
            broadcast(&[1.0, 2.0], &[2, 1, 1], &[2, 2, 1]),
            Some(vec![1.0, 1.0, 2.0, 2.0])
        );
        // Scalar, and a leading batch axis.
        assert_eq!(broadcast(&[3.0], &[], &[2]), Some(vec![3.0, 3.0]));
        assert_eq!(broadcast(&[1.0, 2.0], &[1, 2], &[2]), Some(vec![1.0, 2.0]));
        assert_eq!(broadcast(&[1.0, 2.0, 3.0], &[3], &[2]), None);
    }
}

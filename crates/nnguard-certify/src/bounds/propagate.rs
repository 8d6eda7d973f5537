//! The numerics of bound propagation: exact evaluation of each operator, interval bounds
//! (Gowal et al. 2018, "On the Effectiveness of Interval Bound Propagation for Training
//! Verifiably Robust Models") and the backward pass of CROWN (Zhang et al. 2018, "Efficient
//! Neural Network Robustness Certification with General Activation Functions"), which turns a
//! linear objective on a node into a linear function of the input plus a constant, relaxing
//! each ReLU and max pool between linear upper and lower bounds.
//!
//! Values are `[batch, n]` tensors (flattened per image); the backward coefficients are
//! `[batch, rows, n]`, one row per bounded quantity.

use burn::tensor::module::{avg_pool2d, conv_transpose2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, ConvTransposeOptions, MaxPoolOptions};
use nnguard_model::tensor::{Device, Tensor, TensorData, to_vec};

use super::graph::{BoundNet, Op, Window};

/// Lower and upper bounds of a node's values, `[batch, n]` each.
#[derive(Debug, Clone)]
pub(crate) struct Interval {
    pub l: Tensor<2>,
    pub u: Tensor<2>,
}

fn to4(t: Tensor<2>, shape: &[usize]) -> Result<Tensor<4>, String> {
    match shape {
        [c, h, w] => {
            let b = t.dims()[0];
            Ok(t.reshape([b, *c, *h, *w]))
        }
        other => Err(format!(
            "expected an image-shaped [C, H, W] value, found {other:?}"
        )),
    }
}

fn flat(t: Tensor<4>) -> (Tensor<2>, Vec<usize>) {
    let [b, c, h, w] = t.dims();
    (t.reshape([b, c * h * w]), vec![c, h, w])
}

fn max_pool_options(w: &Window) -> MaxPoolOptions<2> {
    MaxPoolOptions::new(w.kernel)
        .with_stride(w.stride)
        .with_padding_pairs(w.pads)
        .with_dilation(w.dilation)
        .with_ceil_mode(w.ceil)
}

fn avg_pool_options(w: &Window, count_include_pad: bool) -> AvgPoolOptions<2> {
    AvgPoolOptions::new(w.kernel)
        .with_stride(w.stride)
        .with_padding_pairs(w.pads)
        .with_count_include_pad(count_include_pad)
        .with_ceil_mode(w.ceil)
}

/// Applies a single-input linear operator (without its bias when `bias` is false).
fn linear_map(
    op: &Op,
    x: Tensor<2>,
    shape: &[usize],
    bias: bool,
) -> Result<(Tensor<2>, Vec<usize>), String> {
    match op {
        Op::Linear { w, b } => {
            let [inp, out] = w.dims();
            if x.dims()[1] != inp {
                return Err(format!("a linear layer of {inp} inputs got {shape:?}"));
            }
            let y = x.matmul(w.clone());
            let y = match (b, bias) {
                (Some(b), true) => y.add(b.clone().reshape([1, out])),
                _ => y,
            };
            Ok((y, vec![out]))
        }
        Op::Conv {
            w,
            b,
            window,
            groups,
        } => {
            let x4 = to4(x, shape)?;
            let [_, c, h, wd] = x4.dims();
            let [m, cg, kh, kw] = w.dims();
            if cg * groups != c || m % groups != 0 {
                return Err(format!(
                    "convolution weight {:?} with {groups} groups does not fit {c} input channels",
                    [m, cg, kh, kw]
                ));
            }
            check_window(window, [h, wd])?;
            let opts =
                ConvOptions::new_with_padding(window.stride, window.pads, window.dilation, *groups);
            let bias = if bias { b.clone() } else { None };
            Ok(flat(conv2d(x4, w.clone(), bias, opts)))
        }
        Op::Scale { s, t } => {
            if s.dims()[1] != x.dims()[1] {
                return Err(format!(
                    "an elementwise map of {} values got {shape:?}",
                    s.dims()[1]
                ));
            }
            let y = x.mul(s.clone());
            Ok((if bias { y.add(t.clone()) } else { y }, shape.to_vec()))
        }
        Op::AvgPool {
            window,
            count_include_pad,
        } => {
            let x4 = to4(x, shape)?;
            let [_, _, h, w] = x4.dims();
            check_window(window, [h, w])?;
            Ok(flat(avg_pool2d(
                x4,
                avg_pool_options(window, *count_include_pad),
            )))
        }
        Op::GlobalAvgPool => {
            let x4 = to4(x, shape)?;
            let [b, c, _, _] = x4.dims();
            let y = x4.mean_dim(3).mean_dim(2).reshape([b, c]);
            Ok((y, vec![c, 1, 1]))
        }
        Op::Reshape => Ok((x, shape.to_vec())),
        other => Err(format!("{other:?} is not a single-input linear operator")),
    }
}

fn check_window(w: &Window, input: [usize; 2]) -> Result<(), String> {
    for i in 0..2 {
        let eff = (w.kernel[i].max(1) - 1) * w.dilation[i] + 1;
        if input[i] + w.pads[i].0 + w.pads[i].1 < eff || w.stride[i] == 0 {
            return Err(format!(
                "window {:?} (stride {:?}, padding {:?}) does not fit a {}×{} input",
                w.kernel, w.stride, w.pads, input[0], input[1]
            ));
        }
    }
    Ok(())
}

/// Evaluates `op` exactly on `[batch, n]` inputs with their per-image shapes.
pub(crate) fn apply_exact(
    op: &Op,
    ins: &[(Tensor<2>, &[usize])],
) -> Result<(Tensor<2>, Vec<usize>), String> {
    let first = ins.first().ok_or("an operator has no input")?;
    match op {
        Op::Input => Err("the input is not an operator".into()),
        Op::Relu => Ok((first.0.clone().clamp_min(0.0), first.1.to_vec())),
        Op::MaxPool { window } => {
            let x4 = to4(first.0.clone(), first.1)?;
            let [_, _, h, w] = x4.dims();
            check_window(window, [h, w])?;
            Ok(flat(max_pool2d(x4, max_pool_options(window))))
        }
        Op::Add | Op::Sub => {
            let second = ins.get(1).ok_or("a sum needs two inputs")?;
            if first.1 != second.1 {
                return Err(format!(
                    "operands of shapes {:?} and {:?} differ",
                    first.1, second.1
                ));
            }
            let y = if matches!(op, Op::Add) {
                first.0.clone().add(second.0.clone())
            } else {
                first.0.clone().sub(second.0.clone())
            };
            Ok((y, first.1.to_vec()))
        }
        _ => linear_map(op, first.0.clone(), first.1, true),
    }
}

/// Interval bounds of node `k` from the bounds of its inputs (IBP).
pub(crate) fn ibp_node(net: &BoundNet, k: usize, bounds: &[Interval]) -> Result<Interval, String> {
    let node = &net.nodes[k];
    let input = |i: usize| -> Result<(&Interval, &[usize]), String> {
        let j = *node.inputs.get(i).ok_or("missing input")?;
        Ok((&bounds[j], net.nodes[j].shape.as_slice()))
    };
    match &node.op {
        Op::Input => Err("the input has no interval of its own".into()),
        Op::Relu => {
            let (b, _) = input(0)?;
            Ok(Interval {
                l: b.l.clone().clamp_min(0.0),
                u: b.u.clone().clamp_min(0.0),
            })
        }
        // Monotone maps: the bounds of the output are the map of the bounds.
        Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool | Op::Reshape => {
            let (b, shape) = input(0)?;
            Ok(Interval {
                l: apply_exact(&node.op, &[(b.l.clone(), shape)])?.0,
                u: apply_exact(&node.op, &[(b.u.clone(), shape)])?.0,
            })
        }
        Op::Add | Op::Sub => {
            let (a, _) = input(0)?;
            let (b, _) = input(1)?;
            Ok(if matches!(node.op, Op::Add) {
                Interval {
                    l: a.l.clone().add(b.l.clone()),
                    u: a.u.clone().add(b.u.clone()),
                }
            } else {
                Interval {
                    l: a.l.clone().sub(b.u.clone()),
                    u: a.u.clone().sub(b.l.clone()),
                }
            })
        }
        Op::Linear { .. } | Op::Conv { .. } | Op::Scale { .. } => {
            let (b, shape) = input(0)?;
            let mid = b.l.clone().add(b.u.clone()).mul_scalar(0.5);
            let rad = b.u.clone().sub(b.l.clone()).mul_scalar(0.5).clamp_min(0.0);
            let (center, _) = linear_map(&node.op, mid, shape, true)?;
            let (radius, _) = linear_map(&abs_op(&node.op), rad, shape, false)?;
            Ok(Interval {
                l: center.clone().sub(radius.clone()),
                u: center.add(radius),
            })
        }
    }
}

/// The operator with its weights replaced by their absolute values (radius propagation).
fn abs_op(op: &Op) -> Op {
    match op {
        Op::Linear { w, .. } => Op::Linear {
            w: w.clone().abs(),
            b: None,
        },
        Op::Conv {
            w, window, groups, ..
        } => Op::Conv {
            w: w.clone().abs(),
            b: None,
            window: *window,
            groups: *groups,
        },
        Op::Scale { s, t } => Op::Scale {
            s: s.clone().abs(),
            t: t.clone().zeros_like(),
        },
        other => other.clone(),
    }
}

/// The linear relaxation of a non-linear node for one batch of images.
// One relaxation per non-linear node; the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Relax {
    /// ReLU: `lower·x ≤ relu(x) ≤ upper·x + upper_bias`, each `[batch, 1, n]`.
    Relu {
        lower: Tensor<3>,
        upper: Tensor<3>,
        upper_bias: Tensor<3>,
        /// The same three, on the host, `[batch × n]` each.
        host: [Vec<f32>; 3],
    },
    /// Max pool: output `o` is at least input `idx[o]`; it equals it where `exact[o]` is 1,
    /// and is at most the constant `cmax[o]` elsewhere. `[batch, 1, n_out]` each.
    MaxPool {
        idx: Vec<u32>,
        exact: Vec<f32>,
        cmax: Vec<f32>,
        n_in: usize,
        /// Whether no input is chosen by two outputs (non-overlapping windows).
        unique: bool,
    },
}

/// The ReLU relaxation of CROWN: the chord above unstable neurons, and below them the
/// line of slope 1 or 0, whichever is closer (the "adaptive" lower bound, Zhang et al. 2018).
pub(crate) fn relax_relu(input: &Interval, device: &Device) -> Relax {
    let [b, n] = input.l.dims();
    let (l, u) = (to_vec(input.l.clone()), to_vec(input.u.clone()));
    let mut lower = vec![0f32; b * n];
    let mut upper = vec![0f32; b * n];
    let mut bias = vec![0f32; b * n];
    for i in 0..b * n {
        let (lo, hi) = (l[i], u[i]);
        if hi <= 0.0 {
            continue;
        }
        if lo >= 0.0 {
            lower[i] = 1.0;
            upper[i] = 1.0;
            continue;
        }
        let slope = hi / (hi - lo);
        upper[i] = slope;
        bias[i] = -lo * slope;
        lower[i] = if hi > -lo { 1.0 } else { 0.0 };
    }
    let t = |v: &[f32]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [b, 1, n]), device);
    Relax::Relu {
        lower: t(&lower),
        upper: t(&upper),
        upper_bias: t(&bias),
        host: [lower, upper, bias],
    }
}

/// The max-pool relaxation of DeepPoly (Singh et al. 2019, "An Abstract Domain for
/// Certifying Neural Networks"): below by the input with the largest lower bound, above by
/// that same input when its lower bound reaches every other input's upper bound, else by the
/// constant largest upper bound.
pub(crate) fn relax_max_pool(
    input: &Interval,
    shape: &[usize],
    out_shape: &[usize],
    window: &Window,
    device: &Device,
) -> Result<Relax, String> {
    let ([c, h, w], [oc, oh, ow]) = (shape, out_shape) else {
        return Err(format!("max pooling of shape {shape:?} into {out_shape:?}"));
    };
    let (c, h, w, oh, ow) = (*c, *h, *w, *oh, *ow);
    if *oc != c {
        return Err("max pooling changed the channel count".into());
    }
    let b = input.l.dims()[0];
    let (l, u) = (to_vec(input.l.clone()), to_vec(input.u.clone()));
    let n_in = c * h * w;
    let n_out = c * oh * ow;
    let mut idx = vec![0u32; b * n_out];
    let mut exact = vec![0f32; b * n_out];
    let mut cmax = vec![0f32; b * n_out];
    let mut members = Vec::with_capacity(window.kernel[0] * window.kernel[1]);
    for img in 0..b {
        let (li, ui) = (&l[img * n_in..][..n_in], &u[img * n_in..][..n_in]);
        for ch in 0..c {
            for y in 0..oh {
                for x in 0..ow {
                    members.clear();
                    for ky in 0..window.kernel[0] {
                        let r = (y * window.stride[0] + ky * window.dilation[0])
                            .checked_sub(window.pads[0].0);
                        let Some(r) = r.filter(|&r| r < h) else {
                            continue;
                        };
                        for kx in 0..window.kernel[1] {
                            let q = (x * window.stride[1] + kx * window.dilation[1])
                                .checked_sub(window.pads[1].0);
                            if let Some(q) = q.filter(|&q| q < w) {
                                members.push(ch * h * w + r * w + q);
                            }
                        }
                    }
                    let Some(&first) = members.first() else {
                        return Err("a pooling window covers only padding".into());
                    };
                    let best = members
                        .iter()
                        .copied()
                        .fold(first, |a, m| if li[m] > li[a] { m } else { a });
                    let top_u = members
                        .iter()
                        .map(|&m| ui[m])
                        .fold(f32::NEG_INFINITY, f32::max);
                    let other_u = members
                        .iter()
                        .filter(|&&m| m != best)
                        .map(|&m| ui[m])
                        .fold(f32::NEG_INFINITY, f32::max);
                    let o = img * n_out + ch * oh * ow + y * ow + x;
                    idx[o] = best as u32;
                    exact[o] = if li[best] >= other_u { 1.0 } else { 0.0 };
                    cmax[o] = top_u;
                }
            }
        }
    }
    let _ = device;
    let mut seen = vec![false; n_in];
    let mut unique = true;
    for img in idx.chunks(n_out) {
        seen.iter_mut().for_each(|v| *v = false);
        for &j in img {
            unique &= !std::mem::replace(&mut seen[j as usize], true);
        }
    }
    Ok(Relax::MaxPool {
        idx,
        exact,
        cmax,
        n_in,
        unique,
    })
}

/// Where a backward pass turns coefficients into numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// At the input box only, relaxing every non-linear node (CROWN).
    Input,
    /// At the first non-linear node on each path, with its interval (IBP with the linear
    /// layers after the last non-linearity folded into the objective).
    Nonlinear,
}

/// Multiplies `[batch, rows, n]` coefficients by a `[batch, n]`-shaped per-image tensor.
fn per_image(t: &Tensor<2>) -> Tensor<3> {
    let [b, n] = t.dims();
    t.clone().reshape([b, 1, n])
}

/// Σ over the last axis of `[batch, rows, n]`, as `[batch, rows]`.
fn row_sum(t: Tensor<3>) -> Tensor<2> {
    let [b, s, _] = t.dims();
    t.sum_dim(2).reshape([b, s])
}

/// The lower bound of `λ · node_start` over the input box, for each row of `lambda`
/// (`[batch, rows, n_start]`). `bounds` holds an interval for every node up to `start`, and
/// `relax` caches the relaxations of non-linear nodes (computed on first use from their
/// inputs' bounds, which are final by then).
pub(crate) fn backward(
    net: &BoundNet,
    bounds: &[Interval],
    relax: &mut [Option<Relax>],
    start: usize,
    lambda: Tensor<3>,
    stop: Stop,
) -> Result<Tensor<2>, String> {
    let device = &net.device;
    let [b, s, _] = lambda.dims();
    let mut acc: Vec<Option<Tensor<3>>> = vec![None; start + 1];
    acc[start] = Some(lambda);
    let mut total = Tensor::<2>::zeros([b, s], device);
    let consumers = |j: usize| net.nodes.iter().filter(|n| n.inputs.contains(&j)).count();
    let add = |acc: &mut Vec<Option<Tensor<3>>>, i: usize, t: Tensor<3>| {
        acc[i] = Some(match acc[i].take() {
            Some(a) => a.add(t),
            None => t,
        });
    };
    for k in (0..=start).rev() {
        let Some(lam) = acc[k].take() else {
            continue;
        };
        let node = &net.nodes[k];
        if matches!(node.op, Op::Input) || (stop == Stop::Nonlinear && node.op.is_nonlinear()) {
            let iv = &bounds[k];
            let lower = lam.clone().clamp_min(0.0).mul(per_image(&iv.l))
                + lam.clamp_max(0.0).mul(per_image(&iv.u));
            total = total.add(row_sum(lower));
            continue;
        }
        let src = node.inputs.first().copied().ok_or("a node has no input")?;
        let in_shape = net.nodes[src].shape.clone();
        let n_in: usize = in_shape.iter().product();
        match &node.op {
            Op::Input => {}
            Op::Linear { w, b: bias } => {
                let out = w.dims()[1];
                let lam2 = lam.clone().reshape([b * s, out]);
                let back = lam2.matmul(w.clone().transpose()).reshape([b, s, n_in]);
                if let Some(bias) = bias {
                    let bb = bias.clone().reshape([1, 1, out]);
                    total = total.add(row_sum(lam.mul(bb)));
                }
                add(&mut acc, src, back);
            }
            Op::Conv {
                w,
                b: bias,
                window,
                groups,
            } => {
                let [co, oh, ow] = node.shape[..] else {
                    return Err("a convolution output is not image-shaped".into());
                };
                let [ci, h, wd] = in_shape[..] else {
                    return Err("a convolution input is not image-shaped".into());
                };
                let lam4 = lam.clone().reshape([b * s, co, oh, ow]);
                let back = conv_transpose_cropped(lam4, w, window, *groups, [h, wd])?;
                if let Some(bias) = bias {
                    let per_channel = lam.clone().reshape([b, s, co, oh * ow]).sum_dim(3);
                    let bb = bias.clone().reshape([1, 1, co, 1]);
                    total = total.add(per_channel.mul(bb).sum_dim(2).reshape([b, s]));
                }
                add(&mut acc, src, back.reshape([b, s, ci * h * wd]));
            }
            Op::Scale { s: sc, t } => {
                let n = sc.dims()[1];
                total = total.add(row_sum(lam.clone().mul(t.clone().reshape([1, 1, n]))));
                add(&mut acc, src, lam.mul(sc.clone().reshape([1, 1, n])));
            }
            Op::Reshape => add(&mut acc, src, lam),
            Op::GlobalAvgPool => {
                let [c, h, w] = in_shape[..] else {
                    return Err("global pooling of a non-image value".into());
                };
                let spread = lam
                    .reshape([b, s, c, 1])
                    .expand([b, s, c, h * w])
                    .div_scalar((h * w) as f32)
                    .reshape([b, s, c * h * w]);
                add(&mut acc, src, spread);
            }
            Op::AvgPool { .. } => {
                let back = vjp(&node.op, &in_shape, lam, device)?;
                add(&mut acc, src, back);
            }
            Op::Add | Op::Sub => {
                let other = *node.inputs.get(1).ok_or("a sum needs two inputs")?;
                let second = if matches!(node.op, Op::Add) {
                    lam.clone()
                } else {
                    lam.clone().neg()
                };
                add(&mut acc, src, lam);
                add(&mut acc, other, second);
            }
            Op::Relu | Op::MaxPool { .. } => {
                ensure_relax(net, bounds, relax, k)?;
                // A max pool right after a ReLU that feeds nothing else, with windows that
                // do not overlap: both relaxations in one pass on the host.
                let fused = match (&node.op, &net.nodes[src].op) {
                    (Op::MaxPool { .. }, Op::Relu) if consumers(src) == 1 => {
                        ensure_relax(net, bounds, relax, src)?;
                        matches!(relax[k], Some(Relax::MaxPool { unique: true, .. }))
                    }
                    _ => false,
                };
                if fused {
                    let (
                        Some(Relax::MaxPool {
                            idx,
                            exact,
                            cmax,
                            n_in,
                            ..
                        }),
                        Some(Relax::Relu { host, .. }),
                    ) = (&relax[k], &relax[src])
                    else {
                        return Err("missing relaxation".into());
                    };
                    let (back, bias) = pool_relu_rows(lam, idx, exact, cmax, *n_in, host, device);
                    total = total.add(bias);
                    let relu_src = net.nodes[src].inputs[0];
                    add(&mut acc, relu_src, back);
                    continue;
                }
                let Some(r) = relax[k].as_ref() else {
                    continue;
                };
                let pos = lam.clone().clamp_min(0.0);
                let neg = lam.clamp_max(0.0);
                match r {
                    Relax::Relu {
                        lower,
                        upper,
                        upper_bias,
                        ..
                    } => {
                        total = total.add(row_sum(neg.clone().mul(upper_bias.clone())));
                        let back = pos.mul(lower.clone()).add(neg.mul(upper.clone()));
                        add(&mut acc, src, back);
                    }
                    Relax::MaxPool {
                        idx,
                        exact,
                        cmax,
                        n_in,
                        ..
                    } => {
                        // Rows minimising: positive coefficients take the lower relaxation
                        // (the chosen input), negative ones the upper (that input if exact,
                        // else the constant).
                        let [_, _, n_out] = pos.dims();
                        let t = |v: &[f32]| {
                            Tensor::<3>::from_data(
                                TensorData::new(v.to_vec(), [b, 1, n_out]),
                                device,
                            )
                        };
                        let (exact, cmax) = (t(exact), t(cmax));
                        let inexact = exact.clone().neg().add_scalar(1.0);
                        total = total.add(row_sum(neg.clone().mul(inexact).mul(cmax)));
                        let values = pos.add(neg.mul(exact));
                        let back = scatter_rows(values, idx, *n_in, device);
                        add(&mut acc, src, back);
                    }
                }
            }
        }
    }
    Ok(total)
}

/// Computes the relaxation of non-linear node `k` if it is not cached yet.
fn ensure_relax(
    net: &BoundNet,
    bounds: &[Interval],
    relax: &mut [Option<Relax>],
    k: usize,
) -> Result<(), String> {
    if relax[k].is_some() {
        return Ok(());
    }
    let node = &net.nodes[k];
    let src = *node.inputs.first().ok_or("a node has no input")?;
    relax[k] = Some(match &node.op {
        Op::Relu => relax_relu(&bounds[src], &net.device),
        Op::MaxPool { window } => relax_max_pool(
            &bounds[src],
            &net.nodes[src].shape,
            &node.shape,
            window,
            &net.device,
        )?,
        _ => return Err("only ReLU and max pooling are relaxed".into()),
    });
    Ok(())
}

/// Adds each row's coefficients on pooled outputs into the chosen inputs, on the host (rows
/// in parallel): `values` is `[batch, rows, n_out]`, `idx` the chosen input per image and
/// output.
fn scatter_rows(values: Tensor<3>, idx: &[u32], n_in: usize, device: &Device) -> Tensor<3> {
    use rayon::prelude::*;
    let [b, s, n_out] = values.dims();
    let v = to_vec(values);
    let mut out = vec![0f32; b * s * n_in];
    out.par_chunks_mut(n_in)
        .zip(v.par_chunks(n_out))
        .enumerate()
        .for_each(|(row, (dst, src))| {
            let chosen = &idx[(row / s.max(1)) * n_out..][..n_out];
            for (&j, &x) in chosen.iter().zip(src) {
                dst[j as usize] += x;
            }
        });
    Tensor::from_data(TensorData::new(out, [b, s, n_in]), device)
}

/// The backward step through a max pool and the ReLU before it (windows not overlapping):
/// coefficients on the ReLU's input and the constant picked up, for rows minimising.
fn pool_relu_rows(
    lam: Tensor<3>,
    idx: &[u32],
    exact: &[f32],
    cmax: &[f32],
    n_in: usize,
    relu: &[Vec<f32>; 3],
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    use rayon::prelude::*;
    let [b, s, n_out] = lam.dims();
    let v = to_vec(lam);
    let [lower, upper, upper_bias] = relu;
    let mut out = vec![0f32; b * s * n_in];
    let mut bias = vec![0f32; b * s];
    out.par_chunks_mut(n_in)
        .zip(v.par_chunks(n_out))
        .zip(bias.par_iter_mut())
        .enumerate()
        .for_each(|(row, ((dst, src), c0))| {
            let img = row / s.max(1);
            let (chosen, ex, cm) = (
                &idx[img * n_out..][..n_out],
                &exact[img * n_out..][..n_out],
                &cmax[img * n_out..][..n_out],
            );
            let (lo, up, ub) = (
                &lower[img * n_in..][..n_in],
                &upper[img * n_in..][..n_in],
                &upper_bias[img * n_in..][..n_in],
            );
            let mut acc = 0f32;
            for o in 0..n_out {
                let a = src[o];
                // Max pool: a ≥ 0 or an exact window keeps the chosen input, else a constant.
                let c = if a >= 0.0 || ex[o] > 0.5 {
                    a
                } else {
                    acc += a * cm[o];
                    continue;
                };
                let p = chosen[o] as usize;
                // ReLU: lower line for c ≥ 0, upper line (with its intercept) for c < 0.
                if c >= 0.0 {
                    dst[p] = c * lo[p];
                } else {
                    dst[p] = c * up[p];
                    acc += c * ub[p];
                }
            }
            *c0 = acc;
        });
    (
        Tensor::from_data(TensorData::new(out, [b, s, n_in]), device),
        Tensor::from_data(TensorData::new(bias, [b, s]), device),
    )
}

/// The transpose of a convolution applied to output coefficients `[rows, co, oh, ow]`,
/// giving coefficients on its (unpadded) input of spatial size `hw`.
fn conv_transpose_cropped(
    lam: Tensor<4>,
    w: &Tensor<4>,
    window: &Window,
    groups: usize,
    hw: [usize; 2],
) -> Result<Tensor<4>, String> {
    let [_, _, oh, ow] = lam.dims();
    let [_, _, kh, kw] = w.dims();
    let out = [oh, ow];
    let k = [kh, kw];
    let mut padding_out = [0usize; 2];
    for i in 0..2 {
        let padded = hw[i] + window.pads[i].0 + window.pads[i].1;
        let reach = (out[i].max(1) - 1) * window.stride[i] + (k[i] - 1) * window.dilation[i] + 1;
        // The rows the transpose cannot reach carry no coefficient; `padding_out` adds them
        // (it is always smaller than the stride).
        padding_out[i] = padded.checked_sub(reach).ok_or("convolution geometry")?;
    }
    let opts =
        ConvTransposeOptions::new(window.stride, [0, 0], padding_out, window.dilation, groups);
    let full = conv_transpose2d(lam, w.clone(), None, opts);
    let [r, c, _, _] = full.dims();
    let (top, left) = (window.pads[0].0, window.pads[1].0);
    Ok(full.slice([0..r, 0..c, top..top + hw[0], left..left + hw[1]]))
}

/// The vector–Jacobian product of a linear operator (coefficients pulled back through it),
/// by automatic differentiation of `Σ λ · op(x)` at x = 0.
fn vjp(op: &Op, in_shape: &[usize], lam: Tensor<3>, device: &Device) -> Result<Tensor<3>, String> {
    let [b, s, n_out] = lam.dims();
    let n_in: usize = in_shape.iter().product();
    let x = Tensor::<2>::zeros([b * s, n_in], device)
        .autodiff()
        .require_grad();
    let (y, _) = linear_map(op, x.clone(), in_shape, false)?;
    let objective = y.mul(lam.reshape([b * s, n_out]).autodiff()).sum();
    let grads = objective.backward();
    let g = x
        .grad(&grads)
        .ok_or("no gradient through a linear operator")?;
    Ok(g.reshape([b, s, n_in]))
}

//! Verified robustness of ReLU networks in an L∞ ball by bound propagation.
//!
//! - IBP, interval bound propagation (Gowal et al. 2018, "On the Effectiveness of Interval
//!   Bound Propagation for Training Verifiably Robust Models"): one forward pass of intervals.
//! - CROWN (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
//!   Activation Functions"): linear lower and upper bounds obtained by a backward pass that
//!   relaxes each ReLU (and each max pool, as in DeepPoly, Singh et al. 2019), with every
//!   intermediate pre-activation bounded the same way and intersected with its interval.
//!
//! An input is verified at ε when, for its label y, the lower bound of z_y − z_j is positive
//! for every other class j over the box [x − ε, x + ε] ∩ [lo, hi]. The margins are bounded
//! with the last linear layers folded into the objective, as is standard: for IBP the bound
//! of (w_y − w_j)·h + b_y − b_j over the interval of h, which is tighter than subtracting the
//! intervals of z_y and z_j. CROWN's bounds are intersected with IBP's, so they are never
//! looser.
//!
//! Floating point: bounds are computed in `f32` without directed rounding (like the tools
//! they follow), so a margin within about 1e-5 of zero is not a proof.
//!
//! ```
//! use nnguard_certify::bounds::{BoundMethod, VerifierConfig};
//! let err = VerifierConfig { method: BoundMethod::Ibp, eps: -0.1, batch: 100 }.build().unwrap_err();
//! assert!(err.to_string().starts_with("--eps"));
//! ```

mod graph;
mod onnx;
mod propagate;

pub use graph::BoundNet;

use nnguard_model::tensor::{Tensor, TensorData, argmax_rows, to_vec};
use serde::{Deserialize, Serialize};

use crate::error::CertifyError;
use propagate::{Interval, Stop, backward, ibp_node};

/// Which bound propagation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundMethod {
    /// Interval bound propagation.
    Ibp,
    /// CROWN linear bounds (intersected with IBP's).
    Crown,
}

impl BoundMethod {
    /// The name in messages: `IBP` or `CROWN`.
    pub fn name(self) -> &'static str {
        match self {
            BoundMethod::Ibp => "IBP",
            BoundMethod::Crown => "CROWN",
        }
    }
}

impl std::fmt::Display for BoundMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Inputs of a max pool (and the logits) with at most this many values are all bounded by
/// CROWN; otherwise only the unstable inputs of ReLUs (interval crossing zero) are, the only
/// ones whose relaxation a tighter bound can change.
pub const CROWN_FULL_LAYER: usize = 4096;
/// Rows per CROWN backward pass (bounds memory to about rows × the largest layer).
pub const CROWN_CHUNK_ROWS: usize = 512;

/// Settings of [`Verifier`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerifierConfig {
    /// IBP or CROWN.
    pub method: BoundMethod,
    /// Radius of the L∞ ball (pixel scale).
    pub eps: f32,
    /// Images per IBP pass.
    pub batch: usize,
}

impl Default for VerifierConfig {
    /// CROWN at ε = 0.01, batches of 100.
    fn default() -> Self {
        Self {
            method: BoundMethod::Crown,
            eps: 0.01,
            batch: 100,
        }
    }
}

impl VerifierConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Verifier, CertifyError> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(CertifyError::config(
                "--eps",
                format!("must be a finite number ≥ 0, got {}", self.eps),
            ));
        }
        if self.batch == 0 {
            return Err(CertifyError::config("--batch", "must be at least 1"));
        }
        Ok(Verifier { config: self })
    }
}

/// The verdict on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The model's prediction on the clean input.
    pub predicted: u32,
    /// Whether every margin z_y − z_j has a positive lower bound over the ball.
    pub verified: bool,
    /// The smallest lower bound of z_y − z_j over j ≠ y.
    pub margin_lower: f32,
}

/// Lower and upper bounds of each logit over the ball, per image.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitBounds {
    /// `[images × classes]` lower bounds.
    pub lower: Vec<f32>,
    /// `[images × classes]` upper bounds.
    pub upper: Vec<f32>,
}

/// A built verifier.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
}

impl Verifier {
    /// The settings.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verdicts for `images` (contiguous, `C·H·W` values each) with their `labels`;
    /// `progress` is told how many images are done.
    pub fn verify(
        &self,
        net: &BoundNet,
        images: &[f32],
        labels: &[u32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Verdict>, CertifyError> {
        let per = check_images(net, images, labels.len())?;
        let mut out = Vec::with_capacity(labels.len());
        for (chunk, ys) in images
            .chunks(per * self.config.batch)
            .zip(labels.chunks(self.config.batch))
        {
            let (xl, xu) = input_box(net, chunk, self.config.eps);
            let bounds = ibp_all(net, xl, xu).map_err(|e| internal(net, e))?;
            let clean = exact_logits(net, chunk)?;
            let predicted = argmax_rows(&clean, net.classes);
            let ibp = margins(
                net,
                &bounds,
                ys,
                Stop::Nonlinear,
                &mut vec![None; net.len()],
            )
            .map_err(|e| internal(net, e))?;
            for (i, &y) in ys.iter().enumerate() {
                let mut m = ibp[i].clone();
                let worst = |m: &[f32]| {
                    m.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != y as usize)
                        .map(|(_, v)| *v)
                        .fold(f32::INFINITY, f32::min)
                };
                // CROWN can only raise a margin; it is skipped where IBP already verifies
                // or where the clean prediction is wrong (then z_y − z_pred ≤ 0 at x itself).
                if self.config.method == BoundMethod::Crown && worst(&m) <= 0.0 && predicted[i] == y
                {
                    let img = &chunk[i * per..(i + 1) * per];
                    let c = crown_margins(net, img, y, self.config.eps)
                        .map_err(|e| internal(net, e))?;
                    for (a, b) in m.iter_mut().zip(c) {
                        *a = a.max(b);
                    }
                }
                let margin_lower = worst(&m);
                out.push(Verdict {
                    predicted: predicted[i],
                    verified: margin_lower > 0.0,
                    margin_lower,
                });
                progress(out.len());
            }
        }
        Ok(out)
    }

    /// Bounds of every logit over the ball around each image (IBP, or CROWN intersected
    /// with IBP).
    pub fn logit_bounds(
        &self,
        net: &BoundNet,
        images: &[f32],
    ) -> Result<LogitBounds, CertifyError> {
        let per = net.input_shape.iter().product::<usize>();
        let n = images.len() / per.max(1);
        check_images(net, images, n)?;
        let k = net.classes;
        let mut lower = Vec::with_capacity(n * k);
        let mut upper = Vec::with_capacity(n * k);
        for img in images.chunks(per) {
            let (l, u) = match self.config.method {
                BoundMethod::Ibp => {
                    let (xl, xu) = input_box(net, img, self.config.eps);
                    let b = ibp_all(net, xl, xu).map_err(|e| internal(net, e))?;
                    let last = &b[net.len() - 1];
                    (to_vec(last.l.clone()), to_vec(last.u.clone()))
                }
                BoundMethod::Crown => {
                    let (bounds, _) =
                        crown_all(net, img, self.config.eps).map_err(|e| internal(net, e))?;
                    let last = &bounds[net.len() - 1];
                    (to_vec(last.l.clone()), to_vec(last.u.clone()))
                }
            };
            lower.extend(l);
            upper.extend(u);
        }
        Ok(LogitBounds { lower, upper })
    }
}

fn internal(net: &BoundNet, reason: String) -> CertifyError {
    CertifyError::UnsupportedLayer {
        method: "bound propagation",
        arch: "model".into(),
        layer: net.nodes.last().map(|n| n.name.clone()).unwrap_or_default(),
        reason,
    }
}

fn check_images(net: &BoundNet, images: &[f32], n: usize) -> Result<usize, CertifyError> {
    let per: usize = net.input_shape.iter().product();
    if per == 0 || images.len() != per * n {
        return Err(CertifyError::InputShape {
            expected: net.input_shape,
            found: images.len(),
        });
    }
    Ok(per)
}

/// The box [x − ε, x + ε] ∩ [lo, hi] as `[batch, n]` lower and upper tensors.
fn input_box(net: &BoundNet, images: &[f32], eps: f32) -> (Tensor<2>, Tensor<2>) {
    let per: usize = net.input_shape.iter().product();
    let b = images.len() / per.max(1);
    let (lo, hi) = net.bounds;
    let l: Vec<f32> = images.iter().map(|&x| (x - eps).max(lo)).collect();
    let u: Vec<f32> = images.iter().map(|&x| (x + eps).min(hi)).collect();
    let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [b, per]), &net.device);
    (t(l), t(u))
}

/// The graph's own forward pass (bounds at ε = 0), as `[images × classes]` logits.
fn exact_logits(net: &BoundNet, images: &[f32]) -> Result<Vec<f32>, CertifyError> {
    let (x, _) = input_box(net, images, 0.0);
    let b = ibp_all(net, x.clone(), x).map_err(|e| internal(net, e))?;
    Ok(to_vec(b[net.len() - 1].l.clone()))
}

/// Interval bounds of every node.
fn ibp_all(net: &BoundNet, xl: Tensor<2>, xu: Tensor<2>) -> Result<Vec<Interval>, String> {
    let mut bounds = Vec::with_capacity(net.len());
    bounds.push(Interval { l: xl, u: xu });
    for k in 1..net.len() {
        let iv = ibp_node(net, k, &bounds)?;
        bounds.push(iv);
    }
    Ok(bounds)
}

/// `[batch, K−1... K, K]` specification rows e_y − e_j (the row j = y is zero).
fn margin_spec(net: &BoundNet, labels: &[u32]) -> Tensor<3> {
    let k = net.classes;
    let b = labels.len();
    let mut v = vec![0f32; b * k * k];
    for (i, &y) in labels.iter().enumerate() {
        for j in 0..k {
            if j != y as usize {
                v[i * k * k + j * k + y as usize] += 1.0;
                v[i * k * k + j * k + j] -= 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [b, k, k]), &net.device)
}

/// Lower bounds of z_y − z_j for every image and class j, from a backward pass stopping at
/// `stop`.
fn margins(
    net: &BoundNet,
    bounds: &[Interval],
    labels: &[u32],
    stop: Stop,
    relax: &mut [Option<propagate::Relax>],
) -> Result<Vec<Vec<f32>>, String> {
    let spec = margin_spec(net, labels);
    let lower = backward(net, bounds, relax, net.len() - 1, spec, stop)?;
    Ok(to_vec(lower)
        .chunks(net.classes)
        .map(<[f32]>::to_vec)
        .collect())
}

/// Whether node `k`'s interval is already exact over the input box: the box itself and
/// elementwise maps of it, and one linear operator applied to such a value.
fn exact_interval(net: &BoundNet, k: usize, memo: &mut Vec<Option<(bool, bool)>>) -> (bool, bool) {
    use graph::Op;
    // (is a box, is exact)
    if let Some(v) = memo[k] {
        return v;
    }
    let node = &net.nodes[k];
    let input_box = |memo: &mut Vec<Option<(bool, bool)>>| {
        node.inputs
            .first()
            .map(|&i| exact_interval(net, i, memo).0)
            .unwrap_or(false)
    };
    let v = match node.op {
        Op::Input => (true, true),
        Op::Scale { .. } | Op::Reshape | Op::Relu => {
            let b = input_box(memo);
            (b, b)
        }
        Op::Linear { .. } | Op::Conv { .. } | Op::GlobalAvgPool => (false, input_box(memo)),
        _ => (false, false),
    };
    memo[k] = Some(v);
    v
}

/// CROWN bounds of every node for one image: each input of a ReLU or max pool is bounded
/// by a backward pass to the input (all values of small layers, the unstable ones of large
/// ones) and intersected with its interval bound.
fn crown_all(
    net: &BoundNet,
    image: &[f32],
    eps: f32,
) -> Result<(Vec<Interval>, Vec<Option<propagate::Relax>>), String> {
    let (xl, xu) = input_box(net, image, eps);
    let mut bounds = vec![Interval { l: xl, u: xu }];
    let mut relax: Vec<Option<propagate::Relax>> = vec![None; net.len()];
    let mut memo = vec![None; net.len()];
    let feeds_nonlinear: Vec<bool> = (0..net.len())
        .map(|k| {
            net.nodes
                .iter()
                .any(|n| n.op.is_nonlinear() && n.inputs.contains(&k))
        })
        .collect();
    let last = net.len() - 1;
    for k in 1..net.len() {
        let mut iv = ibp_node(net, k, &bounds)?;
        let refine = (feeds_nonlinear.get(k).copied().unwrap_or(false) || k == last)
            && !net.nodes[k].op.is_nonlinear()
            && !exact_interval(net, k, &mut memo).1;
        if refine {
            iv = refine_node(net, &mut bounds, &mut relax, k, iv)?;
        }
        bounds.push(iv);
    }
    Ok((bounds, relax))
}

/// Tightens the interval `iv` of node `k` by CROWN backward passes.
fn refine_node(
    net: &BoundNet,
    bounds: &mut Vec<Interval>,
    relax: &mut [Option<propagate::Relax>],
    k: usize,
    iv: Interval,
) -> Result<Interval, String> {
    let n = net.nodes[k].len();
    let mut l = to_vec(iv.l);
    let mut u = to_vec(iv.u);
    // A ReLU's relaxation depends only on the bounds of its unstable inputs; a max pool's
    // and the output's on all of them (those of small layers are all bounded).
    let all = n <= CROWN_FULL_LAYER
        && (k + 1 == net.len()
            || net
                .nodes
                .iter()
                .any(|c| matches!(c.op, graph::Op::MaxPool { .. }) && c.inputs.contains(&k)));
    let rows: Vec<usize> = (0..n)
        .filter(|&i| u[i] > l[i] && (all || (l[i] < 0.0 && u[i] > 0.0)))
        .collect();
    // The node's own interval must be present while its bounds are computed.
    bounds.push(Interval {
        l: Tensor::from_data(TensorData::new(l.clone(), [1, n]), &net.device),
        u: Tensor::from_data(TensorData::new(u.clone(), [1, n]), &net.device),
    });
    let first = FirstStep::of(net, k);
    for chunk in rows.chunks(CROWN_CHUNK_ROWS) {
        let r = chunk.len();
        let lower = match &first {
            // Start at the operator's input with its weight rows: no transposed product.
            Some(step) => {
                let (coef, bias) = step.rows(chunk);
                let n_in = step.n_in;
                let lambda =
                    Tensor::<3>::from_data(TensorData::new(coef, [1, 2 * r, n_in]), &net.device);
                let lower = to_vec(backward(net, bounds, relax, step.src, lambda, Stop::Input)?);
                lower
                    .iter()
                    .zip(bias)
                    .map(|(a, b)| a + b)
                    .collect::<Vec<f32>>()
            }
            None => {
                let mut spec = vec![0f32; 2 * r * n];
                for (j, &i) in chunk.iter().enumerate() {
                    spec[j * n + i] = 1.0;
                    spec[(r + j) * n + i] = -1.0;
                }
                let lambda =
                    Tensor::<3>::from_data(TensorData::new(spec, [1, 2 * r, n]), &net.device);
                to_vec(backward(net, bounds, relax, k, lambda, Stop::Input)?)
            }
        };
        for (j, &i) in chunk.iter().enumerate() {
            l[i] = l[i].max(lower[j]);
            u[i] = u[i].min(-lower[r + j]);
        }
    }
    bounds.pop();
    let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, n]), &net.device);
    Ok(Interval { l: t(l), u: t(u) })
}

/// The first backward step from single values of a Linear or Conv node, done directly on
/// the weights: the row of value `i` is its weight row placed on the input.
struct FirstStep {
    src: usize,
    n_in: usize,
    kind: FirstKind,
}

enum FirstKind {
    /// Host copy of `[in, out]` weights and the bias.
    Linear {
        w: Vec<f32>,
        b: Vec<f32>,
        out: usize,
    },
    /// Host copy of `[m, cg, kh, kw]` weights, bias and geometry.
    Conv {
        w: Vec<f32>,
        b: Vec<f32>,
        wdims: [usize; 4],
        window: graph::Window,
        groups: usize,
        in_shape: [usize; 3],
        out_shape: [usize; 3],
    },
}

impl FirstStep {
    fn of(net: &BoundNet, k: usize) -> Option<Self> {
        let node = &net.nodes[k];
        let src = *node.inputs.first()?;
        let n_in = net.nodes[src].len();
        let kind = match &node.op {
            graph::Op::Linear { w, b } => {
                let out = w.dims()[1];
                FirstKind::Linear {
                    w: to_vec(w.clone()),
                    b: b.as_ref()
                        .map(|b| to_vec(b.clone()))
                        .unwrap_or_else(|| vec![0.0; out]),
                    out,
                }
            }
            graph::Op::Conv {
                w,
                b,
                window,
                groups,
            } => {
                let wdims = w.dims();
                let (Ok(in_shape), Ok(out_shape)) = (
                    <[usize; 3]>::try_from(net.nodes[src].shape.as_slice()),
                    <[usize; 3]>::try_from(node.shape.as_slice()),
                ) else {
                    return None;
                };
                FirstKind::Conv {
                    w: to_vec(w.clone()),
                    b: b.as_ref()
                        .map(|b| to_vec(b.clone()))
                        .unwrap_or_else(|| vec![0.0; wdims[0]]),
                    wdims,
                    window: *window,
                    groups: *groups,
                    in_shape,
                    out_shape,
                }
            }
            _ => return None,
        };
        Some(Self { src, n_in, kind })
    }

    /// Coefficients `[2·rows, n_in]` (the rows, then their negations) and constants.
    fn rows(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (r, n_in) = (rows.len(), self.n_in);
        let mut coef = vec![0f32; 2 * r * n_in];
        let mut bias = vec![0f32; 2 * r];
        for (j, &i) in rows.iter().enumerate() {
            let row = &mut coef[j * n_in..(j + 1) * n_in];
            match &self.kind {
                FirstKind::Linear { w, b, out } => {
                    for (p, c) in row.iter_mut().enumerate() {
                        *c = w[p * out + i];
                    }
                    bias[j] = b[i];
                }
                FirstKind::Conv {
                    w,
                    b,
                    wdims: [m, cg, kh, kw],
                    window,
                    groups,
                    in_shape: [_, h, wd],
                    out_shape: [_, oh, ow],
                } => {
                    let o = i / (oh * ow);
                    let (y, x) = ((i / ow) % oh, i % ow);
                    let group = o / (m / groups.max(&1));
                    for c in 0..*cg {
                        let ch = group * cg + c;
                        for ky in 0..*kh {
                            let Some(rr) = (y * window.stride[0] + ky * window.dilation[0])
                                .checked_sub(window.pads[0].0)
                                .filter(|&v| v < *h)
                            else {
                                continue;
                            };
                            for kx in 0..*kw {
                                if let Some(q) = (x * window.stride[1] + kx * window.dilation[1])
                                    .checked_sub(window.pads[1].0)
                                    .filter(|&v| v < *wd)
                                {
                                    row[ch * h * wd + rr * wd + q] +=
                                        w[((o * cg + c) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    bias[j] = b[o];
                }
            }
        }
        let (pos, neg) = coef.split_at_mut(r * n_in);
        for (a, b) in pos.iter().zip(neg.iter_mut()) {
            *b = -a;
        }
        for j in 0..r {
            bias[r + j] = -bias[j];
        }
        (coef, bias)
    }
}

/// CROWN lower bounds of z_y − z_j for one image, intersected with the folded IBP bound
/// computed on the CROWN-tightened intervals.
fn crown_margins(net: &BoundNet, image: &[f32], label: u32, eps: f32) -> Result<Vec<f32>, String> {
    let (bounds, mut relax) = crown_all(net, image, eps)?;
    let spec = margin_spec(net, &[label]);
    let crown = to_vec(backward(
        net,
        &bounds,
        &mut relax,
        net.len() - 1,
        spec.clone(),
        Stop::Input,
    )?);
    let folded = to_vec(backward(
        net,
        &bounds,
        &mut relax,
        net.len() - 1,
        spec,
        Stop::Nonlinear,
    )?);
    Ok(crown.iter().zip(folded).map(|(a, b)| a.max(b)).collect())
}

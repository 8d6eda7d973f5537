//! Run-time ONNX loading: a model exported from PyTorch becomes a graph evaluated with Burn
//! tensor ops, so attacks get exact input gradients through user models.
//!
//! The protobuf is parsed with `onnx-ir`'s bindings; nodes are interpreted here in file
//! order (ONNX requires topological order). Every op is checked against
//! [`SUPPORTED_OPS`] at load time and the graph is run once on a small batch, so a model
//! that loads also runs.

mod ops;
mod proto;
mod value;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use onnx_ir::{Message, ModelProto};

pub use ops::SUPPORTED_OPS;
use proto::Node;
use value::{FloatVal, Value};

use crate::error::ModelError;
use crate::tensor::{Device, Tensor};

/// Lowest supported version of the default ONNX operator set.
pub const MIN_OPSET: i64 = 7;
/// Highest supported version of the default ONNX operator set.
pub const MAX_OPSET: i64 = 22;
/// The largest ONNX file accepted.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// One node of a loaded graph, for display.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// Operator type.
    pub op: String,
    /// Shape of its first output for a batch of one image.
    pub output_shape: Vec<usize>,
    /// Number of parameters in its float initializer inputs.
    pub parameters: usize,
}

/// A read-only view of one node of a loaded graph.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    node: &'a Node,
}

impl<'a> NodeView<'a> {
    /// The node's name (`Op_index` when the file leaves it empty).
    pub fn name(&self) -> &'a str {
        &self.node.name
    }
    /// The operator type, e.g. `Conv`.
    pub fn op(&self) -> &'a str {
        &self.node.op
    }
    /// Names of the inputs (empty for an omitted optional input).
    pub fn inputs(&self) -> &'a [String] {
        &self.node.inputs
    }
    /// Names of the outputs.
    pub fn outputs(&self) -> &'a [String] {
        &self.node.outputs
    }
    /// An integer attribute.
    pub fn int_attr(&self, name: &str) -> Option<i64> {
        self.node.int(name)
    }
    /// An integer-list attribute.
    pub fn ints_attr(&self, name: &str) -> Option<Vec<i64>> {
        self.node.ints(name)
    }
    /// A float attribute.
    pub fn float_attr(&self, name: &str) -> Option<f32> {
        self.node.float(name)
    }
    /// A string attribute.
    pub fn string_attr(&self, name: &str) -> Option<String> {
        self.node.string(name)
    }
}

/// A parsed and validated ONNX classifier.
#[derive(Debug, Clone)]
pub struct OnnxGraph {
    path: PathBuf,
    nodes: Vec<Node>,
    initializers: HashMap<String, Value>,
    input_name: String,
    input_dims: Vec<Option<usize>>,
    output_name: String,
    opset: i64,
    /// Values whose last use is each node (freed after it runs).
    frees: Vec<Vec<String>>,
    summary: Vec<NodeSummary>,
    producer: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::BadOnnx {
        path: path.into(),
        reason: reason.into(),
    }
}

impl OnnxGraph {
    /// Parses and validates an ONNX file.
    ///
    /// `image_shape` is the per-image shape the caller feeds (from a sidecar or flag); when
    /// `None` it is taken from the graph's declared input.
    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
        if meta.is_dir() {
            return Err(ModelError::io(
                path,
                std::io::Error::other("is a directory, not an ONNX file"),
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(bad(
                path,
                format!(
                    "{} bytes exceeds the {MAX_FILE_BYTES}-byte limit",
                    meta.len()
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| bad(path, e.to_string()))?;
        Self::from_proto(path, &model, device)
    }

    fn from_proto(path: &Path, model: &ModelProto, device: &Device) -> Result<Self, ModelError> {
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| bad(path, "no opset import for the default ONNX domain"))?;
        if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
            return Err(ModelError::UnsupportedOpset {
                path: path.into(),
                domain: "ai.onnx".into(),
                found: opset,
                min: MIN_OPSET,
                max: MAX_OPSET,
            });
        }
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| bad(path, "the model has no graph"))?;
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let v = proto::tensor(t, device).map_err(|e| bad(path, e))?;
            initializers.insert(t.name.clone(), v);
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (i, n) in graph.node.iter().enumerate() {
            let node = proto::node(n, i, device)
                .map_err(|e| bad(path, format!("node {:?}: {e}", n.name)))?;
            let standard = node.domain.is_empty() || node.domain == "ai.onnx";
            if !standard || !SUPPORTED_OPS.contains(&node.op.as_str()) {
                let op = if standard {
                    node.op.clone()
                } else {
                    format!("{}::{}", node.domain, node.op)
                };
                return Err(ModelError::UnsupportedOp {
                    path: path.into(),
                    op,
                    node: node.name,
                    supported: SUPPORTED_OPS.join(", "),
                });
            }
            nodes.push(node);
        }
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains_key(&i.name))
            .collect();
        let [input] = inputs[..] else {
            return Err(bad(
                path,
                format!("expected one graph input, found {}", inputs.len()),
            ));
        };
        let input_dims: Vec<Option<usize>> = input
            .type_
            .as_ref()
            .map(|t| {
                t.tensor_type()
                    .shape
                    .dim
                    .iter()
                    .map(|d| {
                        if d.has_dim_value() {
                            usize::try_from(d.dim_value()).ok()
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let output_name = graph
            .output
            .first()
            .map(|o| o.name.clone())
            .ok_or_else(|| bad(path, "the graph has no output"))?;
        let frees = last_uses(&nodes, &output_name);
        let g = Self {
            path: path.into(),
            nodes,
            initializers,
            input_name: input.name.clone(),
            input_dims,
            output_name,
            opset,
            frees,
            summary: Vec::new(),
            producer: format!("{} {}", model.producer_name, model.producer_version)
                .trim()
                .to_string(),
        };
        g.check_input()?;
        Ok(g)
    }

    fn check_input(&self) -> Result<(), ModelError> {
        match self.input_dims.len() {
            2 | 4 => Ok(()),
            n => Err(bad(
                &self.path,
                format!(
                    "input {:?} has rank {n}; nnguard loads image classifiers with input [batch, C, H, W] or [batch, features]",
                    self.input_name
                ),
            )),
        }
    }

    /// The per-image shape the graph declares (`None` for symbolic dimensions).
    pub fn declared_input(&self) -> &[Option<usize>] {
        &self.input_dims
    }

    /// The default ONNX opset the model imports.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The exporter named in the file.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The graph's input name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// Nodes with their output shapes (filled by [`OnnxGraph::validate`]).
    pub fn summary(&self) -> &[NodeSummary] {
        &self.summary
    }

    /// The nodes in evaluation (topological) order, read-only, for analyses of the graph
    /// such as bound propagation.
    pub fn nodes(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.nodes.iter().map(|node| NodeView { node })
    }

    /// The name of the graph output that holds the logits.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The value of `name` when it is a constant of the graph (an initializer or the output
    /// of a `Constant` node), as row-major `f32` values and the logical shape.
    pub fn constant(&self, name: &str) -> Option<(Vec<f32>, Vec<usize>)> {
        let device = crate::tensor::cpu();
        let value = match self.initializers.get(name) {
            Some(v) => v.clone(),
            None => {
                let node = self
                    .nodes
                    .iter()
                    .find(|n| n.op == "Constant" && n.outputs.first().is_some_and(|o| o == name))?;
                ops::eval(node, &[], self.opset, &device)
                    .ok()?
                    .into_iter()
                    .next()?
            }
        };
        let shape = value.shape();
        let f = value.into_float(&device);
        Some((crate::tensor::to_vec(f.t), shape))
    }

    /// Number of float parameters in the initializers.
    pub fn parameter_count(&self) -> usize {
        self.initializers
            .values()
            .filter(|v| matches!(v, Value::Float(_)))
            .map(|v| v.shape().iter().product::<usize>())
            .sum()
    }

    /// Names of the nodes whose outputs [`OnnxGraph::run`] can stop at.
    pub fn layer_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Runs the graph once on a zero batch of two images of `image_shape`, recording every
    /// node's output shape and checking that the output is `[batch, classes]`. Returns the
    /// number of classes.
    pub fn validate(
        &mut self,
        image_shape: [usize; 3],
        device: &Device,
    ) -> Result<usize, ModelError> {
        let x = Tensor::<4>::zeros([2, image_shape[0], image_shape[1], image_shape[2]], device);
        let mut shapes = Vec::with_capacity(self.nodes.len());
        let out = self.execute(x, None, |_, v| shapes.push(v.shape()))?;
        let out_shape = out.shape();
        let classes = match out_shape[..] {
            [2, k] if k >= 2 => k,
            _ => {
                return Err(bad(
                    &self.path,
                    format!(
                        "output {:?} has shape {out_shape:?} for a batch of 2; expected [batch, classes]",
                        self.output_name
                    ),
                ));
            }
        };
        self.summary = self
            .nodes
            .iter()
            .zip(shapes)
            .map(|(n, mut s)| {
                if let Some(first) = s.first_mut() {
                    *first = (*first).min(1);
                }
                NodeSummary {
                    name: n.name.clone(),
                    op: n.op.clone(),
                    output_shape: s,
                    parameters: n
                        .inputs
                        .iter()
                        .filter_map(|i| self.initializers.get(i))
                        .filter(|v| matches!(v, Value::Float(_)))
                        .map(|v| v.shape().iter().product::<usize>())
                        .sum(),
                }
            })
            .collect();
        Ok(classes)
    }

    /// Runs the graph on an NCHW batch; with `stop`, returns the named node's first output
    /// flattened to `[batch, features]` instead of the logits.
    pub fn run(&self, x: Tensor<4>, stop: Option<&str>) -> Result<Tensor<2>, ModelError> {
        let out = self.execute(x, stop, |_, _| {})?;
        let b = out.shape().first().copied().unwrap_or(1);
        let f = match out {
            Value::Float(f) => f,
            other => other.into_float(&crate::tensor::cpu()),
        };
        let feat: usize = f.shape().iter().skip(1).product();
        Ok(f.t.reshape([b, feat.max(1)]))
    }

    fn execute(
        &self,
        x: Tensor<4>,
        stop: Option<&str>,
        mut observe: impl FnMut(&Node, &Value),
    ) -> Result<Value, ModelError> {
        let device = x.device();
        let [b, c, h, w] = x.dims();
        let input = if self.input_dims.len() == 2 {
            FloatVal::new(x, 4).reshape(&[b, c * h * w])
        } else {
            FloatVal::new(x, 4)
        };
        let mut env: HashMap<&str, Value> = HashMap::new();
        env.insert(self.input_name.as_str(), Value::Float(input));
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<Option<Value>> = node
                .inputs
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        return Ok(None);
                    }
                    env.get(name.as_str())
                        .or_else(|| self.initializers.get(name))
                        .cloned()
                        .map(Some)
                        .ok_or_else(|| {
                            self.node_error(
                                node,
                                format!("input {name:?} is not produced by any earlier node"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
            let outputs = ops::eval(node, &inputs, self.opset, &device)
                .map_err(|e| self.node_error(node, e))?;
            if let Some(first) = outputs.first() {
                observe(node, first);
                if stop == Some(node.name.as_str()) {
                    return Ok(first.clone());
                }
            }
            for (name, v) in node.outputs.iter().zip(outputs) {
                if !name.is_empty() {
                    env.insert(name.as_str(), v);
                }
            }
            for name in &self.frees[i] {
                env.remove(name.as_str());
            }
        }
        if let Some(s) = stop {
            return Err(ModelError::UnknownLayer {
                name: s.into(),
                available: self.layer_names().join(", "),
            });
        }
        env.remove(self.output_name.as_str())
            .or_else(|| self.initializers.get(&self.output_name).cloned())
            .ok_or_else(|| {
                bad(
                    &self.path,
                    format!("output {:?} is never produced", self.output_name),
                )
            })
    }

    fn node_error(&self, node: &Node, reason: String) -> ModelError {
        ModelError::BadNode {
            path: self.path.clone(),
            node: node.name.clone(),
            op: node.op.clone(),
            reason,
        }
    }
}

/// For each node, the values whose last reader it is (never the graph output).
fn last_uses(nodes: &[Node], output: &str) -> Vec<Vec<String>> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for name in &n.inputs {
            last.insert(name.as_str(), i);
        }
    }
    let produced: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(String::as_str))
        .collect();
    let mut frees = vec![Vec::new(); nodes.len()];
    for (name, i) in last {
        if name != output && (produced.contains(name) || !name.is_empty()) {
            frees[i].push(name.to_string());
        }
    }
    frees
}

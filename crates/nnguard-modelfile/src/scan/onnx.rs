//! ONNX models, decoded with `prost` from the subset of `onnx.proto` the checks need:
//! external-data locations and operator domains, through every subgraph and function.

use super::Ctx;
use crate::limits::{MAX_ONNX_BYTES, MAX_ONNX_GRAPH_DEPTH};
use crate::rules;
use prost::Message;

/// `ModelProto` (fields used by the scanner only).
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// `ir_version`.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// `opset_import`.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// `graph`.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// `functions`.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// `domain`.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// `version`.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// `node`.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `initializer`.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// `sparse_initializer`.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// `name`.
    #[prost(string, tag = "3")]
    pub name: String,
    /// `op_type`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// `domain`.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// `attribute`.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto` (tensor and graph values only).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `t`.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// `g`.
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// `tensors`.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// `graphs`.
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
}

/// `TensorProto` (name and external data only).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// `name`.
    #[prost(string, tag = "8")]
    pub name: String,
    /// `external_data`.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// `data_location` (1 = external).
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `SparseTensorProto`.
#[derive(Clone, PartialEq, Message)]
pub struct SparseTensorProto {
    /// `values`.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// `indices`.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// `key`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `FunctionProto`.
#[derive(Clone, PartialEq, Message)]
pub struct FunctionProto {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `node`.
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// `opset_import`.
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// `domain`.
    #[prost(string, tag = "10")]
    pub domain: String,
}

/// Domains served by the ONNX standard and ONNX Runtime's built-in operators.
const STANDARD_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
];

/// True when the first bytes look like a serialised `ModelProto`: `ir_version` (field 1,
/// varint 1–20) followed by another `ModelProto` field.
pub(crate) fn looks_like_onnx(head: &[u8]) -> bool {
    match head {
        [0x08, v, next, ..] if (1..=20).contains(v) => {
            matches!(next, 0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42 | 0x72)
        }
        _ => false,
    }
}

/// True when an external-data location leaves the model's directory.
pub(crate) fn location_escapes(loc: &str) -> bool {
    super::zip::escapes_root(loc) || loc.is_empty()
}

struct Walk<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    entry: &'c [String],
    reported_domains: Vec<String>,
    depth_reported: bool,
}

impl Walk<'_, '_> {
    fn domain(&mut self, domain: &str, what: String) {
        if STANDARD_DOMAINS.contains(&domain) || self.reported_domains.iter().any(|d| d == domain) {
            return;
        }
        self.reported_domains.push(domain.to_owned());
        self.ctx.report(
            &rules::onnx::ONNX_CUSTOM_OP_DOMAIN,
            None,
            format!("{what} uses custom domain {domain:?}"),
            self.entry,
            None,
        );
    }

    fn tensor(&mut self, t: &TensorProto) {
        for kv in &t.external_data {
            if kv.key != "location" {
                continue;
            }
            self.ctx.external.push(kv.value.clone());
            if location_escapes(&kv.value) {
                self.ctx.report(
                    &rules::onnx::ONNX_EXTERNAL_DATA_ESCAPES,
                    None,
                    format!(
                        "tensor {:?} reads its data from {:?}, outside the model directory",
                        t.name, kv.value
                    ),
                    self.entry,
                    None,
                );
            }
        }
    }

    fn nodes(&mut self, nodes: &[NodeProto], depth: u32) {
        for n in nodes {
            self.domain(&n.domain, format!("operator {:?} ({})", n.op_type, n.name));
            for a in &n.attribute {
                if let Some(t) = &a.t {
                    self.tensor(t);
                }
                for t in &a.tensors {
                    self.tensor(t);
                }
                if let Some(g) = &a.g {
                    self.graph(g, depth + 1);
                }
                for g in &a.graphs {
                    self.graph(g, depth + 1);
                }
            }
        }
    }

    fn graph(&mut self, g: &GraphProto, depth: u32) {
        if depth > MAX_ONNX_GRAPH_DEPTH {
            if !self.depth_reported {
                self.depth_reported = true;
                self.ctx.report(
                    &rules::onnx::ONNX_PARSE_ERROR,
                    None,
                    format!("subgraphs nest deeper than {MAX_ONNX_GRAPH_DEPTH}; deeper ones were not inspected"),
                    self.entry,
                    None,
                );
            }
            return;
        }
        for t in &g.initializer {
            self.tensor(t);
        }
        for s in &g.sparse_initializer {
            for t in s.values.iter().chain(s.indices.iter()) {
                self.tensor(t);
            }
        }
        self.nodes(&g.node, depth);
    }
}

/// Scans an ONNX model held in memory.
pub(crate) fn scan(ctx: &mut Ctx<'_>, data: &[u8], entry: &[String]) {
    if data.len() as u64 > MAX_ONNX_BYTES {
        ctx.report(
            &rules::file::SCAN_LIMIT_EXCEEDED,
            None,
            format!(
                "the model has {} bytes, above the {MAX_ONNX_BYTES}-byte protobuf limit",
                data.len()
            ),
            entry,
            None,
        );
        return;
    }
    let model = match ModelProto::decode(data) {
        Ok(m) => m,
        Err(e) => {
            ctx.report(
                &rules::onnx::ONNX_PARSE_ERROR,
                None,
                format!("the model cannot be decoded: {e}"),
                entry,
                None,
            );
            return;
        }
    };
    let mut w = Walk {
        ctx,
        entry,
        reported_domains: Vec::new(),
        depth_reported: false,
    };
    for o in &model.opset_import {
        w.domain(&o.domain, "an opset import".into());
    }
    if let Some(g) = &model.graph {
        w.graph(g, 0);
    }
    for f in &model.functions {
        w.domain(&f.domain, format!("function {:?}", f.name));
        w.nodes(&f.node, 1);
    }
}

/// Flags external-data files next to the model that are symbolic links.
pub(crate) fn check_links(ctx: &mut Ctx<'_>, dir: &std::path::Path) {
    let locations = std::mem::take(&mut ctx.external);
    let mut seen = std::collections::HashSet::new();
    for loc in locations {
        if location_escapes(&loc) || !seen.insert(loc.clone()) {
            continue;
        }
        let p = dir.join(&loc);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            let target = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            ctx.report(
                &rules::onnx::ONNX_EXTERNAL_DATA_LINK,
                None,
                format!("external-data file {loc:?} is a symbolic link to {target:?}"),
                &[],
                None,
            );
        }
    }
}

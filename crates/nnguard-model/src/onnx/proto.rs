//! Decoding ONNX protobuf messages (parsed by `onnx-ir`'s bindings) into the interpreter's
//! own node and value types, with every size checked against the bytes present.

use std::collections::HashMap;

use onnx_ir::{AttributeProto, AttributeType, NodeProto, TensorProto};

use super::value::{FloatVal, MAX_RANK, Value};
use crate::tensor::Device;

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;
const INT64: i32 = 7;
const BOOL: i32 = 9;
const DOUBLE: i32 = 11;

/// An attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
    Tensor(Box<Value>),
    /// A kind nnguard does not use (graphs, sparse tensors, ...).
    Other,
}

/// A graph node with decoded attributes.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub op: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name) {
            Some(Attr::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        match self.attrs.get(name) {
            Some(Attr::Ints(v)) => Some(v.clone()),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> Option<f32> {
        match self.attrs.get(name) {
            Some(Attr::Float(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn string(&self, name: &str) -> Option<String> {
        match self.attrs.get(name) {
            Some(Attr::Str(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Decodes a node (its tensor attributes become values on `device`).
pub(crate) fn node(proto: &NodeProto, index: usize, device: &Device) -> Result<Node, String> {
    let mut attrs = HashMap::new();
    for a in &proto.attribute {
        attrs.insert(a.name.clone(), attr(a, device)?);
    }
    let name = if proto.name.is_empty() {
        format!("{}_{index}", proto.op_type)
    } else {
        proto.name.clone()
    };
    Ok(Node {
        name,
        op: proto.op_type.clone(),
        domain: proto.domain.clone(),
        inputs: proto.input.clone(),
        outputs: proto.output.clone(),
        attrs,
    })
}

fn attr(a: &AttributeProto, device: &Device) -> Result<Attr, String> {
    Ok(match a.type_.enum_value() {
        Ok(AttributeType::INT) => Attr::Int(a.i),
        Ok(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
        Ok(AttributeType::FLOAT) => Attr::Float(a.f),
        Ok(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
        Ok(AttributeType::STRING) => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        Ok(AttributeType::TENSOR) => match a.t.as_ref() {
            Some(t) => Attr::Tensor(Box::new(tensor(t, device)?)),
            None => return Err(format!("attribute {:?} has no tensor", a.name)),
        },
        _ => Attr::Other,
    })
}

/// Decodes a tensor (initializer or constant) into a value.
pub(crate) fn tensor(t: &TensorProto, device: &Device) -> Result<Value, String> {
    if !t.external_data.is_empty() {
        return Err(format!(
            "tensor {:?} keeps its data in an external file, which nnguard does not load; re-export with the weights inside the .onnx file",
            t.name
        ));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(
            usize::try_from(d)
                .map_err(|_| format!("tensor {:?} has a negative dimension {d}", t.name))?,
        );
    }
    if shape.len() > MAX_RANK {
        return Err(format!(
            "tensor {:?} has rank {} (at most {MAX_RANK} is supported)",
            t.name,
            shape.len()
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor {:?}: dimensions {shape:?} overflow", t.name))?;
    let raw = &t.raw_data[..];
    let from_raw = |size: usize| -> Result<Option<&[u8]>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        let need = count
            .checked_mul(size)
            .ok_or_else(|| format!("tensor {:?} is too large", t.name))?;
        if raw.len() != need {
            return Err(format!(
                "tensor {:?}: {} bytes of raw data for {count} elements of {size} bytes",
                t.name,
                raw.len()
            ));
        }
        Ok(Some(raw))
    };
    let check_len = |n: usize| -> Result<(), String> {
        if n == count {
            Ok(())
        } else {
            Err(format!(
                "tensor {:?}: {n} values for shape {shape:?}",
                t.name
            ))
        }
    };
    match t.data_type {
        FLOAT | DOUBLE => {
            let data: Vec<f32> = if t.data_type == FLOAT {
                match from_raw(4)? {
                    Some(r) => r
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    None => t.float_data.clone(),
                }
            } else {
                match from_raw(8)? {
                    Some(r) => r
                        .chunks_exact(8)
                        .map(|c| {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(c);
                            f64::from_le_bytes(b) as f32
                        })
                        .collect(),
                    None => t.double_data.iter().map(|&v| v as f32).collect(),
                }
            };
            check_len(data.len())?;
            Ok(Value::Float(FloatVal::from_host(data, &shape, device)))
        }
        INT64 | INT32 | INT8 | UINT8 | BOOL => {
            let data: Vec<i64> = match t.data_type {
                INT64 => match from_raw(8)? {
                    Some(r) => r
                        .chunks_exact(8)
                        .map(|c| {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(c);
                            i64::from_le_bytes(b)
                        })
                        .collect(),
                    None => t.int64_data.clone(),
                },
                INT32 => match from_raw(4)? {
                    Some(r) => r
                        .chunks_exact(4)
                        .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect(),
                    None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
                },
                INT8 => match from_raw(1)? {
                    Some(r) => r.iter().map(|&b| i64::from(b as i8)).collect(),
                    None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
                },
                _ => match from_raw(1)? {
                    Some(r) => r.iter().map(|&b| i64::from(b)).collect(),
                    None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
                },
            };
            check_len(data.len())?;
            Ok(Value::Int { data, shape })
        }
        other => Err(format!(
            "tensor {:?} has ONNX data type {other}, which nnguard does not load (float, double and integer types are supported)",
            t.name
        )),
    }
}

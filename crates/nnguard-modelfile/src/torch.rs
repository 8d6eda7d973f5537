//! Tensors of a PyTorch checkpoint, read through the non-executing pickle VM.
//!
//! Understands the zip format (`torch.save` since 1.6: `<name>/data.pkl` plus one
//! `<name>/data/<key>` entry per storage) and the legacy stacked-pickle format. Objects are
//! recognised by the allowlisted callables that rebuild them (`_rebuild_tensor_v2`,
//! `_rebuild_parameter`, `OrderedDict`); nothing else is interpreted.

use crate::error::{ModelFileError, Result};
use crate::limits::{Limits, MAX_WALK_DEPTH, MAX_WALK_NODES};
use crate::pickle::{
    self, Allowlist, Arena, Construct, NodeId, Outcome, TORCH_LEGACY_MAGIC, Value,
};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// Element types of tensors that can be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// `torch.float64`.
    F64,
    /// `torch.float32`.
    F32,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8`.
    U8,
    /// `torch.bool`.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The dtype of a storage class written by `torch.save` (`FloatStorage` → `F32`).
    pub fn from_storage(module: &str, name: &str) -> Option<DType> {
        if module != "torch" {
            return None;
        }
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// One tensor, contiguous, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name: the dictionary keys leading to it, joined with `.`.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major bytes.
    pub data: Vec<u8>,
}

/// What the checkpoint holds besides tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// The tensors, in the order found.
    pub tensors: Vec<Tensor>,
    /// Names of values that are not tensors and were left out (hyper-parameters, epochs...).
    pub skipped: Vec<String>,
}

/// Where a tensor's elements lie in its storage.
struct Spec {
    name: String,
    key: String,
    dtype: DType,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

fn not_convertible(path: &Path, reason: impl Into<String>) -> ModelFileError {
    ModelFileError::NotConvertible {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io(path: &Path, source: std::io::Error) -> ModelFileError {
    ModelFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every tensor of the PyTorch checkpoint at `path`.
pub fn extract(path: &Path, limits: &Limits) -> Result<Extracted> {
    let mut file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut head = [0u8; 16];
    let n = file.read(&mut head).map_err(|e| io(path, e))?;
    file.rewind().map_err(|e| io(path, e))?;
    if head[..n].starts_with(b"PK\x03\x04") {
        extract_zip(path, std::io::BufReader::new(file), limits)
    } else if head[..n].starts_with(&TORCH_LEGACY_MAGIC[..n.min(TORCH_LEGACY_MAGIC.len())])
        && n >= 15
    {
        let len = file.metadata().map_err(|e| io(path, e))?.len();
        if len > limits.buffered_bytes {
            return Err(not_convertible(
                path,
                format!(
                    "the file has {len} bytes, above the {} read into memory",
                    limits.buffered_bytes
                ),
            ));
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| io(path, e))?;
        extract_legacy(path, &data, limits)
    } else {
        Err(not_convertible(
            path,
            "not a PyTorch checkpoint (neither the zip nor the legacy format)",
        ))
    }
}

fn run_pickle(path: &Path, data: &[u8], start: usize, limits: &Limits) -> Result<Outcome> {
    let out = pickle::run(data, start, limits, &Allowlist::default());
    if !out.reached_stop {
        let why = out
            .issues
            .first()
            .map(|i| i.message.clone())
            .unwrap_or_default();
        return Err(not_convertible(
            path,
            format!("the pickle cannot be read: {why}"),
        ));
    }
    Ok(out)
}

fn extract_zip<R: Read + Seek>(path: &Path, reader: R, limits: &Limits) -> Result<Extracted> {
    let bad = |e: zip::result::ZipError| {
        not_convertible(path, format!("the zip archive cannot be read: {e}"))
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(bad)?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|c| c.into_owned()))
        .collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .cloned()
        .ok_or_else(|| not_convertible(path, "the archive has no data.pkl"))?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_owned();
    let read = |archive: &mut zip::ZipArchive<R>, name: &str| -> Result<Vec<u8>> {
        let entry = archive.by_name(name).map_err(bad)?;
        if entry.size() > limits.buffered_bytes {
            return Err(not_convertible(
                path,
                format!(
                    "entry {name} is larger than {} bytes",
                    limits.buffered_bytes
                ),
            ));
        }
        let mut v = Vec::new();
        entry
            .take(limits.buffered_bytes)
            .read_to_end(&mut v)
            .map_err(|e| io(path, e))?;
        Ok(v)
    };
    let byteorder = format!("{prefix}byteorder");
    if names.contains(&byteorder) {
        let order = read(&mut archive, &byteorder)?;
        if order.trim_ascii() != b"little" {
            return Err(not_convertible(
                path,
                "the checkpoint was saved on a big-endian machine",
            ));
        }
    }
    let data = read(&mut archive, &pkl)?;
    let out = run_pickle(path, &data, 0, limits)?;
    let (specs, skipped) = collect(path, &out)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(specs.len());
    for spec in specs {
        if !storages.contains_key(&spec.key) {
            let bytes = read(&mut archive, &format!("{prefix}data/{}", spec.key))?;
            storages.insert(spec.key.clone(), bytes);
        }
        let storage = storages.get(&spec.key).map(Vec::as_slice).unwrap_or(&[]);
        tensors.push(materialize(path, &spec, storage)?);
    }
    Ok(Extracted { tensors, skipped })
}

fn extract_legacy(path: &Path, data: &[u8], limits: &Limits) -> Result<Extracted> {
    let mut pos = 0;
    let mut outs = Vec::new();
    for _ in 0..5 {
        let out = run_pickle(path, data, pos, limits)?;
        pos = out.end;
        outs.push(out);
    }
    let keys_out = &outs[4];
    let keys: Vec<String> = keys_out
        .root
        .and_then(|r| keys_out.arena.seq(r))
        .map(|ids| {
            ids.iter()
                .filter_map(|i| keys_out.arena.str(*i).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (specs, skipped) = collect(path, &outs[3])?;
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for s in &specs {
        sizes.insert(s.key.clone(), s.dtype.size());
    }
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let elem = sizes.get(&key).copied().unwrap_or(1) as u64;
        let len_bytes = data
            .get(pos..pos + 8)
            .ok_or_else(|| not_convertible(path, format!("storage {key} is truncated")))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(len_bytes);
        let bytes = u64::from_le_bytes(a)
            .checked_mul(elem)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| not_convertible(path, format!("storage {key} is too large")))?;
        let start = pos + 8;
        let end = start
            .checked_add(bytes)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| {
                not_convertible(path, format!("storage {key} runs past the end of the file"))
            })?;
        storages.insert(key, &data[start..end]);
        pos = end;
    }
    let tensors = specs
        .iter()
        .map(|s| {
            let storage = storages.get(&s.key).ok_or_else(|| {
                not_convertible(path, format!("storage {} is not in the file", s.key))
            })?;
            materialize(path, s, storage)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Extracted { tensors, skipped })
}

struct Walker<'a> {
    path: &'a Path,
    arena: &'a Arena,
    budget: u64,
    specs: Vec<Spec>,
    skipped: Vec<String>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn collect(path: &Path, out: &Outcome) -> Result<(Vec<Spec>, Vec<String>)> {
    let root = out
        .root
        .ok_or_else(|| not_convertible(path, "the pickle returns nothing"))?;
    let mut w = Walker {
        path,
        arena: &out.arena,
        budget: MAX_WALK_NODES,
        specs: Vec::new(),
        skipped: Vec::new(),
    };
    w.walk(root, String::new(), 0)?;
    Ok((w.specs, w.skipped))
}

impl Walker<'_> {
    fn key_text(&self, id: NodeId) -> String {
        match self.arena.get(id) {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Int(i)) => i.to_string(),
            _ => format!("#{id}"),
        }
    }

    fn walk(&mut self, id: NodeId, name: String, depth: u32) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| not_convertible(self.path, "the object is too large to walk"))?;
        if depth > MAX_WALK_DEPTH {
            return Err(not_convertible(self.path, "the object nests too deeply"));
        }
        let arena = self.arena;
        match arena.get(id) {
            Some(Value::Dict(pairs)) => {
                for (k, v) in pairs {
                    let key = join(&name, &self.key_text(*k));
                    self.walk(*v, key, depth + 1)?;
                }
            }
            Some(Value::List(_)) | Some(Value::Tuple(_)) => {
                let ids = arena.seq(id).unwrap_or(&[]);
                for (i, v) in ids.iter().enumerate() {
                    self.walk(*v, join(&name, &i.to_string()), depth + 1)?;
                }
            }
            Some(Value::Object {
                construct: Construct::Call { callable, args },
                items,
                ..
            }) => match arena.global(*callable) {
                Some(("collections", "OrderedDict")) => {
                    for (k, v) in items {
                        let key = join(&name, &self.key_text(*k));
                        self.walk(*v, key, depth + 1)?;
                    }
                }
                Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor")) => {
                    let spec = self.spec(*args, &name)?;
                    self.specs.push(spec);
                }
                Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
                    let first = arena.seq(*args).and_then(|a| a.first().copied());
                    match first {
                        Some(t) => self.walk(t, name, depth + 1)?,
                        None => self.skipped.push(name),
                    }
                }
                Some(("torch._tensor", "_rebuild_from_type_v2")) => {
                    let inner = arena
                        .seq(*args)
                        .and_then(|a| Some((*a.first()?, *a.get(2)?)));
                    match inner {
                        Some((func, inner_args))
                            if matches!(
                                arena.global(func),
                                Some(("torch._utils", "_rebuild_tensor_v2"))
                            ) =>
                        {
                            let spec = self.spec(inner_args, &name)?;
                            self.specs.push(spec);
                        }
                        _ => self.skipped.push(name),
                    }
                }
                _ => self.skipped.push(name),
            },
            _ => self.skipped.push(name),
        }
        Ok(())
    }

    fn ints(&self, id: NodeId, what: &str, name: &str) -> Result<Vec<u64>> {
        let bad = || ModelFileError::BadTensor {
            path: self.path.to_path_buf(),
            tensor: name.to_owned(),
            reason: format!("{what} is not a tuple of non-negative integers"),
        };
        self.arena
            .seq(id)
            .ok_or_else(bad)?
            .iter()
            .map(|i| {
                self.arena
                    .int(*i)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(bad)
            })
            .collect()
    }

    fn spec(&self, args: NodeId, name: &str) -> Result<Spec> {
        let bad = |reason: &str| ModelFileError::BadTensor {
            path: self.path.to_path_buf(),
            tensor: name.to_owned(),
            reason: reason.to_owned(),
        };
        let a = self.arena;
        let args = a
            .seq(args)
            .ok_or_else(|| bad("rebuild arguments are not a tuple"))?;
        let [storage, offset, shape, stride, ..] = args else {
            return Err(bad("too few rebuild arguments"));
        };
        let Some(Value::PersistentId(pid)) = a.get(*storage) else {
            return Err(bad("the storage is not a persistent id"));
        };
        let pid = a
            .seq(*pid)
            .ok_or_else(|| bad("the persistent id is not a tuple"))?;
        let [kind, ty, key, ..] = pid else {
            return Err(bad("the persistent id is too short"));
        };
        if a.str(*kind) != Some("storage") {
            return Err(bad("the persistent id is not a storage"));
        }
        let (m, n) = a
            .global(*ty)
            .ok_or_else(|| bad("the storage type is not a global"))?;
        let dtype = DType::from_storage(m, n)
            .ok_or_else(|| bad(&format!("storage type {m}.{n} cannot be converted")))?;
        let key = a
            .str(*key)
            .ok_or_else(|| bad("the storage key is not a string"))?
            .to_owned();
        if key.contains(['/', '\\']) || key.contains("..") {
            return Err(bad("the storage key is not a plain name"));
        }
        let offset = a
            .int(*offset)
            .and_then(|o| u64::try_from(o).ok())
            .ok_or_else(|| bad("bad storage offset"))?;
        let shape = self.ints(*shape, "the shape", name)?;
        let stride = self.ints(*stride, "the stride", name)?;
        if shape.len() != stride.len() {
            return Err(bad("shape and stride differ in length"));
        }
        Ok(Spec {
            name: name.to_owned(),
            key,
            dtype,
            offset,
            shape,
            stride,
        })
    }
}

/// Copies a tensor's elements out of its storage into row-major order, checking every bound.
fn materialize(path: &Path, spec: &Spec, storage: &[u8]) -> Result<Tensor> {
    let bad = |reason: String| ModelFileError::BadTensor {
        path: PathBuf::from(path),
        tensor: spec.name.clone(),
        reason,
    };
    let elem = spec.dtype.size() as u64;
    let numel = spec
        .shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .ok_or_else(|| bad("the shape overflows".into()))?;
    let shape: Vec<usize> = spec
        .shape
        .iter()
        .map(|d| usize::try_from(*d).map_err(|_| bad("dimension too large".into())))
        .collect::<Result<_>>()?;
    if numel == 0 {
        return Ok(Tensor {
            name: spec.name.clone(),
            dtype: spec.dtype,
            shape,
            data: Vec::new(),
        });
    }
    // Highest element index the view touches.
    let mut last = spec.offset;
    for (d, s) in spec.shape.iter().zip(&spec.stride) {
        last = (d - 1)
            .checked_mul(*s)
            .and_then(|x| last.checked_add(x))
            .ok_or_else(|| bad("the view overflows".into()))?;
    }
    let needed = last
        .checked_add(1)
        .and_then(|n| n.checked_mul(elem))
        .ok_or_else(|| bad("the view overflows".into()))?;
    if needed > storage.len() as u64 {
        return Err(bad(format!(
            "the view needs {needed} bytes of a {}-byte storage",
            storage.len()
        )));
    }
    let out_len = numel
        .checked_mul(elem)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad("too large".into()))?;
    let elem = elem as usize;
    // Row-major strides of the shape.
    let mut contiguous = true;
    let mut expect = 1u64;
    for (d, s) in spec.shape.iter().zip(&spec.stride).rev() {
        if *d != 1 && *s != expect {
            contiguous = false;
        }
        expect = expect.saturating_mul(*d);
    }
    let start = spec.offset as usize * elem;
    if contiguous {
        return Ok(Tensor {
            name: spec.name.clone(),
            dtype: spec.dtype,
            shape,
            data: storage[start..start + out_len].to_vec(),
        });
    }
    let mut data = Vec::with_capacity(out_len);
    let mut index = vec![0u64; spec.shape.len()];
    for _ in 0..numel {
        let at = index
            .iter()
            .zip(&spec.stride)
            .fold(spec.offset, |a, (i, s)| a + i * s) as usize
            * elem;
        data.extend_from_slice(&storage[at..at + elem]);
        for k in (0..index.len()).rev() {
            index[k] += 1;
            if index[k] < spec.shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    Ok(Tensor {
        name: spec.name.clone(),
        dtype: spec.dtype,
        shape,
        data,
    })
}

//! Weights of built-in networks in safetensors files with PyTorch names and layouts.
//!
//! Files written here load into the PyTorch definitions in [`crate::arch`] with
//! `load_state_dict`, and PyTorch state dicts saved with `safetensors.torch.save_file` load
//! here. Before anything is handed to Burn, every tensor the architecture needs is checked
//! for presence, dtype and shape against the file, so a wrong file gives an error that names
//! the tensor instead of a panic.

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use crate::arch::Network;
use crate::error::ModelError;

/// The largest safetensors header accepted (the format's own limit is 100 MB).
pub const MAX_HEADER_BYTES: usize = 100_000_000;

/// The PyTorch name and shape of every tensor a network stores, in a stable order.
pub fn expected_tensors(net: &Network) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = net
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect();
    out.sort();
    out
}

/// Number of scalar parameters (and buffers) a network stores.
pub fn parameter_count(net: &Network) -> usize {
    expected_tensors(net)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// The shapes of the tensors in a safetensors buffer, by name, after validating the header.
pub fn read_header(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(String, Vec<usize>, String)>, ModelError> {
    let bad = |reason: String| ModelError::BadSafetensors {
        path: path.into(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "{} bytes is too short for a header",
            bytes.len()
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES as u64 {
        return Err(bad(format!(
            "header of {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out: Vec<(String, Vec<usize>, String)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), format!("{:?}", view.dtype())))
        .collect();
    out.sort();
    Ok(out)
}

/// Checks that `bytes` hold every tensor `net` needs, as F32 with the right shape.
fn validate(path: &Path, bytes: &[u8], net: &Network) -> Result<(), ModelError> {
    let found = read_header(path, bytes)?;
    let arch = net.arch().to_string();
    for (name, shape) in expected_tensors(net) {
        let Some((_, file_shape, dtype)) = found.iter().find(|(n, _, _)| *n == name) else {
            return Err(ModelError::MissingTensor {
                path: path.into(),
                name,
                arch,
            });
        };
        if dtype != "F32" {
            return Err(ModelError::UnsupportedDtype {
                path: path.into(),
                name,
                dtype: dtype.clone(),
            });
        }
        if *file_shape != shape {
            return Err(ModelError::ShapeMismatch {
                path: path.into(),
                name,
                arch,
                expected: shape,
                found: file_shape.clone(),
            });
        }
    }
    Ok(())
}

/// Loads safetensors `bytes` (read from `path`) into `net`, which must have the file's
/// architecture; extra tensors such as `num_batches_tracked` are ignored.
pub fn load_into(path: &Path, bytes: Vec<u8>, mut net: Network) -> Result<Network, ModelError> {
    validate(path, &bytes, &net)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .allow_partial(true);
    let result = net
        .load_from(&mut store)
        .map_err(|e| ModelError::BadSafetensors {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if let Some(err) = result.errors.first() {
        return Err(ModelError::BadSafetensors {
            path: path.into(),
            reason: err.to_string(),
        });
    }
    Ok(net)
}

/// Serialises `net` to safetensors bytes with PyTorch names and layouts and `metadata`.
pub fn to_bytes(net: &Network, metadata: &[(&str, String)]) -> Result<Vec<u8>, ModelError> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true);
    for (k, v) in metadata {
        store = store.metadata(*k, v.clone());
    }
    let err = |e: String| ModelError::BadSafetensors {
        path: "<memory>".into(),
        reason: e,
    };
    net.valid()
        .save_into(&mut store)
        .map_err(|e| err(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| err(e.to_string()))?;
    canonical_header(&bytes).ok_or_else(|| err("the serialised header is malformed".into()))
}

/// Rewrites a safetensors header with its keys sorted (the writer emits metadata in hash
/// order), so the same weights always give the same bytes and the same SHA-256.
fn canonical_header(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::collections::BTreeMap;
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(len)?)?;
    let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let sorted: BTreeMap<String, serde_json::Value> = parsed
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Object(m) => {
                    let inner: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                    serde_json::to_value(inner).unwrap_or(serde_json::Value::Null)
                }
                other => other,
            };
            (k, v)
        })
        .collect();
    let mut text = serde_json::to_vec(&sorted).ok()?;
    // Keep the data section 8-byte aligned, as the reference writer does.
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    Some(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the destination, so a failure never leaves a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nnguard-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Readable by others like any file the user writes (temp files default to 0600).
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| ModelError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| ModelError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ModelError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ModelError::io(path, e.error))?;
    Ok(())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

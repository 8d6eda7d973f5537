//! `nnguard convert`: a PyTorch checkpoint to safetensors, through the non-executing reader.
//!
//! The input is scanned first; a file with findings is refused unless forced. The output is
//! written to a temporary file in the destination directory and renamed into place, so a
//! failed conversion never leaves a partial file.

use crate::error::{ModelFileError, Result};
use crate::scan::Scanner;
use crate::torch::{self, DType};
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

/// What a conversion did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
    /// Values of the checkpoint that are not tensors and were left out.
    pub skipped: Vec<String>,
    /// Findings of the scan (non-zero only when forced).
    pub findings: usize,
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// Converts the checkpoint at `input` to a safetensors file at `output`.
///
/// Refuses a checkpoint with scan findings unless `force` is set, and refuses to write when
/// two tensors would get the same name.
pub fn convert(
    scanner: &Scanner,
    input: &Path,
    output: &Path,
    force: bool,
) -> Result<ConvertSummary> {
    let report = scanner.scan_file(input);
    if let Some(err) = report.error {
        return Err(ModelFileError::Io {
            path: input.to_path_buf(),
            source: std::io::Error::other(err),
        });
    }
    if !report.findings.is_empty() && !force {
        let f = &report.findings[0];
        return Err(ModelFileError::HasFindings {
            path: input.to_path_buf(),
            count: report.findings.len(),
            first: format!("{}: {}", f.rule.name, f.message),
        });
    }
    let extracted = torch::extract(input, scanner.limits())?;
    if extracted.tensors.is_empty() {
        return Err(ModelFileError::NotConvertible {
            path: input.to_path_buf(),
            reason: "the checkpoint holds no tensors".into(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for t in &extracted.tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(ModelFileError::NotConvertible {
                path: input.to_path_buf(),
                reason: format!("two tensors are both named {:?}", t.name),
            });
        }
    }
    let write_err = |reason: String| ModelFileError::Write {
        path: output.to_path_buf(),
        reason,
    };
    let views = extracted
        .tensors
        .iter()
        .map(|t| {
            TensorView::new(st_dtype(t.dtype), t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| write_err(format!("tensor {:?}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".nnguard-convert-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| ModelFileError::Io {
            path: dir.clone(),
            source: e,
        })?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_owned(), "pt".to_owned());
    safetensors::tensor::serialize_to_file(views, Some(meta), tmp.path())
        .map_err(|e| write_err(e.to_string()))?;
    tmp.persist(output)
        .map_err(|e| write_err(e.error.to_string()))?;
    Ok(ConvertSummary {
        tensors: extracted.tensors.len(),
        bytes: extracted.tensors.iter().map(|t| t.data.len() as u64).sum(),
        skipped: extracted.skipped,
        findings: report.findings.len(),
    })
}

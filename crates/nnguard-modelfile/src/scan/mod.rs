//! The scanner: format detection by content, dispatch to the per-format scanners, and the
//! directory walk.

mod legacy;
mod npy;
pub(crate) mod onnx;
mod safetensors;
mod tar;
mod zip;

pub use npy::{NpyHeader, parse_npy_header};

use crate::finding::{FileReport, Finding, Format, Location, ScanReport};
use crate::limits::{
    Limits, MAX_NPY_HEADER_BYTES, MAX_SAFETENSORS_HEADER_BYTES, MAX_STACKED_PICKLES,
};
use crate::pickle::{self, Allowlist, TORCH_LEGACY_MAGIC, Trailing};
use crate::rules::{self, Rule, Severity};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// File name endings that say "this is a model"; such a file in no known format is a finding
/// rather than skipped.
const MODEL_EXTENSIONS: &[&str] = &[
    "pt",
    "pth",
    "pkl",
    "pickle",
    "bin",
    "ckpt",
    "joblib",
    "dill",
    "npy",
    "npz",
    "onnx",
    "safetensors",
    "pb",
    "mar",
    "model",
    "p",
];

/// Bytes read to recognise a format.
const SNIFF_BYTES: usize = 512;

/// Bytes of an unrecognised file run through the pickle VM to see whether it is a protocol
/// 0/1 pickle.
const PROBE_BYTES: u64 = 1 << 20;

/// Scans model files. Holds the limits and the allowlist; cheap to build and share.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    pub(crate) limits: Limits,
    pub(crate) allow: Allowlist,
    /// Read every tensor storage of PyTorch zip checkpoints to check its CRC-32.
    pub(crate) verify_storages: bool,
}

/// Findings collected while scanning one file.
pub(crate) struct Ctx<'s> {
    pub scanner: &'s Scanner,
    pub findings: Vec<Finding>,
    /// Bytes decompressed so far from archives of this file.
    pub decompressed: u64,
    /// ONNX external-data locations seen, checked for links once the file is scanned.
    pub external: Vec<String>,
}

impl<'s> Ctx<'s> {
    pub fn new(scanner: &'s Scanner) -> Self {
        Self {
            scanner,
            findings: Vec::new(),
            decompressed: 0,
            external: Vec::new(),
        }
    }

    /// Records a finding under `entry` at `offset`.
    pub fn report(
        &mut self,
        rule: &'static Rule,
        severity: Option<Severity>,
        message: String,
        entry: &[String],
        offset: Option<u64>,
    ) {
        self.findings.push(Finding {
            rule,
            severity: severity.unwrap_or(rule.severity),
            message,
            location: Location {
                entry: entry.to_vec(),
                offset,
            },
        });
    }
}

fn has_model_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MODEL_EXTENSIONS.iter().any(|m| m.eq_ignore_ascii_case(e)))
}

fn extension_is(name: &str, ext: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Recognises a format from the first bytes of a file of `len` bytes.
pub(crate) fn sniff(head: &[u8], len: u64) -> Option<Format> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(Format::Zip);
    }
    if head.starts_with(b"\x93NUMPY") {
        return Some(Format::Npy);
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some(Format::Tar);
    }
    if head.starts_with(TORCH_LEGACY_MAGIC) {
        return Some(Format::TorchLegacy);
    }
    if let [pickle::op::PROTO, p, ..] = head
        && *p <= pickle::op::HIGHEST_PROTOCOL
    {
        return Some(Format::Pickle);
    }
    if head.len() >= 9 && head[8] == b'{' {
        let mut n = [0u8; 8];
        n.copy_from_slice(&head[..8]);
        let n = u64::from_le_bytes(n);
        if n >= 2
            && (n > MAX_SAFETENSORS_HEADER_BYTES || n.checked_add(8).is_some_and(|e| e <= len))
        {
            return Some(Format::Safetensors);
        }
    }
    if onnx::looks_like_onnx(head) {
        return Some(Format::Onnx);
    }
    None
}

impl Scanner {
    /// A scanner with the default limits and allowlist.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the limits (tests use small ones).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also reads the tensor storages of PyTorch zip checkpoints to check their CRC-32
    /// (off by default: storages are data, never executed, and are only checked for presence
    /// and size; every pickle and every other entry is always read and CRC-checked).
    pub fn with_storage_crc(mut self, verify: bool) -> Self {
        self.verify_storages = verify;
        self
    }

    /// Allows one more global, written `module.name`. Returns `false` when it has no dot.
    pub fn allow(&mut self, dotted: &str) -> bool {
        self.allow.allow(dotted)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Scans files and directories (walked recursively). Unreadable paths become reports with
    /// an error; the walk goes on.
    pub fn scan_paths<P: AsRef<Path>>(&self, paths: &[P]) -> ScanReport {
        let mut report = ScanReport::default();
        for path in paths {
            let path = path.as_ref();
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => self.scan_dir(path, &mut report),
                Ok(_) => report.files.push(self.scan_file_inner(path, true)),
                Err(e) => report.files.push(FileReport::failed(
                    path.display().to_string(),
                    describe_io(&e),
                )),
            }
        }
        report
    }

    fn scan_dir(&self, dir: &Path, report: &mut ScanReport) {
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name();
        for item in walker {
            match item {
                Ok(e) if e.file_type().is_file() => {
                    report.files.push(self.scan_file_inner(e.path(), false))
                }
                Ok(_) => {}
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dir.to_path_buf());
                    let msg = match e.io_error() {
                        Some(io) => describe_io(io),
                        None => e.to_string(),
                    };
                    report
                        .files
                        .push(FileReport::failed(path.display().to_string(), msg));
                }
            }
        }
    }

    /// Scans one file; a file in no known format is reported as skipped unless it has a model
    /// extension.
    pub fn scan_file(&self, path: &Path) -> FileReport {
        self.scan_file_inner(path, true)
    }

    fn scan_file_inner(&self, path: &Path, named: bool) -> FileReport {
        let shown = path.display().to_string();
        match self.try_scan_file(path, named) {
            Ok(r) => r,
            Err(e) => FileReport::failed(shown, describe_io(&e)),
        }
    }

    fn try_scan_file(&self, path: &Path, named: bool) -> std::io::Result<FileReport> {
        let shown = path.display().to_string();
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&mut file)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mut ctx = Ctx::new(self);
        let format = match sniff(&head, len) {
            Some(Format::Zip) => {
                file.seek(SeekFrom::Start(0))?;
                Some(zip::scan(&mut ctx, std::io::BufReader::new(file), &[], 0))
            }
            Some(Format::Tar) => {
                file.seek(SeekFrom::Start(0))?;
                tar::scan(&mut ctx, file, &[], 0);
                Some(Format::Tar)
            }
            Some(Format::Safetensors) => {
                let want = safetensors::header_span(&head).min(len);
                let region = read_prefix(&mut file, want)?;
                safetensors::scan(&mut ctx, &region, len, &[]);
                Some(Format::Safetensors)
            }
            Some(Format::Npy) => {
                let region = read_prefix(&mut file, (MAX_NPY_HEADER_BYTES as u64 + 16).min(len))?;
                let object = parse_npy_header(&region).is_ok_and(|h| h.is_object());
                let data = if object {
                    read_capped(&mut ctx, &mut file, len, &[])?
                } else {
                    region
                };
                npy::scan(&mut ctx, &data, len, &[], 0);
                Some(Format::Npy)
            }
            sniffed => {
                // A file in no recognised format is read whole only when it is named like a
                // model or its beginning runs as a protocol 0/1 pickle.
                let probe_len = len.min(PROBE_BYTES);
                let whole = sniffed.is_some()
                    || has_model_extension(name)
                    || extension_is(name, "onnx")
                    || pickle::looks_like_pickle(&read_prefix(&mut file, probe_len)?, &ctx)
                    || (len > probe_len
                        && pickle::starts_like_pickle(&read_prefix(&mut file, probe_len)?, &ctx));
                if whole {
                    let data = read_capped(&mut ctx, &mut file, len, &[])?;
                    self.scan_loaded(&mut ctx, sniffed, &data, name, named, &[], 0)
                } else {
                    None
                }
            }
        };
        if format == Some(Format::Onnx)
            && let Some(dir) = path.parent()
        {
            onnx::check_links(&mut ctx, dir);
        }
        Ok(FileReport {
            path: shown,
            skipped: format.is_none() && ctx.findings.is_empty(),
            format,
            bytes: len,
            findings: ctx.findings,
            error: None,
        })
    }

    /// Scans bytes already in memory, as if they were a file called `name`.
    pub fn scan_bytes(&self, name: &str, data: &[u8]) -> FileReport {
        let mut ctx = Ctx::new(self);
        let format = self.dispatch_bytes(&mut ctx, data, name, true, &[], 0);
        FileReport {
            path: name.to_owned(),
            skipped: format.is_none() && ctx.findings.is_empty(),
            format,
            bytes: data.len() as u64,
            findings: ctx.findings,
            error: None,
        }
    }

    /// Scans bytes with a given parser, whatever they look like (used by the fuzz targets).
    pub fn scan_bytes_as(&self, format: Format, data: &[u8]) -> FileReport {
        let mut ctx = Ctx::new(self);
        let format = self.scan_as(&mut ctx, format, data, "input", &[], 0);
        FileReport {
            path: "input".into(),
            skipped: false,
            format: Some(format),
            bytes: data.len() as u64,
            findings: ctx.findings,
            error: None,
        }
    }

    /// Recognises and scans in-memory bytes (a file or an archive entry).
    pub(crate) fn dispatch_bytes(
        &self,
        ctx: &mut Ctx<'_>,
        data: &[u8],
        name: &str,
        named: bool,
        entry: &[String],
        depth: u32,
    ) -> Option<Format> {
        let head = &data[..data.len().min(SNIFF_BYTES)];
        let sniffed = sniff(head, data.len() as u64);
        self.scan_loaded(ctx, sniffed, data, name, named, entry, depth)
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_loaded(
        &self,
        ctx: &mut Ctx<'_>,
        sniffed: Option<Format>,
        data: &[u8],
        name: &str,
        named: bool,
        entry: &[String],
        depth: u32,
    ) -> Option<Format> {
        if let Some(f) = sniffed {
            return Some(self.scan_as(ctx, f, data, name, entry, depth));
        }
        if extension_is(name, "onnx") {
            return Some(self.scan_as(ctx, Format::Onnx, data, name, entry, depth));
        }
        if extension_is(name, "safetensors") {
            return Some(self.scan_as(ctx, Format::Safetensors, data, name, entry, depth));
        }
        if pickle::looks_like_pickle(data, ctx) {
            return Some(self.scan_as(ctx, Format::Pickle, data, name, entry, depth));
        }
        if named && has_model_extension(name) {
            ctx.report(
                &rules::file::FILE_FORMAT_UNRECOGNIZED,
                None,
                format!("{name:?} is named like a model file, but its content is in no known model format"),
                entry,
                None,
            );
        }
        None
    }

    fn scan_as(
        &self,
        ctx: &mut Ctx<'_>,
        format: Format,
        data: &[u8],
        _name: &str,
        entry: &[String],
        depth: u32,
    ) -> Format {
        match format {
            Format::Zip | Format::TorchZip => {
                zip::scan(ctx, std::io::Cursor::new(data), entry, depth)
            }
            Format::Tar => {
                tar::scan(ctx, data, entry, depth);
                Format::Tar
            }
            Format::Npy => {
                npy::scan(ctx, data, data.len() as u64, entry, depth);
                Format::Npy
            }
            Format::Safetensors => {
                safetensors::scan(ctx, data, data.len() as u64, entry);
                Format::Safetensors
            }
            Format::Onnx => {
                onnx::scan(ctx, data, entry);
                Format::Onnx
            }
            Format::TorchLegacy => {
                if data.starts_with(TORCH_LEGACY_MAGIC) {
                    legacy::scan(ctx, data, entry, depth);
                    Format::TorchLegacy
                } else {
                    pickle::scan_stream(
                        ctx,
                        data,
                        entry,
                        depth,
                        MAX_STACKED_PICKLES,
                        Trailing::Finding,
                    );
                    Format::Pickle
                }
            }
            Format::Pickle => {
                if data.starts_with(TORCH_LEGACY_MAGIC) {
                    legacy::scan(ctx, data, entry, depth);
                    return Format::TorchLegacy;
                }
                pickle::scan_stream(
                    ctx,
                    data,
                    entry,
                    depth,
                    MAX_STACKED_PICKLES,
                    Trailing::Finding,
                );
                Format::Pickle
            }
        }
    }
}

/// Reads the first `n` bytes of `file`.
fn read_prefix(file: &mut File, n: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::with_capacity(usize::try_from(n.min(1 << 20)).unwrap_or(0));
    file.take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads a whole file of `len` bytes, or its first `buffered_bytes` with a finding.
fn read_capped(
    ctx: &mut Ctx<'_>,
    file: &mut File,
    len: u64,
    entry: &[String],
) -> std::io::Result<Vec<u8>> {
    let cap = ctx.scanner.limits.buffered_bytes;
    if len > cap {
        ctx.report(
            &rules::file::SCAN_LIMIT_EXCEEDED,
            None,
            format!("the file has {len} bytes; only the first {cap} were inspected"),
            entry,
            Some(cap),
        );
    }
    read_prefix(file, len.min(cap))
}

/// A one-line description of an I/O error that says what to do about the common cases.
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (check the file's permissions)".into()
        }
        _ => format!("cannot read: {e}"),
    }
}

/// Joins an entry chain with a new entry name.
pub(crate) fn child(entry: &[String], name: impl Into<String>) -> Vec<String> {
    let mut v = entry.to_vec();
    v.push(name.into());
    v
}

/// Convenience: scans paths with the default scanner.
pub fn scan_paths<P: AsRef<Path>>(paths: &[P]) -> ScanReport {
    Scanner::new().scan_paths(paths)
}

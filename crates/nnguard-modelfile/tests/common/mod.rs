//! Builders for hostile and benign files, shared by the integration tests.

#![allow(dead_code)]

use nnguard_modelfile::{FileReport, Scanner};
use std::io::Write;

/// A protocol-0 pickle calling `module.name(arg)` through GLOBAL + REDUCE.
pub fn reduce_call(module: &str, name: &str, arg: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n(S'{arg}'\ntR.").into_bytes()
}

/// Length-prefixed SHORT_BINUNICODE.
pub fn short_unicode(s: &str) -> Vec<u8> {
    let mut v = vec![0x8c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// SHORT_BINBYTES or BINBYTES with the payload.
pub fn bytes_op(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    if b.len() < 256 {
        v.push(b'C');
        v.push(b.len() as u8);
    } else {
        v.push(b'B');
        v.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(b);
    v
}

/// Names of the rules of a report's findings.
pub fn rules(r: &FileReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.rule.name).collect()
}

/// Scans bytes as a file called `name` with the default scanner.
pub fn scan(name: &str, data: &[u8]) -> FileReport {
    Scanner::new().scan_bytes(name, data)
}

/// Entry options for the zip writer.
pub fn stored() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)
}

/// A zip of `(name, bytes)` entries, stored uncompressed.
pub fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    make_zip_with(entries, stored())
}

/// A zip of `(name, bytes)` entries with the given options.
pub fn make_zip_with(entries: &[(&str, &[u8])], options: zip::write::SimpleFileOptions) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, options)
            .unwrap_or_else(|e| panic!("start_file: {e}"));
        w.write_all(data).unwrap_or_else(|e| panic!("write: {e}"));
    }
    w.finish()
        .unwrap_or_else(|e| panic!("finish: {e}"))
        .into_inner()
}

/// Path of a committed fixture.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("testdata")
        .join(name)
}

/// Bytes of a committed fixture.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

//! `nnguard scan`: inspect model files for code execution and format anomalies, without
//! loading them.
//!
//! Exit codes: 0 every file is clean, 1 findings, 2 a path could not be read (the rest is
//! still scanned and reported), 3 nothing was scanned.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use nnguard_modelfile::{Scanner, Verdict, report};

use crate::exit::Outcome;

/// Report formats of `nnguard scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One block per file with findings, then a summary line.
    Text,
    /// A JSON document (schema_version 1).
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// Arguments of `nnguard scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan; directories are walked recursively. Formats are
    /// recognised by content (pickle, PyTorch zip/tar/legacy, npy/npz, ONNX, safetensors).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also accept this pickle global, written MODULE.NAME (repeatable), e.g.
    /// `--allow argparse.Namespace`. Only for names you know to be harmless.
    #[arg(long = "allow", value_name = "MODULE.NAME")]
    pub allow: Vec<String>,

    /// Also read every tensor storage of PyTorch zip checkpoints to check its CRC-32 (slower;
    /// pickles and all other entries are always checked).
    #[arg(long)]
    pub verify_crc: bool,

    /// List clean and skipped files too (text format).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Builds a scanner with the extra allowed globals of the command line.
pub fn scanner_with(allow: &[String]) -> anyhow::Result<Scanner> {
    let mut scanner = Scanner::new();
    for name in allow {
        if !scanner.allow(name) {
            anyhow::bail!("--allow {name:?}: expected MODULE.NAME, e.g. argparse.Namespace");
        }
    }
    Ok(scanner)
}

/// Runs `nnguard scan`.
pub fn run(args: ScanArgs) -> anyhow::Result<Outcome> {
    let scanner = scanner_with(&args.allow)?.with_storage_crc(args.verify_crc);
    let report = scanner.scan_paths(&args.paths);
    let format = if args.json {
        ReportFormat::Json
    } else {
        args.format
    };
    let mut text = match format {
        ReportFormat::Text => report::to_text(&report, args.verbose),
        ReportFormat::Json => serde_json::to_string_pretty(&report::to_json(&report))?,
        ReportFormat::Sarif => serde_json::to_string_pretty(&report::to_sarif(&report))?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    match report.verdict() {
        Verdict::Error => {
            let n = report.files.iter().filter(|f| f.error.is_some()).count();
            anyhow::bail!("{n} path(s) could not be scanned (see the report); the others were")
        }
        Verdict::Findings => Ok(Outcome::Findings),
        Verdict::NothingScanned => {
            eprintln!("nothing scanned: no model file found under the given paths");
            Ok(Outcome::NothingToDo)
        }
        Verdict::Clean => Ok(Outcome::Clean),
    }
}

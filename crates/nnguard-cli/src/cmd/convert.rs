//! `nnguard convert`: turn a PyTorch checkpoint into safetensors without unpickling it.
//!
//! The checkpoint is scanned first and refused if the scan finds anything, unless `--force`
//! is given. Tensors are read through the same non-executing pickle reader as `nnguard scan`.

use std::path::PathBuf;

use clap::Args;
use nnguard_modelfile::convert::convert;

use crate::exit::Outcome;

/// Arguments of `nnguard convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The PyTorch checkpoint (`torch.save` zip format, or the legacy format).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The safetensors file to write (written to a temporary file, then renamed).
    #[arg(value_name = "OUTPUT")]
    pub output: PathBuf,

    /// Convert even when the scan reports findings (the findings are still printed).
    #[arg(long)]
    pub force: bool,

    /// Also accept this pickle global, written MODULE.NAME (repeatable).
    #[arg(long = "allow", value_name = "MODULE.NAME")]
    pub allow: Vec<String>,
}

/// Runs `nnguard convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<Outcome> {
    let scanner = super::scan::scanner_with(&args.allow)?;
    let summary = convert(&scanner, &args.input, &args.output, args.force)?;
    if summary.findings > 0 {
        eprintln!(
            "warning: {} has {} scan finding(s); converted anyway because of --force",
            args.input.display(),
            summary.findings
        );
    }
    println!(
        "wrote {} tensor(s), {} bytes of data, to {}",
        summary.tensors,
        summary.bytes,
        args.output.display()
    );
    if !summary.skipped.is_empty() {
        println!(
            "left out {} value(s) that are not tensors: {}",
            summary.skipped.len(),
            summary.skipped.join(", ")
        );
    }
    Ok(Outcome::Clean)
}

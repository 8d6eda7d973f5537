//! Arguments and helpers shared by the model and data commands.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nnguard_data::{DataSource, Dataset, Split};
use nnguard_model::arch::Arch;
use nnguard_model::{LoadOptions, Model, Normalize};

/// `--model FILE [--arch A] [--normalize MEAN,STD]`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model file: `.onnx`, or `.safetensors` with a JSON sidecar (or `--arch`).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Architecture of a `.safetensors` file that has no sidecar.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// Per-channel normalisation inside the model: `MEAN,STD`, each one value or a
    /// `/`-separated list per channel (e.g. `0.4914/0.4822/0.4465,0.247/0.243/0.261`).
    #[arg(long, value_name = "MEAN,STD", value_parser = parse_normalize)]
    pub normalize: Option<Normalize>,
}

impl ModelArgs {
    /// Loads the model, with the file's path in any error.
    pub fn load(&self) -> anyhow::Result<Model> {
        let opts = LoadOptions {
            arch: self.arch,
            normalize: self.normalize.clone(),
            input_shape: None,
        };
        Ok(Model::load(&self.model, &opts)?)
    }
}

/// `--data D [--split S] [--limit N]`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data set: fashion-mnist, mnist, bundled, idx:DIR, cifar10:DIR or npy:X.npy,Y.npy.
    #[arg(long, default_value = "bundled", value_parser = parse_data)]
    pub data: DataSource,
    /// Which split to use.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    pub split: Split,
    /// Use only the first N images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl DataArgs {
    /// Loads the chosen split (first `--limit` images).
    pub fn load(&self) -> anyhow::Result<Dataset> {
        let data = self
            .data
            .load(self.split)
            .with_context(|| format!("loading --data {}", self.data))?;
        Ok(match self.limit {
            Some(n) => data.take(n),
            None => data,
        })
    }
}

/// Parses `--arch`.
pub fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|e: nnguard_model::ModelError| e.to_string())
}

/// Parses `--normalize`.
pub fn parse_normalize(s: &str) -> Result<Normalize, String> {
    Normalize::parse(s).map_err(|e| e.to_string())
}

/// Parses `--data`.
pub fn parse_data(s: &str) -> Result<DataSource, String> {
    s.parse()
        .map_err(|e: nnguard_data::DataError| e.to_string())
}

/// Parses `--split`.
pub fn parse_split(s: &str) -> Result<Split, String> {
    s.parse()
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Writes pretty JSON to stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Refuses to write an output file into a directory that does not exist, before any work.
pub fn check_output_path(path: &Path, flag: &str) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "{flag} {}: is a directory; give a file name",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        anyhow::bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

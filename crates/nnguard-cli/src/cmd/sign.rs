//! `nnguard sign`: sign a model directory or file with an ECDSA P-256 private key.
//!
//! Writes a Sigstore bundle in the OpenSSF model-signing format, which
//! `model_signing verify key` accepts as well as `nnguard verify`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use nnguard_signing::{HashOptions, Method, SigningKey, path_inside_model, sign_model};

use crate::exit::Outcome;

/// Arguments of `nnguard sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The model to sign: a directory (every file in it) or a single file.
    pub model: PathBuf,

    /// The private key (PEM, PKCS#8 or SEC1, ECDSA P-256), e.g. from `nnguard keygen`.
    #[arg(
        long = "key",
        visible_alias = "private-key",
        alias = "private_key",
        value_name = "PEM"
    )]
    pub key: PathBuf,

    /// Where to write the signature bundle; left out of the manifest if it lies inside
    /// the model.
    #[arg(long, value_name = "PATH", default_value = "model.sig")]
    pub signature: PathBuf,

    /// Paths to leave out of the signature (relative to the current directory, as files
    /// inside the model); a directory is left out with everything below it.
    #[arg(long = "ignore-paths", alias = "ignore-path", value_name = "PATH", num_args = 1..)]
    pub ignore_paths: Vec<PathBuf>,

    /// Sign `.git`, `.gitattributes`, `.github` and `.gitignore` too (left out by default).
    #[arg(long)]
    pub no_ignore_git_paths: bool,

    /// Follow symbolic links and sign their targets' content (refused by default).
    #[arg(long, alias = "allow_symlinks")]
    pub allow_symlinks: bool,

    /// Accept files with more than one hard link (refused by default).
    #[arg(long)]
    pub allow_hardlinks: bool,

    /// Hash files in shards of this many bytes instead of whole (verifiable with nnguard
    /// and the `model_signing` Python API, not its command line).
    #[arg(long, value_name = "BYTES")]
    pub shard_size: Option<u64>,

    /// Hashing threads (default: one per CPU core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Signs the model and writes the bundle.
pub fn run(args: SignArgs) -> anyhow::Result<Outcome> {
    let key = SigningKey::from_pem_file(&args.key)?;
    let mut ignore_paths = model_relative_paths(&args.model, &args.ignore_paths);
    if let Some(rel) = path_inside_model(&args.model, &args.signature) {
        ignore_paths.push(rel);
    }
    let options = HashOptions {
        method: match args.shard_size {
            Some(shard_size) => Method::Shards { shard_size },
            None => Method::Files,
        },
        allow_symlinks: args.allow_symlinks,
        allow_hardlinks: args.allow_hardlinks,
        ignore_git_paths: !args.no_ignore_git_paths,
        ignore_paths,
        threads: args.threads,
    };
    let progress = HashProgress::new();
    let signed = sign_model(&args.model, &key, &options, &progress)?;
    progress.finish();
    signed
        .bundle
        .write(&args.signature)
        .with_context(|| format!("writing the signature to {}", args.signature.display()))?;

    let hint = key.verifying_key().hint();
    if args.json {
        let summary = serde_json::json!({
            "model": args.model,
            "signature": args.signature,
            "model_name": signed.manifest.model_name,
            "resources": signed.manifest.resources.len(),
            "bytes_hashed": signed.bytes_hashed,
            "subject_sha256": hex_digest(&signed.manifest.root_digest()),
            "key_hint": hint,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "signed {} ({} {}, {}) -> {}",
            args.model.display(),
            signed.manifest.resources.len(),
            item_word(&options.method, signed.manifest.resources.len()),
            human_bytes(signed.bytes_hashed),
            args.signature.display()
        );
        println!("key hint: {hint}");
    }
    Ok(Outcome::Clean)
}

/// User-given paths, made relative to the model root; those outside the model are dropped
/// (as `model_signing` does).
pub(crate) fn model_relative_paths(model: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| path_inside_model(model, p))
        .collect()
}

fn item_word(method: &Method, n: usize) -> &'static str {
    match (method, n) {
        (Method::Files, 1) => "file",
        (Method::Files, _) => "files",
        (_, 1) => "shard",
        _ => "shards",
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes with a binary unit, for messages.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A byte progress bar on stderr, drawn only on a terminal and only for large models.
pub(crate) struct HashProgress {
    bar: indicatif::ProgressBar,
}

impl HashProgress {
    /// Models smaller than this hash in well under a second: no bar.
    const MIN_BYTES_FOR_BAR: u64 = 256 * 1024 * 1024;

    pub(crate) fn new() -> Self {
        HashProgress {
            bar: indicatif::ProgressBar::hidden(),
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl nnguard_signing::Progress for HashProgress {
    fn start(&self, total_bytes: u64) {
        if total_bytes < Self::MIN_BYTES_FOR_BAR {
            return;
        }
        self.bar.set_length(total_bytes);
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "hashing {bar:40} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
        ) {
            self.bar.set_style(style);
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

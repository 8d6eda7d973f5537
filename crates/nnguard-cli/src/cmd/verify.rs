//! `nnguard verify`: check a model against its signature bundle and public key.
//!
//! Exit codes: 0 the model matches its signature, 1 it does not (each difference is
//! listed), 2 the inputs could not be used (unreadable key, malformed bundle, ...).

use std::path::PathBuf;

use clap::Args;
use nnguard_signing::{
    Bundle, NoProgress, SigningError, VerifyOptions, VerifyingKey, path_inside_model, verify_model,
};

use super::sign::{HashProgress, human_bytes, model_relative_paths};
use crate::exit::Outcome;

/// Arguments of `nnguard verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model to verify: the directory or file that was signed.
    pub model: PathBuf,

    /// The public key (SubjectPublicKeyInfo PEM, ECDSA P-256) of the signer.
    #[arg(
        long = "key",
        visible_alias = "public-key",
        alias = "public_key",
        value_name = "PEM"
    )]
    pub key: PathBuf,

    /// The signature bundle (Sigstore bundle JSON) written by `nnguard sign` or `model_signing sign key`.
    #[arg(long, value_name = "PATH")]
    pub signature: PathBuf,

    /// Further paths to leave out (the signature's own ignored paths always are).
    #[arg(long = "ignore-paths", alias = "ignore-path", value_name = "PATH", num_args = 1..)]
    pub ignore_paths: Vec<PathBuf>,

    /// Check `.git`, `.gitattributes`, `.github` and `.gitignore` too (left out by default).
    #[arg(long)]
    pub no_ignore_git_paths: bool,

    /// Follow symbolic links and check their targets (a link is a failure by default).
    #[arg(long, alias = "allow_symlinks")]
    pub allow_symlinks: bool,

    /// Accept files with more than one hard link (a failure by default).
    #[arg(long)]
    pub allow_hardlinks: bool,

    /// Only check the files that were signed; files added since are not failures.
    #[arg(long, alias = "ignore_unsigned_files")]
    pub ignore_unsigned_files: bool,

    /// Hashing threads (default: one per CPU core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Verifies the model; differences and signature failures are findings (exit 1).
pub fn run(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let key = VerifyingKey::from_pem_file(&args.key)?;
    let bundle = Bundle::read(&args.signature)?;
    let mut ignore_paths = model_relative_paths(&args.model, &args.ignore_paths);
    if let Some(rel) = path_inside_model(&args.model, &args.signature) {
        ignore_paths.push(rel);
    }
    let options = VerifyOptions {
        allow_symlinks: args.allow_symlinks,
        allow_hardlinks: args.allow_hardlinks,
        include_git_paths: args.no_ignore_git_paths,
        ignore_paths,
        ignore_unsigned_files: args.ignore_unsigned_files,
        threads: args.threads,
    };
    let progress = HashProgress::new();
    let result = if args.json {
        verify_model(&args.model, &bundle, &key, &options, &NoProgress)
    } else {
        verify_model(&args.model, &bundle, &key, &options, &progress)
    };
    progress.finish();

    let verification = match result {
        Ok(verification) => verification,
        Err(err) if err.is_verification_failure() => return report_signature_failure(&args, &err),
        Err(err) => return Err(err.into()),
    };
    let files = verification.manifest.resources.len();
    if args.json {
        let report = serde_json::json!({
            "verified": verification.is_verified(),
            "model": args.model,
            "signature": args.signature,
            "model_name": verification.manifest.model_name,
            "resources": files,
            "bytes_hashed": verification.bytes_hashed,
            "key_hint": key.hint(),
            "findings": verification.findings,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if verification.is_verified() {
        println!(
            "verified: {} matches {} ({} signed {}, {})",
            args.model.display(),
            args.signature.display(),
            files,
            if files == 1 { "item" } else { "items" },
            human_bytes(verification.bytes_hashed)
        );
    } else {
        println!(
            "verification FAILED: {} does not match {} ({} {}):",
            args.model.display(),
            args.signature.display(),
            verification.findings.len(),
            if verification.findings.len() == 1 {
                "difference"
            } else {
                "differences"
            }
        );
        for finding in &verification.findings {
            println!("  - {finding}");
        }
    }
    Ok(if verification.is_verified() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn report_signature_failure(args: &VerifyArgs, err: &SigningError) -> anyhow::Result<Outcome> {
    if args.json {
        let report = serde_json::json!({
            "verified": false,
            "model": args.model,
            "signature": args.signature,
            "error": err.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("verification FAILED: {}: {err}", args.signature.display());
    }
    Ok(Outcome::Findings)
}

//! `nnguard data manifest` and `nnguard data check`: hash manifests of data sets and the
//! checks that use them.
//!
//! Exit codes of `check`: 0 nothing found, 1 findings (a changed record, a signature that
//! does not verify, a duplicate with a conflicting label, ...), 2 the inputs could not be
//! used (missing file, malformed manifest, unreadable key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use nnguard_data::manifest::{
    Progress, SignatureCheck, default_signature_path, rfc3339_utc, sign_manifest,
    verify_manifest_signature,
};
use nnguard_data::validate::{BalanceConfig, Finding, FindingKind, NearDuplicateConfig, Severity};
use nnguard_data::{
    CheckConfig, CheckReport, DataManifest, DataSource, SplitSelection, SplitSummary,
};
use nnguard_signing::{SigningKey, VerifyingKey};
use serde::Serialize;

use super::common::{check_output_path, parse_data, print_json};
use crate::exit::Outcome;

/// `nnguard data ...`.
#[derive(Debug, Args)]
pub struct DataCommand {
    #[command(subcommand)]
    command: DataSubcommand,
}

#[derive(Debug, Subcommand)]
enum DataSubcommand {
    /// Write a hash manifest of a data set: SHA-256 of every source file and of every
    /// record, class counts, shape and value statistics; optionally signed.
    Manifest(ManifestArgs),
    /// Check a data set against its manifest (which records changed, were added, removed
    /// or relabelled) and validate it: duplicates and near duplicates with conflicting
    /// labels, class-balance shift against a reference, NaN or out-of-range values.
    Check(CheckArgs),
}

/// Arguments of `nnguard data manifest`.
#[derive(Debug, Args)]
struct ManifestArgs {
    /// Data set: fashion-mnist, mnist, bundled, idx:DIR, cifar10:DIR or npy:X.npy,Y.npy.
    #[arg(long, value_parser = parse_data)]
    data: DataSource,

    /// Which splits to record (npy: sources have one, recorded as `data`).
    #[arg(long, default_value = "all", value_parser = parse_selection)]
    split: SplitSelection,

    /// Where to write the manifest (JSON).
    #[arg(long, short = 'o', value_name = "PATH")]
    out: PathBuf,

    /// Sign the manifest with this private key (PEM, ECDSA P-256, e.g. from `nnguard keygen`).
    #[arg(long = "key", visible_alias = "private-key", value_name = "PEM")]
    key: Option<PathBuf>,

    /// Where to write the signature (default: the manifest's path with `.sig` appended).
    #[arg(long, value_name = "PATH", requires = "key")]
    signature: Option<PathBuf>,

    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `nnguard data check`.
#[derive(Debug, Args)]
struct CheckArgs {
    /// Data set: fashion-mnist, mnist, bundled, idx:DIR, cifar10:DIR or npy:X.npy,Y.npy.
    #[arg(long, value_parser = parse_data)]
    data: DataSource,

    /// The manifest to check against (from `nnguard data manifest`); without it only the
    /// validation runs.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,

    /// Verify the manifest's signature with this public key (PEM).
    #[arg(
        long = "pubkey",
        visible_alias = "public-key",
        value_name = "PEM",
        requires = "manifest"
    )]
    pubkey: Option<PathBuf>,

    /// The manifest's signature (default: the manifest's path with `.sig` appended).
    #[arg(long, value_name = "PATH", requires = "pubkey")]
    signature: Option<PathBuf>,

    /// A reference manifest to compare the class balance and shape with (e.g. the approved
    /// training set).
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,

    /// Which splits to check (default: those in the manifest, or all).
    #[arg(long, value_parser = parse_selection)]
    split: Option<SplitSelection>,

    /// Near-duplicate threshold: root-mean-square pixel difference on the [0, 1] scale.
    #[arg(
        long,
        value_name = "RMS",
        allow_negative_numbers = true,
        default_value_t = NearDuplicateConfig::default().threshold_rms
    )]
    near_threshold: f32,

    /// Skip the near-duplicate search.
    #[arg(long)]
    no_near_duplicates: bool,

    /// Flag a class-balance shift above this total-variation distance from the reference.
    #[arg(
        long,
        value_name = "TV",
        allow_negative_numbers = true,
        default_value_t = BalanceConfig::default().max_total_variation
    )]
    balance_threshold: f64,

    /// Do not compare source-file digests, only records (for data converted to another
    /// format since the manifest was written).
    #[arg(long)]
    skip_file_digests: bool,

    /// Findings of one kind listed in text output before the rest are counted.
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_listed: usize,

    /// Print a JSON report (every finding) instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_selection(s: &str) -> Result<SplitSelection, String> {
    s.parse()
}

/// Runs `nnguard data ...`.
pub fn run(args: DataCommand) -> anyhow::Result<Outcome> {
    match args.command {
        DataSubcommand::Manifest(args) => manifest(args),
        DataSubcommand::Check(args) => check(args),
    }
}

fn manifest(args: ManifestArgs) -> anyhow::Result<Outcome> {
    check_output_path(&args.out, "--out")?;
    let key = args
        .key
        .as_deref()
        .map(|k| SigningKey::from_pem_file(k).with_context(|| format!("--key {}", k.display())))
        .transpose()?;
    let signature = args
        .signature
        .clone()
        .unwrap_or_else(|| default_signature_path(&args.out));
    if key.is_some() {
        check_output_path(&signature, "--signature")?;
    }
    let started = Instant::now();
    let progress = Spinner::new();
    let manifest = DataManifest::build(&args.data, args.split, created_now(), &progress)
        .with_context(|| format!("--data {}", args.data))?;
    progress.phase(&format!("writing {}", args.out.display()));
    manifest
        .write(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    let key_hint = match &key {
        Some(key) => {
            sign_manifest(&args.out, key, &signature)
                .with_context(|| format!("signing {}", args.out.display()))?;
            Some(key.verifying_key().hint())
        }
        None => None,
    };
    progress.finish();
    let elapsed = started.elapsed();
    let stale_signature = key.is_none() && signature.exists();
    if stale_signature {
        eprintln!(
            "warning: {} signs an earlier manifest and no longer matches; sign again with --key",
            signature.display()
        );
    }

    if args.json {
        let splits: Vec<_> = manifest
            .splits
            .iter()
            .map(|s| {
                serde_json::json!({
                    "split": s.split,
                    "name": s.name,
                    "records": s.record_count,
                    "files": s.files.len(),
                    "shape": s.shape,
                    "class_counts": s.class_counts,
                    "records_sha256": s.records_sha256,
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "manifest": args.out,
            "source": manifest.source,
            "created": manifest.created,
            "splits": splits,
            "signature": key_hint.as_ref().map(|_| &signature),
            "key_hint": key_hint,
            "seconds": elapsed.as_secs_f64(),
        }))?;
    } else {
        println!(
            "wrote {} for {} in {}",
            args.out.display(),
            manifest.source,
            seconds(elapsed)
        );
        for s in &manifest.splits {
            println!(
                "  {}: {} records of {}×{}×{}, {} classes, {} {}; records sha256 {}",
                s.split,
                s.record_count,
                s.shape[0],
                s.shape[1],
                s.shape[2],
                s.num_classes,
                s.files.len(),
                if s.files.len() == 1 { "file" } else { "files" },
                s.records_sha256
            );
        }
        if let Some(hint) = &key_hint {
            println!("signed: {} (key hint {hint})", signature.display());
        }
    }
    Ok(Outcome::Clean)
}

fn check(args: CheckArgs) -> anyhow::Result<Outcome> {
    let checker = CheckConfig {
        near_duplicates: (!args.no_near_duplicates).then_some(NearDuplicateConfig {
            threshold_rms: args.near_threshold,
        }),
        balance: BalanceConfig {
            max_total_variation: args.balance_threshold,
        },
        compare_files: !args.skip_file_digests,
    }
    .build()?;
    let manifest = args
        .manifest
        .as_deref()
        .map(|p| DataManifest::read(p).context("--manifest"))
        .transpose()?;
    let reference = args
        .reference
        .as_deref()
        .map(|p| DataManifest::read(p).context("--reference"))
        .transpose()?;

    let signature = match (&args.pubkey, &args.manifest) {
        (Some(pubkey), Some(manifest_path)) => {
            let key = VerifyingKey::from_pem_file(pubkey)
                .with_context(|| format!("--pubkey {}", pubkey.display()))?;
            let sig = args
                .signature
                .clone()
                .unwrap_or_else(|| default_signature_path(manifest_path));
            if !sig.is_file() {
                anyhow::bail!(
                    "--signature {}: no such file; sign the manifest with `nnguard data manifest --key`, or name its signature with --signature",
                    sig.display()
                );
            }
            Some((
                sig.clone(),
                verify_manifest_signature(manifest_path, &sig, &key)?,
            ))
        }
        _ => None,
    };

    let started = Instant::now();
    let progress = Spinner::new();
    let mut report = checker
        .check(
            &args.data,
            args.split,
            manifest.as_ref(),
            reference.as_ref(),
            &progress,
        )
        .with_context(|| format!("--data {}", args.data))?;
    progress.finish();
    let elapsed = started.elapsed();
    if let Some((sig, SignatureCheck::Failed { reason })) = &signature {
        report.push(Finding::new(
            None,
            FindingKind::ManifestSignatureInvalid {
                reason: reason.clone(),
            },
            format!(
                "the manifest's signature {} does not verify: {reason}",
                sig.display()
            ),
        ));
    }

    if args.json {
        let signature_json = signature.as_ref().map(|(path, outcome)| match outcome {
            SignatureCheck::Verified { key_hint } => SignatureJson {
                path,
                verified: true,
                key_hint: Some(key_hint),
                reason: None,
            },
            SignatureCheck::Failed { reason } => SignatureJson {
                path,
                verified: false,
                key_hint: None,
                reason: Some(reason),
            },
        });
        print_json(&CheckJson {
            schema_version: 1,
            data: args.data.to_string(),
            manifest: args.manifest.as_deref(),
            manifest_source: manifest.as_ref().map(|m| m.source.as_str()),
            reference: args.reference.as_deref(),
            signature: signature_json,
            clean: report.is_clean(),
            summary: severity_counts(&report),
            seconds: elapsed.as_secs_f64(),
            splits: &report.splits,
            findings: &report.findings,
        })?;
    } else {
        print_text(
            &args,
            manifest.as_ref(),
            signature.as_ref(),
            &report,
            elapsed,
        );
    }
    Ok(if report.is_clean() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// The JSON report of `nnguard data check --json`.
#[derive(Serialize)]
struct CheckJson<'a> {
    schema_version: u32,
    data: String,
    manifest: Option<&'a Path>,
    manifest_source: Option<&'a str>,
    reference: Option<&'a Path>,
    signature: Option<SignatureJson<'a>>,
    clean: bool,
    summary: BTreeMap<Severity, usize>,
    seconds: f64,
    splits: &'a [SplitSummary],
    findings: &'a [Finding],
}

/// The signature part of [`CheckJson`].
#[derive(Serialize)]
struct SignatureJson<'a> {
    path: &'a Path,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn print_text(
    args: &CheckArgs,
    manifest: Option<&DataManifest>,
    signature: Option<&(PathBuf, SignatureCheck)>,
    report: &CheckReport,
    elapsed: Duration,
) {
    match (&args.manifest, manifest) {
        (Some(path), Some(m)) => println!(
            "checked {} against {} (written {} for {}) in {}",
            args.data,
            path.display(),
            m.created,
            m.source,
            seconds(elapsed)
        ),
        _ => println!(
            "checked {} (no manifest: validation only) in {}",
            args.data,
            seconds(elapsed)
        ),
    }
    match signature {
        Some((path, SignatureCheck::Verified { key_hint })) => {
            println!(
                "  signature: verified {} (key hint {key_hint})",
                path.display()
            );
        }
        Some((path, SignatureCheck::Failed { .. })) => {
            println!("  signature: FAILED {}", path.display());
        }
        None if args.manifest.is_some() => {
            println!("  signature: not checked (give --pubkey to verify the manifest)");
        }
        None => {}
    }
    for s in &report.splits {
        let compared = match (s.manifest_records, s.unchanged_records) {
            (Some(m), Some(u)) => format!(", {u} of the manifest's {m} unchanged"),
            _ => String::new(),
        };
        println!(
            "  {}: {} records{compared}, {} {}",
            s.split,
            s.records,
            s.files,
            if s.files == 1 { "file" } else { "files" }
        );
    }
    if report.is_clean() {
        println!("no findings");
        return;
    }
    let counts = severity_counts(report);
    let summary: Vec<String> = counts
        .iter()
        .rev()
        .map(|(severity, n)| format!("{n} {severity}"))
        .collect();
    println!(
        "{} {} ({}):",
        report.findings.len(),
        if report.findings.len() == 1 {
            "finding"
        } else {
            "findings"
        },
        summary.join(", ")
    );
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &report.findings {
        let n = shown.entry(f.kind.name()).or_default();
        *n += 1;
        if *n <= args.max_listed {
            let split = f
                .split
                .as_deref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            println!(
                "  {:<8} {:<34} {split}{}",
                f.severity.as_str().to_uppercase(),
                f.kind.name(),
                f.message
            );
        }
    }
    for (kind, n) in shown {
        if n > args.max_listed {
            println!(
                "  ... and {} more {kind} (--json lists every finding)",
                n - args.max_listed
            );
        }
    }
}

/// Findings per severity, least severe first.
fn severity_counts(report: &CheckReport) -> BTreeMap<Severity, usize> {
    let mut counts = BTreeMap::new();
    for f in &report.findings {
        *counts.entry(f.severity).or_insert(0) += 1;
    }
    counts
}

/// The creation time to record: `SOURCE_DATE_EPOCH` if set (reproducible manifests), else
/// now.
fn created_now() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    rfc3339_utc(secs)
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// A spinner on stderr naming the current phase; hidden when stderr is not a terminal.
struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    fn new() -> Self {
        let bar = super::common::progress(0, "{spinner} {msg} [{elapsed}]");
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner { bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Spinner {
    fn phase(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }
}

//! `nnguard report`: combine partial evaluation reports of shards, render HTML.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use nnguard_eval::Report;

use super::common::check_output_path;
use super::eval::{print_summary, write_reports};
use crate::exit::Outcome;

/// `nnguard report ...`.
#[derive(Debug, Args)]
pub struct ReportCommand {
    #[command(subcommand)]
    command: ReportSub,
}

#[derive(Debug, Subcommand)]
enum ReportSub {
    /// Merge partial reports of `nnguard eval --shard I/N` into one report; the numbers
    /// equal those of an unsharded run.
    Merge(MergeArgs),
    /// Render a JSON report as a self-contained HTML page.
    Html(HtmlArgs),
}

/// Arguments of `nnguard report merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Partial reports (JSON) of disjoint shards of one evaluation.
    #[arg(required = true, value_name = "REPORT.json")]
    reports: Vec<PathBuf>,
    /// The merged JSON report.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the merged report as HTML.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Arguments of `nnguard report html`.
#[derive(Debug, Args)]
pub struct HtmlArgs {
    /// A JSON report of `nnguard eval`.
    #[arg(value_name = "REPORT.json")]
    report: PathBuf,
    /// The HTML file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `nnguard report`.
pub fn run(cmd: ReportCommand) -> anyhow::Result<Outcome> {
    match cmd.command {
        ReportSub::Merge(a) => {
            check_output_path(&a.out, "--out")?;
            if let Some(h) = &a.html {
                check_output_path(h, "--html")?;
            }
            let mut parts = Vec::with_capacity(a.reports.len());
            for p in &a.reports {
                parts.push(Report::read(p)?);
            }
            let merged = Report::merge(&parts)?;
            write_reports(&merged, Some(&a.out), a.html.as_deref())?;
            print_summary(&merged);
            if !merged.complete || merged.inputs.len() < merged.total_inputs {
                eprintln!(
                    "note: the merged report covers {} of {} inputs",
                    merged.inputs.len(),
                    merged.total_inputs
                );
            }
            println!("report: {}", a.out.display());
            Ok(super::eval::outcome(&merged, None))
        }
        ReportSub::Html(a) => {
            check_output_path(&a.out, "--out")?;
            let r = Report::read(&a.report)?;
            write_reports(&r, None, Some(&a.out))
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!("html: {}", a.out.display());
            Ok(Outcome::Clean)
        }
    }
}

//! The human-readable report.

use crate::finding::{ScanReport, Verdict};
use std::fmt::Write;

/// One block per file with findings or errors, then a summary line. Clean files are listed
/// only when `verbose` is set.
pub fn to_text(report: &ScanReport, verbose: bool) -> String {
    let mut s = String::new();
    for f in &report.files {
        if let Some(err) = &f.error {
            let _ = writeln!(s, "{}: error: {err}", f.path);
            continue;
        }
        if f.skipped {
            if verbose {
                let _ = writeln!(s, "{}: skipped (not a model file)", f.path);
            }
            continue;
        }
        let format = f
            .format
            .map(|x| x.to_string())
            .unwrap_or_else(|| "unknown".into());
        if f.findings.is_empty() {
            if verbose {
                let _ = writeln!(s, "{}: clean ({format}, {} bytes)", f.path, f.bytes);
            }
            continue;
        }
        let _ = writeln!(s, "{}: {} finding(s) ({format})", f.path, f.findings.len());
        for x in &f.findings {
            let mut at = String::new();
            if let Some(e) = x.location.entry_path() {
                let _ = write!(at, " in {e}");
            }
            if let Some(o) = x.location.offset {
                let _ = write!(at, " at byte {o}");
            }
            let _ = writeln!(
                s,
                "  {:<8} {} {}{at}: {}",
                x.severity.as_str(),
                x.rule.code,
                x.rule.name,
                x.message
            );
        }
    }
    let errors = report.files.iter().filter(|f| f.error.is_some()).count();
    let verdict = match report.verdict() {
        Verdict::NothingScanned => "nothing scanned",
        Verdict::Clean => "clean",
        Verdict::Findings => "findings",
        Verdict::Error => "errors",
    };
    let _ = writeln!(
        s,
        "scanned {} file(s): {} finding(s), {errors} error(s) — {verdict}",
        report.scanned(),
        report.finding_count()
    );
    s
}

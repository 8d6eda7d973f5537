//! The one place where results and errors become the documented exit codes.
//!
//! 0 clean, 1 findings, 2 error, 3 nothing to do, 4 usage.

use std::process::ExitCode;

/// What a successful command reports back to the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and found nothing to report (exit 0).
    Clean,
    /// The command ran and found something: a scan finding, a failed verification, an
    /// evaluation below a user-set threshold (exit 1).
    Findings,
    /// The command had nothing to work on, e.g. a scan of an empty directory (exit 3).
    NothingToDo,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Findings => 1,
            Outcome::NothingToDo => 3,
        }
    }
}

/// Exit code for an error (bad input, I/O failure, ...).
pub const EXIT_ERROR: u8 = 2;
/// Exit code for a command line that could not be parsed.
pub const EXIT_USAGE: u8 = 4;

/// Prints an error as one line (with its chain of causes) and returns exit code 2.
pub fn finish(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Reports a command-line parsing problem; `--help` and `--version` exit 0, the rest exit 4.
pub fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // Printing to the terminal is this function's job; a failure to print cannot be reported.
    let _ = err.print();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(EXIT_USAGE),
    }
}

/// Logs to stderr, filtered by `NNGUARD_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NNGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

//! The `nnguard` command-line tool: one binary for the whole model-security lifecycle.

mod cmd;
mod exit;

use clap::{Parser, Subcommand};
use exit::Outcome;

/// Secure neural networks end to end: attack, defend, certify, scan, sign and serve.
#[derive(Debug, Parser)]
#[command(name = "nnguard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every subcommand; each lives in its own module under `cmd/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the security assessment of a model on a data set (trains a default CNN on the
    /// bundled Fashion-MNIST subset when no model is given).
    Assess(cmd::assess::AssessArgs),
    /// Robust accuracy under an attack ensemble (AutoAttack-style), with validity checks
    /// beside every number, JSON/HTML reports and `--shard I/N`.
    Eval(cmd::eval::EvalArgs),
    /// Run one evasion attack and save the adversarial batch as safetensors.
    Attack(cmd::attack::AttackCmdArgs),
    /// Merge partial evaluation reports of shards (`report merge`), or render HTML.
    Report(cmd::report::ReportCommand),
    /// Train a built-in architecture (mlp, cnn, resnet8) and write safetensors + sidecar.
    Train(cmd::train::TrainArgs),
    /// Measure a detector of adversarial inputs (feature squeezing, Mahalanobis, learned):
    /// AUC and true positives at a false positive rate calibrated on clean data.
    Detect(cmd::detect::DetectArgs),
    /// Report a model's accuracy and per-class accuracy on a data set.
    Predict(cmd::predict::PredictArgs),
    /// Describe a model file: layers, shapes, parameters, input range, classes.
    Info(cmd::info::InfoArgs),
    /// Measure training and gradient throughput (see BENCHMARKS.md).
    Bench(cmd::bench::BenchArgs),
    /// Scan model files (pickle, PyTorch, NumPy, ONNX, safetensors) for code execution and
    /// format anomalies, without loading them.
    Scan(cmd::scan::ScanArgs),
    /// Convert a PyTorch checkpoint to safetensors through the non-executing reader.
    Convert(cmd::convert::ConvertArgs),
    /// Sign a model directory or file with a private key (OpenSSF model-signing format).
    Sign(cmd::sign::SignArgs),
    /// Verify a model against its signature and the signer's public key.
    Verify(cmd::verify::VerifyArgs),
    /// Create an ECDSA P-256 key pair for signing models.
    Keygen(cmd::keygen::KeygenArgs),
    /// Hash manifests of data sets (`data manifest`) and checks against them with
    /// validation for poisoned or broken training data (`data check`).
    Data(cmd::data::DataCommand),
    /// Certified robustness: randomized smoothing (`certify smooth`), interval bound
    /// propagation (`certify ibp`) and CROWN (`certify crown`).
    Certify(cmd::certify::CertifyArgs),
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Assess(args) => cmd::assess::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Attack(args) => cmd::attack::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Detect(args) => cmd::detect::run(args),
        Command::Predict(args) => cmd::predict::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Data(args) => cmd::data::run(args),
        Command::Certify(args) => cmd::certify::run(args),
    }
}

fn main() -> std::process::ExitCode {
    exit::init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::usage_error(err),
    };
    exit::finish(run(cli))
}

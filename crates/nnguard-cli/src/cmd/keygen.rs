//! `nnguard keygen`: create an ECDSA P-256 key pair for `nnguard sign` / `nnguard verify`.

use std::path::PathBuf;

use clap::Args;
use nnguard_signing::{SigningKey, write_key_pair};

use crate::exit::Outcome;

/// Arguments of `nnguard keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600). Keep it secret.
    #[arg(
        long,
        alias = "private_key",
        value_name = "PATH",
        default_value = "signing-key.pem"
    )]
    pub private_key: PathBuf,

    /// Where to write the public key (SubjectPublicKeyInfo PEM) to give to verifiers.
    #[arg(
        long,
        alias = "public_key",
        value_name = "PATH",
        default_value = "signing-key.pub.pem"
    )]
    pub public_key: PathBuf,

    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

/// Generates and writes the key pair.
pub fn run(args: KeygenArgs) -> anyhow::Result<Outcome> {
    let key = SigningKey::generate();
    write_key_pair(&key, &args.private_key, &args.public_key, args.force)?;
    println!(
        "private key: {} (keep it secret)",
        args.private_key.display()
    );
    println!("public key:  {}", args.public_key.display());
    println!("key hint:    {}", key.verifying_key().hint());
    Ok(Outcome::Clean)
}

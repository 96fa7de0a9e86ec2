//! `ncf-prepare`: prepare MovieLens ratings as an NCF dataset (replaces prepare_dataset.sh + convert.py).
//!
//! A thin command-line layer; the work lives in the library crates.

use clap::Parser;
use std::process::ExitCode;

/// Prepare MovieLens ratings as an NCF dataset (replaces prepare_dataset.sh + convert.py).
#[derive(Parser, Debug)]
#[command(name = "ncf-prepare", version, about)]
struct Cli {}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    tracing::debug!(?cli, "parsed arguments");
    eprintln!(
        "ncf-prepare: preprocessing is not implemented yet in this version of ncf-rs (see the README's status table)"
    );
    ExitCode::from(2)
}

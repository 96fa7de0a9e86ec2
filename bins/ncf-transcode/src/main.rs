//! `ncf-transcode`: convert a CSV feature-spec dataset to PyTorch tensor files (replaces transcode.py).
//!
//! A thin command-line layer; the work lives in the library crates.

use clap::Parser;
use std::process::ExitCode;

/// Convert a CSV feature-spec dataset to PyTorch tensor files (replaces transcode.py).
#[derive(Parser, Debug)]
#[command(name = "ncf-transcode", version, about)]
struct Cli {}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    tracing::debug!(?cli, "parsed arguments");
    eprintln!(
        "ncf-transcode: transcoding is not implemented yet in this version of ncf-rs (see the README's status table)"
    );
    ExitCode::from(2)
}

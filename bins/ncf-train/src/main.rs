//! `ncf-train`: train and evaluate NeuMF on a feature-spec dataset (replaces ncf.py).
//!
//! A thin command-line layer; the work lives in the library crates.

use clap::Parser;
use std::process::ExitCode;

/// Train and evaluate NeuMF on a feature-spec dataset (replaces ncf.py).
#[derive(Parser, Debug)]
#[command(name = "ncf-train", version, about)]
struct Cli {
    /// Print which libtorch this binary runs on and whether CUDA is usable, then exit.
    #[arg(long)]
    runtime_info: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    tracing::debug!(?cli, "parsed arguments");
    if cli.runtime_info {
        println!("{}", ncf_model::runtime::RuntimeInfo::current());
        return ExitCode::SUCCESS;
    }
    eprintln!("ncf-train: training is not implemented yet in this version of ncf-rs (see the README's status table)");
    ExitCode::from(2)
}

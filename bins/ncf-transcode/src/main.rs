//! `ncf-transcode`: a CSV FeatureSpec dataset -> PyTorch tensor files (the reference's
//! `transcode.py`). A thin layer over the `transcode` crate.

use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Convert a CSV feature-spec dataset to PyTorch tensor files (replaces transcode.py).
///
/// Reads <path>/<feature-spec-in>, whose chunks are headerless CSV files (one column per feature in
/// the chunk's order), and writes <mapping>_data_0.pt (user, item: int64 [N, 2]),
/// <mapping>_data_1.pt (label: float32 [N, 1]) and <output>/<feature-spec-out> for every mapping.
/// `cardinality: auto` becomes max id + 1 over all mappings. The output folder appears only when
/// complete; ncf-train (or the reference's ncf.py) trains on it directly.
///
/// Example:
///   ncf-transcode --path data/csv_conversion --output /tmp/converted
#[derive(Parser, Debug)]
#[command(name = "ncf-transcode", version, verbatim_doc_comment)]
struct Cli {
    /// Folder holding the input feature spec (its CSV paths are relative to it).
    #[arg(long)]
    path: PathBuf,
    /// Output folder: new, or empty.
    #[arg(long)]
    output: PathBuf,
    /// Input spec file name, inside --path.
    #[arg(long, alias = "feature_spec_in", default_value = "feature_spec.yaml")]
    feature_spec_in: PathBuf,
    /// Output spec file name, inside --output.
    #[arg(long, alias = "feature_spec_out", default_value = "feature_spec.yaml")]
    feature_spec_out: String,
}

fn main() -> ExitCode {
    cli_support::main("ncf-transcode", || run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    if cli.path.canonicalize().ok().is_some_and(|p| cli.output.canonicalize().ok() == Some(p)) {
        bail!("--output must be another folder than --path (the output is written as a whole and renamed into place)");
    }
    let spec_in = cli.path.join(&cli.feature_spec_in);
    let summary = transcode::transcode(&spec_in, &cli.output, &cli.feature_spec_out)?;
    for (mapping, rows) in &summary.rows {
        println!("{mapping}: {rows} rows");
    }
    println!(
        "wrote {} ({} users, {} items)",
        cli.output.join(&cli.feature_spec_out).display(),
        summary.user_cardinality,
        summary.item_cardinality
    );
    Ok(())
}

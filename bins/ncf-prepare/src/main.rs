//! `ncf-prepare`: raw MovieLens ratings -> an NCF FeatureSpec dataset (the reference's
//! `prepare_dataset.sh` + `convert.py`). A thin layer over the `preprocess` crate.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use preprocess::{MovieLensRelease, PrepareOptions, RawFormat, SyntheticConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Prepare MovieLens ratings as an NCF dataset (replaces prepare_dataset.sh + convert.py).
///
/// Writes train_data_{0,1}.pt, test_data_{0,1}.pt and feature_spec.yaml into the output folder,
/// exactly in the reference's layout (its test_featurespec_correctness.py passes them), so
/// `ncf-train` and the reference's ncf.py both read it, plus the id maps beside them: user_ids.pt
/// and item_ids.pt for integer ids, user_ids.txt / item_ids.txt (one id per line) for any other
/// ids (u196, UUIDs, SKUs), which are renumbered by first appearance like integers. The folder
/// appears only when complete.
///
/// Examples:
///   ncf-prepare --path data/ml-20m/ratings.csv --output data/cache/ml-20m
///   ncf-prepare --dataset ml-20m --raw-dir data          # unzip data/ml-20m.zip once, then prepare
///   ncf-prepare synthetic --output data/cache/synthetic  # no download needed
///   ncf-prepare verify data/cache/ml-20m
#[derive(Parser, Debug)]
#[command(name = "ncf-prepare", version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    convert: ConvertArgs,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// Raw ratings file: ml-20m ratings.csv, ml-1m/ml-10m ratings.dat, ml-100k u.data, or a
    /// like-movielens CSV (user,item,timestamp; first row skipped). Ids may be integers or any
    /// text; timestamps are integer unix seconds.
    #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
    path: Option<PathBuf>,
    /// Prepare a MovieLens release from its zip in --raw-dir (the prepare_dataset.sh job).
    #[arg(long, value_parser = ["ml-20m", "ml-1m"])]
    dataset: Option<String>,
    /// Where --dataset finds <name>.zip and unzips it.
    #[arg(long, alias = "raw_dir", default_value = "data")]
    raw_dir: PathBuf,
    /// Output folder [default with --dataset: <raw-dir>/cache/<name>; required with --path].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Raw file format [default: detected from the file name and header].
    #[arg(long, value_parser = parse_format)]
    format: Option<RawFormat>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Test negatives drawn per user.
    #[arg(long = "valid-negative", alias = "valid_negative", default_value_t = 100)]
    valid_negative: usize,
    /// Seed of the test-negative sampler.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rebuild the output folder even if it already holds a prepared dataset.
    #[arg(long)]
    force: bool,
    /// Also hold out each user's second-latest item as a `validation` mapping (positive first, then
    /// --valid-negative negatives of its own, like `test`), for model selection without the test
    /// set; users with fewer than 3 items keep theirs in train and get no validation list.
    #[arg(long)]
    validation: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a MovieLens-like ratings.csv with planted structure and prepare it (no download).
    Synthetic {
        /// Dataset folder to write (its raw ratings.csv is kept inside it).
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = SyntheticConfig::default().users)]
        users: usize,
        #[arg(long, default_value_t = SyntheticConfig::default().items)]
        items: usize,
        /// About this many ratings in all.
        #[arg(long, default_value_t = SyntheticConfig::default().interactions)]
        interactions: usize,
        /// Seed of the synthetic data (the sampler uses --seed).
        #[arg(long, default_value_t = SyntheticConfig::default().seed)]
        data_seed: u64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Check a prepared dataset like the reference's test_featurespec_correctness.py: ids below
    /// their cardinality, dtypes as declared, test rows divisible into series, optional template.
    Verify {
        /// The dataset folder (holding feature_spec.yaml).
        dir: PathBuf,
        /// A feature_spec.yaml the dataset's spec must match as the reference's script requires:
        /// every key, list order and value type; each difference is named.
        #[arg(long)]
        template: Option<PathBuf>,
    },
}

fn parse_format(s: &str) -> Result<RawFormat, String> {
    s.parse()
}

fn main() -> ExitCode {
    cli_support::main("ncf-prepare", || run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Verify { dir, template }) => {
            let report = preprocess::verify(&dir, template.as_deref())?;
            for (mapping, rows) in &report.rows {
                println!("{mapping}: {rows} rows");
            }
            println!(
                "{}: OK ({} users, {} items, {} rows per test series)",
                dir.display(),
                report.users,
                report.items,
                report.test_samples_per_series
            );
            Ok(())
        }
        Some(Command::Synthetic { output, users, items, interactions, data_seed, common }) => {
            if reuse_cached(&output, common.force)? {
                return Ok(());
            }
            let config = SyntheticConfig { users, items, interactions, seed: data_seed, ..Default::default() };
            if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let raw = sibling(&output, "synthetic-ratings.csv");
            let rows = preprocess::write_synthetic_ratings(&raw, &config)?;
            eprintln!("wrote {rows} synthetic ratings ({users} users, {items} items)");
            let result = convert(&raw, &output, Some(RawFormat::Ml20m), &common);
            let kept = output.join("ratings.csv");
            match result {
                Ok(()) => {
                    std::fs::rename(&raw, &kept).with_context(|| format!("moving the raw file to {}", kept.display()))
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&raw);
                    Err(e)
                }
            }
        }
        None => {
            let args = cli.convert;
            match (&args.path, &args.dataset) {
                (Some(path), _) => {
                    let Some(output) = &args.output else { bail!("--output DIR is required with --path") };
                    if reuse_cached(output, args.common.force)? {
                        return Ok(());
                    }
                    convert(path, output, args.format, &args.common)
                }
                (None, Some(name)) => {
                    let release: MovieLensRelease = name.parse().map_err(anyhow::Error::msg)?;
                    let output = args.output.clone().unwrap_or_else(|| args.raw_dir.join("cache").join(release.name()));
                    if reuse_cached(&output, args.common.force)? {
                        return Ok(());
                    }
                    let zip = args.raw_dir.join(release.zip_name());
                    if !zip.exists() && !args.raw_dir.join(release.name()).is_dir() {
                        bail!(
                            "{} not found. Download it from {} and save it as {}",
                            release.zip_name(),
                            release.download_page(),
                            zip.display()
                        );
                    }
                    let ratings = preprocess::extract_release(release, &args.raw_dir)?;
                    convert(&ratings, &output, Some(args.format.unwrap_or(release.format())), &args.common)
                }
                (None, None) => bail!("give --path RAW_FILE, --dataset NAME, or a subcommand (see --help)"),
            }
        }
    }
}

/// The reference's cache rule: a folder holding `feature_spec.yaml` is a finished dataset.
fn reuse_cached(output: &Path, force: bool) -> Result<bool> {
    if output.join("feature_spec.yaml").exists() && !force {
        eprintln!("Using cached preprocessed data at {} (--force to rebuild)", output.display());
        return Ok(true);
    }
    if output.exists() && !force && output.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not a prepared dataset; choose another --output or pass --force", output.display());
    }
    Ok(false)
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{stem}.{name}"))
}

fn convert(raw: &Path, output: &Path, format: Option<RawFormat>, common: &CommonArgs) -> Result<()> {
    let options = PrepareOptions {
        format,
        negatives: common.valid_negative,
        seed: common.seed,
        replace: true,
        validation: common.validation,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let summary = preprocess::prepare(raw, output, &options, |stage| bar.set_message(stage.to_string()));
    bar.finish_and_clear();
    let summary = summary?;
    println!("{summary}");
    println!("wrote {} ({} format) in {:.2} s", output.display(), summary.format, summary.elapsed.as_secs_f64());
    Ok(())
}

//! `ncf-infer`: the inference benchmark (replaces inference.py) and top-k recommendations, for
//! NeuMF, GMF, MLP and MF.
//!
//! A thin command-line layer over the `inference` crate.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dllogger::{DlLogger, LogValue, Step};
use ncf_model::runtime::{CpuMatmul, DeviceChoice, RuntimeInfo};
use ncf_model::{Model, ModelKind, NeuMf, NeuMfConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tch::Kind;

/// Inference for NeuMF (the reference's model), GMF, MLP and MF: a forward-pass benchmark over
/// batch sizes (replaces inference.py), or top-k recommendations for users in the raw ids of the
/// original ratings file. A checkpoint's model is read from its keys.
///
/// Examples:
///   ncf-infer --batch_sizes 1,1024,16384 --num_batches 200                 # random weights
///   ncf-infer --load_checkpoint_path runs/ml-20m/model.pth --n_users 138493 --n_items 26744 --fp16
///   ncf-infer --model mf --batch_sizes 1024,65536                           # MF, random weights
///   ncf-infer recommend --data data/cache/ml-20m --load_checkpoint_path runs/ml-20m/model.pth --users 1,42
///   ncf-infer recommend --data data/cache/ml-20m --load_checkpoint_path runs/ml-20m/model.pth --all --output recs.csv
#[derive(Parser, Debug)]
#[command(
    name = "ncf-infer",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
    /// Print which libtorch this binary runs on and whether CUDA is usable, then exit.
    #[arg(long)]
    runtime_info: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The inference benchmark (the default when no subcommand is given).
    Bench(BenchArgs),
    /// Top-k items for users, leaving out what each already has in train, in raw ids.
    Recommend(RecommendArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Checkpoint to time (a state dict); random weights without it.
    #[arg(long = "load_checkpoint_path", alias = "load-checkpoint-path")]
    load_checkpoint_path: Option<PathBuf>,
    /// Model to time: neumf, gmf, mlp or mf. Default: the one --load_checkpoint_path holds, else
    /// neumf (the reference's).
    #[arg(long)]
    model: Option<ModelKind>,
    /// Number of users (ML-20m's by default).
    #[arg(long = "n_users", alias = "n-users", default_value_t = 138_493)]
    n_users: i64,
    /// Number of items (ML-20m's by default).
    #[arg(long = "n_items", alias = "n-items", default_value_t = 26_744)]
    n_items: i64,
    /// Number of predictive factors (embedding width of GMF, MF and NeuMF's GMF branch).
    #[arg(short = 'f', long, default_value_t = 64)]
    factors: i64,
    /// Sizes of hidden layers of MLP and NeuMF's MLP branch.
    #[arg(long, num_args = 1.., default_values_t = [256, 256, 128, 64])]
    layers: Vec<i64>,
    /// Dropout probability (inactive at inference; kept for the reference's flag).
    #[arg(long, default_value_t = 0.5)]
    dropout: f64,
    /// Comma-separated batch sizes to time.
    #[arg(
        long = "batch_sizes",
        alias = "batch-sizes",
        default_value = "1,4,16,64,256,1024,4096,16384,65536,262144,1048576"
    )]
    batch_sizes: String,
    /// Timed batches per batch size (after 10 untimed warm-up batches).
    #[arg(long = "num_batches", alias = "num-batches", default_value_t = 200)]
    num_batches: usize,
    /// Run in float16.
    #[arg(long, conflicts_with = "bf16")]
    fp16: bool,
    /// Run in bfloat16.
    #[arg(long)]
    bf16: bool,
    /// Path for the JSON log (DLLogger format); an empty value writes none.
    #[arg(long = "log_path", alias = "log-path", default_value = "log.json")]
    log_path: String,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Time every batch size through libtorch. By default float32 CPU batches under 8 pairs go
    /// through the small-batch scorer (no libtorch operator calls: batch 1 in 9.5 us instead of
    /// 34 us on our 2-core VM), as the table's `engine` column says.
    #[arg(long = "no-small-batch")]
    no_small_batch: bool,
    /// Time the plain forward pass. By default the first MLP layer (about 60% of a pair's
    /// multiply-adds) is computed once per user and per item when the model is loaded, and each
    /// batch reads it from those tables (the same scores up to float rounding; ML-20m: 170 MB).
    #[arg(long = "no-tables")]
    no_tables: bool,
    /// On CUDA, float32 matrix products use TF32 tensor cores by default (as ncf-train does, and
    /// as the reference's TF32 figures were taken); this keeps them in full float32.
    #[arg(long = "no-tf32", alias = "no_tf32")]
    no_tf32: bool,
    /// Library for float32 matrix products on the CPU: auto (oneDNN on CPUs with AVX-512, else
    /// MKL), onednn or mkl (libtorch's default).
    #[arg(long = "cpu-matmul", alias = "cpu_matmul", default_value = "auto", value_name = "LIB")]
    cpu_matmul: CpuMatmul,
}

#[derive(Args, Debug)]
struct RecommendArgs {
    /// The dataset folder the model was trained on (feature_spec.yaml, train mapping, id maps).
    #[arg(long)]
    data: PathBuf,
    /// The trained model (model.pth of NeuMF, GMF, MLP or MF); its kind and shape are read from the file.
    #[arg(long = "load_checkpoint_path", alias = "load-checkpoint-path")]
    load_checkpoint_path: PathBuf,
    /// Raw user ids as in the ratings file (integers, or text ids such as u196), comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["all", "history"], conflicts_with_all = ["all", "history"])]
    users: Vec<String>,
    /// Every user of the dataset.
    #[arg(long, conflicts_with = "history")]
    all: bool,
    /// People given by what they did, including people the model was never trained on: a CSV of
    /// raw `user_id,item_id[,timestamp]` lines (a MovieLens ratings.csv reads as is). Each person
    /// is folded in (their user vectors fitted to their items, the model fixed); a user the
    /// dataset knows is refreshed instead (their train items plus the file's, from their own
    /// vectors). Their items are left out of their list; items the dataset lacks are skipped and
    /// counted.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Fold-in: Adam steps per person.
    #[arg(long = "fold-in-steps", requires = "history", default_value_t = inference::FoldInOptions::default().steps)]
    fold_in_steps: usize,
    /// Fold-in: negatives drawn per history item at each step.
    #[arg(long = "fold-in-negatives", requires = "history", default_value_t = inference::FoldInOptions::default().negatives)]
    fold_in_negatives: usize,
    /// Fold-in: Adam's learning rate, in standard deviations of the trained users' vectors.
    #[arg(long = "fold-in-lr", requires = "history", default_value_t = inference::FoldInOptions::default().learning_rate)]
    fold_in_lr: f64,
    /// Fold-in: weight of the prior (the trained users' mean and spread; 0: none).
    #[arg(long = "fold-in-prior-weight", requires = "history", default_value_t = inference::FoldInOptions::default().prior_weight)]
    fold_in_prior_weight: f64,
    /// Fold-in: seed of the negatives (the same seed, the same lists).
    #[arg(long = "seed", requires = "history", default_value_t = 0)]
    seed: u64,
    /// Items per user.
    #[arg(short = 'k', long, default_value_t = 10)]
    topk: usize,
    /// Output file: .csv (user,rank,item,score) or .jsonl; stdout (CSV) without it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Keep the items a user already has in train.
    #[arg(long = "include-seen", alias = "include_seen")]
    include_seen: bool,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// On CUDA, keep float32 matrix products in full float32 instead of TF32.
    #[arg(long = "no-tf32", alias = "no_tf32")]
    no_tf32: bool,
    /// Library for float32 matrix products on the CPU: auto (oneDNN on CPUs with AVX-512, else
    /// MKL), onednn or mkl (libtorch's default).
    #[arg(long = "cpu-matmul", alias = "cpu_matmul", default_value = "auto", value_name = "LIB")]
    cpu_matmul: CpuMatmul,
    /// Rank in two stages: all-item scoring in bfloat16 (AMX tiles where the CPU has them, else
    /// oneDNN: NeuMF 2-3x faster) picks each user's best 4k+32 items, float32 ranks them, so the
    /// scores are float32's. With AMX, fold-ins (--history, new visitors) also fit in bfloat16
    /// (~6x faster, lists as float32's fits give on the tested data). NeuMF and MLP, on a CPU with
    /// bfloat16 instructions (AVX512-BF16 or AMX); refused with the reason elsewhere.
    #[arg(long)]
    bf16: bool,
}

/// TF32 for float32 matrix products on CUDA unless `--no-tf32`; nothing on the CPU.
fn set_tf32(device: tch::Device, no_tf32: bool) -> Result<&'static str> {
    if !device.is_cuda() {
        return Ok("");
    }
    torch_ops::set_tf32(!no_tf32).context("setting the float32 matmul precision")?;
    Ok(if no_tf32 { " (full float32 matmuls)" } else { " (TF32 matmuls)" })
}

fn main() -> ExitCode {
    cli_support::keep_freed_memory();
    cli_support::main("ncf-infer", || {
        let cli = Cli::parse();
        if cli.runtime_info {
            println!("{}", RuntimeInfo::current());
            return Ok(());
        }
        match cli.command {
            Some(Command::Bench(args)) => bench(args),
            Some(Command::Recommend(args)) => recommend(args),
            None => bench(cli.bench),
        }
    })
}

fn bench(args: BenchArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let batch_sizes: Vec<i64> = args
        .batch_sizes
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .ok()
                .filter(|&b| b > 0)
                .with_context(|| format!("--batch_sizes: `{s}` is not a positive integer"))
        })
        .collect::<Result<_>>()?;
    if args.num_batches == 0 {
        bail!("--num_batches must be at least 1");
    }
    let config = NeuMfConfig {
        users: args.n_users,
        items: args.n_items,
        mf_dim: args.factors,
        mlp_layers: args.layers.clone(),
        dropout: args.dropout,
    };
    let model_kind = match (args.model, &args.load_checkpoint_path) {
        (Some(kind), _) => kind,
        (None, Some(path)) => ModelKind::of_file(path)?,
        (None, None) => ModelKind::NeuMf,
    };
    if model_kind != ModelKind::NeuMf {
        return bench_any(&args, model_kind, config, device, &batch_sizes);
    }
    let mut model = NeuMf::new(config, device)?;
    if let Some(path) = &args.load_checkpoint_path {
        model.load(path)?;
    }
    let (kind, precision, mut log) = ready_to_time(&args, &mut model, device)?;
    eprintln!("ncf-infer: timing {} batches per size on {device:?} in {kind:?}{precision}", args.num_batches);
    print_header();
    let tables = (!args.no_tables).then(|| {
        let start = Instant::now();
        let t = model.first_layer_tables();
        inference::bench::synchronize(device);
        eprintln!(
            "ncf-infer: first-layer tables for {} users and {} items made once in {:.3} s ({:.0} MB); --no-tables times the plain forward pass",
            args.n_users,
            args.n_items,
            start.elapsed().as_secs_f64(),
            t.bytes() as f64 / 1e6
        );
        t
    });
    let engines = inference::bench::Engines { small_batch: !args.no_small_batch, tables: tables.as_ref() };
    let mut data: Vec<(String, LogValue)> = Vec::new();
    for &b in &batch_sizes {
        let s = inference::bench::time_batches(&model, b, args.num_batches, 10, engines);
        print_row(&s, &mut data);
    }
    if let Some(log) = &mut log {
        log.log(Step::End, &data).with_context(|| format!("writing {}", log.path().display()))?;
    }
    Ok(())
}

/// Evaluation mode, the kind --fp16/--bf16 ask for, TF32 as asked, and the log: what every
/// benchmark run sets up before timing.
fn ready_to_time(
    args: &BenchArgs,
    model: &mut dyn Model,
    device: tch::Device,
) -> Result<(Kind, &'static str, Option<DlLogger>)> {
    model.set_train(false);
    let kind = if args.fp16 {
        Kind::Half
    } else if args.bf16 {
        Kind::BFloat16
    } else {
        Kind::Float
    };
    model.set_kind(kind);
    if !device.is_cuda() {
        model.set_cpu_matmul(args.cpu_matmul)?;
    }
    let precision = match (kind, device.is_cuda()) {
        (Kind::Float, true) => set_tf32(device, args.no_tf32)?,
        (Kind::Float, false) if args.cpu_matmul.resolve() == Ok(true) => " (oneDNN matmuls)",
        (Kind::Float, false) => " (MKL matmuls)",
        _ => "",
    };
    let log = match args.log_path.as_str() {
        "" => None,
        path => Some(DlLogger::create(path).with_context(|| format!("creating the log {path}"))?),
    };
    Ok((kind, precision, log))
}

/// The benchmark for a model other than NeuMF: its own forward pass at every batch size.
fn bench_any(
    args: &BenchArgs,
    model_kind: ModelKind,
    shape: NeuMfConfig,
    device: tch::Device,
    batch_sizes: &[i64],
) -> Result<()> {
    let mut model = model_kind.build(&shape, device)?;
    if let Some(path) = &args.load_checkpoint_path {
        model.load(path)?;
    }
    let (kind, precision, mut log) = ready_to_time(args, model.as_mut(), device)?;
    eprintln!(
        "ncf-infer: timing {} ({} parameters), {} batches per size on {device:?} in {kind:?}{precision}",
        model_kind.title(),
        model.parameter_count(),
        args.num_batches
    );
    print_header();
    let mut data: Vec<(String, LogValue)> = Vec::new();
    for &b in batch_sizes {
        let s = inference::bench::time_model_batches(model.as_ref(), b, args.num_batches, 10);
        print_row(&s, &mut data);
    }
    if let Some(log) = &mut log {
        log.log(Step::End, &data).with_context(|| format!("writing {}", log.path().display()))?;
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:>10} {:>16} {:>14} {:>14} {:>14} {:>14} {:>12}",
        "batch", "samples/s", "mean (ms)", "p90 (ms)", "p95 (ms)", "p99 (ms)", "engine"
    );
}

/// Prints a batch size's line and adds its figures to the log's end line (the reference's keys).
fn print_row(s: &inference::bench::LatencyStats, data: &mut Vec<(String, LogValue)>) {
    let b = s.batch_size;
    println!(
        "{:>10} {:>16.0} {:>14.4} {:>14.4} {:>14.4} {:>14.4} {:>12}",
        b,
        s.mean_throughput,
        s.mean_latency * 1e3,
        s.p90_latency * 1e3,
        s.p95_latency * 1e3,
        s.p99_latency * 1e3,
        s.engine
    );
    data.push((format!("batch_{b}_mean_throughput"), s.mean_throughput.into()));
    data.push((format!("batch_{b}_mean_latency"), s.mean_latency.into()));
    data.push((format!("batch_{b}_p90_latency"), s.p90_latency.into()));
    data.push((format!("batch_{b}_p95_latency"), s.p95_latency.into()));
    data.push((format!("batch_{b}_p99_latency"), s.p99_latency.into()));
}

fn recommend(args: RecommendArgs) -> Result<()> {
    let device = args.device.resolve()?;
    set_tf32(device, args.no_tf32)?;
    let mut rec = inference::Recommender::open(&args.data, &args.load_checkpoint_path, device)
        .with_context(|| format!("loading {} for {}", args.load_checkpoint_path.display(), args.data.display()))?;
    if !device.is_cuda() {
        rec.set_cpu_matmul(args.cpu_matmul)?;
    }
    if args.bf16 {
        rec.set_bf16_candidates(true).context("--bf16")?;
    }
    eprintln!(
        "ncf-infer: {} from {}{}",
        rec.model_kind().title(),
        args.load_checkpoint_path.display(),
        if args.bf16 { " (bfloat16 candidates, float32 ranking)" } else { "" }
    );
    if !rec.has_raw_ids() {
        eprintln!("ncf-infer: {} has no id maps; users and items are the dataset's 0-based ids", args.data.display());
    }
    if let Some(path) = &args.history {
        return recommend_histories(&rec, path, &args);
    }
    let users = if args.all { rec.all_users() } else { rec.users_by_raw_id(&args.users)? };
    let start = Instant::now();
    let bar = progress_bar(users.len(), "recommending [{bar:30}] {pos}/{len} users, {per_sec}, eta {eta}");
    let mut recs = Vec::with_capacity(users.len());
    for chunk in users.chunks(rec.users_per_batch() * 16) {
        recs.extend(rec.recommend(chunk, args.topk, args.include_seen));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "ncf-infer: {} users in {seconds:.2} s ({:.0} users/s)",
        users.len(),
        users.len() as f64 / seconds.max(1e-9)
    );
    write_output(args.output.as_deref(), &recs)
}

/// `recommend --history`: each person of the file folded in (or a known user refreshed), then
/// their top k.
fn recommend_histories(rec: &inference::Recommender, path: &std::path::Path, args: &RecommendArgs) -> Result<()> {
    let people = inference::read_histories(path)?;
    let options = inference::FoldInOptions {
        steps: args.fold_in_steps,
        negatives: args.fold_in_negatives,
        learning_rate: args.fold_in_lr,
        prior_weight: args.fold_in_prior_weight,
        seed: args.seed,
    };
    let start = Instant::now();
    let bar = progress_bar(people.len(), "folding in [{bar:30}] {pos}/{len} people, {per_sec}, eta {eta}");
    let (mut recs, mut skipped, mut known_people) = (Vec::with_capacity(people.len()), Vec::new(), 0usize);
    for person in &people {
        let (items, unknown) = rec.items_by_raw_id(&person.items);
        skipped.extend(unknown);
        let known = rec.catalog().user(&person.user);
        known_people += usize::from(known.is_some());
        let items = rec
            .recommend_for_history(known, &items, args.topk, args.include_seen, &options)
            .with_context(|| format!("recommending for {} from their history", person.user))?;
        // A known user as the dataset writes them; a new one as a number only when the text is
        // one exactly (`007` stays text).
        let user = match known {
            Some(u) => rec.catalog().user_raw_id(u),
            None => match person.user.parse::<i64>() {
                Ok(n) if n.to_string() == person.user => inference::RawId::Int(n),
                _ => inference::RawId::Text(person.user.clone()),
            },
        };
        recs.push(inference::Recommendation { user, items });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "ncf-infer: {} people from {} ({} new to the model, {} known and refreshed) in {seconds:.2} s ({:.0} people/s)",
        people.len(),
        path.display(),
        people.len() - known_people,
        known_people,
        people.len() as f64 / seconds.max(1e-9)
    );
    if !skipped.is_empty() {
        let shown: Vec<&str> = skipped.iter().take(5).map(String::as_str).collect();
        eprintln!(
            "ncf-infer: skipped {} event(s) of items the dataset does not have ({}{})",
            skipped.len(),
            shown.join(", "),
            if skipped.len() > shown.len() { ", ..." } else { "" }
        );
    }
    write_output(args.output.as_deref(), &recs)
}

/// A progress bar of `len` steps drawn with `template` (indicatif's).
fn progress_bar(len: usize, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Recommendations to `--output` (format from its extension, written whole or not at all), or
/// CSV on stdout without it.
fn write_output(output: Option<&std::path::Path>, recs: &[inference::Recommendation]) -> Result<()> {
    match output {
        Some(path) => {
            inference::write_recommendations(path, recs)?;
            eprintln!("ncf-infer: wrote {}", path.display());
        }
        None => inference::OutputFormat::Csv.write(&mut std::io::stdout().lock(), recs)?,
    }
    Ok(())
}

//! `ncf-serve`: recommendations online, a thin command line over the `serve` crate: flags, the
//! listener, and the signals (SIGHUP reloads, SIGTERM/SIGINT drain and exit).

use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_model::runtime::{CpuMatmul, DeviceChoice};
use serve::{BatchConfig, Limits, ModelOptions, ServeConfig, Service};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Serves recommendations from a trained checkpoint over HTTP: top-k items for a user, many users
/// at once, scores for (user, item) pairs, a page at / to look at them, Prometheus metrics, and a
/// hot reload of the checkpoint. The model's kind and widths are read from the checkpoint.
///
/// Examples:
///   ncf-serve --data data/cache/ml-20m --load_checkpoint_path runs/model.pth
///   ncf-serve --data data/cache/ml-latest-small --load_checkpoint_path runs/model.pth --item-names movies.csv
///   curl 'http://127.0.0.1:8080/v1/users/1/recommendations?k=10'
///
/// Signals: SIGHUP reloads the checkpoint (as POST /v1/admin/reload); SIGTERM or SIGINT stop
/// accepting, answer what is in flight, and exit 0.
#[derive(Parser, Debug)]
#[command(name = "ncf-serve", version, verbatim_doc_comment)]
struct Cli {
    /// The dataset folder the model was trained on (feature_spec.yaml, train mapping, id maps).
    #[arg(long)]
    data: PathBuf,
    /// The trained model (model.pth of NeuMF, GMF, MLP or MF).
    #[arg(long = "load_checkpoint_path", alias = "load-checkpoint-path", value_name = "FILE")]
    load_checkpoint_path: PathBuf,
    /// Item titles to show with recommendations: a CSV of id,title[,genres] with a header
    /// (MovieLens movies.csv).
    #[arg(long = "item-names", value_name = "CSV")]
    item_names: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one (printed at start-up). Other machines reach
    /// the service only when this is not a loopback address, e.g. 0.0.0.0:8080.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: String,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Library for float32 matrix products on the CPU: auto (oneDNN on CPUs with AVX-512, else
    /// MKL), onednn or mkl.
    #[arg(long = "cpu-matmul", default_value = "auto", value_name = "LIB")]
    cpu_matmul: CpuMatmul,
    /// Rank in two stages: all-item scoring in bfloat16 (AMX tiles where the CPU has them, else
    /// oneDNN: NeuMF 2-3x faster) picks each user's best 4k+32 items, float32 ranks them, so the
    /// scores are float32's. With AMX, fold-ins (--history, new visitors) also fit in bfloat16
    /// (~6x faster, lists as float32's fits give on the tested data). NeuMF and MLP, on a CPU with
    /// bfloat16 instructions (AVX512-BF16 or AMX); refused with the reason elsewhere.
    #[arg(long)]
    bf16: bool,
    /// Threads libtorch uses for one scoring pass (default: libtorch's, one per core).
    #[arg(long, value_name = "N")]
    threads: Option<i32>,
    /// Users scored together at most in one batch of concurrent requests.
    #[arg(long = "max-batch-users", default_value_t = 64, value_name = "N")]
    max_batch_users: usize,
    /// How long the first request of a batch waits for others, in microseconds. 0 (the default)
    /// adds no latency: requests that arrive while a batch is scored still share the next one,
    /// so batches fill under load anyway.
    #[arg(long = "max-queue-delay-us", default_value_t = 0, value_name = "US")]
    max_queue_delay_us: u64,
    /// Requests that may wait for the scorer; more are answered 503 with Retry-After.
    #[arg(long = "max-queue", default_value_t = 256, value_name = "N")]
    max_queue: usize,
    /// A request not answered within this many milliseconds gets 503 (still queued) or 504.
    #[arg(long = "request-timeout-ms", default_value_t = 5000, value_name = "MS")]
    request_timeout_ms: u64,
    /// Users in one POST /v1/recommendations at most.
    #[arg(long = "max-users-per-request", default_value_t = 1000, value_name = "N")]
    max_users_per_request: usize,
    /// Pairs in one POST /v1/scores, and items in one POST /v1/recommendations/for-history, at most.
    #[arg(long = "max-pairs-per-request", default_value_t = 10_000, value_name = "N")]
    max_pairs_per_request: usize,
    /// Largest k a request may ask for (at most the number of items).
    #[arg(long = "max-k", default_value_t = 1000, value_name = "N")]
    max_k: usize,
    /// Request bodies over this many bytes are refused (413).
    #[arg(long = "max-body-bytes", default_value_t = 1 << 20, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Memory one scoring pass may hold for its intermediate results, in MB (more users per pass
    /// is faster up to a point; at least one user per pass whatever this says).
    #[arg(long = "pass-memory-mb", default_value_t = 64, value_name = "MB")]
    pass_memory_mb: u64,
    /// A file holding the bearer token for POST /v1/admin/reload (or set NCF_SERVE_ADMIN_TOKEN).
    /// Without a token the admin routes are off.
    #[arg(long = "admin-token-file", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A folder for the interaction journal: POST /v1/users/{user}/interactions appends every
    /// event there (one CSV per day, MovieLens' layout, flushed to the disk before the answer)
    /// and the journal is replayed at start. Without it that route is off.
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// After SIGTERM/SIGINT, how many seconds requests in flight get before the server exits anyway.
    #[arg(long = "shutdown-timeout-s", default_value_t = 30, value_name = "S")]
    shutdown_timeout_s: u64,
}

/// Bytes of intermediate results per float a scoring pass holds, counted over the activations
/// alive at once (about three layers' outputs of the same size).
const BYTES_PER_PASS_FLOAT: u64 = 4 * 3;

fn main() -> ExitCode {
    // No cli_support::keep_freed_memory() here, unlike the batch binaries: a server's start-up
    // (the train mapping read to find each user's items: 480 MB for ML-20m) must go back to the
    // system, or it stays resident for the server's life (1.27 GB measured for MF at ML-20m's size).
    // A bounded version is set once the model is loaded (`run`).
    cli_support::main("ncf-serve", || {
        let cli = Cli::parse();
        run(cli)
    })
}

fn admin_token(cli: &Cli) -> Result<Option<String>> {
    if let Some(path) = &cli.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin token from {}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        if token.chars().any(|c| c.is_control() || c == ' ') {
            bail!(
                "{}: the token (the file's first line) holds spaces or control characters, which an Authorization header cannot carry",
                path.display()
            );
        }
        if token.is_empty() {
            bail!("{} is empty: write the admin token in it, or leave --admin-token-file out to turn the admin routes off", path.display());
        }
        return Ok(Some(token));
    }
    Ok(std::env::var("NCF_SERVE_ADMIN_TOKEN").ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()))
}

fn run(cli: Cli) -> Result<()> {
    let device = cli.device.resolve()?;
    if let Some(n) = cli.threads {
        if n < 1 {
            bail!("--threads must be at least 1");
        }
        tch::set_num_threads(n);
    }
    if cli.max_batch_users == 0 || cli.max_queue == 0 || cli.max_users_per_request == 0 || cli.max_k == 0 {
        bail!("--max-batch-users, --max-queue, --max-users-per-request and --max-k must be at least 1");
    }
    // The pass cap: what one scoring pass may hold for its intermediate results.
    let pass_bytes = cli.pass_memory_mb.max(1) << 20;
    let config = ServeConfig {
        data: cli.data.clone(),
        checkpoint: cli.load_checkpoint_path.clone(),
        item_names: cli.item_names.clone(),
        model: ModelOptions {
            device,
            pass_floats: pass_bytes.div_ceil(BYTES_PER_PASS_FLOAT) as i64,
            cpu_matmul: cli.cpu_matmul,
            bf16_candidates: cli.bf16,
        },
        batching: BatchConfig {
            max_batch_users: cli.max_batch_users,
            max_queue_delay: Duration::from_micros(cli.max_queue_delay_us),
            queue_capacity: cli.max_queue,
        },
        limits: Limits {
            max_users_per_request: cli.max_users_per_request,
            max_pairs_per_request: cli.max_pairs_per_request,
            max_k: cli.max_k,
            max_body_bytes: cli.max_body_bytes,
            request_deadline: Duration::from_millis(cli.request_timeout_ms.max(1)),
        },
        admin_token: admin_token(&cli)?,
        journal: cli.journal.clone(),
    };
    let admin = config.admin_token.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        // SIGHUP's handler first: until it is registered, a SIGHUP (a deploy script's reload sent
        // while the model still loads) would end the process.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("SIGHUP")?;
        let service = tokio::task::block_in_place(|| Service::start(config))
            .with_context(|| format!("loading {} for {}", cli.load_checkpoint_path.display(), cli.data.display()))?;
        // Start-up's reads are freed by now; from here a pass's intermediate results (each at most
        // the pass cap) stay in the heap for the next pass instead of faulting in fresh pages, and
        // at most two passes' worth of free heap is kept (the memory goal: model + maps + 256 MB).
        cli_support::keep_transient_memory(pass_bytes as usize, 2 * pass_bytes as usize);
        serve(service, &cli, admin, hangup).await
    })
}

async fn serve(service: Service, cli: &Cli, admin: bool, mut hangup: tokio::signal::unix::Signal) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listening on {} (another server there? pick another with --listen)", cli.listen))?;
    let addr = listener.local_addr().context("reading the listening address")?;
    let m = service.model();
    eprintln!(
        "ncf-serve: {} ({} users, {} items, {} parameters) from {} (sha256 {}) on {}; admin routes {}",
        m.kind,
        m.users,
        m.items,
        m.parameters,
        m.checkpoint.display(),
        &m.sha256[..12.min(m.sha256.len())],
        m.device,
        if admin { "on" } else { "off" }
    );
    if let Some(dir) = &cli.journal {
        let r = service.replayed();
        for w in &r.warnings {
            eprintln!("ncf-serve: warning: {w}");
        }
        eprintln!(
            "ncf-serve: journal {}: replayed {} events of {} people ({} of items the dataset lacks)",
            dir.display(),
            r.events,
            r.people,
            r.unknown_items
        );
    }
    eprintln!("ncf-serve: listening on http://{addr}");

    // SIGHUP: reload the checkpoint, as POST /v1/admin/reload does (one sent during start-up is
    // delivered now).
    let on_hangup = service.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match on_hangup.reload(None).await {
                Ok(info) => eprintln!("ncf-serve: SIGHUP: serving version {} (sha256 {})", info.version, info.sha256),
                Err(e) => eprintln!("ncf-serve: SIGHUP: reload refused: {e}; the old model keeps serving"),
            }
        }
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM")?;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let on_stop = service.clone();
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => eprintln!("ncf-serve: SIGTERM: finishing the requests in flight"),
            _ = tokio::signal::ctrl_c() => eprintln!("ncf-serve: SIGINT: finishing the requests in flight"),
        }
        on_stop.set_ready(false);
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, service.router()).with_graceful_shutdown(shutdown);
    let grace = Duration::from_secs(cli.shutdown_timeout_s);
    let drained = async {
        let _ = stopping_rx.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("serving")?,
        _ = drained => bail!("requests still in flight {} s after the signal (--shutdown-timeout-s); exiting", grace.as_secs()),
    }
    eprintln!("ncf-serve: stopped");
    Ok(())
}

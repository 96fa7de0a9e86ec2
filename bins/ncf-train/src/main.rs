//! `ncf-train`: train and evaluate NeuMF (or GMF, MLP, MF) on a feature-spec dataset (replaces ncf.py).
//!
//! A thin command-line layer over the `ncf-train` crate: flags, progress bars, summaries.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ncf_model::runtime::{CpuMatmul, DeviceChoice, RuntimeInfo};
use ncf_model::ModelKind;
use ncf_train::dist::{GlooGroup, NcclGroup, RankEnv};
use ncf_train::{EpochReport, EvalProtocol, Mode, Observer, Pretrained, ReplicaCheck, TrainConfig, Trainer};
use std::path::PathBuf;
use std::process::ExitCode;

mod plot;

/// Train a Neural Collaborative Filtering model (NeuMF, the reference's; or GMF, MLP, or dot-product
/// MF), or evaluate a checkpoint (replaces ncf.py).
///
/// Takes every flag of the reference's ncf.py, with its defaults, in both spellings
/// (--batch_size or --batch-size). Reads a dataset prepared by ncf-prepare, ncf-transcode or the
/// reference itself; writes checkpoint_dir/model.pth (PyTorch format) whenever HR@k improves, a
/// training state for --resume every epoch, and a DLLogger JSON log at --log_path.
///
/// Examples:
///   ncf-train --data data/cache/ml-20m --checkpoint_dir runs/ml-20m
///   ncf-train --data data/cache/ml-latest-small -b 16384 --valid_batch_size 65536 -e 20 --seed 1 --checkpoint_dir runs/small
///   ncf-train --data data/cache/ml-20m --mode test --load_checkpoint_path runs/ml-20m/model.pth
///   ncf-train --data data/cache/ml-20m --checkpoint_dir runs/ml-20m --resume runs/ml-20m
///   ncf-train --data data/cache/ml-20m --checkpoint_dir runs/amp --amp --plot curves.svg   # on a GPU
///   ncf-train --nproc-per-node 8 --data data/cache/ml-20m --checkpoint_dir runs/ml-20m   # 8 GPUs, NCCL
///   ncf-train --nproc-per-node 2 --device cpu --data data/cache/ml-20m --checkpoint_dir runs/cpu   # 2 CPU ranks, gloo
///
/// Data-parallel on CPUs across machines (gloo), one command per machine, as with torchrun:
///   ncf-train --nnodes 2 --node-rank 0 --master-addr HOST0 --nproc-per-node 1 --device cpu --data D ...   # on HOST0
///   ncf-train --nnodes 2 --node-rank 1 --master-addr HOST0 --nproc-per-node 1 --device cpu --data D ...   # on HOST1
/// or under PyTorch's own launcher:
///   python -m torch.distributed.run --nproc_per_node 2 --no-python ncf-train --device cpu --data D ...
///
/// The NCF paper's pre-training: train GMF and MLP, then NeuMF from both:
///   ncf-train --data D --model gmf -f 64 --checkpoint_dir runs/gmf
///   ncf-train --data D --model mlp --checkpoint_dir runs/mlp
///   ncf-train --data D --pretrained-gmf runs/gmf/model.pth --pretrained-mlp runs/mlp/model.pth --checkpoint_dir runs/neumf
#[derive(Parser, Debug)]
#[command(name = "ncf-train", version, verbatim_doc_comment, args_override_self = true)]
struct Cli {
    /// Path to the directory containing the feature specification yaml.
    #[arg(long, required_unless_present = "runtime_info")]
    data: Option<PathBuf>,
    /// Name of the feature specification file or path relative to the data directory.
    #[arg(long = "feature_spec_file", alias = "feature-spec-file", default_value = "feature_spec.yaml")]
    feature_spec_file: String,
    /// Model: neumf (GMF and MLP side by side, the reference's), gmf (embedding product + linear),
    /// mlp (the MLP tower alone) or mf (dot product + user, item and global bias). Default: neumf,
    /// or the model --load_checkpoint_path holds (its keys say which).
    #[arg(long, value_enum)]
    model: Option<ModelArg>,
    /// NeuMF initialised from this trained GMF (`model.pth` of --model gmf), with --pretrained-mlp:
    /// the NCF paper's pre-training. -f and --layers must match the two checkpoints.
    #[arg(long = "pretrained-gmf", alias = "pretrained_gmf", value_name = "PATH", requires = "pretrained_mlp")]
    pretrained_gmf: Option<PathBuf>,
    /// NeuMF initialised from this trained MLP (`model.pth` of --model mlp), with --pretrained-gmf.
    #[arg(long = "pretrained-mlp", alias = "pretrained_mlp", value_name = "PATH", requires = "pretrained_gmf")]
    pretrained_mlp: Option<PathBuf>,
    /// Pre-training's weight of GMF's final layer in NeuMF's (MLP's: 1 - alpha).
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Number of epochs for training.
    #[arg(short = 'e', long, default_value_t = 30)]
    epochs: usize,
    /// Number of examples for each iteration.
    #[arg(short = 'b', long = "batch_size", alias = "batch-size", default_value_t = 1 << 20)]
    batch_size: i64,
    /// Number of examples in each validation chunk.
    #[arg(long = "valid_batch_size", alias = "valid-batch-size", default_value_t = 1 << 20)]
    valid_batch_size: i64,
    /// Number of predictive factors (embedding width of GMF, MF, and NeuMF's GMF branch).
    #[arg(short = 'f', long, default_value_t = 64)]
    factors: i64,
    /// Sizes of hidden layers for MLP and NeuMF's MLP branch (the first is both MLP embeddings side
    /// by side; even).
    #[arg(long, num_args = 1.., default_values_t = [256, 256, 128, 64])]
    layers: Vec<i64>,
    /// Number of negative examples per interaction.
    #[arg(short = 'n', long = "negative_samples", alias = "negative-samples", default_value_t = 4)]
    negative_samples: i64,
    /// Learning rate for optimizer.
    #[arg(short = 'l', long = "learning_rate", alias = "learning-rate", default_value_t = 0.0045)]
    learning_rate: f64,
    /// Rank for test examples to be considered a hit (the k of HR@k and NDCG@k).
    #[arg(short = 'k', long, default_value_t = 10)]
    topk: i64,
    /// Seed of everything random; -1 draws one (and logs it). A seed gives the same CPU numbers
    /// run after run on one machine with the same thread count. Across machines: with
    /// --cpu-matmul mkl, on any Intel CPU with AVX2 (MKL pinned with MKL_CBWR=AVX2 unless MKL_CBWR
    /// is set; MKL_CBWR=COMPATIBLE makes Intel and AMD agree, at half the speed).
    #[arg(short = 's', long, default_value_t = -1, allow_negative_numbers = true)]
    seed: i64,
    /// Stop training early at this HR@k.
    #[arg(short = 't', long, default_value_t = 1.0)]
    threshold: f64,
    /// Beta1 for Adam (also -b1).
    #[arg(long, default_value_t = 0.25)]
    beta1: f64,
    /// Beta2 for Adam (also -b2).
    #[arg(long, default_value_t = 0.5)]
    beta2: f64,
    /// Epsilon for Adam.
    #[arg(long, default_value_t = 1e-8)]
    eps: f64,
    /// Dropout probability; 0 turns dropout off.
    #[arg(long, default_value_t = 0.5)]
    dropout: f64,
    /// Directory for model.pth and the training state; an empty value saves nothing.
    #[arg(long = "checkpoint_dir", alias = "checkpoint-dir", default_value = "/data/checkpoints/")]
    checkpoint_dir: String,
    /// Checkpoint (a state dict, ours or the reference's) to load before training or evaluation.
    #[arg(long = "load_checkpoint_path", alias = "load-checkpoint-path")]
    load_checkpoint_path: Option<PathBuf>,
    /// "test" runs a single evaluation; "train" trains.
    #[arg(long, value_enum, default_value_t = ModeArg::Train)]
    mode: ModeArg,
    /// Number of gradients to accumulate before performing an optimization step.
    #[arg(long = "grads_accumulated", alias = "grads-accumulated", default_value_t = 1)]
    grads_accumulated: usize,
    /// Enable mixed precision training: on CUDA fp16 autocast + dynamic loss scaling (the
    /// reference's); on a CPU with AVX512-BF16 or AMX, the MLP's matrix products in bfloat16 while
    /// training (parameters, optimizer and evaluation stay float32); refused on other CPUs.
    #[arg(long)]
    amp: bool,
    /// Compute float32 matrix products in full float32 on CUDA (TF32 is on by default, as in the
    /// reference on Ampere and later GPUs).
    #[arg(long = "no-tf32", alias = "no_tf32")]
    no_tf32: bool,
    /// Library for float32 matrix products on the CPU: auto (oneDNN on CPUs with AVX-512, else
    /// MKL), onednn (1.35x mkl's training speed on an AMD EPYC, where MKL runs its AVX2 code;
    /// 1.1-1.15x on an Intel Xeon), or mkl (libtorch's default, pinned by MKL_CBWR: a seed gives
    /// the same numbers on every Intel CPU with AVX2).
    #[arg(long = "cpu-matmul", alias = "cpu_matmul", default_value = "auto", value_name = "LIB")]
    cpu_matmul: CpuMatmul,
    /// Evaluation: sampled (each test user's positive among its 100 sampled negatives: the
    /// reference's HR@k and NDCG@k) or full (also among all items the user has not rated in train:
    /// full_hr@k = recall@k, full_ndcg@k, full_mrr@k, full_precision@k, full_map@k, which then
    /// select the best epoch). Ties count against the positive.
    #[arg(long, value_enum, default_value_t = EvalArg::Sampled)]
    eval: EvalArg,
    /// With --eval full: rank only this many lists, a fixed random subset (from --seed), for
    /// datasets too large to rank in full every epoch.
    #[arg(long = "eval-users", alias = "eval_users", value_name = "N")]
    eval_users: Option<usize>,
    /// Stop after N epochs without a better selection metric (validation HR@k when the dataset
    /// has a validation split, else test HR@k). Default: never.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Path for the JSON training log (DLLogger format); an empty value writes none.
    #[arg(long = "log_path", alias = "log-path", default_value = "log.json")]
    log_path: String,
    /// Device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Continue an interrupted run from DIR/training_state.pt (written every epoch into
    /// --checkpoint_dir): model, Adam state, epoch and seed.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Start N local ranks, like `torchrun --nproc-per-node N`: one per GPU (NCCL), or N CPU
    /// processes (gloo, one thread each unless OMP_NUM_THREADS is set); under torchrun (or any
    /// launcher setting RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) leave it out.
    #[arg(long = "nproc-per-node", alias = "nproc_per_node", value_name = "N")]
    nproc_per_node: Option<usize>,
    /// With --nproc-per-node: the number of machines (torchrun's name); run the same command on
    /// each, with its own --node-rank.
    #[arg(long, default_value_t = 1, requires = "nproc_per_node", value_name = "M")]
    nnodes: usize,
    /// With --nnodes: this machine's place, 0 to M-1; its ranks are node-rank x N to node-rank x N + N-1.
    #[arg(long = "node-rank", alias = "node_rank", default_value_t = 0, requires = "nproc_per_node", value_name = "R")]
    node_rank: usize,
    /// With --nproc-per-node: the address of node 0, where rank 0 serves the store the ranks meet at.
    #[arg(long = "master-addr", alias = "master_addr", default_value = "127.0.0.1", requires = "nproc_per_node")]
    master_addr: String,
    /// With --nproc-per-node: the port rank 0 serves the store on, for the ranks to meet.
    #[arg(long = "master-port", alias = "master_port", default_value_t = 29500)]
    master_port: u16,
    /// Seconds a rank waits for the others at start-up or in a collective before giving up (on
    /// the CPU a killed, crashed or hung rank stops the others within it plus a 5 s roll call that
    /// names the lost rank).
    #[arg(long = "dist-timeout", alias = "dist_timeout", default_value_t = 60)]
    dist_timeout: u64,
    /// Data-parallel runs: how often the ranks check that their parameters are bit-identical
    /// (a checksum of every parameter, compared with rank 0's): off, epoch, or step (to find the
    /// step where replicas drift apart). A difference stops every rank, naming the ranks.
    #[arg(long = "check-replicas", alias = "check_replicas", value_enum, default_value_t = ReplicaArg::Epoch)]
    check_replicas: ReplicaArg,
    /// Collective backend of a data-parallel run: auto (NCCL on CUDA devices, gloo on the CPU, as
    /// PyTorch's defaults), nccl, or gloo (libtorch's own, CPU tensors).
    #[arg(long = "dist-backend", alias = "dist_backend", default_value = "auto", value_name = "BACKEND")]
    dist_backend: DistBackend,
    /// After training, draw HR@k, NDCG@k and the losses per epoch into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print which libtorch this binary runs on and whether CUDA is usable, then exit.
    #[arg(long)]
    runtime_info: bool,
}

/// Makes a run's CPU numbers, given its seed, reproducible as far as libtorch's BLAS decides them.
/// Why: libtorch's matrix products go through MKL, which by default picks its kernels by CPU, so
/// the same seed trained to HR@10 0.7541 on one Xeon and 0.7492 on an AMD EPYC. MKL's conditional
/// numerical reproducibility mode (`MKL_CBWR`) pins the code path: its AVX2 branch gives the same
/// numbers on every Intel CPU with AVX2, and on other CPUs (AMD) falls back to MKL's reproducible
/// AUTO branch (run to run; on the AMD EPYC measured also across 1 and 2 threads, which on a Xeon
/// differ); `MKL_CBWR=COMPATIBLE`, set by the user, makes Intel and AMD agree at half the speed. It
/// governs the products MKL still runs: all of them with `--cpu-matmul mkl`, the final layer's
/// where oneDNN runs the MLP's (the default on AVX-512 CPUs). Set before libtorch's first
/// matrix product (MKL reads it then), for every run (a drawn seed is logged, and `--resume` takes
/// the seed from its state); a value the user set is left alone, and the launcher's ranks inherit it.
fn pin_cpu_math() {
    if std::env::var_os("MKL_CBWR").is_none() {
        std::env::set_var("MKL_CBWR", "AVX2");
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    Neumf,
    Gmf,
    Mlp,
    Mf,
}

impl From<ModelArg> for ModelKind {
    fn from(m: ModelArg) -> ModelKind {
        match m {
            ModelArg::Neumf => ModelKind::NeuMf,
            ModelArg::Gmf => ModelKind::Gmf,
            ModelArg::Mlp => ModelKind::Mlp,
            ModelArg::Mf => ModelKind::Mf,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DistBackend {
    Auto,
    Nccl,
    Gloo,
}

impl DistBackend {
    /// The backend a rank on `device` uses: `Nccl` or `Gloo`, never `Auto`.
    fn for_device(self, device: tch::Device) -> Result<DistBackend> {
        match (self, device) {
            (DistBackend::Auto, tch::Device::Cpu) => Ok(DistBackend::Gloo),
            (DistBackend::Auto, _) => Ok(DistBackend::Nccl),
            (DistBackend::Gloo, tch::Device::Cpu) => Ok(DistBackend::Gloo),
            (DistBackend::Gloo, _) => {
                bail!("--dist-backend gloo runs on CPU tensors here; add --device cpu, or use nccl on GPUs")
            }
            (DistBackend::Nccl, _) => Ok(DistBackend::Nccl),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReplicaArg {
    Off,
    Epoch,
    Step,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EvalArg {
    Sampled,
    Full,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Train,
    Test,
}

fn main() -> ExitCode {
    cli_support::keep_freed_memory();
    // The reference spells the Adam betas `-b1` / `-b2`; a one-letter flag parser would read them
    // as `-b 1`, so they are renamed before parsing.
    let args = std::env::args().map(|a| match a.as_str() {
        "-b1" => "--beta1".to_owned(),
        "-b2" => "--beta2".to_owned(),
        _ => a,
    });
    cli_support::main("ncf-train", || run(Cli::parse_from(args)))
}

fn run(cli: Cli) -> Result<()> {
    if cli.runtime_info {
        println!("{}", RuntimeInfo::current());
        return Ok(());
    }
    pin_cpu_math();
    if let Some(n) = cli.nproc_per_node {
        let backend = cli.dist_backend.for_device(cli.device.resolve()?)?;
        let place = Launch {
            nproc: n,
            nnodes: cli.nnodes,
            node_rank: cli.node_rank,
            master_addr: cli.master_addr.clone(),
            master_port: cli.master_port,
            grace: std::time::Duration::from_secs(cli.dist_timeout.max(1) + 15),
        };
        return launch(&place, backend);
    }
    let timeout = std::time::Duration::from_secs(cli.dist_timeout.max(1));
    // Under a launcher (WORLD_SIZE set, even to 1) the run goes through NCCL on GPUs and gloo on
    // the CPU (--dist-backend), except a world of one on the CPU, which trains alone.
    let asked = cli.device.resolve()?;
    let backend = cli.dist_backend.for_device(asked)?;
    let rank_env = match RankEnv::from_env().map_err(anyhow::Error::msg)? {
        Some(env) if env.world_size == 1 && asked == tch::Device::Cpu => {
            eprintln!("ncf-train: WORLD_SIZE=1 on the CPU: training alone (a world of one needs no NCCL)");
            None
        }
        other => other,
    };
    let device = match &rank_env {
        Some(_) if backend == DistBackend::Gloo => tch::Device::Cpu,
        Some(env) => {
            let visible = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
            if env.local_rank >= visible {
                bail!(
                    "rank {} (LOCAL_RANK {}) needs cuda:{}, but {visible} CUDA device(s) are visible; data-parallel training runs one rank per GPU (NCCL)",
                    env.rank,
                    env.local_rank,
                    env.local_rank
                );
            }
            torch_ops::set_cuda_device(env.local_rank)?;
            tch::Device::Cuda(env.local_rank)
        }
        None => asked,
    };
    let optional = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let config = TrainConfig {
        data: cli.data.clone().unwrap_or_default(),
        model: cli.model.map(ModelKind::from),
        pretrained: match (&cli.pretrained_gmf, &cli.pretrained_mlp) {
            (Some(gmf), Some(mlp)) => Some(Pretrained { gmf: gmf.clone(), mlp: mlp.clone(), alpha: cli.alpha }),
            _ => None,
        },
        feature_spec_file: cli.feature_spec_file.clone(),
        epochs: cli.epochs,
        batch_size: cli.batch_size,
        valid_batch_size: cli.valid_batch_size,
        factors: cli.factors,
        layers: cli.layers.clone(),
        negative_samples: cli.negative_samples,
        learning_rate: cli.learning_rate,
        topk: cli.topk,
        seed: (cli.seed >= 0).then_some(cli.seed as u64),
        threshold: cli.threshold,
        beta1: cli.beta1,
        beta2: cli.beta2,
        eps: cli.eps,
        dropout: cli.dropout,
        checkpoint_dir: optional(&cli.checkpoint_dir),
        load_checkpoint_path: cli.load_checkpoint_path.clone(),
        mode: match cli.mode {
            ModeArg::Train => Mode::Train,
            ModeArg::Test => Mode::Test,
        },
        grads_accumulated: cli.grads_accumulated,
        amp: cli.amp,
        tf32: !cli.no_tf32,
        cpu_matmul: cli.cpu_matmul,
        eval: match cli.eval {
            EvalArg::Sampled => EvalProtocol::Sampled,
            EvalArg::Full => EvalProtocol::Full,
        },
        eval_users: cli.eval_users,
        patience: cli.patience,
        log_path: optional(&cli.log_path),
        device,
        resume: cli.resume.clone(),
        replica_check: match cli.check_replicas {
            ReplicaArg::Off => ReplicaCheck::Off,
            ReplicaArg::Epoch => ReplicaCheck::Epoch,
            ReplicaArg::Step => ReplicaCheck::Step,
        },
    };
    let data = config.data.display().to_string();
    let group: Option<Box<dyn ncf_train::dist::Collective>> = match &rank_env {
        Some(env) if backend == DistBackend::Gloo => {
            let group =
                GlooGroup::join(env, timeout).with_context(|| format!("rank {} joining the gloo group", env.rank))?;
            // One write, so that the ranks' lines on a shared stderr do not interleave.
            let met = match &env.meeting {
                ncf_train::dist::Meeting::Listen => "rank 0 serving the store",
                ncf_train::dist::Meeting::AgentStore { .. } => "torchrun's agent store",
            };
            let line = format!(
                "ncf-train: rank {} of {} joined the gloo group on the CPU (met at {}:{}, {met})\n",
                env.rank, env.world_size, env.master_addr, env.master_port
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            Some(Box::new(group))
        }
        Some(env) => {
            let group =
                NcclGroup::join(env, timeout).with_context(|| format!("rank {} joining the NCCL group", env.rank))?;
            let met = match &env.meeting {
                ncf_train::dist::Meeting::Listen => "rank 0 listening",
                ncf_train::dist::Meeting::AgentStore { .. } => "torchrun's agent store",
            };
            eprintln!(
                "ncf-train: rank {} of {} joined the NCCL group on cuda:{} (met at {}:{}, {met})",
                env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port
            );
            Some(Box::new(group))
        }
        None => None,
    };
    let rank0 = rank_env.as_ref().is_none_or(|e| e.rank == 0);
    let mut trainer = Trainer::in_group(config, group).with_context(|| format!("setting up the run on {data}"))?;
    let k = cli.topk;
    match cli.mode {
        _ if !rank0 => {}
        ModeArg::Train => eprintln!(
            "ncf-train: {} on {} ({:?}), seed {}, {} batches of {} per epoch",
            trainer.model().name(),
            data,
            device,
            trainer.seed(),
            trainer.batches_per_epoch(),
            cli.batch_size
        ),
        ModeArg::Test => eprintln!("ncf-train: evaluating {} on {data} ({device:?})", trainer.model().name()),
    }
    if !rank0 {
        // Other ranks train in step with rank 0, which reports, logs and saves.
        trainer.run(&mut ncf_train::Quiet)?;
        return Ok(());
    }
    let mut bars = Bars { bar: None, epochs: cli.epochs, k };
    let summary = trainer.run(&mut bars)?;
    if let Some(bar) = bars.bar.take() {
        bar.finish_and_clear();
    }
    if let Some(path) = &cli.plot {
        plot::curves(path, &summary.epochs, k)?;
        eprintln!("ncf-train: curves drawn in {}", path.display());
    }
    match cli.mode {
        ModeArg::Test => {
            let e = summary.epochs[0].eval;
            println!(
                "HR@{k} {:.6}  NDCG@{k} {:.6}  validation loss {:.6}  ({:.0} test rows/s)",
                e.hr, e.ndcg, e.validation_loss, e.throughput
            );
            if let Some(f) = e.full {
                println!(
                    "full ranking of {} users: HR@{k} (= recall) {:.6}  NDCG@{k} {:.6}  MRR@{k} {:.6}  precision@{k} {:.6}  MAP@{k} {:.6}",
                    f.users,
                    f.hit_rate(),
                    f.ndcg(),
                    f.mrr(),
                    f.precision(),
                    f.map()
                );
            }
            if let Some(v) = summary.epochs[0].validation {
                println!("validation lists: HR@{k} {:.6}  NDCG@{k} {:.6}", v.hr, v.ndcg);
            }
        }
        ModeArg::Train => {
            if let (Some(env), false) = (&rank_env, matches!(cli.check_replicas, ReplicaArg::Off)) {
                eprintln!(
                    "ncf-train: all {} ranks held bit-identical parameters at each of {} checks (--check-replicas {})",
                    env.world_size,
                    summary.replica_checks,
                    format!("{:?}", cli.check_replicas).to_lowercase()
                );
            }
            // Humans count epochs from 1 (as the per-epoch lines do); the log, like the reference's, from 0.
            let best = summary
                .best_epoch
                .map_or("no epoch".to_owned(), |e| format!("epoch {} (best_epoch {e} in the log)", e + 1));
            let chosen = if summary.selected_by == format!("hr@{k}") {
                String::new()
            } else {
                format!(", the epoch {} chose ({:.6})", summary.selected_by, summary.best_selection)
            };
            println!(
                "best HR@{k} {:.6} after {best}{chosen}{}",
                summary.best_hr,
                if summary.reached_threshold {
                    " (threshold reached)"
                } else if summary.stopped_early {
                    " (stopped by --patience)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// Where this machine's ranks sit in a launch (torchrun's flags).
struct Launch {
    nproc: usize,
    nnodes: usize,
    node_rank: usize,
    master_addr: String,
    master_port: u16,
    /// How long the other ranks get to stop on their own once one failed (they notice within
    /// --dist-timeout, and name the lost rank) before they are killed.
    grace: std::time::Duration,
}

/// The launcher's own flags (each takes a value), left out of the ranks' command lines.
const LAUNCH_FLAGS: [&str; 9] = [
    "--nproc-per-node",
    "--nproc_per_node",
    "--master-port",
    "--master_port",
    "--master-addr",
    "--master_addr",
    "--nnodes",
    "--node-rank",
    "--node_rank",
];

/// `--nproc-per-node N`: runs this program N times with the torchrun variables set (rank i on
/// cuda:i with NCCL, or on the CPU with gloo), waits for all; when one fails, gives the others
/// `grace` to stop on their own (naming the lost rank), then kills what is left.
fn launch(place: &Launch, backend: DistBackend) -> Result<()> {
    let n = place.nproc;
    if n == 0 || place.nnodes == 0 {
        bail!("--nproc-per-node and --nnodes must be at least 1");
    }
    if place.node_rank >= place.nnodes {
        bail!("--node-rank {} must be below --nnodes {}", place.node_rank, place.nnodes);
    }
    if backend == DistBackend::Nccl {
        let visible = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
        if visible == 0 {
            bail!("--nproc-per-node {n} with NCCL starts one rank per GPU, but no CUDA device is visible; on the CPU use --device cpu (gloo)");
        }
        if n > visible {
            bail!("--nproc-per-node {n} asks for {n} GPUs, but {visible} are visible");
        }
    }
    if place.node_rank == 0 {
        // Node 0's rank 0 serves the store on this port: probe it now, so a port in use is
        // reported once, clearly.
        std::net::TcpListener::bind(("0.0.0.0", place.master_port)).with_context(|| {
            format!("port {} is in use; pick another with --master-port (on every node)", place.master_port)
        })?;
    }
    let exe = std::env::current_exe().context("finding this program's path")?;
    let mut args: Vec<String> = Vec::new();
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if std::mem::take(&mut skip) {
            continue;
        }
        match LAUNCH_FLAGS.iter().find(|flag| a == **flag || a.starts_with(&format!("{flag}="))) {
            Some(flag) => skip = a == *flag,
            None => args.push(a),
        }
    }
    let world = n * place.nnodes;
    let mut children = Ranks(Vec::with_capacity(n));
    for local in 0..n {
        let rank = place.node_rank * n + local;
        let mut command = std::process::Command::new(&exe);
        // CPU ranks share the machine's cores: one thread each unless told otherwise (torchrun's
        // default too).
        if backend == DistBackend::Gloo && n > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
            command.env("OMP_NUM_THREADS", "1");
        }
        command
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("GROUP_RANK", place.node_rank.to_string())
            .env("MASTER_ADDR", &place.master_addr)
            .env("MASTER_PORT", place.master_port.to_string())
            // Our ranks meet at the port themselves, even when this launcher runs under torchrun.
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                // A rank outlives no launcher (killed, say, by a job scheduler): it gets SIGTERM.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting rank {rank}"))?;
        children.0.push((rank, child));
    }
    let mut failed: Option<(usize, std::process::ExitStatus, std::time::Instant)> = None;
    loop {
        let mut running = false;
        for (rank, child) in children.0.iter_mut() {
            match child.try_wait()? {
                Some(status) if !status.success() && failed.is_none() => {
                    failed = Some((*rank, status, std::time::Instant::now()));
                }
                Some(_) => {}
                None => running = true,
            }
        }
        match failed {
            Some((rank, status, _)) if !running => bail!("rank {rank} failed ({status}); the other ranks stopped"),
            Some((rank, status, at)) if at.elapsed() > place.grace => {
                children.stop();
                bail!(
                    "rank {rank} failed ({status}); the ranks still running {} s later were killed",
                    place.grace.as_secs()
                );
            }
            None if !running => return Ok(()),
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The ranks a launcher started; dropped on any way out of `launch` (an error included), it kills
/// and reaps those still running, so none is left behind.
struct Ranks(Vec<(usize, std::process::Child)>);

impl Ranks {
    fn stop(&mut self) {
        for (_, child) in self.0.iter_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A progress bar per epoch and a summary line after it, on stderr.
struct Bars {
    bar: Option<ProgressBar>,
    epochs: usize,
    k: i64,
}

impl Observer for Bars {
    fn epoch_started(&mut self, epoch: usize, batches: u64) {
        let bar = ProgressBar::new(batches);
        bar.set_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, self.epochs));
        self.bar = Some(bar);
    }

    fn batches_done(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn epoch_finished(&mut self, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let k = self.k;
        let mut more = String::new();
        if let Some(f) = r.eval.full {
            more += &format!(" | full HR@{k} {:.4} NDCG@{k} {:.4}", f.hit_rate(), f.ndcg());
        }
        if let Some(v) = r.validation {
            more += &format!(" | validation HR@{k} {:.4}", v.hr);
            if let Some(f) = v.full {
                more += &format!(" full {:.4}", f.hit_rate());
            }
        }
        eprintln!(
            "epoch {:>3}/{}: train {:.2} s ({:.0} samples/s) loss {:.4} | HR@{k} {:.4} NDCG@{k} {:.4} val loss {:.4}{more} | eval {:.2} s{}",
            r.epoch + 1,
            self.epochs,
            r.train_seconds,
            r.train_throughput,
            r.train_loss,
            r.eval.hr,
            r.eval.ndcg,
            r.eval.validation_loss,
            r.eval.seconds,
            if r.improved { " *" } else { "" }
        );
    }
}

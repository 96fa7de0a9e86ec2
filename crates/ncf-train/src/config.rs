//! What a training run is asked to do: the reference's flags, as a plain struct.

use ncf_model::runtime::CpuMatmul;
use ncf_model::ModelKind;
use std::path::PathBuf;
use tch::Device;

/// Train, or evaluate a checkpoint once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Train,
    Test,
}

/// How evaluation ranks each list's positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalProtocol {
    /// Against the list's sampled negatives (the reference's HR@k / NDCG@k).
    #[default]
    Sampled,
    /// Also against every item the user does not already have (full-ranking HR@k = recall@k,
    /// NDCG@k, MRR@k, precision@k, MAP@k; logged as `full_hr@K`, ...), which then selects the
    /// best epoch.
    Full,
}

/// How often the ranks of a data-parallel run check that they hold bit-identical parameters
/// ([`crate::dist::check_replicas`]: a checksum of every parameter, rank 0's broadcast to all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaCheck {
    /// Never.
    Off,
    /// After every epoch (tens of milliseconds at ML-20m's size).
    #[default]
    Epoch,
    /// After every optimizer step (to find the step where replicas drift apart).
    Step,
}

/// NeuMF's pre-training (He et al. 2017, 3.4.1): start from a trained GMF and MLP.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrained {
    /// A GMF checkpoint (`model.pth` of `--model gmf`).
    pub gmf: PathBuf,
    /// An MLP checkpoint (`model.pth` of `--model mlp`).
    pub mlp: PathBuf,
    /// The GMF final layer's weight in NeuMF's (the MLP's is `1 - alpha`); the paper's 0.5.
    pub alpha: f64,
}

/// Everything a run needs; [`TrainConfig::default`] holds the reference's defaults (ncf.py).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Dataset folder (holds the feature spec).
    pub data: PathBuf,
    /// Which model to train or test; `None`: the one `load_checkpoint_path` holds (its keys tell),
    /// else NeuMF, the reference's.
    pub model: Option<ModelKind>,
    /// NeuMF initialised from a trained GMF and MLP instead of at random.
    pub pretrained: Option<Pretrained>,
    /// Feature spec file name, or a path relative to `data`.
    pub feature_spec_file: String,
    pub epochs: usize,
    /// Samples per training batch (divided among ranks when data-parallel).
    pub batch_size: i64,
    /// Test rows per evaluation batch.
    pub valid_batch_size: i64,
    /// Embedding width of GMF and MF (NeuMF's GMF branch).
    pub factors: i64,
    /// MLP sizes (MLP, NeuMF's MLP branch); the first is the two MLP embeddings side by side.
    pub layers: Vec<i64>,
    /// Random negatives per positive in each epoch.
    pub negative_samples: i64,
    pub learning_rate: f64,
    /// The `k` of HR@k and NDCG@k.
    pub topk: i64,
    /// Seed of everything random (initialisation, negatives, order, dropout); `None` draws one.
    pub seed: Option<u64>,
    /// Stop after the first epoch whose HR@k reaches this.
    pub threshold: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub dropout: f64,
    /// Where `model.pth` (best HR so far) and `training_state.pt` (every epoch) go; `None`: nowhere.
    pub checkpoint_dir: Option<PathBuf>,
    /// A state dict (ours or the reference's) loaded before training or testing.
    pub load_checkpoint_path: Option<PathBuf>,
    pub mode: Mode,
    /// Batches whose gradients add up before each optimizer step.
    pub grads_accumulated: usize,
    /// Mixed precision: fp16 autocast + dynamic loss scaling on CUDA; bfloat16 matrix products on
    /// a CPU that has bfloat16 instructions ([`ncf_model::runtime::cpu_has_bf16`]).
    pub amp: bool,
    /// Allow TF32 for float32 matrix products on CUDA (the reference's default on Ampere and later).
    pub tf32: bool,
    /// Which library runs float32 matrix products on the CPU (oneDNN where the CPU has AVX-512,
    /// by default; see [`CpuMatmul`]).
    pub cpu_matmul: CpuMatmul,
    /// Sampled (the reference's) or also full-ranking evaluation.
    pub eval: EvalProtocol,
    /// Full ranking of a fixed random subset of this many lists (seeded) instead of all.
    pub eval_users: Option<usize>,
    /// Stop after this many epochs without a better selection metric; `None`: never.
    pub patience: Option<usize>,
    /// DLLogger JSON log; `None`: no log file.
    pub log_path: Option<PathBuf>,
    pub device: Device,
    /// A checkpoint folder whose `training_state.pt` an interrupted run continues from.
    pub resume: Option<PathBuf>,
    /// Data-parallel runs: how often the ranks check that their parameters are bit-identical.
    pub replica_check: ReplicaCheck,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            model: None,
            pretrained: None,
            feature_spec_file: "feature_spec.yaml".into(),
            epochs: 30,
            batch_size: 1 << 20,
            valid_batch_size: 1 << 20,
            factors: 64,
            layers: vec![256, 256, 128, 64],
            negative_samples: 4,
            learning_rate: 0.0045,
            topk: 10,
            seed: None,
            threshold: 1.0,
            beta1: 0.25,
            beta2: 0.5,
            eps: 1e-8,
            dropout: 0.5,
            checkpoint_dir: Some("/data/checkpoints/".into()),
            load_checkpoint_path: None,
            mode: Mode::Train,
            grads_accumulated: 1,
            amp: false,
            tf32: true,
            cpu_matmul: CpuMatmul::Auto,
            eval: EvalProtocol::Sampled,
            eval_users: None,
            patience: None,
            log_path: Some("log.json".into()),
            device: Device::Cpu,
            resume: None,
            replica_check: ReplicaCheck::Epoch,
        }
    }
}

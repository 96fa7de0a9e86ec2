//! A checkpoint loaded for serving: the scorer, what it is (for `/v1/model` and the metrics) and
//! the checks a reload passes before it may serve.

use crate::ServeError;
use inference::{Catalog, Recommender};
use ncf_model::runtime::CpuMatmul;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tch::Device;

/// Pairs the load probe scores at once (NeuMF: 16 MB per 256-wide layer).
const PROBE_PAIRS: usize = 16_384;

/// How models are loaded: where they run and how much a scoring pass may hold.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub device: Device,
    /// Floats one scoring pass may hold per intermediate result ([`Recommender::set_pass_floats`]).
    pub pass_floats: i64,
    /// The CPU's float32 matrix-product library.
    pub cpu_matmul: CpuMatmul,
    /// Rank in two stages: bfloat16 all-item scoring picks candidates, float32 ranks them
    /// ([`Recommender::set_bf16_candidates`]; NeuMF and MLP on a CPU with bfloat16 instructions).
    pub bf16_candidates: bool,
}

/// What is being served, as `GET /v1/model` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfo {
    /// `neumf`, `gmf`, `mlp` or `mf`.
    pub kind: String,
    pub users: i64,
    pub items: i64,
    pub parameters: i64,
    /// The checkpoint file as given.
    pub checkpoint: PathBuf,
    /// SHA-256 of the checkpoint file's bytes, hex.
    pub sha256: String,
    /// When it was loaded, RFC 3339 (UTC).
    pub loaded_at: String,
    /// 1 for the model loaded at start-up, one more for each reload that succeeded.
    pub version: u64,
    pub device: String,
    /// Seconds the load and its checks took.
    pub load_seconds: f64,
    /// Whether bfloat16 all-item scoring picks the candidates float32 ranks
    /// ([`ModelOptions::bf16_candidates`]).
    pub bf16_candidates: bool,
}

/// A checkpoint ready to score: the only way to one is [`LoadedModel::load`], which checks it.
pub struct LoadedModel {
    /// Scoring runs on the batcher's thread; the lock is only ever taken there (and by the load
    /// checks before the model is shared), so it is never contended.
    recommender: Mutex<Recommender>,
    pub info: ModelInfo,
}

impl LoadedModel {
    /// Loads `checkpoint` for `catalog`'s dataset and checks it: its model kind and shapes against
    /// the dataset (users, items), then a probe, every item for user 0 and every user for item 0,
    /// which must all score as probabilities (a checkpoint with non-finite weights is refused).
    pub fn load(
        catalog: Arc<Catalog>,
        checkpoint: &Path,
        options: &ModelOptions,
        version: u64,
    ) -> Result<LoadedModel, ServeError> {
        let start = Instant::now();
        // A FIFO or a device (an admin's typo: /dev/zero) would be read forever.
        let meta =
            std::fs::metadata(checkpoint).map_err(|source| ServeError::Io { path: checkpoint.to_owned(), source })?;
        if !meta.is_file() {
            return Err(ServeError::Io {
                path: checkpoint.to_owned(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        let sha256 = sha256_of(checkpoint)?;
        let mut rec = Recommender::with_catalog(catalog.clone(), checkpoint, options.device)?;
        if !options.device.is_cuda() {
            rec.set_cpu_matmul(options.cpu_matmul)?;
        }
        rec.set_pass_floats(options.pass_floats);
        rec.set_bf16_candidates(options.bf16_candidates)?;
        let (users, items) = (catalog.users(), catalog.items());
        if users > 0 && items > 0 {
            let all_items: Vec<i64> = (0..items).collect();
            let all_users: Vec<i64> = (0..users).collect();
            for (u, i) in [(vec![0; items as usize], all_items), (all_users, vec![0; users as usize])] {
                // In chunks, so a reload's probe holds no more memory than a request's pass.
                for (u, i) in u.chunks(PROBE_PAIRS).zip(i.chunks(PROBE_PAIRS)) {
                    let scores = rec.score_pairs(u, i)?;
                    if let Some(&bad) = scores.iter().find(|s| !(0.0..=1.0).contains(*s)) {
                        return Err(ServeError::Probe { path: checkpoint.to_owned(), score: bad });
                    }
                }
            }
        }
        let info = ModelInfo {
            kind: rec.model_kind().name().to_owned(),
            users,
            items,
            parameters: rec.parameter_count(),
            checkpoint: checkpoint.to_owned(),
            sha256,
            loaded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            version,
            device: format!("{:?}", options.device),
            load_seconds: start.elapsed().as_secs_f64(),
            bf16_candidates: options.bf16_candidates,
        };
        Ok(LoadedModel { recommender: Mutex::new(rec), info })
    }

    /// The scorer, for the batcher's thread.
    pub(crate) fn scorer(&self) -> MutexGuard<'_, Recommender> {
        // A panic while scoring poisons the lock; the recommender holds no state a panic could
        // leave half-updated, so the next batch may use it.
        self.recommender.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// SHA-256 of a file, hex.
fn sha256_of(path: &Path) -> Result<String, ServeError> {
    let io = |source| ServeError::Io { path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

//! Data-parallel training: a [`Collective`] (a group of ranks that sum and broadcast tensors), the
//! torchrun environment ([`RankEnv`], and how its ranks meet: [`Meeting`]), the NCCL backend
//! [`NcclGroup`], the gloo backend for CPUs across processes [`GlooGroup`], a client of torchrun's c10d store ([`StoreClient`]), and the in-process backend
//! [`ThreadGroup`] (W threads playing W ranks), which runs the multi-rank logic on a CPU machine
//! and in tests.
//!
//! A group of one works too (every collective is a copy): that is how a single GPU checks the whole
//! NCCL path (`ncf-train --nproc-per-node 1`).
//!
//! The trainer uses a collective to broadcast rank 0's parameters at start, average every step's
//! gradients (one flat buffer per step), and sum evaluation results, as the reference's
//! DistributedDataParallel run does.

pub(crate) mod agree;
mod gloo;
mod nccl;
pub mod roll_call;
mod store;
mod threads;

pub use agree::{check_agreement, check_replicas, checksum};
pub use gloo::GlooGroup;
pub use nccl::{rendezvous, NcclGroup};
pub use store::StoreClient;
pub use threads::ThreadGroup;

use std::time::Duration;
use tch::{Kind, Tensor};

/// Why a collective operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectiveError {
    /// Another rank did not arrive in time (crashed, hung, or never started).
    #[error("rank {rank}: waited {} s for the other {} rank(s) at a collective operation; one of them crashed, hung or never started (raise the limit with --dist-timeout)", timeout.as_secs(), world - 1)]
    Timeout { rank: usize, world: usize, timeout: Duration },
    /// Another rank left the group.
    #[error("rank {rank}: rank {left} left the group (it failed); stopping")]
    PeerLeft { rank: usize, left: usize },
    /// Ranks disagreed about a tensor's size.
    #[error("rank {rank}: ranks passed tensors of different sizes to one collective ({mine} vs {other} elements)")]
    Mismatch { rank: usize, mine: usize, other: usize },
    /// Ranks are gone (killed, crashed or hung): they did not answer the survivors' roll call.
    #[error("rank {rank}: lost rank {} (killed, crashed or hung: no answer within {} s at the survivors' roll call); every other rank stops. {cause}", lost.iter().map(usize::to_string).collect::<Vec<_>>().join(", rank "), waited.as_secs())]
    Lost { rank: usize, lost: Vec<usize>, waited: Duration, cause: String },
    /// The ranks are not running the same job (another dataset, flag or model), or their
    /// parameters drifted apart; names what differs.
    #[error("{0}")]
    Disagreement(String),
    /// A backend failure (e.g. NCCL's own message).
    #[error("{0}")]
    Backend(String),
}

/// A group of ranks that reduce and broadcast tensors together. Every rank must call the same
/// operations in the same order with tensors of the same size.
pub trait Collective: Send {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Replaces `tensor` (any float kind, any device) with its element-wise sum over all ranks.
    fn all_reduce_sum(&mut self, tensor: &Tensor) -> Result<(), CollectiveError>;
    /// Replaces `tensor` with rank `root`'s.
    fn broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CollectiveError>;
}

/// Averages the gradients of `params` over all ranks through one flat buffer: one collective per
/// step, whatever the number of parameters. A parameter without a gradient gets a zero one first,
/// so every rank passes the same buffer.
pub fn average_gradients(params: &[Tensor], group: &mut dyn Collective) -> Result<(), CollectiveError> {
    for p in params {
        if !p.grad().defined() {
            // Defines p.grad as zeros through autograd itself (tch cannot assign a gradient).
            (p.sum(p.kind()) * 0.0).backward();
        }
    }
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
    let flat = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
    group.all_reduce_sum(&flat)?;
    let world = group.world_size() as f64;
    tch::no_grad(|| {
        let mut at = 0;
        for g in &grads {
            let n = g.numel() as i64;
            g.shallow_clone().copy_(&(flat.narrow(0, at, n).view(g.size().as_slice()) / world));
            at += n;
        }
    });
    Ok(())
}

/// Copies rank 0's parameters to every rank.
pub fn broadcast_parameters(params: &[Tensor], group: &mut dyn Collective) -> Result<(), CollectiveError> {
    params.iter().try_for_each(|p| broadcast_value(p, group))
}

/// Replaces `tensor` with rank 0's (e.g. a seed only rank 0 drew).
pub fn broadcast_value(tensor: &Tensor, group: &mut dyn Collective) -> Result<(), CollectiveError> {
    tch::no_grad(|| group.broadcast(tensor, 0))
}

/// Sums a few numbers over all ranks (evaluation counts, losses). A group of one goes through the
/// backend too, so a single GPU exercises the NCCL path end to end.
pub fn sum_values(
    values: &[f64],
    group: &mut dyn Collective,
    device: tch::Device,
) -> Result<Vec<f64>, CollectiveError> {
    let t = Tensor::from_slice(values).to_kind(Kind::Double).to_device(device);
    group.all_reduce_sum(&t)?;
    Ok(Vec::<f64>::try_from(&t.to_device(tch::Device::Cpu)).unwrap_or_default())
}

/// Every rank's `part` (`[n_r, ...]`, float32-exact values such as 0/1 or small integers), stacked
/// in rank order on every rank: each rank writes its rows at its offset in a zero tensor and the
/// tensors are summed, which is exact because every element has a single non-zero contributor.
/// An all-gather for ranks of unequal sizes through the one collective every backend has.
pub fn gather_rows(part: &Tensor, group: &mut dyn Collective, device: tch::Device) -> Result<Tensor, CollectiveError> {
    let (rank, world) = (group.rank(), group.world_size());
    let mut counts = vec![0.0; world];
    counts[rank] = part.size().first().copied().unwrap_or(0) as f64;
    let counts = sum_values(&counts, group, device)?;
    let offset: f64 = counts[..rank].iter().sum();
    let total: f64 = counts.iter().sum();
    let mut shape = part.size();
    if shape.is_empty() {
        shape.push(0);
    }
    shape[0] = total as i64;
    let all = Tensor::zeros(shape.as_slice(), (Kind::Float, device));
    all.narrow(0, offset as i64, counts[rank] as i64).copy_(&part.to_kind(Kind::Float).to_device(device));
    group.all_reduce_sum(&all)?;
    Ok(all)
}

/// A rank's place in a torchrun-style launch (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
/// `MASTER_PORT`, and torchrun's `TORCHELASTIC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// How the ranks meet at `master_addr:master_port`.
    pub meeting: Meeting,
}

/// How the ranks of a launch meet to share rank 0's NCCL id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meeting {
    /// Rank 0 listens at `MASTER_ADDR:MASTER_PORT` and the others connect to it
    /// (`ncf-train --nproc-per-node`, and launchers that only set the variables).
    Listen,
    /// torchrun's agent already serves a c10d TCPStore there (it says so with
    /// `TORCHELASTIC_USE_AGENT_STORE=True`): rank 0 writes the id under `key`, the others read it.
    AgentStore { key: String },
}

impl RankEnv {
    /// Reads the torchrun variables; `Ok(None)` when `WORLD_SIZE` is unset (a single process).
    pub fn from_env() -> Result<Option<RankEnv>, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`RankEnv::from_env`], from any variable source.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<RankEnv>, String> {
        let Some(world) = get("WORLD_SIZE") else { return Ok(None) };
        let num = |key: &str, default: Option<&str>| -> Result<usize, String> {
            let v =
                get(key).or(default.map(str::to_owned)).ok_or_else(|| format!("{key} is not set (WORLD_SIZE is)"))?;
            v.trim().parse().map_err(|_| format!("{key}={v} is not a number"))
        };
        let world_size: usize = world.trim().parse().map_err(|_| format!("WORLD_SIZE={world} is not a number"))?;
        let rank = num("RANK", None)?;
        let local_rank = num("LOCAL_RANK", Some(&rank.to_string()))?;
        if world_size == 0 || rank >= world_size {
            return Err(format!("RANK={rank} must be below WORLD_SIZE={world_size}"));
        }
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let master_port = num("MASTER_PORT", Some("29500"))?;
        let master_port = u16::try_from(master_port).map_err(|_| format!("MASTER_PORT={master_port} is not a port"))?;
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        let meeting = if agent_store {
            // One key per run and restart: torchrun keeps its store across worker restarts.
            let run = get("TORCHELASTIC_RUN_ID").unwrap_or_default();
            let restart = get("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
            Meeting::AgentStore { key: format!("ncf-rs/{run}/{restart}/nccl-unique-id") }
        } else {
            Meeting::Listen
        };
        Ok(Some(RankEnv { rank, world_size, local_rank, master_addr, master_port, meeting }))
    }
}

//! The gloo backend: libtorch's own `ProcessGroupGloo` ([`torch_ops::GlooProcessGroup`]), what
//! PyTorch's `init_process_group(backend="gloo")` runs, for data-parallel training on CPUs across
//! processes and machines. Its ranks meet through a c10d TCPStore at `MASTER_ADDR:MASTER_PORT`:
//! served by rank 0, or by torchrun's agent when it says it serves one.
//!
//! When a collective fails, this rank closes its connections (so ranks blocked on it fail too) and
//! answers a roll call at that store ([`super::roll_call`]); the error then names the ranks that
//! did not answer.

use super::{roll_call, Collective, CollectiveError, Meeting, RankEnv, StoreClient};
use std::time::Duration;
use tch::Tensor;
use torch_ops::{GlooProcessGroup, GlooRendezvous};

/// A rank of a gloo group.
#[derive(Debug)]
pub struct GlooGroup {
    group: GlooProcessGroup,
    env: RankEnv,
    timeout: Duration,
}

/// How long the survivors of a failure wait for each other's answer at the roll call.
const ROLL_CALL: Duration = Duration::from_secs(5);

impl GlooGroup {
    /// Joins the group `env` describes; fails within `timeout` (naming the address) when the
    /// store cannot be reached or served, or a rank does not arrive. The same limit bounds every
    /// collective afterwards, so a rank that dies makes the others fail, not hang.
    pub fn join(env: &RankEnv, timeout: Duration) -> Result<GlooGroup, CollectiveError> {
        let (serve, prefix) = match &env.meeting {
            Meeting::Listen => (env.rank == 0, "ncf-rs/gloo".to_owned()),
            // torchrun keeps its store across worker restarts: one prefix per run and restart.
            Meeting::AgentStore { key } => (false, format!("{key}/gloo")),
        };
        if !serve {
            // Reach the store first under our own deadline: libtorch's client keeps retrying a
            // name that does not resolve well past its timeout, and says less about why.
            StoreClient::connect(&env.master_addr, env.master_port, timeout).map_err(|e| {
                CollectiveError::Backend(format!(
                    "rank {}: no store to meet the other ranks at: {e}; check MASTER_ADDR/MASTER_PORT (--master-addr/--master-port) and that rank 0 is running",
                    env.rank
                ))
            })?;
        }
        let at = GlooRendezvous { host: env.master_addr.clone(), port: env.master_port, serve, prefix };
        let group = GlooProcessGroup::join(&at, env.rank, env.world_size, timeout).map_err(|e| {
            CollectiveError::Backend(format!(
                "rank {}: joining the gloo group of {} ranks at {}:{} failed within {} s: {}",
                env.rank,
                env.world_size,
                env.master_addr,
                env.master_port,
                timeout.as_secs(),
                e.0
            ))
        })?;
        Ok(GlooGroup { group, env: env.clone(), timeout })
    }

    /// The error for a failed collective, naming the ranks that are gone.
    fn failed(&mut self, what: &str, e: torch_ops::TorchOpError) -> CollectiveError {
        let rank = self.rank();
        let cause = format!("gloo {what} failed: {}", e.0);
        self.group.abort();
        let waited = ROLL_CALL.min(self.timeout);
        match roll_call::lost_ranks(&self.env, waited) {
            Ok(lost) if !lost.is_empty() => CollectiveError::Lost { rank, lost, waited, cause },
            Ok(_) => {
                CollectiveError::Backend(format!("rank {rank}: {cause} (every rank answered the roll call after it)"))
            }
            Err(roll) => CollectiveError::Backend(format!(
                "rank {rank}: {cause} (a rank crashed, hung or left; no roll call could be held: {roll})"
            )),
        }
    }
}

impl Collective for GlooGroup {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world_size(&self) -> usize {
        self.group.world_size()
    }

    fn all_reduce_sum(&mut self, tensor: &Tensor) -> Result<(), CollectiveError> {
        self.group.all_reduce_sum(tensor).map_err(|e| self.failed("all-reduce", e))
    }

    fn broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CollectiveError> {
        self.group.broadcast(tensor, root).map_err(|e| self.failed("broadcast", e))
    }
}

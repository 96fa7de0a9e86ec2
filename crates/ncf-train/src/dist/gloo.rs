//! The gloo backend: libtorch's own `ProcessGroupGloo` ([`torch_ops::GlooProcessGroup`]), what
//! PyTorch's `init_process_group(backend="gloo")` runs, for data-parallel training on CPUs across
//! processes and machines. Its ranks meet through a c10d TCPStore at `MASTER_ADDR:MASTER_PORT`:
//! served by rank 0, or by torchrun's agent when it says it serves one.

use super::{Collective, CollectiveError, Meeting, RankEnv};
use std::time::Duration;
use tch::Tensor;
use torch_ops::{GlooProcessGroup, GlooRendezvous};

/// A rank of a gloo group.
#[derive(Debug)]
pub struct GlooGroup {
    group: GlooProcessGroup,
}

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
        Ok(GlooGroup { group })
    }

    fn failed(&self, what: &str, e: torch_ops::TorchOpError) -> CollectiveError {
        CollectiveError::Backend(format!(
            "rank {}: gloo {what} failed (a rank crashed, hung or left?): {}",
            self.rank(),
            e.0
        ))
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

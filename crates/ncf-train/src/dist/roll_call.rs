//! After a collective failed, which ranks are gone? A backend says only that a connection closed
//! or a wait timed out (gloo names a peer's address, not its rank). So each rank that is still
//! alive answers a roll call at the store the ranks met at; whoever does not answer within a few
//! seconds is lost (killed, crashed, or hung).
//!
//! A rank must have dropped its process group before it answers: a rank still blocked in a
//! collective on a live peer (not the lost one) is freed when that peer's connections close, and
//! then answers too.
//!
//! When the store itself is gone, the rank that served it is the lost one: rank 0 when the ranks
//! met on their own (`Meeting::Listen`); under torchrun the agent serves it and outlives its workers.

use super::{Meeting, RankEnv, StoreClient};
use std::time::{Duration, Instant};

/// The ranks that did not answer the roll call within `wait` (never this one). Errors say why no
/// roll call could be held.
///
/// Each survivor writes `alive/R`, waits up to `wait` for the others', then writes `done/R`. The
/// rank that serves the store (rank 0, when the ranks met on their own) then keeps it up until
/// every rank that answered is done (at most `wait` more), so a survivor that answered late still
/// finds the store and is not told rank 0 is lost.
pub fn lost_ranks(env: &RankEnv, wait: Duration) -> Result<Vec<usize>, String> {
    let prefix = match &env.meeting {
        Meeting::Listen => "ncf-rs/roll-call".to_owned(),
        Meeting::AgentStore { key } => format!("{key}/roll-call"),
    };
    let connect = Duration::from_secs(2).min(wait);
    let mut store = match StoreClient::connect(&env.master_addr, env.master_port, connect) {
        Ok(store) => store,
        Err(e) if env.meeting == Meeting::Listen && env.rank != 0 => {
            tracing::debug!(error = %e, "no store for the roll call");
            // Rank 0 served the store; it is gone with it.
            return Ok(vec![0]);
        }
        Err(e) => return Err(e),
    };
    store.set(&format!("{prefix}/alive/{}", env.rank), b"1")?;
    let others: Vec<usize> = (0..env.world_size).filter(|&r| r != env.rank).collect();
    let lost = missing(&mut store, &prefix, "alive", others.clone(), wait);
    // Best effort from here on: the answer above stands whatever happens to the store.
    let _ = store.set(&format!("{prefix}/done/{}", env.rank), b"1");
    if env.meeting == Meeting::Listen && env.rank == 0 {
        let answered: Vec<usize> = others.into_iter().filter(|r| !lost.contains(r)).collect();
        missing(&mut store, &prefix, "done", answered, wait);
    }
    Ok(lost)
}

/// Which of `ranks` have not set `prefix/what/R` within `wait`. A store that stops answering
/// (its server left) ends the wait: the ranks not seen yet are returned.
fn missing(store: &mut StoreClient, prefix: &str, what: &str, mut ranks: Vec<usize>, wait: Duration) -> Vec<usize> {
    let deadline = Instant::now() + wait;
    while !ranks.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for &r in &ranks {
            match store.check(&format!("{prefix}/{what}/{r}")) {
                Ok(true) => {}
                Ok(false) => still.push(r),
                Err(e) => {
                    tracing::debug!(error = %e, "the store stopped answering the roll call");
                    return ranks;
                }
            }
        }
        ranks = still;
        if !ranks.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ranks
}

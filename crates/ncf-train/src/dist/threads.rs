//! The in-process collective: W threads play W ranks, exchanging tensors through shared memory.
//! Sums are taken in rank order, so every rank gets bit-identical results. A rank that does not
//! arrive within the timeout, or that drops its handle (e.g. after an error or a panic), makes the
//! others fail with a clear error instead of hanging.

use super::{Collective, CollectiveError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

struct State {
    /// Completed operations; ranks wait for it to move past the one they joined.
    generation: u64,
    arrived: usize,
    slots: Vec<Option<Vec<f64>>>,
    result: Vec<f64>,
    /// A rank that left, if any.
    left: Option<usize>,
    error: Option<(usize, usize)>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// One rank's handle on an in-process group.
pub struct ThreadGroup {
    shared: Arc<Shared>,
    rank: usize,
    world: usize,
    timeout: Duration,
}

impl ThreadGroup {
    /// Handles for `world` ranks (hand one to each thread); a collective waits at most `timeout`
    /// for the others.
    pub fn new(world: usize, timeout: Duration) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                arrived: 0,
                slots: vec![None; world],
                result: Vec::new(),
                left: None,
                error: None,
            }),
            wake: Condvar::new(),
        });
        (0..world).map(|rank| ThreadGroup { shared: shared.clone(), rank, world, timeout }).collect()
    }

    /// Deposits `data` (or nothing), waits for every rank, returns `combine(slots)`.
    fn exchange(
        &self,
        data: Option<Vec<f64>>,
        combine: impl Fn(&[Option<Vec<f64>>]) -> Result<Vec<f64>, (usize, usize)>,
    ) -> Result<Vec<f64>, CollectiveError> {
        let poisoned =
            || CollectiveError::Backend(format!("rank {}: the group's lock is poisoned (a rank panicked)", self.rank));
        let mut st = self.shared.state.lock().map_err(|_| poisoned())?;
        if let Some(left) = st.left {
            return Err(CollectiveError::PeerLeft { rank: self.rank, left });
        }
        let joined = st.generation;
        st.slots[self.rank] = Some(data.unwrap_or_default());
        st.arrived += 1;
        if st.arrived == self.world {
            st.error = None;
            match combine(&st.slots) {
                Ok(r) => st.result = r,
                Err(e) => st.error = Some(e),
            }
            st.slots.iter_mut().for_each(|s| *s = None);
            st.arrived = 0;
            st.generation += 1;
            self.shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + self.timeout;
            while st.generation == joined {
                if let Some(left) = st.left {
                    return Err(CollectiveError::PeerLeft { rank: self.rank, left });
                }
                let now = Instant::now();
                if now >= deadline {
                    // The group is broken: withdraw, and make every later call (any rank) fail.
                    st.slots[self.rank] = None;
                    st.arrived -= 1;
                    st.left.get_or_insert(self.rank);
                    self.shared.wake.notify_all();
                    return Err(CollectiveError::Timeout { rank: self.rank, world: self.world, timeout: self.timeout });
                }
                st = self.shared.wake.wait_timeout(st, deadline - now).map_err(|_| poisoned())?.0;
            }
        }
        if let Some((mine, other)) = st.error {
            return Err(CollectiveError::Mismatch { rank: self.rank, mine, other });
        }
        Ok(st.result.clone())
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            if st.left.is_none() {
                st.left = Some(self.rank);
            }
            self.shared.wake.notify_all();
        }
    }
}

fn to_host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Double).reshape([-1])).unwrap_or_default()
}

fn write_back(t: &Tensor, values: &[f64]) {
    let src = Tensor::from_slice(values).to_kind(t.kind()).to_device(t.device()).view(t.size().as_slice());
    tch::no_grad(|| t.shallow_clone().copy_(&src));
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&mut self, tensor: &Tensor) -> Result<(), CollectiveError> {
        let sum = self.exchange(Some(to_host(tensor)), |slots| {
            let first = slots[0].as_deref().unwrap_or_default();
            let mut sum = vec![0.0; first.len()];
            for s in slots.iter().flatten() {
                if s.len() != sum.len() {
                    return Err((s.len(), sum.len()));
                }
                for (acc, v) in sum.iter_mut().zip(s) {
                    *acc += v;
                }
            }
            Ok(sum)
        })?;
        write_back(tensor, &sum);
        Ok(())
    }

    fn broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CollectiveError> {
        let mine = (self.rank == root).then(|| to_host(tensor));
        let data = self.exchange(mine, |slots| Ok(slots[root].clone().unwrap_or_default()))?;
        if data.len() != tensor.numel() {
            return Err(CollectiveError::Mismatch { rank: self.rank, mine: tensor.numel(), other: data.len() });
        }
        write_back(tensor, &data);
        Ok(())
    }
}

//! libtorch's gloo process group (`c10d::ProcessGroupGloo`), the backend PyTorch uses to train on
//! CPUs across processes and machines, with its TCPStore rendezvous.

use crate::{check, handle, TorchOpError};
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;
use tch::Tensor;

extern "C" {
    fn ncf_gloo_available() -> i32;
    #[allow(clippy::too_many_arguments)]
    fn ncf_gloo_new(
        host: *const c_char,
        port: u16,
        serve: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_gloo_all_reduce_sum(group: *mut c_void, t: crate::Handle, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_gloo_broadcast(group: *mut c_void, t: crate::Handle, root: i32, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_gloo_abort(group: *mut c_void);
    fn ncf_gloo_free(group: *mut c_void);
}

/// Whether this build has the gloo backend (its headers were found at build time).
pub fn gloo_available() -> bool {
    // SAFETY: no arguments; returns a constant.
    unsafe { ncf_gloo_available() != 0 }
}

/// Where the ranks meet: a c10d TCPStore at `host:port`, served by this process (`serve`: it then
/// waits for the others to connect) or by someone else (torchrun's agent, or rank 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlooRendezvous {
    pub host: String,
    pub port: u16,
    pub serve: bool,
    /// Prefix of the group's keys in the store (several groups can share one store).
    pub prefix: String,
}

/// A member of a gloo process group: sums and broadcasts tensors with the other ranks, in place.
/// Every rank must call the same operations in the same order with tensors of the same size.
#[derive(Debug)]
pub struct GlooProcessGroup {
    group: *mut c_void,
    rank: usize,
    world: usize,
}

// SAFETY: the group is owned by this value alone and libtorch's process groups may be used from
// any thread (one at a time, which `&mut self` ensures).
unsafe impl Send for GlooProcessGroup {}

impl GlooProcessGroup {
    /// Joins a group of `world` ranks as `rank`. Fails (never hangs) when the store cannot be
    /// reached or served, or the other ranks do not arrive, within `timeout`; the same limit
    /// bounds every later collective.
    pub fn join(at: &GlooRendezvous, rank: usize, world: usize, timeout: Duration) -> Result<Self, TorchOpError> {
        let host = CString::new(at.host.as_str()).map_err(|_| TorchOpError("host name holds a NUL byte".into()))?;
        let prefix = CString::new(at.prefix.as_str()).map_err(|_| TorchOpError("prefix holds a NUL byte".into()))?;
        let mut group = std::ptr::null_mut();
        let mut err = vec![0u8; 4096];
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: host and prefix are NUL-terminated; group receives a new pointer on success;
        // err has err.len() bytes.
        let code = unsafe {
            ncf_gloo_new(
                host.as_ptr(),
                at.port,
                i32::from(at.serve),
                rank as i32,
                world as i32,
                timeout_ms,
                prefix.as_ptr(),
                &mut group,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        check(code, &err)?;
        Ok(GlooProcessGroup { group, rank, world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Replaces `t` (a contiguous CPU tensor) with its element-wise sum over all ranks.
    pub fn all_reduce_sum(&mut self, t: &Tensor) -> Result<(), TorchOpError> {
        let mut err = vec![0u8; 4096];
        // SAFETY: self.group is live; t is a live tensor borrowed for this call.
        let code =
            unsafe { ncf_gloo_all_reduce_sum(self.group, handle(t), err.as_mut_ptr() as *mut c_char, err.len()) };
        check(code, &err)
    }

    /// Replaces `t` with rank `root`'s.
    pub fn broadcast(&mut self, t: &Tensor, root: usize) -> Result<(), TorchOpError> {
        let mut err = vec![0u8; 4096];
        // SAFETY: as in all_reduce_sum.
        let code = unsafe {
            ncf_gloo_broadcast(self.group, handle(t), root as i32, err.as_mut_ptr() as *mut c_char, err.len())
        };
        check(code, &err)
    }
}

impl GlooProcessGroup {
    /// Closes this rank's connections to the others (a peer blocked on this rank fails at once)
    /// but keeps the store it met at (served here when this rank serves it) until drop; every
    /// later collective fails. For after a failure: the survivors can still meet at the store.
    pub fn abort(&mut self) {
        // SAFETY: self.group is live until drop; abort may be called more than once.
        unsafe { ncf_gloo_abort(self.group) }
    }
}

impl Drop for GlooProcessGroup {
    fn drop(&mut self) {
        // SAFETY: self.group came from ncf_gloo_new and is freed once.
        unsafe { ncf_gloo_free(self.group) }
    }
}

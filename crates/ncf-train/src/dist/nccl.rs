//! The NCCL backend: `libnccl.so.2` loaded at run time (PyTorch's wheel ships it under
//! `nvidia/nccl/lib` beside libtorch; `NCF_NCCL_LIBRARY` overrides the path), rank 0's
//! `ncclUniqueId` sent to the other ranks over TCP at `MASTER_ADDR:MASTER_PORT`, collectives on the
//! default CUDA stream (the one tch's kernels run on), and a watchdog that ends a rank whose
//! collective has not completed within the timeout (a crashed or hung peer), instead of hanging.
//!
//! **Unverified here:** the development machines have no GPU; this path has only been compiled.
//! The rendezvous is tested on the CPU (`rendezvous` exchanges bytes over loopback).

use super::{Collective, CollectiveError, RankEnv};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

const UNIQUE_ID_BYTES: usize = 128;
type NcclResult = i32;
type Comm = *mut std::ffi::c_void;

/// The NCCL functions we call, resolved from the loaded library.
struct Nccl {
    _lib: libloading::Library,
    get_unique_id: unsafe extern "C" fn(*mut [u8; UNIQUE_ID_BYTES]) -> NcclResult,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, i32, [u8; UNIQUE_ID_BYTES], i32) -> NcclResult,
    all_reduce: InPlaceCollective,
    broadcast: InPlaceCollective,
    comm_destroy: unsafe extern "C" fn(Comm) -> NcclResult,
    error_string: unsafe extern "C" fn(NcclResult) -> *const std::ffi::c_char,
}

/// Where to look for `libnccl.so.2`: the override, then beside the libtorch in use.
fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(path) = std::env::var("NCF_NCCL_LIBRARY") {
        out.push(PathBuf::from(path));
    }
    // libtorch lives in site-packages/torch/lib; NCCL in site-packages/nvidia/nccl/lib.
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        if let Some(lib) =
            maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so"))
        {
            let torch_lib = PathBuf::from(lib);
            if let Some(site) = torch_lib.parent().and_then(|p| p.parent()).and_then(|p| p.parent()) {
                out.push(site.join("nvidia/nccl/lib/libnccl.so.2"));
            }
            if let Some(dir) = torch_lib.parent() {
                out.push(dir.join("libnccl.so.2"));
            }
        }
    }
    out.push(PathBuf::from("libnccl.so.2"));
    out
}

impl Nccl {
    fn load() -> Result<Nccl, CollectiveError> {
        let mut tried = Vec::new();
        for path in library_candidates() {
            // SAFETY: loading NCCL runs its initialisers, which have no preconditions.
            match unsafe { libloading::Library::new(&path) } {
                Ok(lib) => return Self::resolve(lib),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
        Err(CollectiveError::Backend(format!(
            "cannot load NCCL (set NCF_NCCL_LIBRARY to libnccl.so.2); tried:\n  {}",
            tried.join("\n  ")
        )))
    }

    fn resolve(lib: libloading::Library) -> Result<Nccl, CollectiveError> {
        let missing = |name: &str, e: libloading::Error| CollectiveError::Backend(format!("NCCL lacks {name}: {e}"));
        // SAFETY: the signatures are NCCL 2's public C API (nccl.h).
        unsafe {
            let get_unique_id = *lib.get(b"ncclGetUniqueId\0").map_err(|e| missing("ncclGetUniqueId", e))?;
            let comm_init_rank = *lib.get(b"ncclCommInitRank\0").map_err(|e| missing("ncclCommInitRank", e))?;
            let all_reduce = *lib.get(b"ncclAllReduce\0").map_err(|e| missing("ncclAllReduce", e))?;
            let broadcast = *lib.get(b"ncclBroadcast\0").map_err(|e| missing("ncclBroadcast", e))?;
            let comm_destroy = *lib.get(b"ncclCommDestroy\0").map_err(|e| missing("ncclCommDestroy", e))?;
            let error_string = *lib.get(b"ncclGetErrorString\0").map_err(|e| missing("ncclGetErrorString", e))?;
            Ok(Nccl { _lib: lib, get_unique_id, comm_init_rank, all_reduce, broadcast, comm_destroy, error_string })
        }
    }

    fn check(&self, what: &str, code: NcclResult) -> Result<(), CollectiveError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code.
        let text = unsafe { std::ffi::CStr::from_ptr((self.error_string)(code)) }.to_string_lossy().into_owned();
        Err(CollectiveError::Backend(format!("{what} failed: NCCL error {code}: {text}")))
    }
}

/// Sends rank 0's `id` to every other rank over TCP; every rank returns it. Rank 0 listens on
/// `addr:port` (a port in use is an error naming it); the others connect, retrying until
/// `timeout`.
pub fn rendezvous(
    env: &RankEnv,
    id: Option<[u8; UNIQUE_ID_BYTES]>,
    timeout: Duration,
) -> Result<[u8; UNIQUE_ID_BYTES], CollectiveError> {
    let fail = |m: String| {
        CollectiveError::Backend(format!(
            "rank {}: rendezvous at {}:{}: {m}",
            env.rank, env.master_addr, env.master_port
        ))
    };
    let deadline = Instant::now() + timeout;
    if env.rank == 0 {
        let id = id.ok_or_else(|| fail("rank 0 has no id to send".into()))?;
        let listener = TcpListener::bind((env.master_addr.as_str(), env.master_port)).map_err(|e| {
            fail(format!("cannot listen ({e}); is the port in use? pick another with MASTER_PORT / --master-port"))
        })?;
        listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let mut sent = 0;
        while sent + 1 < env.world_size {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).map_err(|e| fail(e.to_string()))?;
                    stream.write_all(&id).map_err(|e| fail(e.to_string()))?;
                    sent += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(fail(format!(
                            "only {} of {} other rank(s) arrived within {} s",
                            sent,
                            env.world_size - 1,
                            timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        Ok(id)
    } else {
        let addr = (env.master_addr.as_str(), env.master_port)
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("the address does not resolve".into()))?;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(mut stream) => {
                    stream
                        .set_read_timeout(Some(
                            deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)),
                        ))
                        .ok();
                    let mut id = [0u8; UNIQUE_ID_BYTES];
                    stream.read_exact(&mut id).map_err(|e| fail(format!("reading rank 0's id: {e}")))?;
                    return Ok(id);
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(rank = env.rank, error = %e, "rank 0 not listening yet");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(fail(format!("rank 0 did not answer within {} s ({e})", timeout.as_secs()))),
            }
        }
    }
}

/// One rank of an NCCL group on `cuda:LOCAL_RANK`.
pub struct NcclGroup {
    nccl: Nccl,
    comm: Comm,
    rank: usize,
    world: usize,
    device: Device,
    timeout: Duration,
}

// SAFETY: the communicator is used by one thread at a time (the owner of this value).
unsafe impl Send for NcclGroup {}

impl NcclGroup {
    /// Joins the group described by `env` (its device must already be the current CUDA device).
    pub fn join(env: &RankEnv, timeout: Duration) -> Result<NcclGroup, CollectiveError> {
        let nccl = Nccl::load()?;
        let id = if env.rank == 0 {
            let mut id = [0u8; UNIQUE_ID_BYTES];
            // SAFETY: id is a writable ncclUniqueId-sized buffer.
            nccl.check("ncclGetUniqueId", unsafe { (nccl.get_unique_id)(&mut id) })?;
            Some(id)
        } else {
            None
        };
        let id = rendezvous(env, id, timeout)?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: comm is a valid out-pointer; id came from ncclGetUniqueId on rank 0.
        let code = watchdog(env.rank, timeout, "ncclCommInitRank", || unsafe {
            (nccl.comm_init_rank)(&mut comm, env.world_size as i32, id, env.rank as i32)
        });
        nccl.check("ncclCommInitRank", code)?;
        Ok(NcclGroup {
            nccl,
            comm,
            rank: env.rank,
            world: env.world_size,
            device: Device::Cuda(env.local_rank),
            timeout,
        })
    }

    fn data_type(t: &Tensor) -> Result<i32, CollectiveError> {
        match t.kind() {
            Kind::Float => Ok(7),
            Kind::Double => Ok(8),
            Kind::Half => Ok(6),
            Kind::BFloat16 => Ok(9),
            Kind::Int64 => Ok(4),
            other => Err(CollectiveError::Backend(format!("NCCL collective on an unsupported kind {other:?}"))),
        }
    }

    fn checked(&self, t: &Tensor) -> Result<(), CollectiveError> {
        if t.device() != self.device || !t.is_contiguous() {
            return Err(CollectiveError::Backend(format!(
                "rank {}: NCCL needs contiguous tensors on {:?}, got one on {:?}",
                self.rank,
                self.device,
                t.device()
            )));
        }
        Ok(())
    }

    /// Waits for the collective to finish on the device, within the timeout.
    fn wait(&self, what: &str) {
        let idx = match self.device {
            Device::Cuda(i) => i as i64,
            _ => 0,
        };
        watchdog(self.rank, self.timeout, what, || tch::Cuda::synchronize(idx));
    }
}

/// Runs `f`; if it has not returned within `timeout` (a peer crashed or hung inside a collective),
/// prints why and ends the process: a hung NCCL call cannot be cancelled from this thread.
fn watchdog<T>(rank: usize, timeout: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let what_owned = what.to_owned();
    std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !flag.load(Ordering::Relaxed) {
            eprintln!(
                "ncf-train: error: rank {rank}: {what_owned} did not complete within {} s; another rank crashed or hung. Stopping (raise the limit with --dist-timeout)",
                timeout.as_secs()
            );
            std::process::exit(3);
        }
    });
    let out = f();
    done.store(true, Ordering::Relaxed);
    out
}

impl Collective for NcclGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&mut self, tensor: &Tensor) -> Result<(), CollectiveError> {
        const NCCL_SUM: i32 = 0;
        self.in_place("ncclAllReduce", self.nccl.all_reduce, tensor, NCCL_SUM)
    }

    fn broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CollectiveError> {
        self.in_place("ncclBroadcast", self.nccl.broadcast, tensor, root as i32)
    }
}

/// `ncclAllReduce` and `ncclBroadcast` share one signature: (send, receive, count, data type,
/// reduction op or root, communicator, stream).
type InPlaceCollective = unsafe extern "C" fn(*const u8, *mut u8, usize, i32, i32, Comm, *mut u8) -> NcclResult;

impl NcclGroup {
    /// Runs `call` in place on `tensor` (`arg`: the op or the root) and waits for it on the device.
    fn in_place(&self, what: &str, call: InPlaceCollective, tensor: &Tensor, arg: i32) -> Result<(), CollectiveError> {
        self.checked(tensor)?;
        let ptr = tensor.data_ptr() as *mut u8;
        // SAFETY: an in-place collective on a contiguous device tensor of numel elements of its
        // kind (checked); null stream = the default stream tch's kernels run on.
        let code =
            unsafe { call(ptr, ptr, tensor.numel(), Self::data_type(tensor)?, arg, self.comm, std::ptr::null_mut()) };
        self.nccl.check(what, code)?;
        self.wait(what);
        Ok(())
    }
}

impl Drop for NcclGroup {
    fn drop(&mut self) {
        // SAFETY: comm came from ncclCommInitRank and is destroyed once.
        unsafe {
            (self.nccl.comm_destroy)(self.comm);
        }
    }
}

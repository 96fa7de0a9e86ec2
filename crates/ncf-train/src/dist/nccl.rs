//! The NCCL backend: `libnccl.so.2` loaded at run time (PyTorch's wheel ships it under
//! `nvidia/nccl/lib` beside libtorch; `NCF_NCCL_LIBRARY` overrides the path), rank 0's
//! `ncclUniqueId` sent to the other ranks over TCP at `MASTER_ADDR:MASTER_PORT` (or through
//! torchrun's agent store there), collectives on the default CUDA stream, and a watchdog that
//! aborts the communicator and ends the rank when a collective has not completed within the
//! timeout or NCCL reports an asynchronous error (a crashed or hung peer), instead of hanging.
//!
//! Why the default stream: tch never makes another stream current, so libtorch's kernels (the
//! backward pass that produced the gradients, the optimizer that reads them) run on the device's
//! default stream; a collective queued there is ordered after the one and before the other.
//!
//! **Unverified here:** the development machines have no GPU; this path has only been compiled.
//! The rendezvous is tested on the CPU (over loopback, and under a real torchrun).

use super::{Collective, CollectiveError, Meeting, RankEnv, StoreClient};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

const UNIQUE_ID_BYTES: usize = 128;
type NcclResult = i32;
type Comm = *mut std::ffi::c_void;
/// `ncclInProgress`: what `ncclCommGetAsyncError` reports while a non-blocking call is under way.
const NCCL_IN_PROGRESS: NcclResult = 7;

/// `ncclUniqueId`: `typedef struct { char internal[128]; } ncclUniqueId;`, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [u8; UNIQUE_ID_BYTES],
}

/// The NCCL functions we call, resolved from the loaded library.
struct Nccl {
    _lib: libloading::Library,
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> NcclResult,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, i32, UniqueId, i32) -> NcclResult,
    all_reduce: InPlaceCollective,
    broadcast: InPlaceCollective,
    comm_destroy: unsafe extern "C" fn(Comm) -> NcclResult,
    /// Also holds `ncclGetErrorString`, for this thread's errors too.
    calls: AbortCalls,
}

type ErrorString = unsafe extern "C" fn(NcclResult) -> *const std::ffi::c_char;

/// What the watchdog thread calls: `ncclCommGetAsyncError` and `ncclCommAbort` (both made to be
/// called from another thread while a collective hangs), and `ncclGetErrorString`.
#[derive(Clone, Copy)]
struct AbortCalls {
    get_async_error: unsafe extern "C" fn(Comm, *mut NcclResult) -> NcclResult,
    abort: unsafe extern "C" fn(Comm) -> NcclResult,
    error_string: ErrorString,
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
            let get_async_error =
                *lib.get(b"ncclCommGetAsyncError\0").map_err(|e| missing("ncclCommGetAsyncError", e))?;
            let abort = *lib.get(b"ncclCommAbort\0").map_err(|e| missing("ncclCommAbort", e))?;
            let calls = AbortCalls { get_async_error, abort, error_string };
            Ok(Nccl { _lib: lib, get_unique_id, comm_init_rank, all_reduce, broadcast, comm_destroy, calls })
        }
    }

    fn check(&self, what: &str, code: NcclResult) -> Result<(), CollectiveError> {
        if code == 0 {
            return Ok(());
        }
        Err(CollectiveError::Backend(format!("{what} failed: {}", describe(self.calls.error_string, code))))
    }
}

fn describe(error_string: ErrorString, code: NcclResult) -> String {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code.
    let text = unsafe { std::ffi::CStr::from_ptr(error_string(code)) }.to_string_lossy().into_owned();
    format!("NCCL error {code}: {text}")
}

/// Sends rank 0's `id` to every other rank; every rank returns it. With [`Meeting::Listen`],
/// rank 0 listens on `MASTER_ADDR:MASTER_PORT` (a port in use is an error naming it) and the others
/// connect, retrying until `timeout`; with [`Meeting::AgentStore`], all connect to torchrun's store
/// there, rank 0 writes the id and the others wait for it, up to `timeout`.
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
    if let Meeting::AgentStore { key } = &env.meeting {
        let mut store = StoreClient::connect(&env.master_addr, env.master_port, timeout)
            .map_err(|e| fail(format!("torchrun's agent store: {e}")))?;
        return match id {
            Some(id) if env.rank == 0 => store.set(key, &id).map(|()| id).map_err(fail),
            _ if env.rank == 0 => Err(fail("rank 0 has no id to send".into())),
            _ => {
                let value = store.get(key, timeout).map_err(fail)?;
                value.try_into().map_err(|v: Vec<u8>| {
                    fail(format!("`{key}` holds {} bytes, not an NCCL id of {UNIQUE_ID_BYTES}", v.len()))
                })
            }
        };
    }
    let deadline = Instant::now() + timeout;
    if env.rank == 0 {
        let id = id.ok_or_else(|| fail("rank 0 has no id to send".into()))?;
        // Listen on every interface of MASTER_ADDR's address family, as PyTorch's TCPStore server
        // does: on a multi-node job MASTER_ADDR may name rank 0's host by an address (or a
        // hostname resolving to 127.0.1.1) that is not the one the other nodes reach it by.
        let ipv6 = (env.master_addr.as_str(), env.master_port)
            .to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.next().is_some_and(|a| a.is_ipv6()));
        let any: std::net::IpAddr =
            if ipv6 { std::net::Ipv6Addr::UNSPECIFIED.into() } else { std::net::Ipv4Addr::UNSPECIFIED.into() };
        let listener = TcpListener::bind((any, env.master_port)).map_err(|e| {
            fail(format!(
                "cannot listen on port {} ({e}); is the port in use? pick another with MASTER_PORT / --master-port",
                env.master_port
            ))
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
    watchdog: Watchdog,
    /// A collective failed: the communicator is aborted, not destroyed, on drop.
    failed: std::cell::Cell<bool>,
}

// SAFETY: the communicator is used by one thread at a time (the owner of this value).
unsafe impl Send for NcclGroup {}

impl NcclGroup {
    /// Joins the group described by `env` (its device must already be the current CUDA device).
    pub fn join(env: &RankEnv, timeout: Duration) -> Result<NcclGroup, CollectiveError> {
        let nccl = Nccl::load()?;
        let id = if env.rank == 0 {
            let mut id = UniqueId { internal: [0u8; UNIQUE_ID_BYTES] };
            // SAFETY: id is a writable ncclUniqueId.
            nccl.check("ncclGetUniqueId", unsafe { (nccl.get_unique_id)(&mut id) })?;
            Some(id.internal)
        } else {
            None
        };
        let id = UniqueId { internal: rendezvous(env, id, timeout)? };
        let mut comm: Comm = std::ptr::null_mut();
        // ncclCommInitRank blocks until every rank has joined; there is no communicator to abort
        // yet, so a rank that never comes ends this one after the timeout.
        let joining = Watchdog::start(env.rank, timeout, None);
        joining.watch("ncclCommInitRank");
        // SAFETY: comm is a valid out-pointer; id came from ncclGetUniqueId on rank 0.
        let code = unsafe { (nccl.comm_init_rank)(&mut comm, env.world_size as i32, id, env.rank as i32) };
        drop(joining);
        nccl.check("ncclCommInitRank", code)?;
        let watchdog = Watchdog::start(env.rank, timeout, Some((nccl.calls, CommPtr(comm))));
        Ok(NcclGroup {
            nccl,
            comm,
            rank: env.rank,
            world: env.world_size,
            device: Device::Cuda(env.local_rank),
            watchdog,
            failed: std::cell::Cell::new(false),
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
}

/// A communicator handle the watchdog thread may abort.
#[derive(Clone, Copy)]
struct CommPtr(Comm);
// SAFETY: ncclCommGetAsyncError and ncclCommAbort are documented as callable from another thread
// while the communicator is in use (that is what they are for).
unsafe impl Send for CommPtr {}

/// One thread per group that ends the rank when the operation it watches has not completed
/// within the timeout, or (with a communicator) when NCCL reports an asynchronous error such as
/// a peer that went away. It aborts the communicator first, so no NCCL kernel is left spinning,
/// and ends the process with `_exit`: a hung NCCL call cannot be cancelled from the waiting
/// thread, and exit handlers could block in CUDA teardown.
struct Watchdog {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    watching: Option<(String, Instant)>,
    stop: bool,
}

impl Watchdog {
    fn start(rank: usize, timeout: Duration, comm: Option<(AbortCalls, CommPtr)>) -> Watchdog {
        let state = Arc::new((Mutex::new(WatchState::default()), Condvar::new()));
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*shared;
            let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if guard.stop {
                    return;
                }
                let Some((what, since)) = guard.watching.clone() else {
                    guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner());
                    continue;
                };
                if let Some((calls, comm)) = comm {
                    let mut error = 0;
                    // SAFETY: comm is a live communicator (the group joins this thread before
                    // destroying it); error is a valid out-pointer.
                    let code = unsafe { (calls.get_async_error)(comm.0, &mut error) };
                    let error = if code != 0 { code } else { error };
                    if error != 0 && error != NCCL_IN_PROGRESS {
                        let why = format!("NCCL reported {} during {what}", describe(calls.error_string, error));
                        stop_rank(rank, &why, Some((calls, comm)));
                    }
                }
                if since.elapsed() >= timeout {
                    let why = format!(
                        "{what} did not complete within {} s; another rank crashed or hung (raise the limit with --dist-timeout)",
                        timeout.as_secs()
                    );
                    stop_rank(rank, &why, comm);
                }
                guard = wake.wait_timeout(guard, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
            }
        });
        Watchdog { state, thread: Some(thread) }
    }

    fn set(&self, f: impl FnOnce(&mut WatchState)) {
        let (lock, wake) = &*self.state;
        f(&mut lock.lock().unwrap_or_else(|p| p.into_inner()));
        wake.notify_one();
    }

    /// From now on `what` must complete within the timeout.
    fn watch(&self, what: &str) {
        self.set(|s| s.watching = Some((what.to_owned(), Instant::now())));
    }

    fn done(&self) {
        self.set(|s| s.watching = None);
    }
}

impl Watchdog {
    /// Ends the thread and waits for it (idempotent).
    fn stop(&mut self) {
        self.set(|s| s.stop = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_rank(rank: usize, why: &str, comm: Option<(AbortCalls, CommPtr)>) -> ! {
    eprintln!("ncf-train: error: rank {rank}: {why}. Stopping this rank.");
    if let Some((calls, comm)) = comm {
        // ncclCommAbort can block too (a wedged device): the rank ends regardless after 10 s.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(10));
            // SAFETY: _exit ends the process at once.
            unsafe { libc::_exit(3) }
        });
        // SAFETY: comm is live (see the watchdog); abort makes pending NCCL work return.
        unsafe {
            (calls.abort)(comm.0);
        }
    }
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(3) }
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
        let kind = Self::data_type(tensor)?;
        // The call itself is watched too: NCCL may connect to its peers inside the first
        // collective, and that blocks when a peer is gone.
        self.watchdog.watch(what);
        // SAFETY: an in-place collective on a contiguous device tensor of numel elements of its
        // kind (checked); null stream = the default stream tch's kernels run on (module doc).
        let code = unsafe { call(ptr, ptr, tensor.numel(), kind, arg, self.comm, std::ptr::null_mut()) };
        let queued = self.nccl.check(what, code);
        if queued.is_ok() {
            let idx = match self.device {
                Device::Cuda(i) => i as i64,
                _ => 0,
            };
            tch::Cuda::synchronize(idx);
        } else {
            self.failed.set(true);
        }
        self.watchdog.done();
        queued
    }
}

impl Drop for NcclGroup {
    fn drop(&mut self) {
        // The watchdog thread may touch comm: it ends first.
        self.watchdog.stop();
        let calls = self.nccl.calls;
        let mut error = 0;
        // SAFETY: comm is live until the call below; error is a valid out-pointer.
        let code = unsafe { (calls.get_async_error)(self.comm, &mut error) };
        // SAFETY: comm came from ncclCommInitRank and is released once. A communicator in error
        // is aborted (destroying it would wait for work that never finishes).
        unsafe {
            if self.failed.get() || code != 0 || (error != 0 && error != NCCL_IN_PROGRESS) {
                (calls.abort)(self.comm);
            } else {
                (self.nccl.comm_destroy)(self.comm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The watchdog ends the process, so each case runs in a child: this test binary again, with
    //! `watchdog_case` picked by an environment variable. NCCL's calls are stand-ins.
    use super::*;
    use std::process::Command;

    unsafe extern "C" fn remote_error(_comm: Comm, out: *mut NcclResult) -> NcclResult {
        // SAFETY: the watchdog passes a valid out-pointer.
        unsafe { *out = 6 }; // ncclRemoteError
        0
    }
    unsafe extern "C" fn no_error(_comm: Comm, out: *mut NcclResult) -> NcclResult {
        // SAFETY: as above.
        unsafe { *out = 0 };
        0
    }
    unsafe extern "C" fn abort(_comm: Comm) -> NcclResult {
        eprintln!("stand-in ncclCommAbort called");
        0
    }
    unsafe extern "C" fn error_string(_code: NcclResult) -> *const std::ffi::c_char {
        c"remote process exited or there was a network error".as_ptr()
    }

    fn calls(
        get_async_error: unsafe extern "C" fn(Comm, *mut NcclResult) -> NcclResult,
    ) -> Option<(AbortCalls, CommPtr)> {
        Some((AbortCalls { get_async_error, abort, error_string }, CommPtr(std::ptr::null_mut())))
    }

    #[test]
    fn the_wheels_nccl_is_found_beside_libtorch_and_every_call_resolves() {
        // No GPU is needed to load NCCL and resolve its symbols: this checks the library search
        // (site-packages/nvidia/nccl/lib, found from where libtorch was loaded) and every symbol
        // name and the error-string call on the real library.
        let nccl = Nccl::load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(describe(nccl.calls.error_string, 0), "NCCL error 0: no error");
        let remote = describe(nccl.calls.error_string, 6);
        assert!(remote.starts_with("NCCL error 6: remote process exited"), "{remote}");
        let err = nccl.check("ncclAllReduce", 2).unwrap_err().to_string();
        assert!(err.starts_with("ncclAllReduce failed: NCCL error 2:"), "{err}");
    }

    #[test]
    #[ignore = "a child process of watchdog_ends_the_rank_on_timeout_or_nccl_error_and_not_otherwise"]
    fn watchdog_case() {
        let Ok(case) = std::env::var("NCF_WATCHDOG_CASE") else {
            return eprintln!("a child of the watchdog test; nothing to do on its own");
        };
        let (timeout, comm) = match case.as_str() {
            "async-error" => (Duration::from_secs(60), calls(remote_error)),
            "timeout" => (Duration::from_secs(1), calls(no_error)),
            "init-timeout" | "completes" => (Duration::from_secs(1), None),
            other => panic!("unknown case {other}"),
        };
        let dog = Watchdog::start(4, timeout, comm);
        dog.watch("ncclAllReduce");
        if case == "completes" {
            std::thread::sleep(Duration::from_millis(300));
            dog.done();
        }
        std::thread::sleep(Duration::from_secs(3));
        drop(dog);
        println!("the rank went on");
    }

    #[test]
    fn watchdog_ends_the_rank_on_timeout_or_nccl_error_and_not_otherwise() {
        let exe = std::env::current_exe().unwrap();
        let run = |case: &str| {
            let start = Instant::now();
            let out = Command::new(&exe)
                .args(["--exact", "dist::nccl::tests::watchdog_case", "--ignored", "--nocapture"])
                .env("NCF_WATCHDOG_CASE", case)
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), start.elapsed())
        };
        let (code, err, took) = run("async-error");
        assert_eq!(code, Some(3), "{err}");
        assert!(err.contains("rank 4: NCCL reported NCCL error 6: remote process exited"), "{err}");
        assert!(err.contains("stand-in ncclCommAbort called"), "the communicator is aborted first: {err}");
        // (The case's timeout is 60 s; 10 s leaves room for starting a libtorch-linked child.)
        assert!(took < Duration::from_secs(10), "an NCCL error ends the rank at once, not at the timeout: {took:?}");
        let (code, err, _) = run("timeout");
        assert_eq!(code, Some(3), "{err}");
        assert!(err.contains("ncclAllReduce did not complete within 1 s"), "{err}");
        assert!(err.contains("stand-in ncclCommAbort called"), "{err}");
        let (code, err, _) = run("init-timeout");
        assert_eq!(code, Some(3), "{err}");
        assert!(!err.contains("ncclCommAbort"), "no communicator to abort yet: {err}");
        let (code, err, _) = run("completes");
        assert_eq!(code, Some(0), "a collective that completes in time is left alone: {err}");
    }
}

//! What the four ncf-rs binaries share, so each `main` is one line: `tracing` logs to stderr
//! (filtered by `RUST_LOG`), an error printed as `<program>: error: <message>: <cause>...` with every
//! cause once, and the exit status.
//!
//! **What it is not:** for library crates (they return typed errors and never print).
//!
//! ```
//! let code = cli_support::main("ncf-example", || anyhow::bail!("bad input"));
//! assert_eq!(code, std::process::ExitCode::FAILURE);
//! ```

use std::process::ExitCode;

/// Sets up logging, runs `run`, prints its error (if any) and returns the exit status.
pub fn main(program: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: many library errors already quote their source in
/// their own message, which `{:#}` would print a second time.
pub fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// For the libtorch binaries: libtorch's CPU allocator hands every batch's large tensors to malloc,
/// which returns them to the kernel on free (they are above glibc's mmap threshold) and so pays
/// fresh page faults every step; page faults are costly on virtual machines. Keeping freed memory
/// in the heap avoids that. Call first thing in `main`, before other threads exist.
pub fn keep_freed_memory() {
    keep_transient_memory(1 << 30, 1 << 30);
}

/// For a long-running server, once its start-up has freed what it read: blocks up to
/// `transient_bytes` come from the heap and stay there when freed (up to `retained_bytes` of free
/// heap), so a request's tensors reuse the last request's pages instead of faulting in fresh ones.
/// Measured on ncf-serve's MF scoring (Xeon, 32 users a pass): ~35% of the pass was page faults
/// without it. Bounded, unlike [`keep_freed_memory`], so resident memory stays near the peak of
/// one pass rather than the peak of the process's life (start-up's reads were already given back,
/// being freed before this call). Safe to call with threads running: mallopt takes the
/// allocator's lock, and the thresholds it sets are read by every arena.
pub fn keep_transient_memory(transient_bytes: usize, retained_bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, transient_bytes.min(i32::MAX as usize) as i32);
        libc::mallopt(libc::M_TRIM_THRESHOLD, retained_bytes.min(i32::MAX as usize) as i32);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (transient_bytes, retained_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read x.yaml: No such file").context("setting up");
        assert_eq!(report(&e), "setting up: cannot read x.yaml: No such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&e), "outer: inner");
    }
}

//! Build-script helper that makes tch binaries, tests, examples and benches run without
//! `LD_LIBRARY_PATH` and see CUDA when the libtorch in use has it.
//!
//! **What it is for.** Call [`configure`] from the `build.rs` of every package whose own targets link
//! libtorch (through `tch`). It emits two kinds of linker arguments for that package's targets:
//!
//! 1. `-Wl,-rpath,<libtorch>/lib`, so the dynamic loader finds `libtorch_cpu.so` & co. at run time.
//!    The path is the canonical one (the machine-wide venv, not the checkout's `.libtorch` symlink), so
//!    a binary keeps working when the checkout moves. `LD_LIBRARY_PATH` still takes precedence (the
//!    rpath is emitted as `DT_RUNPATH`), which is how a binary built here runs against another
//!    machine's libtorch, e.g. the GPU machines' `/opt/torch/.venv/.../torch/lib`.
//! 2. When `<libtorch>/lib/libtorch_cuda.so` exists: `-Wl,--no-as-needed -ltorch_cuda -Wl,--as-needed`.
//!    With the default `--as-needed`, the linker drops `libtorch_cuda.so` from `DT_NEEDED` because no
//!    symbol of it is referenced directly; CUDA kernels and `torch::cuda::is_available()` are
//!    registered by that library's static initialisers, so without it CUDA is never available, even
//!    on a GPU machine.
//!
//! **What it is not.** It does not find or install libtorch: `scripts/setup-libtorch.sh` does, and
//! `.cargo/config.toml` exports its location as `LIBTORCH`, the variable `torch-sys` itself reads.
//! Cargo only applies `rustc-link-arg` to the package that emits it, hence one call per package.
//!
//! ```
//! // The whole `main` of the build.rs of a package whose binaries, tests or examples use tch
//! // (run here as a doc test, it prints the `cargo:` lines a build script would hand to Cargo):
//! torch_link::configure();
//! ```

use std::env;
use std::path::{Path, PathBuf};

/// The libtorch linking facts for one `LIBTORCH` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libtorch {
    /// Canonical `<libtorch>/lib` directory.
    pub lib_dir: PathBuf,
    /// Whether `libtorch_cuda.so` is present (a CUDA build of libtorch).
    pub has_cuda: bool,
}

impl Libtorch {
    /// Inspects a libtorch directory (the one holding `lib/` and `include/`).
    /// Returns `None` when `<dir>/lib/libtorch_cpu.so` does not exist.
    pub fn inspect(dir: &Path) -> Option<Libtorch> {
        let lib_dir = dir.join("lib");
        if !lib_dir.join("libtorch_cpu.so").exists() {
            return None;
        }
        let lib_dir = lib_dir.canonicalize().unwrap_or(lib_dir);
        let has_cuda = lib_dir.join("libtorch_cuda.so").exists();
        Some(Libtorch { lib_dir, has_cuda })
    }

    /// The linker arguments (for `cargo:rustc-link-arg=`) described in the crate docs.
    pub fn link_args(&self) -> Vec<String> {
        let lib = self.lib_dir.display();
        let mut args = vec![format!("-Wl,-rpath,{lib}")];
        if self.has_cuda {
            args.push("-Wl,--no-as-needed".to_owned());
            args.push(format!("-L{lib}"));
            args.push("-ltorch_cuda".to_owned());
            args.push("-Wl,--as-needed".to_owned());
        }
        args
    }
}

/// Emits the cargo instructions for the calling build script; see the crate docs.
///
/// Reads `LIBTORCH`. When it is unset or holds no libtorch, prints a cargo warning and emits nothing:
/// `torch-sys` will then fail with its own, more specific message.
pub fn configure() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(dir) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup-libtorch.sh (or `make`)");
        return;
    };
    println!("cargo:rerun-if-changed={}", dir.join("lib").display());
    match Libtorch::inspect(&dir) {
        Some(libtorch) => {
            for arg in libtorch.link_args() {
                println!("cargo:rustc-link-arg={arg}");
            }
        }
        None => println!(
            "cargo:warning=no libtorch under LIBTORCH={}; run scripts/setup-libtorch.sh (or `make`)",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_libtorch(with_cuda: bool) -> PathBuf {
        let dir = env::temp_dir().join(format!("torch-link-test-{}-{with_cuda}", std::process::id()));
        let lib = dir.join("lib");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("libtorch_cpu.so"), b"").unwrap();
        if with_cuda {
            fs::write(lib.join("libtorch_cuda.so"), b"").unwrap();
        }
        dir
    }

    #[test]
    fn cpu_libtorch_gets_only_an_rpath() {
        let dir = fake_libtorch(false);
        let lt = Libtorch::inspect(&dir).unwrap();
        assert!(!lt.has_cuda);
        let args = lt.link_args();
        assert_eq!(args.len(), 1);
        assert!(args[0].starts_with("-Wl,-rpath,/"), "{args:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cuda_libtorch_links_torch_cuda_outside_as_needed() {
        let dir = fake_libtorch(true);
        let args = Libtorch::inspect(&dir).unwrap().link_args();
        let pos = |a: &str| args.iter().position(|x| x == a).unwrap();
        assert!(pos("-Wl,--no-as-needed") < pos("-ltorch_cuda"));
        assert!(pos("-ltorch_cuda") < pos("-Wl,--as-needed"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_folder_without_libtorch_is_none() {
        assert_eq!(Libtorch::inspect(Path::new("/nonexistent/libtorch")), None);
    }
}

//! Helpers for the workspace's tests (a dev-dependency only): where the shared reference data lives
//! and how to run the PyTorch oracle, the set-up venv's `python3`.
//!
//! Both are required, never skipped: a test that cannot find them fails and says how to fix it.
//!
//! ```no_run
//! let expected = test_support::reference_prepared().join("expected_metrics.json");
//! let out = test_support::python_eval("import torch; print(torch.__version__)", &[]);
//! assert!(out.starts_with("2.11.0"));
//! # let _ = expected;
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared data folder (`../shared` beside the checkout, or `NCF_SHARED_DIR`).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("NCF_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("data").is_dir(),
        "the shared data folder is missing at {} (put it beside the checkout or set NCF_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// `shared/data/reference-prepared/ml-latest-small`: the reference's prepared dataset and checkpoint.
pub fn reference_prepared() -> PathBuf {
    shared_dir().join("data/reference-prepared/ml-latest-small")
}

/// The oracle's python: `NCF_TORCH_PYTHON` (set by `.cargo/config.toml` to the venv that
/// `scripts/setup-libtorch.sh` made).
pub fn python() -> PathBuf {
    let py = std::env::var_os("NCF_TORCH_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
    assert!(py.exists() || py == Path::new("python3"), "no python at {} (run scripts/setup-libtorch.sh)", py.display());
    py
}

/// Runs `python3 SCRIPT ARGS...` and returns its output; panics with stderr when it fails.
pub fn run_python<I, S>(script: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(python());
    cmd.arg(script).args(args);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a python snippet (`python3 -c CODE ARGS...`) and returns its stdout.
pub fn python_eval(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One tensor a PyTorch oracle script described in its `manifest.json`: the key in its file (none
/// for a single-tensor file), dtype and shape as PyTorch prints them, and the file holding its
/// contiguous bytes.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExpectedTensor {
    pub key: Option<String>,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bin: String,
}

/// Reads `dir/manifest.json`: file name -> its tensors in file order.
pub fn tensor_manifest(dir: &Path) -> std::collections::BTreeMap<String, Vec<ExpectedTensor>> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("the oracle wrote manifest.json");
    serde_json::from_str(&text).expect("manifest.json is well formed")
}

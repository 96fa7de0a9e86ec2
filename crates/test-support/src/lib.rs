//! Helpers for the workspace's tests (a dev-dependency only): where the shared reference data lives
//! and how to run the PyTorch oracle, the set-up venv's `python3`; float32's rounding bound for
//! numeric comparisons that must hold on any CPU ([`within_f32_rounding`]); and the guide's
//! link and flag checks ([`guide`]).
//!
//! Data and oracle are required, never skipped: a test that cannot find them fails and says how to
//! fix it. **Not** for the crates' users: nothing here is part of ncf-rs's API.
//!
//! ```
//! let expected = test_support::reference_prepared().join("expected_metrics.json");
//! assert!(expected.exists());
//! let out = test_support::python_eval("import torch; print(torch.__version__)", &[]);
//! assert!(out.starts_with("2.11.0"));
//! // A sum of 100 float32 products is within γ_100 ≈ 6e-6 of exact, relative to Σ|terms|.
//! assert!(test_support::within_f32_rounding("sum", &[1.000001], &[1.0], &[1.0], 1, 100).is_ok());
//! assert!(test_support::within_f32_rounding("sum", &[1.0001], &[1.0], &[1.0], 1, 100).is_err());
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod guide;

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

/// float32's unit roundoff, `2^-24`: the largest relative error of one rounded operation.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// `γ_n = n·u / (1 − n·u)` for float32 (`u = 2^-24`): a sum of `n` float32 products, in any order
/// and with or without fused multiply-adds, is off from the exact sum by at most `γ_n` times the
/// sum of the terms' absolute values (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
/// ed., §3.1, eq. 3.5). It holds for every BLAS and oneDNN kernel on every CPU, since it needs no
/// assumption on the order the library adds in: the tolerance to use when two libraries or two
/// CPUs compute the same product. Panics when `n·u >= 1` (no bound).
pub fn f32_gamma(n: u64) -> f64 {
    let nu = n as f64 * F32_UNIT_ROUNDOFF;
    assert!(nu < 1.0, "no float32 rounding bound for sums of {n} terms");
    nu / (1.0 - nu)
}

/// Checks `|got − exact| ≤ stages·γ_k·magnitude` elementwise (flattened values; with tch,
/// `Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))`) and returns the worst ratio of the
/// two sides (≤ 1 passes), or a message naming `what`, the worst element and both sides.
///
/// `exact` is the same computation in float64 and `magnitude` the same again with every input and
/// parameter replaced by its absolute value (so every sum adds `|terms|`); `k` is the longest sum
/// on the way and `stages` the number of rounded sums or products one value passes through. To
/// first order in `u`, rounding errors made at each stage carry forward through the later ones'
/// absolute values, which `magnitude` already multiplies in, so the bound is their count times
/// `γ_k·magnitude` (Higham §3.5's argument, for a chain of products without kinks).
pub fn within_f32_rounding(
    what: &str,
    got: &[f64],
    exact: &[f64],
    magnitude: &[f64],
    stages: u32,
    k: u64,
) -> Result<f64, String> {
    assert_eq!(got.len(), exact.len(), "{what}: lengths");
    assert_eq!(got.len(), magnitude.len(), "{what}: lengths");
    let per_term = f64::from(stages) * f32_gamma(k);
    let mut worst = (0.0, 0);
    for (at, ((g, e), m)) in got.iter().zip(exact).zip(magnitude).enumerate() {
        // The smallest float32 normal as a floor: a zero magnitude with a zero error is no failure.
        let bound = m.abs() * per_term + f64::from(f32::MIN_POSITIVE);
        let ratio = (g - e).abs() / bound;
        if ratio.is_nan() {
            return Err(format!("{what}: element {at} is {g}, float64's {e}"));
        }
        if ratio > worst.0 {
            worst = (ratio, at);
        }
    }
    let (ratio, at) = worst;
    if ratio <= 1.0 {
        return Ok(ratio);
    }
    Err(format!(
        "{what}: element {at} is {:e} off float64's {:e}, past float32's rounding bound {:e} ({stages} stages x gamma_{k} x magnitude {:e})",
        (got[at] - exact[at]).abs(),
        exact[at],
        magnitude[at].abs() * per_term,
        magnitude[at],
    ))
}

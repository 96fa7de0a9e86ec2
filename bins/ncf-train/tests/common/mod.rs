//! Shared by the ncf-train tests: a tiny prepared dataset and a way to run the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small synthetic dataset prepared by our own pipeline (300 users, 200 items, ~9,000 ratings,
/// 100 test negatives), in `dir/data`.
pub fn tiny_dataset(dir: &Path) -> PathBuf {
    let raw = dir.join("ratings.csv");
    let config = preprocess::SyntheticConfig { users: 300, items: 200, interactions: 9_000, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &config).unwrap();
    let data = dir.join("data");
    preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {}).unwrap();
    data
}

/// Runs ncf-train on the CPU with `args`.
pub fn ncf_train<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_ncf-train")).arg("--device").arg("cpu").args(args).output().unwrap()
}

/// `ncf-train --mode test` of `checkpoint` on `data` in one process (plus `extra` flags, e.g. the
/// model's widths), logging to `log` (empty: no log); asserts success, returns stdout.
pub fn evaluate_checkpoint(data: &Path, checkpoint: &Path, log: &str, extra: &[&str]) -> String {
    let (data, checkpoint) = (data.display().to_string(), checkpoint.display().to_string());
    let mut args = vec!["--data", &data, "--mode", "test", "--load_checkpoint_path", &checkpoint, "--log_path", log];
    args.extend_from_slice(extra);
    ok(&ncf_train(args))
}

/// Asserts success, printing stderr otherwise; returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `data` objects of a DLLogger file's LOG lines, with their `step`.
pub fn log_lines(path: &Path) -> Vec<(serde_json::Value, serde_json::Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l.strip_prefix("DLLL ").expect("DLLL prefix")).unwrap())
        .filter(|v| v["type"] == "LOG")
        .map(|v| (v["step"].clone(), v["data"].clone()))
        .collect()
}

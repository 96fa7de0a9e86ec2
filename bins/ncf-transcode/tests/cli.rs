//! `ncf-transcode` as a user runs it: real processes, the reference's flag spellings, clear errors.

use std::path::Path;
use std::process::{Command, Output};
use test_support::shared_dir;

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ncf-transcode"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

#[test]
fn transcodes_with_the_references_flag_spellings() {
    let input = shared_dir().join("data/reference-examples/csv_conversion");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("converted");
    let o = run(&[
        &"--path",
        &input,
        &"--output",
        &out,
        &"--feature_spec_in",
        &"feature_spec.yaml",
        &"--feature_spec_out",
        &"spec.yaml",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("train: 100 rows") && stdout.contains("(10 users, 20 items)"), "{stdout}");
    for f in ["spec.yaml", "train_data_0.pt", "train_data_1.pt", "test_data_0.pt", "test_data_1.pt"] {
        assert!(out.join(f).exists(), "{f}");
    }
}

#[test]
fn bad_input_exits_non_zero_with_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/csv_conversion");
    for entry in std::fs::read_dir(&ours).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), input.join(entry.file_name())).unwrap();
    }
    std::fs::write(input.join("test.csv"), "0,1,1\n0,8,0\n0,2,zero\n0,6,0\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&[&"--path", &input, &"--output", &out]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("test.csv:3: column 3 label `zero` is not 0 or 1"), "{err}");
    assert!(!out.exists());
    let o = run(&[&"--path", &input, &"--output", &input]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("another folder"));
}

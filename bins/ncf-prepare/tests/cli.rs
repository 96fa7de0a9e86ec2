//! `ncf-prepare` as a user runs it: real processes, real files.

use std::path::Path;
use std::process::{Command, Output};
use test_support::shared_dir;

fn ncf_prepare(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ncf-prepare"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn bad_raw_files_fail_with_file_and_line_and_leave_nothing() {
    let cases: [(&str, &str, &str); 9] = [
        (
            "missing_column.csv",
            "userId,movieId,rating,timestamp\n1,2,3.5,100\n1,3,4.0\n",
            ":3: expected 4 fields separated by `,`, found 3",
        ),
        (
            "extra_column.csv",
            "userId,movieId,rating,timestamp\n1,2,3.5,100,7\n",
            ":2: expected 4 fields separated by `,`, found 5",
        ),
        ("empty_id.csv", "userId,movieId,rating,timestamp\n1,2,3.5,100\n1,,4.0,5\n", ":3: item id is empty"),
        (
            "text_id_bad_time.csv",
            "userId,movieId,rating,timestamp\nu1,m2,3.5,100\nu1,m3,4.0,later\n",
            ":3: timestamp `later` is not an integer",
        ),
        (
            "float_time.csv",
            "userId,movieId,rating,timestamp\n1,2,3.5,100.5\n",
            ":2: timestamp `100.5` is not an integer",
        ),
        (
            "wrong_separator.csv",
            "userId,movieId,rating,timestamp\n1;2;3.5;100\n",
            ":2: expected 4 fields separated by `,`, found 1 (no `,` separator",
        ),
        ("short_row.csv", "userId,movieId,rating,timestamp\n1,2,3.5,100\n7\n", ":3: expected 4 fields"),
        ("empty.csv", "", "empty.csv: holds no ratings"),
        (
            "header_only.csv",
            "userId,movieId,rating,timestamp\n",
            "header_only.csv: holds no ratings (read as ml-20m, whose first line is skipped)",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text, expected) in cases {
        let raw = dir.path().join(name);
        std::fs::write(&raw, text).unwrap();
        let out = dir.path().join("out");
        let o = ncf_prepare(&[&"--path", &raw, &"--output", &out, &"--format", &"ml-20m"]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name}: must fail");
        assert!(err.contains(name) && err.contains(expected), "{name}: {err}");
        assert!(!out.exists(), "{name}: no output folder");
    }
    let left: Vec<String> = entries(dir.path()).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");

    let o = ncf_prepare(&[&"--path", &dir.path().join("nope.csv"), &"--output", &dir.path().join("out")]);
    assert!(!o.status.success() && stderr(&o).contains("nope.csv"), "{}", stderr(&o));
}

#[test]
fn prepares_reuses_and_rebuilds_ml_latest_small() {
    let raw = shared_dir().join("data/ml-latest-small/ratings.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ml-latest-small");
    let o = ncf_prepare(&[&"--path", &raw, &"--output", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("100836 ratings on 9724 items from 610 users from 1996-03-29 18:36:55 to 2018-09-24 14:27:30"),
        "{stdout}"
    );
    assert_eq!(
        entries(&out),
        [
            "feature_spec.yaml",
            "item_ids.pt",
            "test_data_0.pt",
            "test_data_1.pt",
            "train_data_0.pt",
            "train_data_1.pt",
            "user_ids.pt"
        ]
    );
    let o = ncf_prepare(&[&"--path", &raw, &"--output", &out]);
    assert!(o.status.success() && stderr(&o).contains("Using cached preprocessed data"), "{}", stderr(&o));
    let o = ncf_prepare(&[&"--path", &raw, &"--output", &out, &"--force", &"--valid_negative", &"10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ncf_prepare(&[&"verify", &out]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("test: 6710 rows"), "{}", stderr(&o));
    assert_eq!(entries(dir.path()), ["ml-latest-small"], "nothing else is left beside the output");
}

#[test]
fn refuses_to_overwrite_a_folder_that_is_not_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("precious");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let raw = shared_dir().join("data/ml-latest-small/ratings.csv");
    let o = ncf_prepare(&[&"--path", &raw, &"--output", &out]);
    assert!(!o.status.success() && stderr(&o).contains("is not a prepared dataset"), "{}", stderr(&o));
    assert_eq!(entries(&out), ["notes.txt"]);
}

#[test]
fn synthetic_then_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syn");
    let o = ncf_prepare(&[
        &"synthetic",
        &"--output",
        &out,
        &"--users",
        &"300",
        &"--items",
        &"200",
        &"--interactions",
        &"6000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("ratings.csv").exists(), "the raw file is kept beside the tensors");
    let o = ncf_prepare(&[&"verify", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK (300 users"), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(entries(dir.path()), ["syn"]);
}

#[test]
fn verify_catches_a_broken_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syn");
    assert!(ncf_prepare(&[
        &"synthetic",
        &"--output",
        &out,
        &"--users",
        &"50",
        &"--items",
        &"40",
        &"--interactions",
        &"600"
    ])
    .status
    .success());
    let spec = std::fs::read_to_string(out.join("feature_spec.yaml")).unwrap();
    std::fs::write(out.join("feature_spec.yaml"), spec.replace("cardinality: 40", "cardinality: 39")).unwrap();
    let o = ncf_prepare(&[&"verify", &out]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("feature `item` has id 39") && err.contains("cardinality"), "{err}");
}

#[test]
fn dataset_mode_unzips_once_and_says_where_to_download() {
    let dir = tempfile::tempdir().unwrap();
    let o = ncf_prepare(&[&"--dataset", &"ml-1m", &"--raw-dir", &dir.path()]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("ml-1m.zip not found")
            && err.contains("grouplens.org/datasets/movielens/1m"),
        "{err}"
    );

    // A small ml-1m-shaped zip.
    let ratings: String = (1..=30).map(|r| format!("{}::{}::4::{}\n", r % 5 + 1, r % 11 + 1, 1000 + r)).collect();
    let zip_path = dir.path().join("ml-1m.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("ml-1m/ratings.dat", opts).unwrap();
    std::io::Write::write_all(&mut zip, ratings.as_bytes()).unwrap();
    zip.finish().unwrap();
    let o = ncf_prepare(&[&"--dataset", &"ml-1m", &"--raw-dir", &dir.path(), &"--valid-negative", &"3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("ml-1m/ratings.dat").exists() && dir.path().join("cache/ml-1m/feature_spec.yaml").exists());
    let o = ncf_prepare(&[&"--dataset", &"ml-1m", &"--raw-dir", &dir.path()]);
    assert!(o.status.success() && stderr(&o).contains("Using cached preprocessed data"), "{}", stderr(&o));
}

//! The reference's CSV example transcoded and compared with what pandas reads from the same CSVs;
//! our own example; and one failing case per rule, each leaving nothing behind.

use featurespec::FeatureSpec;
use std::path::{Path, PathBuf};
use tch::Device;
use test_support::{run_python, shared_dir};
use torchfile::TorchFile;
use transcode::transcode;

fn read(path: &Path) -> torchfile::TensorData {
    let mut f = TorchFile::open(path).unwrap();
    let t = f.tensor().unwrap();
    f.read(&t).unwrap()
}

/// Equal lengths and values; on a difference, names the first index (not the whole vectors).
fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at {i}: got {:?}, want {:?}", got[i], want[i]);
    }
}

fn check_against_pandas(input: &Path) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("converted");
    let summary = transcode(&input.join("feature_spec.yaml"), &dir, "feature_spec.yaml").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/expected.py");
    let expected: serde_json::Value = serde_json::from_slice(&run_python(&script, [input, &dir]).stdout).unwrap();
    assert_eq!(summary.user_cardinality, expected["user"].as_u64().unwrap());
    assert_eq!(summary.item_cardinality, expected["item"].as_u64().unwrap());
    for (mapping, rows) in &summary.rows {
        let want = &expected["mappings"][mapping];
        let pairs: Vec<i64> = want["pairs"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let labels: Vec<f32> = want["labels"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let got = read(&dir.join(format!("{mapping}_data_0.pt")));
        assert_eq!(got.shape, vec![*rows, 2], "{mapping} pairs shape");
        assert_same(&got.to_i64(), &pairs, &format!("{mapping} pairs"));
        let got = read(&dir.join(format!("{mapping}_data_1.pt")));
        assert_eq!(got.shape, vec![*rows, 1], "{mapping} labels shape");
        assert_same(&got.to_f32(), &labels, &format!("{mapping} labels"));
    }
    // torch.load(weights_only=True) reads the same, and every zip record's CRC-32 checks out.
    for mapping in summary.rows.iter().map(|(m, _)| m) {
        assert_eq!(expected["torch_load"][mapping], "equal", "{mapping}: torch.load");
    }
    // The output loads with the dataset loader (every check included) onto the CPU.
    let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml")).unwrap();
    for (mapping, rows) in &summary.rows {
        assert_eq!(tch_data::load_mapping(&spec, mapping, Device::Cpu).unwrap().rows, *rows);
    }
}

#[test]
fn the_reference_csv_example_equals_what_pandas_reads() {
    check_against_pandas(&shared_dir().join("data/reference-examples/csv_conversion"));
}

#[test]
fn our_own_csv_example_equals_what_pandas_reads() {
    check_against_pandas(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/csv_conversion"));
}

/// Files of several parser pieces (> 4 MB each) with every irregularity pandas accepts: CRLF line
/// ends, blank lines, spaces before values, `1.0` labels, a text column that is not written, a last
/// line without a newline, and two files in one chunk.
#[test]
fn large_irregular_files_equal_what_pandas_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..700_000u64 {
        let (user, item) = (i / 7, (i * 7919) % 26_744);
        let label = if i % 3 == 0 { "1" } else { "0" };
        let text = format!("{user},note {},{item},{label}", i % 11);
        match i % 1000 {
            0 => a.push_str(&format!("{text}\r\n")),
            1 => a.push_str(&format!("{text}\n\n")),
            2 => a.push_str(&format!(" {user},x, {item},{label}.0\n")),
            _ => a.push_str(&format!("{text}\n")),
        }
        if i < 1000 {
            b.push_str(&format!("{},y,{item},{label}\n", user + 100_000));
        }
    }
    b.push_str("7,z,7,1");
    std::fs::write(dir.path().join("a.csv"), a).unwrap();
    std::fs::write(dir.path().join("b.csv"), b).unwrap();
    // The test mapping in the plain `user,item,label` layout and without blank lines (so it is
    // streamed; the train mapping's blank lines send it to the in-memory path), with the line
    // parser's fallbacks: CRLF, `1.0`, and one 9 MB line (spaces before its user id) that runs
    // through two whole pieces.
    let mut t = String::new();
    for i in 0..900_000u64 {
        let (user, item, label) = (i / 101, (i * 31) % 26_744, u8::from(i % 101 == 0));
        match i % 5000 {
            0 => t.push_str(&format!("{user},{item},{label}\r\n")),
            1 => t.push_str(&format!("{user}, {item},{label}\n")),
            2 => t.push_str(&format!("{user},{item},{label}.0\n")),
            _ if i == 300_000 => t.push_str(&format!("{}{user},{item},{label}\n", " ".repeat(9 << 20))),
            _ => t.push_str(&format!("{user},{item},{label}\n")),
        }
    }
    t.push_str("5,5,1");
    std::fs::write(dir.path().join("t.csv"), t).unwrap();
    std::fs::write(
        dir.path().join("feature_spec.yaml"),
        "feature_spec:\n  user: {cardinality: auto}\n  note: {}\n  item: {cardinality: auto}\n  label:\nmetadata: {test_samples_per_series: 2}\nsource_spec:\n  train:\n    - {type: csv, features: [user, note, item, label], files: [a.csv, b.csv]}\n  test:\n    - {type: csv, features: [user, item, label], files: [t.csv]}\nchannel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}\n",
    )
    .unwrap();
    check_against_pandas(dir.path());
}

/// A small valid CSV dataset in a temp folder, with `edit` applied to (file name, text) pairs.
fn dataset(edit: impl Fn(&str, String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("feature_spec.yaml", "feature_spec:\n  user: {cardinality: auto}\n  item: {cardinality: 8}\n  label:\nmetadata: {test_samples_per_series: 2}\nsource_spec:\n  train:\n    - {type: csv, features: [user, item], files: [train_a.csv, train_b.csv]}\n    - {type: csv, features: [label], files: [train_label.csv]}\n  test:\n    - {type: csv, features: [user, item, label], files: [test.csv]}\nchannel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}\n"),
        ("train_a.csv", "0,1\n0,2\n1,3\n"),
        ("train_b.csv", "2,4\n2,5\n"),
        ("train_label.csv", "1\n1\n1\n1\n1\n"),
        ("test.csv", "0,7,1\n0,6,0\n1,5,1\n1,0,0\n2,1,1\n2,2,0\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), edit(name, text.to_owned())).unwrap();
    }
    let out = dir.path().join("out");
    (dir, out)
}

fn fails(file: &str, from: &str, to: &str) -> String {
    let (dir, out) = dataset(|name, text| if name == file { text.replacen(from, to, 1) } else { text });
    let err = transcode(&dir.path().join("feature_spec.yaml"), &out, "feature_spec.yaml").expect_err("must fail");
    assert!(!out.exists(), "no output folder after a failure");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary folder left behind");
    err.to_string()
}

#[test]
fn a_valid_dataset_transcodes_with_auto_and_declared_cardinalities() {
    let (dir, out) = dataset(|_, t| t);
    let s = transcode(&dir.path().join("feature_spec.yaml"), &out, "spec.yaml").unwrap();
    assert_eq!((s.user_cardinality, s.item_cardinality), (3, 8), "auto = max + 1; a larger declared value is kept");
    assert_eq!(s.rows, [("train".to_owned(), 5), ("test".to_owned(), 6)]);
    assert!(out.join("spec.yaml").exists() && !out.join("feature_spec.yaml").exists());
}

#[test]
fn wrong_column_count() {
    let msg = fails("train_b.csv", "2,5\n", "2,5,9\n");
    assert!(msg.contains("train_b.csv:2: expected 2 comma-separated columns, found 3"), "{msg}");
    let msg = fails("test.csv", "1,0,0\n", "1,0\n");
    assert!(msg.contains("test.csv:4: expected 3 comma-separated columns, found 2"), "{msg}");
}

#[test]
fn non_numeric_and_negative_ids() {
    let msg = fails("train_a.csv", "1,3\n", "1,x3\n");
    assert!(msg.contains("train_a.csv:3: column 2 id `x3` is not an integer"), "{msg}");
    let msg = fails("train_a.csv", "0,2\n", "-4,2\n");
    assert!(msg.contains("train_a.csv:2: column 1 holds a negative id -4"), "{msg}");
}

#[test]
fn label_other_than_zero_or_one() {
    let msg = fails("test.csv", "0,6,0\n", "0,6,2\n");
    assert!(msg.contains("test.csv:2: column 3 label `2` is not 0 or 1"), "{msg}");
}

#[test]
fn missing_chunk_file() {
    let msg = fails("feature_spec.yaml", "train_b.csv", "train_c.csv");
    assert!(msg.contains("train_c.csv") && msg.contains("not found"), "{msg}");
}

#[test]
fn chunks_of_a_mapping_with_different_row_counts() {
    let msg = fails("train_label.csv", "1\n1\n1\n1\n1\n", "1\n1\n1\n1\n");
    assert!(msg.contains("mapping `train`: chunk 1 (label) has 4 rows but chunk 0 has 5"), "{msg}");
}

#[test]
fn id_over_a_declared_cardinality() {
    let msg = fails("feature_spec.yaml", "item: {cardinality: 8}", "item: {cardinality: 6}");
    assert!(
        msg.contains(
            "test.csv:1: Specified cardinality conflicts data: feature `item` declares cardinality 6 but the data holds id 7 here, 7 at most"
        ),
        "{msg}"
    );
}

#[test]
fn a_chunk_that_is_not_csv() {
    let msg = fails("feature_spec.yaml", "{type: csv, features: [label]", "{type: torch_tensor, features: [label]");
    assert!(
        msg.contains("source_spec.train[1].type") && msg.contains("`torch_tensor`") && msg.contains("csv"),
        "{msg}"
    );
}

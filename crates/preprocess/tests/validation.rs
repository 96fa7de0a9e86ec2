//! `--validation`: the held-out second-latest item of each user, checked against pandas on the real
//! ml-latest-small and by hand on a file with short histories and time ties.

use preprocess::{prepare, PrepareOptions};
use std::path::Path;
use test_support::{run_python, shared_dir};
use torchfile::TorchFile;

fn with_validation() -> PrepareOptions {
    PrepareOptions { validation: true, ..PrepareOptions::default() }
}

#[test]
fn ml_latest_small_validation_split_matches_pandas() {
    let raw = shared_dir().join("data/ml-latest-small/ratings.csv");
    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("d");
    let summary = prepare(&raw, &data, &with_validation(), |_| {}).unwrap();
    assert_eq!(summary.validation_rows, 610 * 101);
    assert_eq!(summary.train_rows, 100_836 - 2 * 610);
    preprocess::verify(&data, None).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/validation_oracle.py");
    let output = run_python(&script, [raw, data]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for check in [
        "validation_positives_equal",
        "train_equal",
        "test_positives_equal",
        "labels_one_then_zeros",
        "one_user_per_list",
        "validation_negatives_avoid_train_and_positive",
        "test_negatives_avoid_train_and_validation_positive",
    ] {
        assert_eq!(report[check], true, "{check}: {report}");
    }
}

#[test]
fn short_histories_keep_their_items_and_ties_keep_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ratings.csv");
    // user 1: one item; user 2: two items; user 3: three items, the last two at the same time;
    // user 4: four items, one repeated (the repeat dropped).
    std::fs::write(
        &raw,
        "userId,movieId,rating,timestamp\n\
         1,10,5,100\n\
         2,10,5,100\n2,20,5,200\n\
         3,10,5,100\n3,30,5,300\n3,20,5,300\n\
         4,40,5,1\n4,10,5,2\n4,40,5,3\n4,20,5,4\n4,30,5,5\n",
    )
    .unwrap();
    let data = dir.path().join("d");
    let summary = prepare(&raw, &data, &PrepareOptions { negatives: 2, ..with_validation() }, |_| {}).unwrap();
    assert_eq!(summary.users_without_validation, 2);
    let load = |name: &str| {
        let mut f = TorchFile::open(data.join(name)).unwrap();
        let t = f.tensor().unwrap();
        f.read(&t).unwrap().to_i64()
    };
    // Ids by first appearance: users 1,2,3,4 -> 0..3; items 10,20,30,40 -> 0,1,2,3.
    let train: Vec<(i64, i64)> = load("train_data_0.pt").chunks(2).map(|p| (p[0], p[1])).collect();
    // user 0: its only item is its test positive; user 1: 10 in train, 20 test, no validation;
    // user 2: 10 train, then 30 and 20 tied at 300 in file order: 30 validation, 20 test;
    // user 3: 40, 10, (40 again dropped), 20, 30: 40 and 10 train, 20 validation, 30 test.
    assert_eq!(train, [(1, 0), (2, 0), (3, 3), (3, 0)]);
    let validation: Vec<(i64, i64)> = load("validation_data_0.pt").chunks(2).map(|p| (p[0], p[1])).collect();
    assert_eq!(validation.iter().step_by(3).copied().collect::<Vec<_>>(), [(2, 2), (3, 1)]);
    let test: Vec<(i64, i64)> = load("test_data_0.pt").chunks(2).map(|p| (p[0], p[1])).collect();
    assert_eq!(test.iter().step_by(3).copied().collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 1), (3, 2)]);
    preprocess::verify(&data, None).unwrap();
}

#[test]
fn without_validation_nothing_changes() {
    let raw = shared_dir().join("data/ml-latest-small/ratings.csv");
    let out = tempfile::tempdir().unwrap();
    let plain = out.path().join("plain");
    prepare(&raw, &plain, &PrepareOptions::default(), |_| {}).unwrap();
    assert!(!plain.join("validation_data_0.pt").exists());
    let spec = std::fs::read_to_string(plain.join("feature_spec.yaml")).unwrap();
    assert!(!spec.contains("validation"));
}

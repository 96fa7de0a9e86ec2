//! Loading FeatureSpec datasets: the reference's prepared dataset (tagged `cuda:0`) onto the CPU,
//! multi-file chunks, and one failing case per rule, each error naming the file, feature and rule.

use featurespec::FeatureSpec;
use featurespec::LoadOptions;
use spec_dataset::{verify_mapping, DatasetError};
use std::path::Path;
use tch::{Device, Kind, Tensor};
use tch_data::load_mapping;
use test_support::{python_eval, reference_prepared};
use torchfile::{save_tensor, TensorView};

#[test]
fn reference_dataset_loads_with_pytorchs_values() {
    let dir = reference_prepared();
    let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml")).unwrap();
    let train = load_mapping(&spec, "train", Device::Cpu).unwrap();
    let test = load_mapping(&spec, "test", Device::Cpu).unwrap();
    assert_eq!(test.rows, 610 * 101);
    assert_eq!(train.features.keys().collect::<Vec<_>>(), ["user", "item", "label"]);
    // The oracle: PyTorch's own sums of each column.
    let code = "import sys, torch\nd = sys.argv[1]\nfor f in ['train_data_0', 'train_data_1', 'test_data_0', 'test_data_1']:\n    t = torch.load(f'{d}/{f}.pt', map_location='cpu', weights_only=True)\n    print(t.shape[0], *[int(x) for x in t.double().sum(0).tolist()])";
    let expected = python_eval(code, &[dir.to_str().unwrap()]);
    let ours: Vec<String> = [&train, &test]
        .iter()
        .flat_map(|m| {
            let sums = |names: &[&str]| {
                let cols: Vec<String> = names
                    .iter()
                    .map(|n| {
                        (m.features[*n].to_kind(Kind::Double).sum(Kind::Double).double_value(&[]) as i64).to_string()
                    })
                    .collect();
                format!("{} {}", m.rows, cols.join(" "))
            };
            [sums(&["user", "item"]), sums(&["label"])]
        })
        .collect();
    assert_eq!(expected.trim().lines().collect::<Vec<_>>(), ours);
    assert_eq!(train.features["user"].device(), Device::Cpu);
}

/// Writes a small NCF dataset with the given spec text (files named in it are written from `files`).
fn dataset(dir: &Path, spec: &str, files: &[(&str, TensorView<'_>)]) -> FeatureSpec {
    for (name, view) in files {
        save_tensor(dir.join(name), view).unwrap();
    }
    std::fs::write(dir.join("feature_spec.yaml"), spec).unwrap();
    FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml")).unwrap()
}

const SPEC: &str = "
feature_spec:
  user: {dtype: torch.int64, cardinality: 4}
  item: {dtype: torch.int64, cardinality: 10}
  label: {dtype: torch.float32}
metadata: {test_samples_per_series: 2}
source_spec:
  train:
    - {type: torch_tensor, features: [user, item], files: [part_0.pt, part_1.pt]}
    - {type: torch_tensor, features: [label], files: [label.pt]}
  test:
    - {type: torch_tensor, features: [user, item], files: [part_1.pt]}
    - {type: torch_tensor, features: [label], files: [label_1.pt]}
channel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}
";

const PART0: [i64; 6] = [0, 1, 1, 9, 2, 3];
const PART1: [i64; 4] = [3, 0, 3, 4];
const LABELS: [f32; 5] = [1.0, 1.0, 0.0, 1.0, 0.0];

fn good_files() -> Vec<(&'static str, TensorView<'static>)> {
    vec![
        ("part_0.pt", TensorView::from_i64(&PART0, &[3, 2])),
        ("part_1.pt", TensorView::from_i64(&PART1, &[2, 2])),
        ("label.pt", TensorView::from_f32(&LABELS, &[5, 1])),
        ("label_1.pt", TensorView::from_f32(&LABELS[..2], &[2])),
    ]
}

#[test]
fn files_of_a_chunk_are_consecutive_rows_and_columns_follow_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dataset(dir.path(), SPEC, &good_files());
    let train = load_mapping(&spec, "train", Device::Cpu).unwrap();
    assert_eq!(train.rows, 5);
    let col = |n: &str| Vec::<i64>::try_from(&train.features[n].contiguous()).unwrap();
    assert_eq!(col("user"), [0, 1, 2, 3, 3]);
    assert_eq!(col("item"), [1, 9, 3, 0, 4]);
    assert!(train.features["label"].equal(&Tensor::from_slice(&LABELS)));
    let test = load_mapping(&spec, "test", Device::Cpu).unwrap();
    assert_eq!(test.rows, 2, "a 1-D label file is one column");
    assert_eq!(verify_mapping(&spec, "train", LoadOptions::default()).unwrap(), 5);
    assert_eq!(verify_mapping(&spec, "test", LoadOptions::default()).unwrap(), 2);
}

fn load_err(spec: &str, files: &[(&str, TensorView<'_>)], mapping: &str) -> (DatasetError, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dataset(dir.path(), spec, files);
    let err = load_mapping(&spec, mapping, Device::Cpu).expect_err("must be refused");
    let msg = err.to_string();
    // The libtorch-free check refuses it with the same words.
    let verified = verify_mapping(&spec, mapping, LoadOptions::default()).expect_err("verify must refuse it too");
    assert_eq!(verified.to_string(), msg);
    (err, msg)
}

#[test]
fn dtype_differs_from_the_spec() {
    let as_i32: Vec<i32> = PART0.iter().map(|&v| v as i32).collect();
    let mut files = good_files();
    files[0] = ("part_0.pt", TensorView::from_i32(&as_i32, &[3, 2]));
    let (err, msg) = load_err(SPEC, &files, "train");
    assert!(matches!(err, DatasetError::Dtype { .. }), "{err:?}");
    assert!(
        msg.contains("part_0.pt")
            && msg.contains("torch.int32")
            && msg.contains("torch.int64")
            && msg.contains("user, item"),
        "{msg}"
    );
}

#[test]
fn shape_does_not_fit_the_chunk() {
    let mut files = good_files();
    files[1] = ("part_1.pt", TensorView::from_i64(&PART1, &[1, 4]));
    let (err, msg) = load_err(SPEC, &files, "train");
    assert!(matches!(err, DatasetError::Shape { .. }), "{err:?}");
    assert!(msg.contains("part_1.pt") && msg.contains("[1, 4]") && msg.contains("source_spec.train[0]"), "{msg}");
}

#[test]
fn chunks_of_a_mapping_disagree_on_rows() {
    let mut files = good_files();
    files[2] = ("label.pt", TensorView::from_f32(&LABELS[..4], &[4, 1]));
    let (err, msg) = load_err(SPEC, &files, "train");
    assert!(matches!(err, DatasetError::RowCount { rows: 4, first: 5, .. }), "{err:?}");
    assert!(msg.contains("mapping `train`") && msg.contains("chunk 1 (label)"), "{msg}");
}

#[test]
fn id_at_or_over_its_cardinality() {
    let (err, msg) = load_err(&SPEC.replace("cardinality: 10", "cardinality: 9"), &good_files(), "train");
    assert!(matches!(err, DatasetError::IdOutOfRange { id: 9, row: 1, cardinality: 9, .. }), "{err:?}");
    assert!(
        msg.contains("part_0.pt") && msg.contains("feature `item`") && msg.contains("feature_spec.item.cardinality"),
        "{msg}"
    );
    let negative = [0i64, 1, -1, 9, 2, 3];
    let mut files = good_files();
    files[0] = ("part_0.pt", TensorView::from_i64(&negative, &[3, 2]));
    let (err, _) = load_err(SPEC, &files, "train");
    assert!(matches!(err, DatasetError::IdOutOfRange { id: -1, row: 1, .. }), "{err:?}");
}

#[test]
fn missing_file_csv_chunk_and_unknown_mapping() {
    let files = good_files();
    let (err, msg) = load_err(SPEC, &files[..1], "train");
    assert!(matches!(err, DatasetError::File(_)) && msg.contains("part_1.pt"), "{msg}");
    let (err, msg) = load_err(&SPEC.replacen("{type: torch_tensor", "{type: csv", 1), &files, "train");
    assert!(
        matches!(err, DatasetError::Spec(_)) && msg.contains("source_spec.train[0].type") && msg.contains("`csv`"),
        "{msg}"
    );
    let (err, msg) = load_err(SPEC, &files, "valid");
    assert!(matches!(err, DatasetError::Spec(_)) && msg.contains("source_spec.valid"), "{msg}");
}

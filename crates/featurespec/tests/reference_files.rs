//! Every feature spec the reference ships or wrote parses, round-trips through our YAML writer, and
//! reads back in Python's `yaml.safe_load` as the same dict.

use featurespec::ncf::NcfLayout;
use featurespec::{Cardinality, ChunkType, Dtype, FeatureSpec};
use std::path::{Path, PathBuf};
use test_support::{python_eval, shared_dir};

fn reference_yamls() -> Vec<PathBuf> {
    let data = shared_dir().join("data");
    let mut found = Vec::new();
    let mut stack = vec![data.join("reference-examples"), data.join("reference-prepared")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    assert!(found.len() >= 3, "expected the reference's feature specs, found {found:?}");
    found
}

/// Python's verdict on whether two YAML files load to equal objects.
fn python_says_equal(a: &Path, b: &Path) -> bool {
    let code = "import sys, yaml; l = lambda p: yaml.safe_load(open(p)); print(l(sys.argv[1]) == l(sys.argv[2]))";
    python_eval(code, &[a.to_str().unwrap(), b.to_str().unwrap()]).trim() == "True"
}

#[test]
fn every_reference_spec_round_trips_in_rust_and_python() {
    let out_dir = tempfile::tempdir().unwrap();
    for (i, path) in reference_yamls().into_iter().enumerate() {
        let spec = FeatureSpec::from_yaml_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.base_dir(), path.parent().unwrap());
        let saved = out_dir.path().join(format!("spec{i}.yaml"));
        let mut copy = spec.clone();
        copy.save(&saved).unwrap();
        let again = FeatureSpec::from_yaml_file(&saved).unwrap();
        assert_eq!(again, spec, "{} changed in a load/save/load round trip", path.display());
        assert!(python_says_equal(&path, &saved), "yaml.safe_load differs for {} after our save", path.display());
    }
}

#[test]
fn saving_the_reference_prepared_spec_reproduces_its_bytes() {
    // The reference writes `print(yaml.dump(spec), file=f)`: sorted keys, block style, and an extra
    // newline. Ours writes the same bytes for the same content.
    let path = shared_dir().join("data/reference-prepared/ml-latest-small/feature_spec.yaml");
    let mut spec = FeatureSpec::from_yaml_file(&path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let saved = out.path().join("feature_spec.yaml");
    spec.save(&saved).unwrap();
    assert_eq!(std::fs::read_to_string(saved).unwrap(), std::fs::read_to_string(path).unwrap());
}

#[test]
fn reference_prepared_spec_has_the_expected_typed_content() {
    let path = shared_dir().join("data/reference-prepared/ml-latest-small/feature_spec.yaml");
    let spec = FeatureSpec::from_yaml_file(&path).unwrap();
    let layout = NcfLayout::from_spec(&spec).unwrap();
    assert_eq!((layout.user.as_str(), layout.item.as_str(), layout.label.as_str()), ("user", "item", "label"));
    assert_eq!(layout.cardinalities(&spec).unwrap(), (610, 9724));
    assert_eq!(layout.test_samples_per_series, 101);
    assert_eq!(spec.feature("label").unwrap().dtype, Some(Dtype::Float32));
    let train = spec.mapping("train").unwrap();
    assert_eq!(train[0].chunk_type, ChunkType::TorchTensor);
    assert_eq!(train[0].features, ["user", "item"]);
    assert_eq!(spec.resolve_file(&train[1].files[0]).unwrap(), path.parent().unwrap().join("train_data_1.pt"));
}

#[test]
fn csv_example_keeps_auto_cardinality_and_null_label() {
    let path = shared_dir().join("data/reference-examples/csv_conversion/feature_spec.yaml");
    let spec = FeatureSpec::from_yaml_file(&path).unwrap();
    assert_eq!(spec.feature("user").unwrap().cardinality, Some(Cardinality::Auto));
    assert_eq!(spec.feature("label").unwrap(), &featurespec::FeatureMeta::default());
    assert_eq!(spec.mapping("train").unwrap()[0].chunk_type, ChunkType::Csv);
    let layout = NcfLayout::from_spec(&spec).unwrap();
    assert_eq!(layout.test_samples_per_series, 3);
    let err = layout.cardinalities(&spec).unwrap_err().to_string();
    assert!(err.contains("feature_spec.user.cardinality") && err.contains("auto"), "{err}");
    assert!(spec.to_yaml_string().unwrap().contains("label: null"));
}

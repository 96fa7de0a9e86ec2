//! One failing case per validation rule: each asserts the error kind and that the message names the
//! file and the key at fault.

use featurespec::ncf::NcfLayout;
use featurespec::{ChunkType, FeatureSpec, LoadOptions, SpecError};
use std::path::Path;

const VALID: &str = "\
feature_spec:
  user: {dtype: torch.int64, cardinality: 138493}
  item: {dtype: torch.int64, cardinality: 26744}
  label: {dtype: torch.float32}
metadata: {test_samples_per_series: 101}
source_spec:
  train:
    - {type: torch_tensor, features: [user, item], files: [train_data_0.pt]}
    - {type: torch_tensor, features: [label], files: [train_data_1.pt]}
  test:
    - {type: torch_tensor, features: [user, item], files: [test_data_0.pt]}
    - {type: torch_tensor, features: [label], files: [test_data_1.pt]}
channel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}
";

/// Writes `VALID` with one text replacement to a temp `feature_spec.yaml` and loads it.
fn load_with(from: &str, to: &str, options: LoadOptions) -> (Result<FeatureSpec, SpecError>, tempfile::TempDir) {
    assert!(VALID.contains(from), "test bug: `{from}` is not in the template");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feature_spec.yaml");
    std::fs::write(&path, VALID.replacen(from, to, 1)).unwrap();
    (FeatureSpec::from_yaml_file_with(&path, options), dir)
}

fn error_with(from: &str, to: &str) -> (SpecError, String) {
    let (result, _dir) = load_with(from, to, LoadOptions::default());
    let err = result.expect_err("this spec must be refused");
    let message = err.to_string();
    assert!(message.contains("feature_spec.yaml"), "the message must name the file: {message}");
    (err, message)
}

fn assert_key(err: &SpecError, message: &str, key: &str) {
    assert_eq!(err.location().map(|l| l.key.as_str()), Some(key), "{message}");
    assert!(message.contains(&format!("`{key}`")), "the message must name `{key}`: {message}");
}

#[test]
fn the_template_itself_is_valid() {
    let (spec, _dir) = load_with("user_ch", "user_ch", LoadOptions::default());
    NcfLayout::from_spec(&spec.unwrap()).unwrap();
}

#[test]
fn chunk_naming_an_undeclared_feature() {
    let (err, msg) =
        error_with("features: [label], files: [train_data_1.pt]", "features: [rating], files: [train_data_1.pt]");
    assert!(matches!(&err, SpecError::UndeclaredFeature { feature, .. } if feature == "rating"), "{err:?}");
    assert_key(&err, &msg, "source_spec.train[1].features[0]");
}

#[test]
fn channel_naming_an_undeclared_feature() {
    let (err, msg) = error_with("item_ch: [item]", "item_ch: [movie]");
    assert!(matches!(&err, SpecError::UndeclaredFeature { feature, .. } if feature == "movie"), "{err:?}");
    assert_key(&err, &msg, "channel_spec.item_ch[0]");
}

#[test]
fn mixed_dtypes_in_one_chunk() {
    let (err, msg) = error_with("item: {dtype: torch.int64", "item: {dtype: torch.int32");
    assert!(matches!(err, SpecError::MixedDtypes { .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.train[0].features");
    assert!(msg.contains("user: torch.int64") && msg.contains("item: torch.int32"), "{msg}");
}

#[test]
fn chunk_with_no_files() {
    let (err, msg) = error_with("files: [test_data_1.pt]", "files: []");
    assert!(matches!(err, SpecError::EmptyChunk { what: "file", .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.test[1].files");
}

#[test]
fn chunk_with_no_features() {
    let (err, msg) = error_with("features: [label], files: [test_data_1.pt]", "features: [], files: [test_data_1.pt]");
    assert!(matches!(err, SpecError::EmptyChunk { what: "feature", .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.test[1].features");
}

#[test]
fn absolute_data_path_is_refused_unless_allowed() {
    let (err, msg) = error_with("files: [train_data_0.pt]", "files: [/etc/passwd]");
    assert!(matches!(err, SpecError::UnsafePath { reason: "is absolute", .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.train[0].files[0]");
    let (ok, _dir) =
        load_with("files: [train_data_0.pt]", "files: [/etc/passwd]", LoadOptions { allow_outside_paths: true });
    let spec = ok.unwrap();
    assert_eq!(
        spec.resolve_file_with("/etc/passwd", LoadOptions { allow_outside_paths: true }).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(spec.resolve_file("/etc/passwd").is_err());
}

#[test]
fn climbing_data_path_is_refused_unless_allowed() {
    let (err, msg) = error_with("files: [test_data_0.pt]", "files: [part/../../secret.pt]");
    assert!(matches!(err, SpecError::UnsafePath { .. }), "{err:?}");
    assert!(msg.contains("climbs out"), "{msg}");
    assert_key(&err, &msg, "source_spec.test[0].files[0]");
    let (ok, _dir) =
        load_with("files: [test_data_0.pt]", "files: [../shared/test.pt]", LoadOptions { allow_outside_paths: true });
    assert!(ok.is_ok());
}

#[test]
fn a_subfolder_path_is_fine() {
    let (ok, dir) = load_with("files: [test_data_0.pt]", "files: [parts/test_data_0.pt]", LoadOptions::default());
    let spec = ok.unwrap();
    assert_eq!(spec.resolve_file("parts/test_data_0.pt").unwrap(), dir.path().join("parts/test_data_0.pt"));
}

#[test]
fn unknown_chunk_type_is_kept_but_refused_where_used() {
    let (ok, _dir) = load_with(
        "{type: torch_tensor, features: [label], files: [test_data_1.pt]}",
        "{type: parquet, features: [label], files: [test_data_1.pt]}",
        LoadOptions::default(),
    );
    let spec = ok.unwrap();
    let chunk = &spec.mapping("test").unwrap()[1];
    assert_eq!(chunk.chunk_type, ChunkType::Other("parquet".into()));
    assert!(spec.to_yaml_string().unwrap().contains("type: parquet"));
    let err = chunk.require_type(&ChunkType::TorchTensor, &spec, "source_spec.test[1]").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SpecError::UnsupportedChunkType { .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.test[1].type");
    assert!(msg.contains("`parquet`") && msg.contains("torch_tensor"), "{msg}");
}

#[test]
fn bad_cardinality_and_dtype_values_are_parse_errors_with_a_line() {
    let (err, msg) = error_with("cardinality: 26744", "cardinality: many");
    assert!(matches!(err, SpecError::Parse { .. }), "{err:?}");
    assert!(msg.contains("cardinality must be a non-negative integer or `auto`") && msg.contains("line 3"), "{msg}");
    let (err, msg) = error_with("cardinality: 26744", "cardinality: -3");
    assert!(matches!(err, SpecError::Parse { .. }) && msg.contains("`-3`"), "{msg}");
    let (err, msg) = error_with("label: {dtype: torch.float32}", "label: {dtype: torch.float128}");
    assert!(matches!(err, SpecError::Parse { .. }), "{err:?}");
    assert!(msg.contains("unknown dtype `torch.float128`") && msg.contains("line 4"), "{msg}");
}

#[test]
fn unknown_top_level_section_and_broken_yaml_are_parse_errors() {
    let (err, msg) = error_with("metadata:", "meta_data:");
    assert!(matches!(err, SpecError::Parse { .. }) && msg.contains("meta_data"), "{msg}");
    let (err, msg) = error_with("channel_spec: {", "channel_spec: {{");
    assert!(matches!(err, SpecError::Parse { .. }) && msg.contains("line"), "{msg}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let err = FeatureSpec::from_yaml_file("/nonexistent/dir/feature_spec.yaml").unwrap_err();
    assert!(matches!(err, SpecError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/dir/feature_spec.yaml"), "{err}");
}

fn ncf_error_with(from: &str, to: &str) -> (SpecError, String) {
    let (result, _dir) = load_with(from, to, LoadOptions::default());
    let spec = result.expect("generic rules pass");
    let err = NcfLayout::from_spec(&spec).expect_err("the NCF rules must refuse this spec");
    let message = err.to_string();
    assert!(message.contains("feature_spec.yaml"), "the message must name the file: {message}");
    (err, message)
}

#[test]
fn ncf_needs_each_channel() {
    let (err, msg) = ncf_error_with("label_ch: [label]", "labels_ch: [label]");
    assert!(matches!(err, SpecError::Missing { .. }), "{err:?}");
    assert_key(&err, &msg, "channel_spec.label_ch");
}

#[test]
fn ncf_channels_take_exactly_one_feature() {
    let (err, msg) = ncf_error_with("user_ch: [user]", "user_ch: [user, item]");
    assert!(matches!(err, SpecError::ChannelArity { count: 2, .. }), "{err:?}");
    assert_key(&err, &msg, "channel_spec.user_ch");
    let (err, _) = ncf_error_with("item_ch: [item]", "item_ch: []");
    assert!(matches!(err, SpecError::ChannelArity { count: 0, .. }), "{err:?}");
}

#[test]
fn ncf_needs_train_and_test_mappings() {
    let (err, msg) = ncf_error_with("  test:\n", "  valid:\n");
    assert!(matches!(err, SpecError::Missing { .. }), "{err:?}");
    assert_key(&err, &msg, "source_spec.test");
}

#[test]
fn ncf_needs_user_and_item_cardinalities() {
    let (err, msg) = ncf_error_with("item: {dtype: torch.int64, cardinality: 26744}", "item: {dtype: torch.int64}");
    assert!(matches!(err, SpecError::Missing { .. }), "{err:?}");
    assert_key(&err, &msg, "feature_spec.item.cardinality");
}

#[test]
fn ncf_needs_a_positive_series_length() {
    for bad in ["0", "-1", "2.5", "many"] {
        let (err, msg) = ncf_error_with("test_samples_per_series: 101", &format!("test_samples_per_series: {bad}"));
        assert!(matches!(err, SpecError::NotPositive { .. }), "{bad}: {err:?}");
        assert_key(&err, &msg, "metadata.test_samples_per_series");
        assert!(msg.contains(bad), "{msg}");
    }
    let (err, msg) = ncf_error_with("metadata: {test_samples_per_series: 101}", "metadata: {other: 1}");
    assert!(matches!(err, SpecError::Missing { .. }), "{err:?}");
    assert_key(&err, &msg, "metadata.test_samples_per_series");
    let (ok, _dir) = load_with("test_samples_per_series: 101", "test_samples_per_series: 1", LoadOptions::default());
    assert_eq!(NcfLayout::from_spec(&ok.unwrap()).unwrap().test_samples_per_series, 1);
}

#[test]
fn ncf_rules_follow_the_channels_not_the_feature_names() {
    let renamed = VALID.replace("user", "user_2").replace("item", "item_2").replace("label", "label_2");
    let renamed =
        renamed.replace("user_2_ch", "user_ch").replace("item_2_ch", "item_ch").replace("label_2_ch", "label_ch");
    let spec = FeatureSpec::from_yaml_str(&renamed, "/data").unwrap();
    let layout = NcfLayout::from_spec(&spec).unwrap();
    assert_eq!((layout.user.as_str(), layout.item.as_str(), layout.label.as_str()), ("user_2", "item_2", "label_2"));
}

#[test]
fn save_is_atomic_and_leaves_no_temp_file() {
    let mut spec = FeatureSpec::from_yaml_str(VALID, "/data").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feature_spec.yaml");
    spec.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["feature_spec.yaml"]);
    assert_eq!(spec.base_dir(), dir.path());
    let err = spec.save(dir.path().join("missing/feature_spec.yaml")).unwrap_err();
    assert!(matches!(err, SpecError::Write { .. }) && err.to_string().contains("missing/feature_spec.yaml"), "{err}");
}

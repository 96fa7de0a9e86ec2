//! `template_differences` against the reference's own rule, `test_matches_template` of
//! `test_featurespec_correctness.py`, rewritten with the test venv's python and PyYAML (the
//! reference's code is not in this repository): for every variant of a real template, ours reports
//! a difference exactly when the reference's rule fails, and names the key that differs.

use featurespec::template_differences;
use std::path::Path;
use test_support::{python_eval, shared_dir};

/// The reference's rule: `FeatureSpec(**yaml.safe_load(f))` (exactly the four sections, or a
/// TypeError), then `yaml.dump` of the four sections compared as strings.
const REFERENCE_RULE: &str = r#"
import sys, yaml
SECTIONS = ['feature_spec', 'source_spec', 'channel_spec', 'metadata']
def dumped(path):
    d = yaml.safe_load(open(path))
    if not isinstance(d, dict) or set(d) != set(SECTIONS):
        raise TypeError('FeatureSpec.__init__ arguments')
    return yaml.dump({k: d[k] for k in SECTIONS})
try:
    print('pass' if dumped(sys.argv[1]) == dumped(sys.argv[2]) else 'fail')
except TypeError:
    print('fail')
"#;

/// (name, the variant's YAML, a text the difference must name; None when the rule passes).
fn variants(template: &str) -> Vec<(&'static str, String, Option<&'static str>)> {
    let replace = |from: &str, to: &str| {
        assert!(template.contains(from), "the template holds {from:?}");
        template.replacen(from, to, 1)
    };
    vec![
        ("identical", template.to_owned(), None),
        ("keys reordered, comments dropped", reordered(), None),
        (
            "our old id-map keys",
            replace("  test_samples_per_series: 101", "  test_samples_per_series: 101\n  user_id_map: user_ids.pt"),
            Some("`metadata.user_id_map` is in the spec but not in the template"),
        ),
        ("another cardinality", replace("cardinality: 138493", "cardinality: 138494"), Some("feature_spec.user.cardinality")),
        ("a cardinality as a string", replace("cardinality: 138493", "cardinality: '138493'"), Some("the string \"138493\"")),
        ("a cardinality as a float", replace("cardinality: 138493", "cardinality: 138493.0"), Some("the float")),
        ("features in another order", replace("        - user\n        - item", "        - item\n        - user"), Some("source_spec.train[0].features[0]")),
        ("an extra chunk key", replace("    - type: torch_tensor\n      features:\n        - label\n      files:\n        - train_data_1.pt", "    - type: torch_tensor\n      note: labels\n      features:\n        - label\n      files:\n        - train_data_1.pt"), Some("source_spec.train[1].note")),
        ("a missing dtype", replace("  label:\n    dtype: torch.float32\n", "  label: {}\n"), Some("feature_spec.label.dtype")),
        ("another file", replace("- test_data_1.pt", "- test_labels.pt"), Some("source_spec.test[1].files[0]")),
        ("an extra top-level key", format!("{template}\nextra: 1\n"), Some("top-level key `extra`")),
        ("no metadata section", replace("metadata:\n  test_samples_per_series: 101\n", ""), Some("no `metadata` section")),
        ("a chunk fewer", replace("    - type: torch_tensor\n      features:\n        - label\n      files:\n        - test_data_1.pt\n", ""), Some("source_spec.test")),
    ]
}

/// The template's content written in flow style with every mapping's keys in another order.
fn reordered() -> String {
    "metadata: {test_samples_per_series: 101}\n\
     channel_spec: {label_ch: [label], item_ch: [item], user_ch: [user]}\n\
     source_spec:\n  test:\n  - {files: [test_data_0.pt], features: [user, item], type: torch_tensor}\n  - {files: [test_data_1.pt], features: [label], type: torch_tensor}\n\
     \x20 train:\n  - {files: [train_data_0.pt], features: [user, item], type: torch_tensor}\n  - {files: [train_data_1.pt], features: [label], type: torch_tensor}\n\
     feature_spec:\n  label: {dtype: torch.float32}\n  item: {cardinality: 26744, dtype: torch.int64}\n  user: {cardinality: 138493, dtype: torch.int64}\n"
        .to_owned()
}

#[test]
fn rejects_exactly_what_the_reference_rule_rejects_and_names_the_key() {
    let template_path = shared_dir().join("data/reference-examples/ml-20m/feature_spec_template.yaml");
    let template = std::fs::read_to_string(&template_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml, named) in variants(&template) {
        let path = dir.path().join("feature_spec.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let reference = python_eval(REFERENCE_RULE, &[path.to_str().unwrap(), template_path.to_str().unwrap()]);
        let ours = template_differences(&path, &template_path).unwrap();
        assert_eq!(ours.is_empty(), reference.trim() == "pass", "{name}: reference says {reference}, ours {ours:?}");
        assert_eq!(ours.is_empty(), named.is_none(), "{name}: {ours:?}");
        if let Some(text) = named {
            assert!(ours.iter().any(|d| d.contains(text)), "{name}: {ours:?} should name {text}");
        }
        // Symmetric: the template checked against the variant fails or passes alike.
        assert_eq!(template_differences(&template_path, &path).unwrap().is_empty(), ours.is_empty(), "{name}");
    }
}

#[test]
fn a_file_that_is_not_yaml_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "feature_spec: [unclosed\n").unwrap();
    let err = template_differences(&bad, Path::new(&bad)).unwrap_err().to_string();
    assert!(err.contains("bad.yaml"), "{err}");
}

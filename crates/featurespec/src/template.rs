//! The reference's template comparison (`test_matches_template` in
//! `test_featurespec_correctness.py`), rule for rule.
//!
//! The reference loads both YAML files into its `FeatureSpec` class, whose constructor takes exactly
//! the four sections as keyword arguments (so a file with another top-level key, or without one of
//! the four, fails there), and compares `yaml.dump` of the four sections: mappings compare
//! regardless of key order (the dump sorts keys), everything else exactly: every key at every depth,
//! list order, and the YAML type of each scalar (`1` is not `1.0`, not `"1"`).
//!
//! Scalars are read by serde_yaml (YAML 1.2), the reference by PyYAML (YAML 1.1). They disagree only
//! on spellings a feature spec has no use for, in both directions: `yes`/`on` as booleans, `010` as
//! octal, `1e3` as a string, dates, anchors and merge keys (`yaml.dump` writes anchors out). Specs
//! written by `ncf-prepare`, `ncf-transcode` or the reference use none of them.

use crate::SpecError;
use serde_yaml::Value;
use std::path::Path;

/// The four sections the reference's `FeatureSpec` is built from, and nothing else.
const SECTIONS: [&str; 4] = ["feature_spec", "source_spec", "channel_spec", "metadata"];

/// Every difference between the spec at `spec_path` and the template at `template_path` that makes
/// the reference's `test_matches_template` fail, each naming the key path (empty when they match).
/// A file that is not YAML is an error.
pub fn template_differences(spec_path: &Path, template_path: &Path) -> Result<Vec<String>, SpecError> {
    let spec = read(spec_path)?;
    let template = read(template_path)?;
    let mut out = Vec::new();
    for (value, role) in [(&spec, "the spec"), (&template, "the template")] {
        match value {
            Value::Mapping(m) => {
                for key in m.keys() {
                    if !SECTIONS.iter().any(|s| key.as_str() == Some(s)) {
                        out.push(format!(
                            "{role} has top-level key `{}`, which the reference's FeatureSpec does not take",
                            show(key)
                        ));
                    }
                }
                for section in SECTIONS {
                    if !m.contains_key(section) {
                        out.push(format!("{role} has no `{section}` section"));
                    }
                }
            }
            _ => out.push(format!("{role} is not a mapping of the four sections")),
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    for section in SECTIONS {
        diff(section, &spec[section], &template[section], &mut out);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Value, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_owned(), source })?;
    serde_yaml::from_str(&text).map_err(|e| SpecError::Parse { file: Some(path.to_owned()), message: e.to_string() })
}

/// Adds to `out` where `ours` and `theirs` differ under `at`.
fn diff(at: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => diff(&format!("{at}.{}", show(key)), value, other, out),
                    None => out.push(format!("`{at}.{}` is in the spec but not in the template", show(key))),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("`{at}.{}` is in the template but not in the spec", show(key)));
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{at}[{i}]"), x, y, out);
            }
        }
        (Value::Tagged(a), Value::Tagged(b)) if a.tag == b.tag => diff(at, &a.value, &b.value, out),
        (a, b) if a == b => {}
        (a, b) => out.push(format!("`{at}`: the spec has {}, the template {}", describe(a), describe(b))),
    }
}

fn show(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => describe(other),
    }
}

/// A value as a person reads it, with its YAML type where that is what differs.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("the float {n}"),
        Value::Number(n) => format!("the integer {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(s) => format!("a list of {}", s.len()),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

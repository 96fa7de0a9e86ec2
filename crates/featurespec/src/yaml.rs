//! Writing a spec the way PyYAML's `yaml.dump` does, so our files and the reference's agree.

use crate::FeatureSpec;
use serde_yaml::{Mapping, Value};

pub(crate) fn to_pyyaml_style(spec: &FeatureSpec) -> Result<String, String> {
    let mut value = serde_yaml::to_value(spec).map_err(|e| e.to_string())?;
    // A feature with no metadata was written `label:` (null) in the file; write it back that way.
    if let Some(Value::Mapping(features)) = value.get_mut("feature_spec") {
        for (_, meta) in features.iter_mut() {
            if matches!(meta, Value::Mapping(m) if m.is_empty()) {
                *meta = Value::Null;
            }
        }
    }
    sort_keys(&mut value);
    serde_yaml::to_string(&value).map_err(|e| e.to_string())
}

/// `yaml.dump` sorts mapping keys (its default `sort_keys=True`) at every level.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            let mut entries: Vec<(Value, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by_key(|(k, _)| key_text(k));
            let mut sorted = Mapping::with_capacity(entries.len());
            for (k, mut v) in entries {
                sort_keys(&mut v);
                sorted.insert(k, v);
            }
            *map = sorted;
        }
        Value::Sequence(items) => items.iter_mut().for_each(sort_keys),
        Value::Tagged(tagged) => sort_keys(&mut tagged.value),
        _ => {}
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    }
}

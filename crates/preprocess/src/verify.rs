//! The reference's dataset correctness check (`test_featurespec_correctness.py`), without libtorch.

use crate::{PrepareError, ITEM_ID_MAP_KEY, USER_ID_MAP_KEY};
use featurespec::ncf::NcfLayout;
use featurespec::{FeatureSpec, LoadOptions};
use std::path::Path;

/// What [`verify`] found in a dataset that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows of each mapping, in spec order.
    pub rows: Vec<(String, usize)>,
    pub users: u64,
    pub items: u64,
    pub test_samples_per_series: u64,
}

/// Checks the dataset in `dir` as the reference's correctness test does: the spec follows the
/// generic and NCF rules; every file's dtype is the declared one and its shape fits its chunk; ids
/// are below their cardinality; chunks of a mapping have equal row counts; the test rows divide
/// into series of `test_samples_per_series`; and, given a template, the spec equals it after a
/// YAML round trip (ignoring our id-map metadata keys, which the reference does not write).
pub fn verify(dir: &Path, template: Option<&Path>) -> Result<VerifyReport, PrepareError> {
    let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml"))?;
    let layout = NcfLayout::from_spec(&spec)?;
    let (users, items) = layout.cardinalities(&spec)?;
    let mut rows = Vec::new();
    for mapping in spec.source_spec.keys() {
        rows.push((mapping.clone(), spec_dataset::verify_mapping(&spec, mapping, LoadOptions::default())?));
    }
    let series = layout.test_samples_per_series;
    let test_rows = rows.iter().find(|(m, _)| m == "test").map_or(0, |(_, n)| *n);
    if test_rows as u64 % series != 0 {
        return Err(PrepareError::Data(format!(
            "{}: the test mapping has {test_rows} rows, not a multiple of test_samples_per_series = {series}",
            dir.display()
        )));
    }
    if let Some(template) = template {
        let mut ours = spec.clone();
        for key in [USER_ID_MAP_KEY, ITEM_ID_MAP_KEY] {
            ours.metadata.remove(key);
        }
        // Round-trip both through our YAML writer, as the reference compares dumped dicts.
        let reparse = |s: &FeatureSpec| FeatureSpec::from_yaml_str(&s.to_yaml_string()?, "");
        let wanted = reparse(&FeatureSpec::from_yaml_file(template)?)?;
        let ours = reparse(&ours)?;
        if ours != wanted {
            let differing: Vec<&str> = [
                ("feature_spec", ours.feature_spec != wanted.feature_spec),
                ("source_spec", ours.source_spec != wanted.source_spec),
                ("channel_spec", ours.channel_spec != wanted.channel_spec),
                ("metadata", ours.metadata != wanted.metadata),
            ]
            .into_iter()
            .filter_map(|(name, differs)| differs.then_some(name))
            .collect();
            return Err(PrepareError::Input {
                path: template.to_owned(),
                message: format!("the dataset's spec differs from this template in: {}", differing.join(", ")),
            });
        }
    }
    Ok(VerifyReport { rows, users, items, test_samples_per_series: series })
}

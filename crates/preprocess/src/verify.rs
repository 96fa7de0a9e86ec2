//! The reference's dataset correctness check (`test_featurespec_correctness.py`), without libtorch.

use crate::PrepareError;
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
/// into series of `test_samples_per_series`; and, given a template, the spec matches it exactly as
/// the reference's `test_matches_template` requires ([`featurespec::template_differences`]: every
/// key, list order and scalar type), so a dataset this accepts passes the reference's script.
pub fn verify(dir: &Path, template: Option<&Path>) -> Result<VerifyReport, PrepareError> {
    let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml"))?;
    let layout = NcfLayout::from_spec(&spec)?;
    let (users, items) = layout.cardinalities(&spec)?;
    let mut rows = Vec::new();
    for mapping in spec.source_spec.keys() {
        rows.push((mapping.clone(), spec_dataset::verify_mapping(&spec, mapping, LoadOptions::default())?));
    }
    let series = layout.test_samples_per_series;
    // A validation mapping (ncf-prepare --validation) is laid out as test: lists of the same length.
    for mapping in ["test", featurespec::ncf::VALIDATION_MAPPING] {
        let Some(&(_, n)) = rows.iter().find(|(m, _)| m == mapping) else { continue };
        if n as u64 % series != 0 {
            return Err(PrepareError::Data(format!(
                "{}: the {mapping} mapping has {n} rows, not a multiple of test_samples_per_series = {series}",
                dir.display()
            )));
        }
    }
    if let Some(template) = template {
        let differences = featurespec::template_differences(&dir.join("feature_spec.yaml"), template)?;
        if !differences.is_empty() {
            return Err(PrepareError::Input {
                path: template.to_owned(),
                message: format!(
                    "the dataset's feature_spec.yaml does not match this template, so the reference's test_featurespec_correctness.py fails it too:\n  {}",
                    differences.join("\n  ")
                ),
            });
        }
    }
    Ok(VerifyReport { rows, users, items, test_samples_per_series: series })
}

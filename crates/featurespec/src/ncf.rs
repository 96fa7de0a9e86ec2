//! The rules a spec must follow to be a NeuMF (NCF) dataset, kept apart from the generic crate.
//!
//! An NCF dataset has channels `user_ch`, `item_ch` and `label_ch` with one feature each (whatever
//! the features are called), mappings `train` and `test`, a cardinality for the user and item
//! features, and `metadata.test_samples_per_series`: the length of every test list (one positive and
//! its negatives, consecutive rows of `test`).

use crate::{Cardinality, FeatureSpec, SpecError};

pub const USER_CHANNEL: &str = "user_ch";
pub const ITEM_CHANNEL: &str = "item_ch";
pub const LABEL_CHANNEL: &str = "label_ch";
pub const TRAIN_MAPPING: &str = "train";
pub const TEST_MAPPING: &str = "test";
/// An optional mapping laid out as `test` (lists of `test_samples_per_series` rows, the positive
/// first), for model selection: `ncf-prepare --validation` writes it.
pub const VALIDATION_MAPPING: &str = "validation";
pub const TEST_SAMPLES_PER_SERIES: &str = "test_samples_per_series";

const RULE: &str = "the NCF dataset rules";

/// The NCF view of a validated spec: which features play which part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcfLayout {
    pub user: String,
    pub item: String,
    pub label: String,
    pub user_cardinality: Cardinality,
    pub item_cardinality: Cardinality,
    /// Rows per test list (positive + negatives), >= 1; validation lists have as many.
    pub test_samples_per_series: u64,
    /// Whether the spec has a `validation` mapping.
    pub has_validation: bool,
}

impl NcfLayout {
    /// Applies the NCF rules to `spec`. `auto` cardinalities are accepted here (a transcoder input
    /// has them); [`NcfLayout::cardinalities`] requires numbers.
    pub fn from_spec(spec: &FeatureSpec) -> Result<NcfLayout, SpecError> {
        let user = single_feature(spec, USER_CHANNEL)?;
        let item = single_feature(spec, ITEM_CHANNEL)?;
        let label = single_feature(spec, LABEL_CHANNEL)?;
        for mapping in [TRAIN_MAPPING, TEST_MAPPING] {
            if !spec.source_spec.contains_key(mapping) {
                return Err(SpecError::Missing { at: spec.at(format!("source_spec.{mapping}")), rule: RULE });
            }
        }
        let cardinality = |feature: &str| {
            spec.feature_spec.get(feature).and_then(|m| m.cardinality).ok_or_else(|| SpecError::Missing {
                at: spec.at(format!("feature_spec.{feature}.cardinality")),
                rule: RULE,
            })
        };
        let user_cardinality = cardinality(&user)?;
        let item_cardinality = cardinality(&item)?;
        let test_samples_per_series = test_samples_per_series(spec)?;
        let has_validation = spec.source_spec.contains_key(VALIDATION_MAPPING);
        Ok(NcfLayout { user, item, label, user_cardinality, item_cardinality, test_samples_per_series, has_validation })
    }

    /// The user and item cardinalities as numbers; `auto` is an error (training needs the embedding
    /// sizes; `ncf-transcode` turns `auto` into numbers).
    pub fn cardinalities(&self, spec: &FeatureSpec) -> Result<(u64, u64), SpecError> {
        let known = |feature: &str, c: Cardinality| {
            c.known().ok_or_else(|| SpecError::Invalid {
                at: spec.at(format!("feature_spec.{feature}.cardinality")),
                message: "is `auto`; training needs a number (run ncf-transcode to compute it)".to_owned(),
            })
        };
        Ok((known(&self.user, self.user_cardinality)?, known(&self.item, self.item_cardinality)?))
    }
}

fn single_feature(spec: &FeatureSpec, channel: &str) -> Result<String, SpecError> {
    let key = format!("channel_spec.{channel}");
    let features =
        spec.channel_spec.get(channel).ok_or_else(|| SpecError::Missing { at: spec.at(&key), rule: RULE })?;
    match features.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(SpecError::ChannelArity { at: spec.at(key), count: other.len() }),
    }
}

fn test_samples_per_series(spec: &FeatureSpec) -> Result<u64, SpecError> {
    let key = format!("metadata.{TEST_SAMPLES_PER_SERIES}");
    let value = spec
        .metadata
        .get(TEST_SAMPLES_PER_SERIES)
        .ok_or_else(|| SpecError::Missing { at: spec.at(&key), rule: RULE })?;
    match value.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(SpecError::NotPositive {
            at: spec.at(key),
            found: serde_yaml::to_string(value).unwrap_or_default().trim().to_owned(),
        }),
    }
}

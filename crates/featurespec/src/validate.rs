//! The generic, model-agnostic rules every spec must follow.

use crate::error::SpecError;
use crate::spec::unsafe_path_reason;
use crate::{FeatureSpec, LoadOptions};

impl FeatureSpec {
    /// Checks the generic rules: every feature a chunk or channel names is declared; a chunk has at
    /// least one feature and one file; the declared dtypes of one chunk's features agree; data file
    /// paths stay inside the spec's folder (unless `options` allows otherwise).
    ///
    /// Loading runs this already; call it again after editing a spec in code.
    pub fn validate(&self, options: LoadOptions) -> Result<(), SpecError> {
        for (mapping, chunks) in &self.source_spec {
            for (i, chunk) in chunks.iter().enumerate() {
                let key = format!("source_spec.{mapping}[{i}]");
                if chunk.features.is_empty() {
                    return Err(SpecError::EmptyChunk { at: self.at(format!("{key}.features")), what: "feature" });
                }
                if chunk.files.is_empty() {
                    return Err(SpecError::EmptyChunk { at: self.at(format!("{key}.files")), what: "file" });
                }
                for (j, feature) in chunk.features.iter().enumerate() {
                    self.require_declared(feature, format!("{key}.features[{j}]"))?;
                }
                self.check_one_dtype(&chunk.features, &key)?;
                for (j, file) in chunk.files.iter().enumerate() {
                    if let Some(reason) = unsafe_path_reason(file, options) {
                        return Err(SpecError::UnsafePath {
                            at: self.at(format!("{key}.files[{j}]")),
                            path: file.clone(),
                            reason,
                        });
                    }
                }
            }
        }
        for (channel, features) in &self.channel_spec {
            for (j, feature) in features.iter().enumerate() {
                self.require_declared(feature, format!("channel_spec.{channel}[{j}]"))?;
            }
        }
        Ok(())
    }

    fn require_declared(&self, feature: &str, key: String) -> Result<(), SpecError> {
        if self.feature_spec.contains_key(feature) {
            Ok(())
        } else {
            Err(SpecError::UndeclaredFeature { at: self.at(key), feature: feature.to_owned() })
        }
    }

    fn check_one_dtype(&self, features: &[String], key: &str) -> Result<(), SpecError> {
        let declared: Vec<(&str, crate::Dtype)> = features
            .iter()
            .filter_map(|f| self.feature_spec.get(f).and_then(|m| m.dtype).map(|d| (f.as_str(), d)))
            .collect();
        if declared.windows(2).all(|w| w[0].1 == w[1].1) {
            return Ok(());
        }
        let found = declared.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join(", ");
        Err(SpecError::MixedDtypes { at: self.at(format!("{key}.features")), found })
    }
}

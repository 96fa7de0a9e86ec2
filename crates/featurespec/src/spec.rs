//! The spec's data model and its YAML loading and saving.

use crate::error::{Location, SpecError};
use crate::Dtype;
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// A dataset feature specification (`feature_spec.yaml`).
///
/// Maps keep the order of the file. Equality compares the four YAML sections only, not where the
/// spec was loaded from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Feature name -> its metadata (dtype, cardinality, anything else).
    #[serde(default, deserialize_with = "features_allowing_null")]
    pub feature_spec: IndexMap<String, FeatureMeta>,
    /// Mapping name (`train`, `test`, ...) -> the chunks whose columns, side by side, form its rows.
    #[serde(default)]
    pub source_spec: IndexMap<String, Vec<Chunk>>,
    /// Channel name (model-specific, e.g. `user_ch`) -> the features it takes.
    #[serde(default)]
    pub channel_spec: IndexMap<String, Vec<String>>,
    /// Free-form metadata (NCF reads `test_samples_per_series`).
    #[serde(default)]
    pub metadata: serde_yaml::Mapping,
    /// The folder data file paths are relative to.
    #[serde(skip)]
    base_dir: PathBuf,
    /// The YAML file this spec was loaded from or last saved to, for error messages.
    #[serde(skip)]
    file: Option<PathBuf>,
}

impl PartialEq for FeatureSpec {
    fn eq(&self, other: &Self) -> bool {
        self.feature_spec == other.feature_spec
            && self.source_spec == other.source_spec
            && self.channel_spec == other.channel_spec
            && self.metadata == other.metadata
    }
}

/// What the spec says about one feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardinality: Option<Cardinality>,
    /// Any other keys, kept as they are.
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_yaml::Value>,
}

/// The number of distinct values of a categorical feature (ids are `0..n`), or `auto` in a
/// transcoder input: "compute it from the data".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    Auto,
    Known(u64),
}

impl Cardinality {
    /// The number, unless it is `auto`.
    pub fn known(self) -> Option<u64> {
        match self {
            Cardinality::Auto => None,
            Cardinality::Known(n) => Some(n),
        }
    }
}

impl Serialize for Cardinality {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cardinality::Auto => s.serialize_str("auto"),
            Cardinality::Known(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Cardinality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(d)?;
        match &value {
            serde_yaml::Value::String(s) if s == "auto" => Ok(Cardinality::Auto),
            serde_yaml::Value::Number(n) if n.as_u64().is_some() => {
                Ok(Cardinality::Known(n.as_u64().unwrap_or_default()))
            }
            other => Err(serde::de::Error::custom(format!(
                "cardinality must be a non-negative integer or `auto`, found `{}`",
                serde_yaml::to_string(other).unwrap_or_default().trim()
            ))),
        }
    }
}

/// How a chunk's files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkType {
    /// PyTorch `torch.save` files holding one 2-D tensor (rows x features).
    TorchTensor,
    /// Headerless CSV files, one column per feature.
    Csv,
    /// Any other type: kept so the spec round-trips; a consumer refuses it where it matters
    /// ([`Chunk::require_type`]).
    Other(String),
}

impl ChunkType {
    pub fn name(&self) -> &str {
        match self {
            ChunkType::TorchTensor => "torch_tensor",
            ChunkType::Csv => "csv",
            ChunkType::Other(s) => s,
        }
    }
}

impl Serialize for ChunkType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ChunkType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "torch_tensor" => ChunkType::TorchTensor,
            "csv" => ChunkType::Csv,
            other => ChunkType::Other(other.to_owned()),
        })
    }
}

/// A group of features stored together: `files` hold consecutive row ranges, `features` name the
/// columns in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    #[serde(rename = "type")]
    pub chunk_type: ChunkType,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
}

/// Options for loading and validating a spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept data file paths that are absolute or climb out of the spec's folder with `..`.
    /// Off by default: a dataset folder should be self-contained, and a spec from elsewhere should
    /// not make a tool read or overwrite arbitrary files.
    pub allow_outside_paths: bool,
}

impl FeatureSpec {
    /// An empty spec whose data files live in `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> FeatureSpec {
        FeatureSpec { base_dir: base_dir.into(), ..FeatureSpec::default() }
    }

    /// Loads and validates `path`, with default [`LoadOptions`].
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<FeatureSpec, SpecError> {
        Self::from_yaml_file_with(path, LoadOptions::default())
    }

    /// Loads and validates `path`; data file paths resolve against the file's folder.
    pub fn from_yaml_file_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<FeatureSpec, SpecError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_owned(), source })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, base_dir, Some(path.to_owned()), options)
    }

    /// Parses and validates YAML text; data file paths resolve against `base_dir`.
    pub fn from_yaml_str(text: &str, base_dir: impl Into<PathBuf>) -> Result<FeatureSpec, SpecError> {
        Self::parse(text, base_dir.into(), None, LoadOptions::default())
    }

    /// [`FeatureSpec::from_yaml_str`] with options.
    pub fn from_yaml_str_with(
        text: &str,
        base_dir: impl Into<PathBuf>,
        options: LoadOptions,
    ) -> Result<FeatureSpec, SpecError> {
        Self::parse(text, base_dir.into(), None, options)
    }

    fn parse(
        text: &str,
        base_dir: PathBuf,
        file: Option<PathBuf>,
        options: LoadOptions,
    ) -> Result<FeatureSpec, SpecError> {
        // An empty document is YAML null; report it as the empty spec it is rather than a type error.
        let parsed: Option<FeatureSpec> =
            serde_yaml::from_str(text).map_err(|e| SpecError::Parse { file: file.clone(), message: e.to_string() })?;
        let mut spec = parsed
            .ok_or_else(|| SpecError::Parse { file: file.clone(), message: "the document is empty".to_owned() })?;
        spec.base_dir = base_dir;
        spec.file = file;
        spec.validate(options)?;
        Ok(spec)
    }

    /// The spec as YAML, written the way PyYAML's `yaml.dump` writes it (keys sorted at every level,
    /// block style), so a spec we save matches the reference's file for the same content.
    pub fn to_yaml_string(&self) -> Result<String, SpecError> {
        crate::yaml::to_pyyaml_style(self).map_err(|message| SpecError::Parse { file: self.file.clone(), message })
    }

    /// Writes the spec to `path` atomically (a temporary file in the same folder, then a rename) and
    /// makes `path`'s folder the spec's base folder. Like the reference (`print(yaml.dump(...))`),
    /// the file ends with an empty line.
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<(), SpecError> {
        let path = path.as_ref();
        let mut text = self.to_yaml_string()?;
        text.push('\n');
        let write_err = |source| SpecError::Write { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        fs::write(&tmp, text).map_err(write_err)?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        self.base_dir = dir;
        self.file = Some(path.to_owned());
        Ok(())
    }

    /// The folder data file paths are relative to.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Sets the folder data file paths are relative to.
    pub fn set_base_dir(&mut self, dir: impl Into<PathBuf>) {
        self.base_dir = dir.into();
    }

    /// The YAML file the spec came from (or was last saved to), if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// A [`Location`] in this spec, for error messages.
    pub fn at(&self, key: impl Into<String>) -> Location {
        Location { file: self.file.clone(), key: key.into() }
    }

    /// A declared feature's metadata, or [`SpecError::Missing`].
    pub fn feature(&self, name: &str) -> Result<&FeatureMeta, SpecError> {
        self.feature_spec.get(name).ok_or_else(|| SpecError::Missing {
            at: self.at(format!("feature_spec.{name}")),
            rule: "this dataset's use",
        })
    }

    /// A mapping's chunks, or [`SpecError::Missing`].
    pub fn mapping(&self, name: &str) -> Result<&[Chunk], SpecError> {
        self.source_spec.get(name).map(Vec::as_slice).ok_or_else(|| SpecError::Missing {
            at: self.at(format!("source_spec.{name}")),
            rule: "this dataset's use",
        })
    }

    /// Resolves a data file path of this spec against [`FeatureSpec::base_dir`], refusing absolute
    /// paths and `..` (see [`LoadOptions::allow_outside_paths`]).
    pub fn resolve_file(&self, file: &str) -> Result<PathBuf, SpecError> {
        self.resolve_file_with(file, LoadOptions::default())
    }

    /// [`FeatureSpec::resolve_file`] with options.
    pub fn resolve_file_with(&self, file: &str, options: LoadOptions) -> Result<PathBuf, SpecError> {
        if let Some(reason) = unsafe_path_reason(file, options) {
            return Err(SpecError::UnsafePath { at: self.at("source_spec"), path: file.to_owned(), reason });
        }
        Ok(self.base_dir.join(file))
    }
}

/// Why a data file path is refused, if it is.
pub(crate) fn unsafe_path_reason(file: &str, options: LoadOptions) -> Option<&'static str> {
    if file.trim().is_empty() {
        return Some("is empty");
    }
    if options.allow_outside_paths {
        return None;
    }
    let path = Path::new(file);
    if path.is_absolute() || path.has_root() {
        return Some("is absolute");
    }
    if path.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_))) {
        return Some("climbs out of the dataset folder (`..`)");
    }
    None
}

impl Chunk {
    /// Errors with [`SpecError::UnsupportedChunkType`] unless the chunk has type `expected`.
    /// `key` locates the chunk (e.g. `source_spec.train[0]`).
    pub fn require_type(&self, expected: &ChunkType, spec: &FeatureSpec, key: &str) -> Result<(), SpecError> {
        if &self.chunk_type == expected {
            return Ok(());
        }
        Err(SpecError::UnsupportedChunkType {
            at: spec.at(format!("{key}.type")),
            chunk_type: self.chunk_type.name().to_owned(),
            expected: match expected {
                ChunkType::TorchTensor => "torch_tensor",
                ChunkType::Csv => "csv",
                ChunkType::Other(_) => "another type",
            },
        })
    }
}

/// `label:` with nothing after it is YAML null: read it as a feature with no metadata.
fn features_allowing_null<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, FeatureMeta>, D::Error> {
    let raw: Option<IndexMap<String, Option<FeatureMeta>>> = Option::deserialize(d)?;
    Ok(raw.unwrap_or_default().into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

//! A FeatureSpec dataset loaded as tensors: every `torch_tensor` chunk of a mapping read into named,
//! one-dimensional feature tensors on the device the caller asks for, with the checks the reference's
//! `test_featurespec_correctness.py` makes.
//!
//! **What it is for.** Turning `feature_spec.yaml` + `.pt` files (from the reference's
//! preprocessing, `ncf-prepare` or `ncf-transcode`) into tensors a trainer can index. Files of one
//! chunk are consecutive rows; a chunk's columns are its features in order; chunks of one mapping sit
//! side by side. Checked, with errors naming the file, the feature and the rule: each file's dtype
//! against the spec, its shape against the chunk, equal row counts across a mapping's chunks, and
//! integer ids in `0..cardinality`.
//!
//! **What it is not.** No batching, shuffling or negative sampling (`ncf-train` does that), and no
//! CSV (`transcode`).
//!
//! ```no_run
//! use featurespec::FeatureSpec;
//! let spec = FeatureSpec::from_yaml_file("data/ml-20m/feature_spec.yaml")?;
//! let train = spec_dataset::load_mapping(&spec, "train", tch::Device::Cpu)?;
//! println!("{} train rows, users: {:?}", train.rows, train.features["user"].size());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use featurespec::{ChunkType, Dtype, FeatureSpec, LoadOptions, SpecError};
use indexmap::IndexMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use torchfile::{TorchFile, TorchFileError};

/// The tensors of one mapping (`train`, `test`, ...).
#[derive(Debug)]
pub struct MappingTensors {
    pub mapping: String,
    /// Rows, equal for every feature.
    pub rows: usize,
    /// Feature name -> 1-D tensor of `rows` values, in chunk order. Columns of one file are views
    /// into the loaded 2-D tensor (no copy).
    pub features: IndexMap<String, Tensor>,
}

/// What can be wrong with a dataset on disk.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error(transparent)]
    File(#[from] TorchFileError),

    #[error("{}: holds {found} but feature_spec declares {declared} for {features} (key `{key}`)", file.display())]
    Dtype { file: PathBuf, key: String, features: String, declared: Dtype, found: Dtype },

    #[error("{}: tensor of shape {shape:?} does not fit chunk `{key}` with {columns} feature(s) [{features}]; expected [rows, {columns}]", file.display())]
    Shape { file: PathBuf, key: String, shape: Vec<usize>, columns: usize, features: String },

    #[error("mapping `{mapping}`: chunk {chunk} ({features}) has {rows} rows but chunk 0 has {first}; chunks of one mapping must have equal row counts")]
    RowCount { mapping: String, chunk: usize, features: String, rows: usize, first: usize },

    #[error("{}: feature `{feature}` has id {id} at row {row}, outside 0..{cardinality} (feature_spec.{feature}.cardinality)", file.display())]
    IdOutOfRange { file: PathBuf, feature: String, id: i64, row: usize, cardinality: u64 },
}

/// Loads every chunk of `mapping` onto `device`, with default [`LoadOptions`].
pub fn load_mapping(spec: &FeatureSpec, mapping: &str, device: Device) -> Result<MappingTensors, DatasetError> {
    load_mapping_with(spec, mapping, device, LoadOptions::default())
}

/// Loads every chunk of `mapping` onto `device`.
pub fn load_mapping_with(
    spec: &FeatureSpec,
    mapping: &str,
    device: Device,
    options: LoadOptions,
) -> Result<MappingTensors, DatasetError> {
    let chunks = spec.mapping(mapping)?;
    let mut features = IndexMap::new();
    let mut rows: Option<usize> = None;
    for (c, chunk) in chunks.iter().enumerate() {
        let key = format!("source_spec.{mapping}[{c}]");
        chunk.require_type(&ChunkType::TorchTensor, spec, &key)?;
        let mut parts: Vec<Tensor> = Vec::with_capacity(chunk.files.len());
        for file in &chunk.files {
            let path = spec.resolve_file_with(file, options)?;
            parts.push(load_chunk_file(spec, chunk, &key, path, device)?);
        }
        let table = if parts.len() == 1 { parts.pop().expect("one part") } else { Tensor::cat(&parts, 0) };
        let n = table.size()[0] as usize;
        match rows {
            None => rows = Some(n),
            Some(first) if first != n => {
                return Err(DatasetError::RowCount {
                    mapping: mapping.to_owned(),
                    chunk: c,
                    features: chunk.features.join(", "),
                    rows: n,
                    first,
                })
            }
            Some(_) => {}
        }
        for (i, name) in chunk.features.iter().enumerate() {
            features.insert(name.clone(), table.select(1, i as i64));
        }
    }
    Ok(MappingTensors { mapping: mapping.to_owned(), rows: rows.unwrap_or(0), features })
}

/// One file of a chunk as a 2-D `[rows, features]` tensor on `device`, checked.
fn load_chunk_file(
    spec: &FeatureSpec,
    chunk: &featurespec::Chunk,
    key: &str,
    path: PathBuf,
    device: Device,
) -> Result<Tensor, DatasetError> {
    let mut file = TorchFile::open(&path)?;
    let t = file.tensor()?;
    let declared = chunk.features.iter().find_map(|f| spec.feature_spec.get(f).and_then(|m| m.dtype));
    if let Some(declared) = declared {
        if declared != t.dtype {
            return Err(DatasetError::Dtype {
                file: path,
                key: format!("{key}.features"),
                features: chunk.features.join(", "),
                declared,
                found: t.dtype,
            });
        }
    }
    let columns = chunk.features.len();
    let fits = match t.shape.as_slice() {
        [_, c] => *c == columns,
        [_] => columns == 1,
        _ => false,
    };
    if !fits {
        return Err(DatasetError::Shape {
            file: path,
            key: key.to_owned(),
            shape: t.shape.clone(),
            columns,
            features: chunk.features.join(", "),
        });
    }
    let mut tensor = file.load_tch(&t, device)?;
    if tensor.dim() == 1 {
        tensor = tensor.unsqueeze(1);
    }
    let limits: Vec<(usize, &String, u64)> = chunk
        .features
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let cardinality = spec.feature_spec.get(name).and_then(|m| m.cardinality).and_then(|c| c.known())?;
            t.dtype.is_integer().then_some((i, name, cardinality))
        })
        .collect();
    if !limits.is_empty() && tensor.numel() > 0 {
        // One pass over the contiguous [rows, columns] table gives every column's min and max.
        let (min, max) = tensor.aminmax(0, false);
        let (min, max) =
            (Vec::<i64>::try_from(min.to_kind(Kind::Int64)), Vec::<i64>::try_from(max.to_kind(Kind::Int64)));
        let (min, max) = (min.unwrap_or_default(), max.unwrap_or_default());
        for (i, name, cardinality) in limits {
            let in_range = min.get(i).is_some_and(|&m| m >= 0) && max.get(i).is_some_and(|&m| (m as u64) < cardinality);
            if !in_range {
                return Err(first_bad_id(&tensor.select(1, i as i64), name, cardinality, &path));
            }
        }
    }
    Ok(tensor)
}

/// The first row of `column` whose id is outside `0..cardinality` (the caller knows there is one).
fn first_bad_id(column: &Tensor, feature: &str, cardinality: u64, path: &std::path::Path) -> DatasetError {
    let column = column.to_kind(Kind::Int64);
    let bad = column.lt(0).logical_or(&column.ge(cardinality.min(i64::MAX as u64) as i64));
    let row = bad.to_kind(Kind::Uint8).argmax(0, false).int64_value(&[]);
    DatasetError::IdOutOfRange {
        file: path.to_owned(),
        feature: feature.to_owned(),
        id: column.int64_value(&[row]),
        row: row as usize,
        cardinality,
    }
}

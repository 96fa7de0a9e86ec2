//! Loading a mapping onto a tch device.

use featurespec::{ChunkType, FeatureSpec, LoadOptions};
use indexmap::IndexMap;
use spec_dataset::{check_chunk_file, id_limits, DatasetError, RowCount};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use torchfile::TorchFile;

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
    let mut rows = RowCount::new(mapping);
    for (c, chunk) in chunks.iter().enumerate() {
        let key = format!("source_spec.{mapping}[{c}]");
        chunk.require_type(&ChunkType::TorchTensor, spec, &key)?;
        let mut parts: Vec<Tensor> = Vec::with_capacity(chunk.files.len());
        for file in &chunk.files {
            let path = spec.resolve_file_with(file, options)?;
            parts.push(load_chunk_file(spec, chunk, &key, path, device)?);
        }
        let table = if parts.len() == 1 { parts.pop().expect("one part") } else { Tensor::cat(&parts, 0) };
        rows.check(c, chunk, table.size()[0] as usize)?;
        for (i, name) in chunk.features.iter().enumerate() {
            features.insert(name.clone(), table.select(1, i as i64));
        }
    }
    Ok(MappingTensors { mapping: mapping.to_owned(), rows: rows.rows(), features })
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
    check_chunk_file(spec, chunk, key, &path, &t)?;
    let mut tensor = crate::load_tch(&mut file, &t, device)?;
    if tensor.dim() == 1 {
        tensor = tensor.unsqueeze(1);
    }
    let limits = id_limits(spec, chunk, t.dtype);
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

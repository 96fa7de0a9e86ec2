//! The dataset checks, without libtorch.

use crate::DatasetError;
use featurespec::{Chunk, ChunkType, Dtype, FeatureSpec, LoadOptions};
use std::path::Path;
use torchfile::{TensorRef, TorchFile};

/// Checks one file of a chunk, as its pickle describes it, against the spec: the declared dtype of
/// the chunk's features, and a shape of `[rows, features]` (or `[rows]` for a one-feature chunk).
/// `key` locates the chunk, e.g. `source_spec.train[0]`.
pub fn check_chunk_file(
    spec: &FeatureSpec,
    chunk: &Chunk,
    key: &str,
    path: &Path,
    tensor: &TensorRef,
) -> Result<(), DatasetError> {
    let declared = chunk.features.iter().find_map(|f| spec.feature_spec.get(f).and_then(|m| m.dtype));
    if let Some(declared) = declared {
        if declared != tensor.dtype {
            return Err(DatasetError::Dtype {
                file: path.to_owned(),
                key: format!("{key}.features"),
                features: chunk.features.join(", "),
                declared,
                found: tensor.dtype,
            });
        }
    }
    let columns = chunk.features.len();
    let fits = match tensor.shape.as_slice() {
        [_, c] => *c == columns,
        [_] => columns == 1,
        _ => false,
    };
    if !fits {
        return Err(DatasetError::Shape {
            file: path.to_owned(),
            key: key.to_owned(),
            shape: tensor.shape.clone(),
            columns,
            features: chunk.features.join(", "),
        });
    }
    Ok(())
}

/// `(column, feature, cardinality)` of the chunk's integer features that declare a cardinality:
/// the id-range checks a file of that chunk needs.
pub fn id_limits<'a>(spec: &FeatureSpec, chunk: &'a Chunk, dtype: Dtype) -> Vec<(usize, &'a str, u64)> {
    if !dtype.is_integer() {
        return Vec::new();
    }
    chunk
        .features
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let cardinality = spec.feature_spec.get(name).and_then(|m| m.cardinality).and_then(|c| c.known())?;
            Some((i, name.as_str(), cardinality))
        })
        .collect()
}

/// Checks every file of `mapping` as `tch_data::load_mapping` does (dtype, shape, equal row counts
/// across chunks, ids in `0..cardinality`), reading them into memory without libtorch. Returns the
/// mapping's row count.
pub fn verify_mapping(spec: &FeatureSpec, mapping: &str, options: LoadOptions) -> Result<usize, DatasetError> {
    let mut rows = RowCount::new(mapping);
    for (c, chunk) in spec.mapping(mapping)?.iter().enumerate() {
        let key = format!("source_spec.{mapping}[{c}]");
        chunk.require_type(&ChunkType::TorchTensor, spec, &key)?;
        let mut chunk_rows = 0;
        for file in &chunk.files {
            let path = spec.resolve_file_with(file, options)?;
            let mut pt = TorchFile::open(&path)?;
            let t = pt.tensor()?;
            check_chunk_file(spec, chunk, &key, &path, &t)?;
            let n = t.shape.first().copied().unwrap_or(0);
            let limits = id_limits(spec, chunk, t.dtype);
            if !limits.is_empty() {
                let data = pt.read(&t)?;
                let width = chunk.features.len();
                for (col, feature, cardinality) in limits {
                    for row in 0..n {
                        let id = int_at(&data.data, t.dtype, row * width + col);
                        if id < 0 || id as u64 >= cardinality {
                            return Err(DatasetError::IdOutOfRange {
                                file: path,
                                feature: feature.to_owned(),
                                id,
                                row,
                                cardinality,
                            });
                        }
                    }
                }
            }
            chunk_rows += n;
        }
        rows.check(c, chunk, chunk_rows)?;
    }
    Ok(rows.rows())
}

/// The rule that the chunks of one mapping have equal row counts, checked chunk by chunk.
#[derive(Debug, Clone)]
pub struct RowCount {
    mapping: String,
    first: Option<usize>,
}

impl RowCount {
    pub fn new(mapping: &str) -> RowCount {
        RowCount { mapping: mapping.to_owned(), first: None }
    }

    /// Records chunk `index`'s row count; an error when it differs from chunk 0's.
    pub fn check(&mut self, index: usize, chunk: &Chunk, rows: usize) -> Result<(), DatasetError> {
        match self.first {
            None => self.first = Some(rows),
            Some(first) if first != rows => {
                return Err(DatasetError::RowCount {
                    mapping: self.mapping.clone(),
                    chunk: index,
                    features: chunk.features.join(", "),
                    rows,
                    first,
                })
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The mapping's row count (0 before any chunk).
    pub fn rows(&self) -> usize {
        self.first.unwrap_or(0)
    }
}

/// Element `i` of little-endian integer data.
fn int_at(data: &[u8], dtype: Dtype, i: usize) -> i64 {
    let at = |n: usize| &data[i * n..(i + 1) * n];
    match dtype {
        Dtype::UInt8 => at(1)[0] as i64,
        Dtype::Int8 => at(1)[0] as i8 as i64,
        Dtype::Int16 => i16::from_le_bytes(at(2).try_into().unwrap_or_default()) as i64,
        Dtype::Int32 => i32::from_le_bytes(at(4).try_into().unwrap_or_default()) as i64,
        Dtype::Int64 => i64::from_le_bytes(at(8).try_into().unwrap_or_default()),
        _ => 0,
    }
}

//! The transcoding job: CSV chunks in, tensor files and a new spec out, atomically.

use crate::read::{read_mapping as read_chunks, ChunkSource, MappingColumns, Slot};
use crate::TranscodeError;
use featurespec::ncf::NcfLayout;
use featurespec::{Cardinality, Chunk, ChunkType, Dtype, FeatureSpec};
use rayon::prelude::*;
use std::path::Path;
use torchfile::{save_tensor, TensorView};

/// What [`transcode`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeSummary {
    /// Rows of each mapping, in spec order.
    pub rows: Vec<(String, usize)>,
    pub user_cardinality: u64,
    pub item_cardinality: u64,
}

/// One mapping's tensors.
struct Mapping {
    name: String,
    columns: MappingColumns,
}

impl Mapping {
    fn rows(&self) -> usize {
        self.columns.rows
    }

    /// Column 0 (users) or 1 (items) of the pairs.
    fn ids(&self, column: usize) -> impl IndexedParallelIterator<Item = i64> + '_ {
        self.columns.pairs.as_slice().par_chunks_exact(2).map(move |p| p[column])
    }
}

/// Transcodes the CSV dataset described by `spec_in` into `output` (created, or an existing empty
/// folder; written to a temporary folder and renamed when complete), its spec saved as
/// `output/spec_out_name`.
pub fn transcode(spec_in: &Path, output: &Path, spec_out_name: &str) -> Result<TranscodeSummary, TranscodeError> {
    let start = std::time::Instant::now();
    let spec = FeatureSpec::from_yaml_file(spec_in)?;
    let layout = NcfLayout::from_spec(&spec)?;
    let mut mappings = Vec::new();
    for (name, chunks) in &spec.source_spec {
        mappings.push(read_mapping(&spec, &layout, name, chunks)?);
        tracing::info!(mapping = %name, elapsed = ?start.elapsed(), "read");
    }
    let user_cardinality = cardinality(&layout.user, layout.user_cardinality, mappings.iter().map(|m| m.ids(0)))?;
    let item_cardinality = cardinality(&layout.item, layout.item_cardinality, mappings.iter().map(|m| m.ids(1)))?;

    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TranscodeError::Io { path, source }
    };
    if output.exists() && std::fs::read_dir(output).map_err(io(output))?.next().is_some() {
        let source =
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not empty; choose another --output");
        return Err(TranscodeError::Io { path: output.to_owned(), source });
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => ".".into(),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    // Dropped (and removed) on any error below; kept only by the final rename.
    let tmp = tempfile::Builder::new().prefix(".transcode-").tempdir_in(&parent).map_err(io(&parent))?;
    let mut out_spec = FeatureSpec::new(tmp.path());
    let id_meta = |n: u64| featurespec::FeatureMeta {
        dtype: Some(Dtype::Int64),
        cardinality: Some(Cardinality::Known(n)),
        ..Default::default()
    };
    out_spec.feature_spec.insert(layout.user.clone(), id_meta(user_cardinality));
    out_spec.feature_spec.insert(layout.item.clone(), id_meta(item_cardinality));
    out_spec
        .feature_spec
        .insert(layout.label.clone(), featurespec::FeatureMeta { dtype: Some(Dtype::Float32), ..Default::default() });
    out_spec.channel_spec = spec.channel_spec.clone();
    out_spec.metadata = spec.metadata.clone();
    // The tensor files of all mappings are written in parallel (they are independent).
    let dir = tmp.path();
    mappings.par_iter().try_for_each(|m| -> Result<(), TranscodeError> {
        let n = m.rows();
        let (labels, ids) = rayon::join(
            || {
                let view = TensorView::from_f32(m.columns.labels.as_slice(), &[n, 1]);
                save_tensor(dir.join(format!("{}_data_1.pt", m.name)), &view)
            },
            || {
                let view = TensorView::from_i64(m.columns.pairs.as_slice(), &[n, 2]);
                save_tensor(dir.join(format!("{}_data_0.pt", m.name)), &view)
            },
        );
        labels?;
        ids?;
        Ok(())
    })?;
    let mut rows = Vec::new();
    for m in &mappings {
        let chunk = |features: Vec<String>, file: String| Chunk {
            chunk_type: ChunkType::TorchTensor,
            features,
            files: vec![file],
        };
        out_spec.source_spec.insert(
            m.name.clone(),
            vec![
                chunk(vec![layout.user.clone(), layout.item.clone()], format!("{}_data_0.pt", m.name)),
                chunk(vec![layout.label.clone()], format!("{}_data_1.pt", m.name)),
            ],
        );
        rows.push((m.name.clone(), m.rows()));
    }
    out_spec.save(tmp.path().join(spec_out_name))?;
    tracing::info!(elapsed = ?start.elapsed(), "written");
    if output.exists() {
        std::fs::remove_dir(output).map_err(io(output))?;
    }
    let kept = tmp.keep();
    if let Err(source) = std::fs::rename(&kept, output) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(TranscodeError::Io { path: output.to_owned(), source });
    }
    Ok(TranscodeSummary { rows, user_cardinality, item_cardinality })
}

/// Reads a mapping's chunks into its tensors.
fn read_mapping(
    spec: &FeatureSpec,
    layout: &NcfLayout,
    name: &str,
    chunks: &[Chunk],
) -> Result<Mapping, TranscodeError> {
    let mut sources = Vec::with_capacity(chunks.len());
    let (mut has_user, mut has_item, mut has_label) = (false, false, false);
    for (c, chunk) in chunks.iter().enumerate() {
        let key = format!("source_spec.{name}[{c}]");
        chunk.require_type(&ChunkType::Csv, spec, &key)?;
        let slots: Vec<Slot> = chunk
            .features
            .iter()
            .map(|f| {
                if *f == layout.user {
                    has_user = true;
                    Slot::User
                } else if *f == layout.item {
                    has_item = true;
                    Slot::Item
                } else if *f == layout.label {
                    has_label = true;
                    Slot::Label
                } else {
                    Slot::Skip
                }
            })
            .collect();
        let files = chunk.files.iter().map(|f| spec.resolve_file(f)).collect::<Result<Vec<_>, _>>()?;
        sources.push(ChunkSource { files, slots });
    }
    for (present, feature) in [(has_user, &layout.user), (has_item, &layout.item), (has_label, &layout.label)] {
        if !present {
            return Err(TranscodeError::MissingFeature { mapping: name.to_owned(), feature: feature.clone() });
        }
    }
    let mut row_count = spec_dataset::RowCount::new(name);
    let columns = read_chunks(&sources, |c, rows| Ok(row_count.check(c, &chunks[c], rows)?))?;
    Ok(Mapping { name: name.to_owned(), columns })
}

/// `auto` -> largest id + 1 over all mappings; a declared number must exceed every id.
fn cardinality<C: ParallelIterator<Item = i64>>(
    feature: &str,
    declared: Cardinality,
    columns: impl Iterator<Item = C>,
) -> Result<u64, TranscodeError> {
    let largest = columns.filter_map(|c| c.max()).max().unwrap_or(-1);
    match declared {
        Cardinality::Auto => Ok((largest + 1) as u64),
        Cardinality::Known(n) if (largest + 1) as u64 > n => {
            Err(TranscodeError::Cardinality { feature: feature.to_owned(), declared: n, largest })
        }
        Cardinality::Known(n) => Ok(n),
    }
}

//! The transcoding job: CSV chunks in, tensor files and a new spec out, atomically.

use crate::read::{find_id_at_least, read_mapping as read_chunks, ChunkSource, Slot};
use crate::stream::{stream_mappings, MappingFiles, StreamedMapping};
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

/// Transcodes the CSV dataset described by `spec_in` into `output` (created, or an existing empty
/// folder; written to a temporary folder and renamed when complete), its spec saved as
/// `output/spec_out_name`.
pub fn transcode(spec_in: &Path, output: &Path, spec_out_name: &str) -> Result<TranscodeSummary, TranscodeError> {
    let start = std::time::Instant::now();
    let spec = FeatureSpec::from_yaml_file(spec_in)?;
    let layout = NcfLayout::from_spec(&spec)?;
    let mut sources = Vec::new();
    for (name, chunks) in &spec.source_spec {
        sources.push((name.clone(), chunk_sources(&spec, &layout, name, chunks)?));
    }

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
    let dir = tmp.path();

    // The tensor files of the mappings held in one chunk are written as they are parsed, all
    // mappings at once; the others (and any the fast path turns down) are built in memory.
    let paths = |name: &str| (dir.join(format!("{name}_data_0.pt")), dir.join(format!("{name}_data_1.pt")));
    let single: Vec<MappingFiles<'_>> = sources
        .iter()
        .filter_map(|(name, chunks)| match chunks.as_slice() {
            [only] => {
                let (pairs_path, labels_path) = paths(name);
                Some(MappingFiles { files: &only.files, slots: &only.slots, pairs_path, labels_path, direct: true })
            }
            _ => None,
        })
        .collect();
    let mut streamed = stream_mappings(&single)?.into_iter();
    let mut mappings = Vec::new();
    for (name, chunks) in &sources {
        let done = if chunks.len() == 1 { streamed.next().flatten() } else { None };
        let written = match done {
            Some(s) => s,
            None => {
                let (pairs_path, labels_path) = paths(name);
                write_in_memory(&spec, name, chunks, &pairs_path, &labels_path)?
            }
        };
        tracing::info!(mapping = %name, rows = written.rows, elapsed = ?start.elapsed(), "written");
        mappings.push((name.clone(), written));
    }
    let largest = |k: usize| mappings.iter().map(|(_, m)| m.largest[k]).max().unwrap_or(-1);
    let cardinalities =
        [(&layout.user, layout.user_cardinality, Slot::User), (&layout.item, layout.item_cardinality, Slot::Item)];
    let mut known = [0u64; 2];
    for (k, (feature, declared, slot)) in cardinalities.into_iter().enumerate() {
        known[k] = match declared {
            Cardinality::Auto => (largest(k) + 1) as u64,
            Cardinality::Known(n) if largest(k) >= 0 && largest(k) as u64 >= n => {
                // Rare, so found by a second, plain pass: the first line holding such an id.
                let at = sources
                    .iter()
                    .flat_map(|(_, chunks)| chunks)
                    .find_map(|c| find_id_at_least(c, slot, n).transpose())
                    .transpose()?;
                let (path, line, id) = at.unwrap_or_default();
                return Err(TranscodeError::Cardinality {
                    feature: feature.clone(),
                    declared: n,
                    largest: largest(k),
                    path,
                    line,
                    id,
                });
            }
            Cardinality::Known(n) => n,
        };
    }
    let [user_cardinality, item_cardinality] = known;

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
    let mut rows = Vec::new();
    for (name, m) in &mappings {
        let chunk = |features: Vec<String>, file: String| Chunk {
            chunk_type: ChunkType::TorchTensor,
            features,
            files: vec![file],
        };
        out_spec.source_spec.insert(
            name.clone(),
            vec![
                chunk(vec![layout.user.clone(), layout.item.clone()], format!("{name}_data_0.pt")),
                chunk(vec![layout.label.clone()], format!("{name}_data_1.pt")),
            ],
        );
        rows.push((name.clone(), m.rows));
    }
    out_spec.save(tmp.path().join(spec_out_name))?;
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

/// A mapping's chunks as sources to read: files, and where each column goes.
fn chunk_sources(
    spec: &FeatureSpec,
    layout: &NcfLayout,
    name: &str,
    chunks: &[Chunk],
) -> Result<Vec<ChunkSource>, TranscodeError> {
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
    Ok(sources)
}

/// The general path (several chunks side by side, or archives too large to stream): the whole
/// mapping parsed into memory, then saved.
fn write_in_memory(
    spec: &FeatureSpec,
    name: &str,
    sources: &[ChunkSource],
    pairs_path: &Path,
    labels_path: &Path,
) -> Result<StreamedMapping, TranscodeError> {
    let chunks = spec.mapping(name)?;
    let mut row_count = spec_dataset::RowCount::new(name);
    let columns = read_chunks(sources, |c, rows| Ok(row_count.check(c, &chunks[c], rows)?))?;
    let n = columns.rows;
    let pairs = columns.pairs.as_slice();
    let largest = |k: usize| pairs.par_chunks_exact(2).map(|p| p[k]).max().unwrap_or(-1);
    let (labels, ids) = rayon::join(
        || save_tensor(labels_path, &TensorView::from_f32(columns.labels.as_slice(), &[n, 1])),
        || save_tensor(pairs_path, &TensorView::from_i64(pairs, &[n, 2])),
    );
    labels?;
    ids?;
    Ok(StreamedMapping { rows: n, largest: [largest(0), largest(1)] })
}

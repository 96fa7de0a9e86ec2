//! Writing a prepared dataset folder: the reference's four tensor files, `feature_spec.yaml`, and
//! the id maps, all into a temporary folder renamed into place when complete.

use crate::pipeline::{LeaveLastOut, ValidationSplit};
use crate::PrepareError;
use featurespec::{Cardinality, Chunk, ChunkType, Dtype, FeatureMeta, FeatureSpec};
use spec_dataset::IdSide;
use std::path::{Path, PathBuf};
use torchfile::{save_tensor, TensorView};

/// The spec of a dataset laid out as the reference's, key for key: `test_featurespec_correctness.py`
/// compares it with the reference's own for the same ratings and finds them equal. The id maps sit
/// beside it under fixed names ([`spec_dataset::IdMap`]), not in it.
pub fn ncf_spec(n_users: usize, n_items: usize, series_len: usize) -> FeatureSpec {
    ncf_spec_with(n_users, n_items, series_len, false)
}

/// [`ncf_spec`], plus a `validation` mapping laid out as `test` (`validation_data_0.pt`: user, item;
/// `validation_data_1.pt`: label) when `validation` is set; its lists have `test_samples_per_series`
/// rows too.
pub fn ncf_spec_with(n_users: usize, n_items: usize, series_len: usize, validation: bool) -> FeatureSpec {
    let mut spec = FeatureSpec::new("");
    let id = |n: usize| FeatureMeta {
        dtype: Some(Dtype::Int64),
        cardinality: Some(Cardinality::Known(n as u64)),
        ..Default::default()
    };
    spec.feature_spec.insert("user".into(), id(n_users));
    spec.feature_spec.insert("item".into(), id(n_items));
    spec.feature_spec.insert("label".into(), FeatureMeta { dtype: Some(Dtype::Float32), ..Default::default() });
    let mappings: &[&str] = if validation { &["train", "test", "validation"] } else { &["train", "test"] };
    for &mapping in mappings {
        let chunk = |features: &[&str], file: String| Chunk {
            chunk_type: ChunkType::TorchTensor,
            features: features.iter().map(|f| f.to_string()).collect(),
            files: vec![file],
        };
        spec.source_spec.insert(
            mapping.into(),
            vec![
                chunk(&["user", "item"], format!("{mapping}_data_0.pt")),
                chunk(&["label"], format!("{mapping}_data_1.pt")),
            ],
        );
    }
    for (channel, feature) in [("user_ch", "user"), ("item_ch", "item"), ("label_ch", "label")] {
        spec.channel_spec.insert(channel.into(), vec![feature.into()]);
    }
    let meta = &mut spec.metadata;
    meta.insert("test_samples_per_series".into(), (series_len as u64).into());
    spec
}

/// Writes the dataset into `dir` (which must exist and be empty).
pub(crate) fn write_files(
    dir: &Path,
    data: &LeaveLastOut,
    negatives: &[u32],
    per_user: usize,
    validation: Option<(&ValidationSplit, &[u32])>,
) -> Result<(), PrepareError> {
    let n_users = data.n_users();
    let (train, test) = rayon::join(
        || -> Result<(), PrepareError> {
            let rows = data.train_items.len();
            let mut pairs = Vec::with_capacity(rows * 2);
            for u in 0..n_users {
                for &item in data.train_of(u) {
                    pairs.extend_from_slice(&[u as i64, item as i64]);
                }
            }
            save_tensor(dir.join("train_data_0.pt"), &TensorView::from_i64(&pairs, &[rows, 2]))?;
            drop(pairs);
            let ones = vec![1f32; rows];
            save_tensor(dir.join("train_data_1.pt"), &TensorView::from_f32(&ones, &[rows, 1]))?;
            Ok(())
        },
        || -> Result<(), PrepareError> {
            let series = per_user + 1;
            let rows = n_users * series;
            let mut pairs = Vec::with_capacity(rows * 2);
            let mut labels = Vec::with_capacity(rows);
            for u in 0..n_users {
                pairs.extend_from_slice(&[u as i64, data.test_items[u] as i64]);
                labels.push(1f32);
                for &item in &negatives[u * per_user..(u + 1) * per_user] {
                    pairs.extend_from_slice(&[u as i64, item as i64]);
                    labels.push(0f32);
                }
            }
            save_tensor(dir.join("test_data_0.pt"), &TensorView::from_i64(&pairs, &[rows, 2]))?;
            save_tensor(dir.join("test_data_1.pt"), &TensorView::from_f32(&labels, &[rows, 1]))?;
            data.user_ids.write(dir, IdSide::User)?;
            data.item_ids.write(dir, IdSide::Item)?;
            Ok(())
        },
    );
    train?;
    test?;
    if let Some((split, negatives)) = validation {
        let rows = split.users.len() * (per_user + 1);
        let mut pairs = Vec::with_capacity(rows * 2);
        let mut labels = Vec::with_capacity(rows);
        for (k, (&u, &item)) in split.users.iter().zip(&split.items).enumerate() {
            pairs.extend_from_slice(&[u as i64, item as i64]);
            labels.push(1f32);
            for &neg in &negatives[k * per_user..(k + 1) * per_user] {
                pairs.extend_from_slice(&[u as i64, neg as i64]);
                labels.push(0f32);
            }
        }
        save_tensor(dir.join("validation_data_0.pt"), &TensorView::from_i64(&pairs, &[rows, 2]))?;
        save_tensor(dir.join("validation_data_1.pt"), &TensorView::from_f32(&labels, &[rows, 1]))?;
    }
    let mut spec = ncf_spec_with(n_users, data.n_items(), per_user + 1, validation.is_some());
    spec.save(dir.join("feature_spec.yaml"))?;
    Ok(())
}

/// Runs `fill` on a fresh temporary folder beside `out`, then renames it to `out` (replacing an
/// existing `out` only when `replace` is set). On any error the temporary folder is removed, so an
/// interrupted or failed run never leaves a folder a later run would take as finished.
pub fn write_atomically(
    out: &Path,
    replace: bool,
    fill: impl FnOnce(&Path) -> Result<(), PrepareError>,
) -> Result<(), PrepareError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PrepareError::Io { path, source }
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    // Removed on drop: on an error, an early return or a panic, nothing is left behind.
    let tmp = tempfile::Builder::new().prefix(&format!(".{name}.tmp-")).tempdir_in(&parent).map_err(io(&parent))?;
    fill(tmp.path())?;
    // An existing folder is moved aside (into a second temporary folder, removed on drop) before the
    // new one takes its name, so `out` never holds a mix of both.
    let mut aside = None;
    if out.exists() {
        if !replace {
            return Err(PrepareError::Input {
                path: out.to_owned(),
                message: "already exists; pass --force to replace it".into(),
            });
        }
        let old = tempfile::Builder::new().prefix(&format!(".{name}.old-")).tempdir_in(&parent).map_err(io(&parent))?;
        std::fs::rename(out, old.path().join("dataset")).map_err(io(out))?;
        aside = Some(old);
    }
    if let Err(source) = std::fs::rename(tmp.path(), out) {
        // Put the old dataset back rather than lose it with the guard.
        if let Some(old) = &aside {
            let _ = std::fs::rename(old.path().join("dataset"), out);
        }
        return Err(PrepareError::Io { path: out.to_owned(), source });
    }
    // Renamed away: there is nothing left for the guard to remove.
    let _ = tmp.keep();
    Ok(())
}

//! The raw ids behind a dataset's renumbered users and items.
//!
//! `ncf-prepare` renumbers users and items to `0..n` by first appearance, as the reference's
//! `pd.factorize` does, and keeps what each number stood for in two files beside
//! `feature_spec.yaml`, found by their fixed names so the spec itself stays exactly the reference's:
//! - `user_ids.pt` / `item_ids.pt`: an int64 tensor (`torch.load` reads it), position = index, when
//!   every raw id of that column was an integer;
//! - `user_ids.txt` / `item_ids.txt`: UTF-8 text, one raw id per line, line `k + 1` = index `k`,
//!   when the column held other ids (`u196`, e-mail hashes, UUIDs, SKUs).
//!
//! Datasets written before the fixed names named their int64 maps in the spec's metadata
//! (`user_id_map`, `item_id_map`); those keys are still honoured when present.

use crate::DatasetError;
use featurespec::FeatureSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use torchfile::{Dtype, TensorView, TorchFile};

/// Which column an id map belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSide {
    User,
    Item,
}

impl IdSide {
    /// `user` or `item`.
    pub fn name(self) -> &'static str {
        match self {
            IdSide::User => "user",
            IdSide::Item => "item",
        }
    }

    /// The file name an integer map has (`user_ids.pt`).
    pub fn int_file(self) -> String {
        format!("{}_ids.pt", self.name())
    }

    /// The file name a text map has (`user_ids.txt`).
    pub fn text_file(self) -> String {
        format!("{}_ids.txt", self.name())
    }

    /// The metadata key older datasets named their map with (`user_id_map`).
    pub fn legacy_key(self) -> String {
        format!("{}_id_map", self.name())
    }
}

/// The raw id of each index of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMap {
    /// Integer ids (MovieLens): written as an int64 tensor.
    Int(Vec<i64>),
    /// Any other ids, verbatim: written as text, one per line.
    Text(Vec<String>),
}

impl IdMap {
    /// Number of indices mapped.
    pub fn len(&self) -> usize {
        match self {
            IdMap::Int(v) => v.len(),
            IdMap::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw id of `index`, as text (`None` past the end).
    pub fn raw(&self, index: usize) -> Option<String> {
        match self {
            IdMap::Int(v) => v.get(index).map(|id| id.to_string()),
            IdMap::Text(v) => v.get(index).cloned(),
        }
    }

    /// A raw id -> index table. Integer maps match a raw id written as an integer (`007` is 7, as
    /// pandas reads it); text maps match it verbatim.
    pub fn index(&self) -> IdIndex {
        match self {
            IdMap::Int(v) => IdIndex::Int(v.iter().enumerate().map(|(k, &id)| (id, k)).collect()),
            IdMap::Text(v) => IdIndex::Text(v.iter().enumerate().map(|(k, id)| (id.clone(), k)).collect()),
        }
    }

    /// Writes the map into `dir` under its fixed name (`user_ids.pt` or `user_ids.txt`), atomically.
    pub fn write(&self, dir: &Path, side: IdSide) -> Result<PathBuf, DatasetError> {
        match self {
            IdMap::Int(ids) => {
                let path = dir.join(side.int_file());
                torchfile::save_tensor(&path, &TensorView::from_i64(ids, &[ids.len()]))?;
                Ok(path)
            }
            IdMap::Text(ids) => {
                let path = dir.join(side.text_file());
                if let Some(bad) = ids.iter().position(|id| id.contains(['\n', '\r'])) {
                    return Err(DatasetError::IdMap {
                        path,
                        message: format!("{} id {:?} (index {bad}) holds a line break", side.name(), ids[bad]),
                    });
                }
                let mut text = String::with_capacity(ids.iter().map(|s| s.len() + 1).sum());
                for id in ids {
                    text.push_str(id);
                    text.push('\n');
                }
                write_atomically(&path, text.as_bytes())?;
                Ok(path)
            }
        }
    }

    /// The map of `side` for the dataset of `spec`: the legacy metadata key if the spec has one,
    /// else `<side>_ids.pt`, else `<side>_ids.txt` beside the spec; `None` when there is none (a
    /// dataset made by the reference, whose ids are its own). A file that is there but unreadable,
    /// or of another length than `expected_len`, is an error naming it.
    pub fn find(spec: &FeatureSpec, side: IdSide, expected_len: Option<usize>) -> Result<Option<IdMap>, DatasetError> {
        let legacy = spec.metadata.get(side.legacy_key()).and_then(|v| v.as_str());
        let (path, map) = match legacy {
            Some(file) => {
                let path = spec.resolve_file(file)?;
                let map = read_int(&path)?;
                (path, map)
            }
            None => {
                let (int, text) = (spec.base_dir().join(side.int_file()), spec.base_dir().join(side.text_file()));
                if int.exists() {
                    let map = read_int(&int)?;
                    (int, map)
                } else if text.exists() {
                    let map = read_text(&text)?;
                    (text, map)
                } else {
                    return Ok(None);
                }
            }
        };
        if let Some(n) = expected_len.filter(|&n| n != map.len()) {
            return Err(DatasetError::IdMap {
                path,
                message: format!("maps {} {}s but the dataset has {n}", map.len(), side.name()),
            });
        }
        Ok(Some(map))
    }
}

/// Raw id -> index, built by [`IdMap::index`].
#[derive(Debug, Clone)]
pub enum IdIndex {
    Int(HashMap<i64, usize>),
    Text(HashMap<String, usize>),
}

impl IdIndex {
    /// The index of a raw id as a person typed it.
    pub fn get(&self, raw: &str) -> Option<usize> {
        match self {
            IdIndex::Int(m) => raw.trim().parse::<i64>().ok().and_then(|id| m.get(&id).copied()),
            IdIndex::Text(m) => m.get(raw).copied(),
        }
    }
}

fn read_int(path: &Path) -> Result<IdMap, DatasetError> {
    let mut file = TorchFile::open(path)?;
    let tensor = file.tensor()?;
    let data = file.read(&tensor)?;
    if data.dtype != Dtype::Int64 || data.shape.len() != 1 {
        return Err(DatasetError::IdMap {
            path: path.to_owned(),
            message: format!(
                "holds a {} tensor of shape {:?}; an id map is a 1-d int64 tensor",
                data.dtype, data.shape
            ),
        });
    }
    Ok(IdMap::Int(data.to_i64()))
}

fn read_text(path: &Path) -> Result<IdMap, DatasetError> {
    let text = std::fs::read(path).map_err(|source| DatasetError::Io { path: path.to_owned(), source })?;
    let text = String::from_utf8(text).map_err(|e| DatasetError::IdMap {
        path: path.to_owned(),
        message: format!("is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    Ok(IdMap::Text(text.lines().map(str::to_owned).collect()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

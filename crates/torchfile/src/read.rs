//! Reading `torch.save` archives.

use crate::pickle::{unpickle, Value};
use crate::{TensorData, TensorRef, TorchFileError};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use zip::{CompressionMethod, ZipArchive};

/// Bounds on what a file may make the reader allocate beyond its own size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest `data.pkl` accepted (default 256 MiB; a state dict's pickle is a few KiB).
    pub max_pickle_bytes: u64,
    /// Largest tensor accepted whose elements overlap in its storage (a stride-0 "expanded" view),
    /// which is the only way a tensor can be bigger than the file (default 1 GiB).
    pub max_expanded_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_pickle_bytes: 256 << 20, max_expanded_bytes: 1 << 30 }
    }
}

/// An open `torch.save` file: its parsed pickle, and access to its storage records.
pub struct TorchFile {
    path: PathBuf,
    file: File,
    file_len: u64,
    archive: ZipArchive<File>,
    /// `<archive name>/`, the folder every record of the archive lives in.
    prefix: String,
    root: Value,
    limits: ReadLimits,
}

impl std::fmt::Debug for TorchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchFile").field("path", &self.path).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// A checked read of one tensor: see [`TorchFile::plan`].
#[derive(Debug, Clone)]
pub struct ReadPlan {
    tensor: TensorRef,
    len: usize,
    record: Record,
}

impl ReadPlan {
    /// Bytes the tensor takes once contiguous.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A storage record's place in the file.
#[derive(Debug, Clone)]
struct Record {
    start: u64,
    len: u64,
    crc32: u32,
}

impl TorchFile {
    /// Opens `path` and parses its pickle, with default [`ReadLimits`].
    pub fn open(path: impl AsRef<Path>) -> Result<TorchFile, TorchFileError> {
        Self::open_with(path, ReadLimits::default())
    }

    /// Opens `path` and parses its pickle.
    pub fn open_with(path: impl AsRef<Path>, limits: ReadLimits) -> Result<TorchFile, TorchFileError> {
        let path = path.as_ref().to_owned();
        let io = |source| TorchFileError::Io { path: path.clone(), source };
        let file = File::open(&path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let archive = ZipArchive::new(file.try_clone().map_err(io)?)
            .map_err(|e| TorchFileError::NotAnArchive { path: path.clone(), message: e.to_string() })?;
        let pkl = archive
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .min()
            .map(|n| n.into_owned())
            .ok_or_else(|| TorchFileError::NotAnArchive {
                path: path.clone(),
                message: "no `<name>/data.pkl` record".to_owned(),
            })?;
        let prefix = pkl.trim_end_matches("data.pkl").to_owned();
        let mut this = TorchFile { path, file, file_len, archive, prefix, root: Value::None, limits };
        this.check_byteorder()?;
        let pickle = this.small_record("data.pkl", this.limits.max_pickle_bytes)?;
        this.root = unpickle(&pickle).map_err(|e| TorchFileError::Pickle {
            path: this.path.clone(),
            offset: e.offset,
            message: e.message,
        })?;
        Ok(this)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The unpickled object tree.
    pub fn root(&self) -> &Value {
        &self.root
    }

    fn content_err(&self, message: impl Into<String>) -> TorchFileError {
        TorchFileError::Content { path: self.path.clone(), message: message.into() }
    }

    fn record_err(&self, record: &str, message: impl Into<String>) -> TorchFileError {
        TorchFileError::Record { path: self.path.clone(), record: record.to_owned(), message: message.into() }
    }

    /// The tensor, when the file holds a single tensor (`torch.save(tensor, path)`).
    pub fn tensor(&self) -> Result<TensorRef, TorchFileError> {
        match &self.root {
            Value::Tensor(t) => Ok(t.clone()),
            other => Err(self.content_err(format!("expected a single tensor, found {}", describe(other)))),
        }
    }

    /// The name -> tensor entries, in file order, when the file holds a dict or `OrderedDict` of
    /// tensors (a state dict). Keys are returned as saved (see [`crate::strip_module_prefix`]).
    pub fn tensor_map(&self) -> Result<Vec<(String, TensorRef)>, TorchFileError> {
        let Value::Dict { items, .. } = &self.root else {
            return Err(self.content_err(format!("expected a dict of tensors, found {}", describe(&self.root))));
        };
        items
            .iter()
            .map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Tensor(t)) => Ok((k.clone(), t.clone())),
                (Value::Str(k), other) => {
                    Err(self.content_err(format!("entry `{k}` is {}, not a tensor", describe(other))))
                }
                (other, _) => Err(self.content_err(format!("a key is {}, not a string", describe(other)))),
            })
            .collect()
    }

    /// The state dict's `_metadata` attribute (module prefix -> `{version: N}`), if it has one.
    pub fn metadata(&self) -> Option<&Value> {
        let Value::Dict { attrs, .. } = &self.root else { return None };
        attrs.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == "_metadata")).map(|(_, v)| v)
    }

    /// Reads a tensor's elements, contiguous and little-endian.
    pub fn read(&mut self, tensor: &TensorRef) -> Result<TensorData, TorchFileError> {
        let plan = self.plan(tensor)?;
        let mut data = vec![0u8; plan.len()];
        self.read_planned(&plan, &mut data)?;
        Ok(TensorData { dtype: tensor.dtype, shape: tensor.shape.clone(), data })
    }

    /// Reads a tensor's elements, contiguous and little-endian, into `out` (exactly
    /// [`ReadPlan::len`] bytes): lets a caller read straight into memory it owns, e.g.
    /// a tensor of its own framework. The record's CRC-32 is verified.
    pub fn read_into(&mut self, tensor: &TensorRef, out: &mut [u8]) -> Result<(), TorchFileError> {
        let plan = self.plan(tensor)?;
        self.read_planned(&plan, out)
    }

    /// Locates the tensor's storage record and checks every size involved, so that a caller can
    /// allocate [`ReadPlan::len`] bytes (refused when more than the file can back) and then
    /// [`TorchFile::read_planned`] into them.
    pub fn plan(&mut self, tensor: &TensorRef) -> Result<ReadPlan, TorchFileError> {
        let len = tensor.byte_len().ok_or_else(|| self.content_err("tensor size overflows"))?;
        let record = self.storage_record(tensor)?;
        let declared = tensor.storage.numel.checked_mul(tensor.dtype.size() as u64);
        if declared != Some(record.len) {
            return Err(self.record_err(
                &format!("data/{}", tensor.storage.key),
                format!(
                    "holds {} bytes but its storage declares {} element(s) of {}",
                    record.len, tensor.storage.numel, tensor.dtype
                ),
            ));
        }
        if len as u64 > record.len && len as u64 > self.limits.max_expanded_bytes {
            return Err(self.content_err(format!(
                "tensor of shape {:?} would take {len} bytes from a {}-byte storage (overlapping strides), over the {}-byte limit",
                tensor.shape, record.len, self.limits.max_expanded_bytes
            )));
        }
        Ok(ReadPlan { tensor: tensor.clone(), len, record })
    }

    /// Reads a planned tensor into `out`, which must hold exactly [`ReadPlan::len`] bytes; the
    /// record's CRC-32 is verified.
    pub fn read_planned(&self, plan: &ReadPlan, out: &mut [u8]) -> Result<(), TorchFileError> {
        if out.len() != plan.len {
            return Err(self.content_err(format!("output buffer holds {} bytes, the tensor {}", out.len(), plan.len)));
        }
        let (tensor, record) = (&plan.tensor, &plan.record);
        let record_name = format!("data/{}", tensor.storage.key);
        if tensor.is_contiguous() && tensor.storage_offset == 0 && out.len() as u64 == record.len {
            self.pread(&record_name, record.start, out)?;
            return self.check_crc(&record_name, out, record.crc32);
        }
        // A view of part of a storage, or strided: read the record (bounded by the file's size,
        // checked in storage_record), verify it, then gather.
        let mut storage = vec![0u8; record.len as usize];
        self.pread(&record_name, record.start, &mut storage)?;
        self.check_crc(&record_name, &storage, record.crc32)?;
        gather(&storage, tensor, out);
        Ok(())
    }

    fn pread(&self, record: &str, start: u64, out: &mut [u8]) -> Result<(), TorchFileError> {
        self.file.read_exact_at(out, start).map_err(|e| self.record_err(record, e.to_string()))
    }

    fn check_crc(&self, record: &str, data: &[u8], expected: u32) -> Result<(), TorchFileError> {
        let got = crc32fast::hash(data);
        if got != expected {
            return Err(self.record_err(
                record,
                format!("CRC-32 mismatch (0x{got:08x}, archive says 0x{expected:08x}): the file is corrupt"),
            ));
        }
        Ok(())
    }

    fn storage_record(&mut self, tensor: &TensorRef) -> Result<Record, TorchFileError> {
        let name = format!("data/{}", tensor.storage.key);
        let full = format!("{}{}", self.prefix, name);
        let (start, len, crc32, method) = {
            let entry = self.archive.by_name(&full).map_err(|e| TorchFileError::Record {
                path: self.path.clone(),
                record: name.clone(),
                message: e.to_string(),
            })?;
            (entry.data_start(), entry.size(), entry.crc32(), entry.compression())
        };
        if method != CompressionMethod::Stored {
            return Err(
                self.record_err(&name, format!("is compressed ({method}); torch.save stores records uncompressed"))
            );
        }
        let start = start.ok_or_else(|| self.record_err(&name, "data offset unknown"))?;
        if start.checked_add(len).is_none_or(|end| end > self.file_len) {
            return Err(self.record_err(
                &name,
                format!("claims {len} bytes at offset {start}, past the end of the {}-byte file", self.file_len),
            ));
        }
        let extent = tensor.storage_extent().and_then(|e| e.checked_mul(tensor.dtype.size() as u64));
        if extent.is_none_or(|e| e > len) {
            return Err(self.record_err(
                &name,
                format!(
                    "holds {len} bytes, fewer than the tensor of shape {:?} at offset {} needs",
                    tensor.shape, tensor.storage_offset
                ),
            ));
        }
        Ok(Record { start, len, crc32 })
    }

    /// Reads a small record (`data.pkl`, `byteorder`) fully, refusing one over `limit` bytes.
    fn small_record(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, TorchFileError> {
        let full = format!("{}{}", self.prefix, name);
        let path = self.path.clone();
        let err = |message: String| TorchFileError::Record { path: path.clone(), record: name.to_owned(), message };
        let entry = self.archive.by_name(&full).map_err(|e| err(e.to_string()))?;
        if entry.size() > limit.min(self.file_len) {
            return Err(err(format!(
                "declares {} bytes, more than the {} allowed",
                entry.size(),
                limit.min(self.file_len)
            )));
        }
        let mut data = Vec::new();
        entry.take(limit).read_to_end(&mut data).map_err(|e| err(e.to_string()))?;
        Ok(data)
    }

    fn check_byteorder(&mut self) -> Result<(), TorchFileError> {
        let name = format!("{}byteorder", self.prefix);
        if self.archive.index_for_name(&name).is_none() {
            return Ok(()); // files from before PyTorch 1.x's byteorder record are little-endian
        }
        let order = self.small_record("byteorder", 16)?;
        if order != b"little" {
            return Err(self.record_err(
                "byteorder",
                format!("`{}`: only little-endian files are supported", String::from_utf8_lossy(&order)),
            ));
        }
        Ok(())
    }
}

/// Copies a strided view of `storage` into contiguous `out`. Bounds were checked by the caller
/// (the view's extent lies inside the storage, `out` has the view's size).
fn gather(storage: &[u8], t: &TensorRef, out: &mut [u8]) {
    let elem = t.dtype.size();
    let ndim = t.shape.len();
    if out.is_empty() {
        return;
    }
    if ndim == 0 {
        let at = t.storage_offset * elem;
        out.copy_from_slice(&storage[at..at + elem]);
        return;
    }
    // Innermost dimension: one slice copy per row when it is contiguous, else element by element.
    let inner = t.shape[ndim - 1];
    let run = if t.strides[ndim - 1] == 1 { inner } else { 1 };
    let outer_dims = if run == inner { ndim - 1 } else { ndim };
    let mut index = vec![0usize; outer_dims];
    let mut src = t.storage_offset;
    for chunk in out.chunks_exact_mut(run * elem) {
        chunk.copy_from_slice(&storage[src * elem..(src + run) * elem]);
        for d in (0..outer_dims).rev() {
            index[d] += 1;
            src += t.strides[d];
            if index[d] < t.shape[d] {
                break;
            }
            src -= t.strides[d] * t.shape[d];
            index[d] = 0;
        }
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict { .. } => "a dict",
        Value::Global(_) => "a class",
        Value::Storage(_) => "a storage",
        Value::Tensor(_) => "a tensor",
    }
}

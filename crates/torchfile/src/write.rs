//! Writing `torch.save` archives that `torch.load(weights_only=True)` reads.

use crate::pickle::storage_class;
use crate::{TensorView, TorchFileError};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Saves one tensor, as `torch.save(tensor, path)` does. Written to a temporary file beside `path`
/// and renamed into place, so `path` is either the old file or the complete new one.
pub fn save_tensor(path: impl AsRef<Path>, tensor: &TensorView<'_>) -> Result<(), TorchFileError> {
    let path = path.as_ref();
    check(path, "tensor", tensor)?;
    write_archive(path, &pickle_tensor(tensor.dtype, &tensor.shape), &[tensor])
}

/// Saves an ordered name -> tensor map as a `collections.OrderedDict`, as `torch.save(state_dict,
/// path)` does; `torch.load` returns the same keys in the same order. Written atomically.
pub fn save_tensor_map(path: impl AsRef<Path>, entries: &[(&str, TensorView<'_>)]) -> Result<(), TorchFileError> {
    let path = path.as_ref();
    let mut pickle = Pickler::new();
    pickle.ordered_dict_start();
    for (i, (name, tensor)) in entries.iter().enumerate() {
        check(path, name, tensor)?;
        pickle.string(name);
        pickle.tensor(tensor, &i.to_string());
    }
    pickle.ordered_dict_end(!entries.is_empty());
    pickle.stop();
    let tensors: Vec<&TensorView<'_>> = entries.iter().map(|(_, t)| t).collect();
    write_archive(path, &pickle.out, &tensors)
}

fn check(path: &Path, name: &str, t: &TensorView<'_>) -> Result<(), TorchFileError> {
    let expected = t.numel().and_then(|n| n.checked_mul(t.dtype.size()));
    if expected != Some(t.data.len()) {
        return Err(TorchFileError::Write {
            path: path.to_owned(),
            message: format!(
                "tensor `{name}`: shape {:?} of {} needs {expected:?} bytes, {} given",
                t.shape,
                t.dtype,
                t.data.len()
            ),
        });
    }
    Ok(())
}

fn write_archive(path: &Path, pickle: &[u8], tensors: &[&TensorView<'_>]) -> Result<(), TorchFileError> {
    let err = |message: String| TorchFileError::Write { path: path.to_owned(), message };
    let archive = archive_folder(path);
    let tmp = temp_path(path);
    let result = (|| -> Result<(), String> {
        let file = File::create(&tmp).map_err(|e| e.to_string())?;
        let mut zip = ZipWriter::new(Latched::new(BufWriter::with_capacity(1 << 20, file)));
        let small = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        let put = |zip: &mut ZipWriter<_>, name: &str, data: &[u8], align: bool| -> Result<(), String> {
            let mut options = small.large_file(data.len() as u64 >= u32::MAX as u64);
            if align {
                // torch.save aligns every storage record to 64 bytes (for mmap loading).
                options = options.with_alignment(64);
            }
            zip.start_file(format!("{archive}/{name}"), options).map_err(|e| e.to_string())?;
            zip.write_all(data).map_err(|e| e.to_string())
        };
        put(&mut zip, "data.pkl", pickle, false)?;
        put(&mut zip, ".format_version", b"1", false)?;
        put(&mut zip, ".storage_alignment", b"64", false)?;
        put(&mut zip, "byteorder", b"little", false)?;
        for (i, t) in tensors.iter().enumerate() {
            put(&mut zip, &format!("data/{i}"), t.data, true)?;
        }
        put(&mut zip, "version", b"3\n", false)?;
        put(&mut zip, ".data/serialization_id", serialization_id().as_bytes(), false)?;
        let writer = zip.finish().map_err(|e| e.to_string())?;
        // No fsync: the rename already guarantees an interrupted process never leaves a partial
        // file under the final name, and syncing a 300 MB dataset file costs seconds.
        writer
            .into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map(drop)
            .map_err(|e| e.to_string())
    })();
    let renamed = result.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(message) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(message));
    }
    Ok(())
}

/// A writer that goes quiet after its first error: later writes and seeks succeed without touching
/// the file. Why: a `ZipWriter` dropped after a failed write (or a failed `finish`, e.g. on a full
/// disk) finalizes itself again in `Drop` and prints its own `ZipWriter::drop: failed to finalize
/// archive` line to stderr, beside the error we return. The first error is what the caller reports;
/// what follows it only goes to the temporary file, which is removed.
///
/// It keeps the logical position itself (the inner writer is never asked once it failed: asking a
/// `BufWriter` would flush, and fail, again), so the zip writer's finalize sees consistent offsets.
struct Latched<W> {
    inner: W,
    /// The logical position and the end of what was written.
    pos: u64,
    end: u64,
    failed: bool,
}

impl<W: Write + Seek> Latched<W> {
    fn new(inner: W) -> Self {
        Latched { inner, pos: 0, end: 0, failed: false }
    }

    /// The inner writer; an error if any write or seek failed (the file is then incomplete).
    fn into_inner(self) -> io::Result<W> {
        match self.failed {
            false => Ok(self.inner),
            true => Err(io::Error::other("an earlier write failed")),
        }
    }

    fn advance(&mut self, to: u64) {
        self.pos = to;
        self.end = self.end.max(to);
    }
}

impl<W: Write + Seek> Write for Latched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.failed {
            match self.inner.write(buf) {
                Ok(n) => {
                    self.advance(self.pos + n as u64);
                    return Ok(n);
                }
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        self.advance(self.pos + buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl<W: Write + Seek> Seek for Latched<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if !self.failed {
            match self.inner.seek(pos) {
                Ok(at) => {
                    self.advance(at);
                    return Ok(at);
                }
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        let at = match pos {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            SeekFrom::End(d) => self.end.saturating_add_signed(d),
        };
        self.pos = at;
        Ok(at)
    }
}

/// The archive's top folder: torch.save names it after the file; anything odd becomes `archive`.
pub(crate) fn archive_folder(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        stem
    } else {
        "archive".to_owned()
    }
}

/// The `data.pkl` of a one-tensor file (storage key `0`).
pub(crate) fn pickle_tensor(dtype: crate::Dtype, shape: &[usize]) -> Vec<u8> {
    let mut pickle = Pickler::new();
    pickle.tensor(&TensorView { dtype, shape: shape.to_vec(), data: &[] }, "0");
    pickle.stop();
    pickle.out
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A unique-enough decimal id, like the 40-digit one torch.save writes.
pub(crate) fn serialization_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:020}{:020}", nanos % 10u128.pow(20), std::process::id())
}

/// Emits protocol-2 pickle opcodes, the way torch.save lays out tensors and OrderedDicts.
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn new() -> Pickler {
        Pickler { out: vec![0x80, 2] }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: u64) {
        if v <= 0xff {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if v <= 0xffff {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v <= i32::MAX as u64 {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement; 9 bytes keeps the sign bit clear for any u64.
            self.out.extend_from_slice(&[0x8a, 9]);
            self.out.extend_from_slice(&v.to_le_bytes());
            self.out.push(0);
        }
    }

    fn int_tuple(&mut self, values: &[u64]) {
        match values.len() {
            0 => self.out.push(b')'),
            1..=3 => {
                values.iter().for_each(|&v| self.int(v));
                self.out.push(0x84 + values.len() as u8);
            }
            _ => {
                self.out.push(b'(');
                values.iter().for_each(|&v| self.int(v));
                self.out.push(b't');
            }
        }
    }

    /// `OrderedDict()`, then a MARK for the SETITEMS of its entries.
    fn ordered_dict_start(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend_from_slice(b")R(");
    }

    /// SETITEMS for the entries pushed since `ordered_dict_start`, or drop its MARK when there are
    /// none (a SETITEMS of nothing is legal, but torch.save writes none).
    fn ordered_dict_end(&mut self, has_items: bool) {
        if has_items {
            self.out.push(b'u');
        } else {
            self.out.pop();
        }
    }

    /// `_rebuild_tensor_v2(('storage', torch.XStorage, key, 'cpu', numel), 0, size, stride, False,
    /// OrderedDict())`, exactly as torch.save writes a contiguous tensor.
    fn tensor(&mut self, t: &TensorView<'_>, key: &str) {
        let numel = t.numel().unwrap_or(0) as u64;
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        let mut strides = vec![0u64; shape.len()];
        let mut acc = 1u64;
        for (s, &d) in strides.iter_mut().zip(&shape).rev() {
            *s = acc;
            acc = acc.saturating_mul(d.max(1));
        }
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(b'(');
        self.out.push(b'(');
        self.string("storage");
        self.global("torch", storage_class(t.dtype));
        self.string(key);
        self.string("cpu");
        self.int(numel);
        self.out.push(b't');
        self.out.push(b'Q');
        self.int(0);
        self.int_tuple(&shape);
        self.int_tuple(&strides);
        self.out.push(0x89);
        self.global("collections", "OrderedDict");
        self.out.push(b')');
        self.out.push(b'R');
        self.out.push(b't');
        self.out.push(b'R');
    }

    fn stop(&mut self) {
        self.out.push(b'.');
    }
}

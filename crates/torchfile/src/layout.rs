//! The byte layout of a one-tensor `torch.save` file, for writers that produce the tensor's bytes
//! themselves: in pieces, from many threads, straight to disk, without the whole tensor ever being
//! in memory.
//!
//! Why a layout and not a writer: such a writer owns its I/O (aligned direct writes, a file already
//! sized, pieces in any order), so this module only says where the data goes and what surrounds
//! it. The file is `head(crc)` at 0, the tensor's raw little-endian bytes at
//! [`ArchiveLayout::data_offset`], and `tail(crc)` after them; the CRC-32 of the data (combine the
//! pieces' with `crc32fast::Hasher::combine`) is needed only once all data is written, because
//! the head is written last.
//!
//! The archive is a plain zip of stored entries laid out as `torch.save` lays out its own (the same
//! records, the storage record aligned to 64 bytes). Archives of 4 GiB or more need zip64 records,
//! which this layout does not write: [`ArchiveLayout::new`] refuses them and callers use
//! [`crate::save_tensor`].

use crate::write::{archive_folder, pickle_tensor, serialization_id};
use crate::{Dtype, TorchFileError};
use std::path::Path;

/// Where a one-tensor `torch.save` file's parts go, and the bytes around the tensor's data.
#[derive(Debug)]
pub struct ArchiveLayout {
    entries: Vec<EntryInfo>,
    data_offset: u64,
    data_len: u64,
    len: u64,
}

#[derive(Debug)]
struct EntryInfo {
    name: String,
    bytes: Option<Vec<u8>>,
    offset: u64,
    padding: usize,
}

const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
const END_RECORD: u64 = 22;
/// The extra-field id `torch.save`'s writer pads with (`FB`).
const PADDING_FIELD: u16 = 0x4246;
/// 1980-01-01 00:00, the earliest DOS date (what `torch.save` writes too).
const DOS_DATE: u16 = (1 << 5) | 1;

impl ArchiveLayout {
    /// The layout of `torch.save(tensor, path)` for a contiguous tensor of `dtype` and `shape`
    /// (the archive folder is named after `path`'s stem, as torch.save does). Refused when the
    /// file would reach 4 GiB (zip64 is not written here).
    pub fn new(path: &Path, dtype: Dtype, shape: &[usize]) -> Result<ArchiveLayout, TorchFileError> {
        ArchiveLayout::build(path, dtype, shape, None)
    }

    /// As [`ArchiveLayout::new`], with the data at `data_offset` (a multiple of 64, at or after
    /// where `new` puts it; the padding before it grows). For writers that place data before they
    /// know the final shape: take the `data_offset` of the largest shape possible (the offset never
    /// shrinks as dimensions grow).
    pub fn new_at(
        path: &Path,
        dtype: Dtype,
        shape: &[usize],
        data_offset: u64,
    ) -> Result<ArchiveLayout, TorchFileError> {
        ArchiveLayout::build(path, dtype, shape, Some(data_offset))
    }

    fn build(
        path: &Path,
        dtype: Dtype,
        shape: &[usize],
        at_offset: Option<u64>,
    ) -> Result<ArchiveLayout, TorchFileError> {
        let err = |message: String| TorchFileError::Write { path: path.to_owned(), message };
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let data_len = numel
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| err(format!("shape {shape:?} of {dtype} overflows")))? as u64;
        let folder = archive_folder(path);
        let records: Vec<(&str, Option<Vec<u8>>)> = vec![
            ("data.pkl", Some(pickle_tensor(dtype, shape))),
            (".format_version", Some(b"1".to_vec())),
            (".storage_alignment", Some(b"64".to_vec())),
            ("byteorder", Some(b"little".to_vec())),
            ("data/0", None),
            ("version", Some(b"3\n".to_vec())),
            (".data/serialization_id", Some(serialization_id().into_bytes())),
        ];
        let mut entries = Vec::with_capacity(records.len());
        let mut at = 0u64;
        let mut data_offset = 0;
        for (name, bytes) in records {
            let name = format!("{folder}/{name}");
            let header_end = at + LOCAL_HEADER + name.len() as u64;
            let (padding, len) = match &bytes {
                Some(b) => (0, b.len() as u64),
                None => {
                    // An extra field is at least its 4-byte header.
                    let natural = (header_end + 4).next_multiple_of(64);
                    data_offset = at_offset.unwrap_or(natural);
                    if data_offset < natural || data_offset % 64 != 0 || data_offset - header_end > u16::MAX as u64 {
                        return Err(err(format!(
                            "the data cannot start at byte {data_offset} (it needs a multiple of 64 from {natural} \
                             to {})",
                            header_end + u16::MAX as u64
                        )));
                    }
                    let pad = (data_offset - header_end) as usize;
                    (pad, data_len)
                }
            };
            entries.push(EntryInfo { name, bytes, offset: at, padding });
            at = header_end + padding as u64 + len;
        }
        let central: u64 = entries.iter().map(|e| CENTRAL_HEADER + e.name.len() as u64).sum();
        let len = at + central + END_RECORD;
        if len >= u32::MAX as u64 {
            return Err(err(format!(
                "{len} bytes need a zip64 archive, which the streamed layout does not write (use save_tensor)"
            )));
        }
        Ok(ArchiveLayout { entries, data_offset, data_len, len })
    }

    /// Where the tensor's bytes start (a multiple of 64).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// How many bytes the tensor's data takes.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The whole file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never: even an empty tensor has its records.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bytes before the data (`0..data_offset`), given the CRC-32 of the data.
    pub fn head(&self, data_crc: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data_offset as usize);
        for e in &self.entries {
            self.put_local(&mut out, e, data_crc);
            if e.bytes.is_none() {
                break;
            }
        }
        debug_assert_eq!(out.len() as u64, self.data_offset);
        out
    }

    /// The bytes after the data (`data_offset + data_len..len`), given the CRC-32 of the data.
    pub fn tail(&self, data_crc: u32) -> Vec<u8> {
        let data_end = self.data_offset + self.data_len;
        let mut out = Vec::with_capacity((self.len - data_end) as usize);
        let after = self.entries.iter().position(|e| e.bytes.is_none()).map_or(0, |i| i + 1);
        for e in &self.entries[after..] {
            self.put_local(&mut out, e, data_crc);
        }
        let central_offset = data_end + out.len() as u64;
        for e in &self.entries {
            put_u32(&mut out, 0x0201_4b50);
            put_u16(&mut out, 20); // made by: 2.0, MS-DOS attributes
            self.put_common(&mut out, e, data_crc);
            put_u16(&mut out, 0); // extra
            put_u16(&mut out, 0); // comment
            put_u16(&mut out, 0); // disk
            put_u16(&mut out, 0); // internal attributes
            put_u32(&mut out, 0); // external attributes
            put_u32(&mut out, e.offset as u32);
            out.extend_from_slice(e.name.as_bytes());
        }
        let central_len = data_end + out.len() as u64 - central_offset;
        put_u32(&mut out, 0x0605_4b50);
        put_u16(&mut out, 0);
        put_u16(&mut out, 0);
        put_u16(&mut out, self.entries.len() as u16);
        put_u16(&mut out, self.entries.len() as u16);
        put_u32(&mut out, central_len as u32);
        put_u32(&mut out, central_offset as u32);
        put_u16(&mut out, 0);
        debug_assert_eq!(data_end + out.len() as u64, self.len);
        out
    }

    /// An entry's local header, its padding field, and its bytes (none for the storage record).
    fn put_local(&self, out: &mut Vec<u8>, e: &EntryInfo, data_crc: u32) {
        put_u32(out, 0x0403_4b50);
        self.put_common(out, e, data_crc);
        put_u16(out, e.padding as u16); // extra
        out.extend_from_slice(e.name.as_bytes());
        if e.padding > 0 {
            put_u16(out, PADDING_FIELD);
            put_u16(out, (e.padding - 4) as u16);
            out.resize(out.len() + e.padding - 4, 0);
        }
        out.extend_from_slice(e.bytes.as_deref().unwrap_or_default());
    }

    /// The fields local and central headers share, from "version needed" to the name's length.
    fn put_common(&self, out: &mut Vec<u8>, e: &EntryInfo, data_crc: u32) {
        let (crc, size) = self.crc_and_size(e, data_crc);
        put_u16(out, 20); // version needed: 2.0
        put_u16(out, 0); // flags
        put_u16(out, 0); // stored
        put_u16(out, 0); // time
        put_u16(out, DOS_DATE);
        put_u32(out, crc);
        put_u32(out, size as u32);
        put_u32(out, size as u32);
        put_u16(out, e.name.len() as u16);
    }

    fn crc_and_size(&self, e: &EntryInfo, data_crc: u32) -> (u32, u64) {
        match &e.bytes {
            Some(b) => (crc32fast::hash(b), b.len() as u64),
            None => (data_crc, self.data_len),
        }
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TorchFile;

    fn write(path: &Path, layout: &ArchiveLayout, data: &[u8]) {
        let crc = crc32fast::hash(data);
        let mut file = layout.head(crc);
        file.extend_from_slice(data);
        file.extend_from_slice(&layout.tail(crc));
        assert_eq!(file.len() as u64, layout.len());
        std::fs::write(path, file).unwrap();
    }

    #[test]
    fn a_streamed_layout_reads_back_with_our_reader() {
        let dir = tempfile::tempdir().unwrap();
        for rows in [0usize, 1, 3, 1000] {
            let values: Vec<i64> = (0..2 * rows as i64).map(|v| v * 7 - 3).collect();
            let path = dir.path().join(format!("train_data_{rows}.pt"));
            let layout = ArchiveLayout::new(&path, Dtype::Int64, &[rows, 2]).unwrap();
            assert_eq!(layout.data_offset() % 64, 0);
            assert_eq!(layout.data_len(), 16 * rows as u64);
            write(&path, &layout, bytemuck::cast_slice(&values));
            let mut pt = TorchFile::open(&path).unwrap();
            let t = pt.tensor().unwrap();
            assert_eq!(t.shape, [rows, 2]);
            assert_eq!(pt.read(&t).unwrap().to_i64(), values);
        }
    }

    #[test]
    fn data_placed_further_on_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.pt");
        let at = ArchiveLayout::new(&path, Dtype::Float32, &[100_000, 1]).unwrap().data_offset();
        let small = ArchiveLayout::new(&path, Dtype::Float32, &[3, 1]).unwrap();
        assert!(small.data_offset() <= at);
        let layout = ArchiveLayout::new_at(&path, Dtype::Float32, &[3, 1], at + 64).unwrap();
        assert_eq!(layout.data_offset(), at + 64);
        write(&path, &layout, bytemuck::cast_slice(&[1.0f32, 0.0, 1.0]));
        let mut pt = TorchFile::open(&path).unwrap();
        let t = pt.tensor().unwrap();
        assert_eq!(pt.read(&t).unwrap().to_f32(), [1.0, 0.0, 1.0]);
        assert!(ArchiveLayout::new_at(&path, Dtype::Float32, &[3, 1], at + 1).is_err());
        assert!(ArchiveLayout::new_at(&path, Dtype::Float32, &[3, 1], 0).is_err());
    }

    #[test]
    fn archives_of_4_gib_are_refused() {
        let e = ArchiveLayout::new(Path::new("big.pt"), Dtype::Int64, &[1 << 29, 1]).unwrap_err();
        assert!(e.to_string().contains("zip64"), "{e}");
    }
}

//! The fast path for mappings held in one chunk each (the usual case): their CSV files parsed
//! piece by piece, each piece straight into its place in the tensor files, without the tensors
//! ever being whole in memory.
//!
//! Why: transcoding is I/O-shaped. Building 677 MB of tensors in memory and then writing them
//! costs, on the virtual machines we measured, more in first-touch page faults and page-cache
//! copies than parsing does, and varies several-fold from run to run. Here one parser per core
//! reads a piece with `pread` (no memory map of a file someone else may truncate) into a buffer it
//! reuses, parses it into output windows taken from a small recycled set (so almost no fresh
//! memory is touched), and hands them to writer threads that write them with direct I/O
//! (`O_DIRECT`: the device reads our buffer, no page-cache copy) where the file system allows it,
//! ordinary `pwrite` otherwise.
//!
//! A piece's place in the file (its first row) is the number of lines before it: a parser counts
//! its piece's lines, waits for the counts of the pieces before it (quick: counting is a `memchr`
//! pass), then parses straight into windows aligned as the file offsets need. A blank
//! line (pandas skips it, so it is no row) breaks the count; the mapping then falls back to the
//! in-memory path, which handles it.
//!
//! The archive around the data (zip headers, pickle, directory) comes from
//! [`torchfile::ArchiveLayout`] and is written last, once the data's CRC-32 is known, so a failed
//! run leaves an invalid archive in a temporary folder that is then removed.

use crate::read::{count_lines, parse_any_line, Cell, Role, Slot};
use crate::TranscodeError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use torchfile::{ArchiveLayout, Dtype};

/// Bytes of CSV per piece (a piece runs on to the end of its last line).
const PIECE_BYTES: u64 = 4 << 20;
/// Direct I/O needs file offsets, lengths and buffer addresses aligned to the device's block; a
/// memory page at least, so that no page holds both direct-written bytes and ordinary-written ones
/// (the direct write's page-cache invalidation could otherwise lose to a stale page).
fn align() -> usize {
    static ALIGN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ALIGN.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(page).unwrap_or(0).max(4096)
    })
}

/// A mapping to stream: its chunk's files (consecutive rows), where each column goes, and the two
/// tensor files to write.
pub(crate) struct MappingFiles<'a> {
    pub files: &'a [PathBuf],
    pub slots: &'a [Slot],
    pub pairs_path: PathBuf,
    pub labels_path: PathBuf,
    /// Try direct I/O (`false`: the page cache only, as where the file system refuses it).
    pub direct: bool,
}

/// What streaming a mapping found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamedMapping {
    pub rows: usize,
    /// Largest user and item id (-1 when there are no rows).
    pub largest: [i64; 2],
}

/// A piece of one input file: the lines that start in `[start, end)` of its bytes.
#[derive(Debug, Clone, Copy)]
struct Piece {
    mapping: usize,
    file: usize,
    start: u64,
    end: u64,
}

/// Why a piece failed: a bad line (numbered within the piece) or an I/O error.
enum PieceError {
    Line { line: u64, message: String },
    Io { path: PathBuf, source: std::io::Error },
}

/// A piece's outcome, gathered once all pieces are done.
struct PieceResult {
    rows: u64,
    crc: [crc32fast::Hasher; 2],
    largest: [i64; 2],
    first_line: u64,
    /// A blank line: fewer rows than lines, so every later row is misplaced.
    irregular: bool,
    error: Option<PieceError>,
}

/// One output tensor file: where its data goes, and how it is written.
struct Output {
    path: PathBuf,
    /// Where the data starts: that of the largest row count the input could hold, so that it is
    /// known before the row count is.
    data_offset: u64,
    /// Opened with `O_DIRECT`, where the file system allows it.
    direct: Option<File>,
    /// Ordinary writes: the unaligned edges of each piece, the archive's head and tail.
    buffered: File,
    /// 16 for the `[N, 2]` int64 pairs, 4 for the float32 labels.
    row_bytes: u64,
    /// The pieces' unaligned edges (offset, bytes), written last.
    edges: Mutex<Vec<(u64, Vec<u8>)>>,
}

/// A mapping's inputs and outputs during the run.
struct Streaming<'a> {
    files: &'a [PathBuf],
    slots: &'a [Slot],
    inputs: Vec<File>,
    lens: Vec<u64>,
    /// Pairs (`[N, 2]` int64) and labels (`[N, 1]` float32).
    outputs: [Output; 2],
    /// A blank line was found: the rest of the mapping is not worth parsing.
    irregular: AtomicBool,
}

/// Streams each mapping into its two tensor files. `None` for a mapping the caller must write in
/// memory instead: one with blank lines, or one so large its archives would need zip64 (its
/// partial files are removed).
pub(crate) fn stream_mappings(mappings: &[MappingFiles<'_>]) -> Result<Vec<Option<StreamedMapping>>, TranscodeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TranscodeError::Io { path, source }
    };
    let mut streams = Vec::new();
    let mut pieces = Vec::new();
    for (m, mapping) in mappings.iter().enumerate() {
        let mut inputs = Vec::with_capacity(mapping.files.len());
        let mut lens = Vec::with_capacity(mapping.files.len());
        let mut mapping_pieces = Vec::new();
        for (f, path) in mapping.files.iter().enumerate() {
            let file = crate::read::open_input(path)?;
            let len = file.metadata().map_err(io(path))?.len();
            for k in 0..len.div_ceil(PIECE_BYTES) {
                let end = ((k + 1) * PIECE_BYTES).min(len);
                mapping_pieces.push(Piece { mapping: m, file: f, start: k * PIECE_BYTES, end });
            }
            inputs.push(file);
            lens.push(len);
        }
        // A row is a line with at least a digit for each of user, item and label, a comma between
        // each two of its `columns` fields (others may be empty) and a line end (but for a file's
        // last line): a bound on the rows, so on the archives and where their data starts.
        let columns = mapping.slots.len() as u64;
        let most_rows = (lens.iter().sum::<u64>() / (columns + 2) + lens.len() as u64) as usize;
        let Ok(pairs) = ArchiveLayout::new(&mapping.pairs_path, Dtype::Int64, &[most_rows, 2]) else {
            streams.push(None);
            continue;
        };
        let labels = ArchiveLayout::new(&mapping.labels_path, Dtype::Float32, &[most_rows, 1])?;
        let outputs = [
            Output::create(&mapping.pairs_path, pairs.data_offset(), 16, mapping.direct)?,
            Output::create(&mapping.labels_path, labels.data_offset(), 4, mapping.direct)?,
        ];
        pieces.extend(mapping_pieces);
        let irregular = AtomicBool::new(false);
        streams.push(Some(Streaming { files: mapping.files, slots: mapping.slots, inputs, lens, outputs, irregular }));
    }

    let run = Run { streams: &streams, pieces: &pieces, lines: Mutex::new(vec![None; pieces.len()]) };
    let mut results = run.all_pieces();
    if results.len() < pieces.len() {
        // A failure stopped the run: every mapping after it is incomplete, so the first failure
        // is the answer, even in a mapping that would have gone to the in-memory path.
        let failed = results.iter().position(|r| r.error.is_some());
        if let Some(k) = failed {
            let (r, piece) = (results.swap_remove(k), pieces[k]);
            let files = streams[piece.mapping].as_ref().map_or(&[][..], |s| s.files);
            return Err(piece_error(r, files.get(piece.file)));
        }
    }

    // The first failure in spec and file order is reported.
    let mut found: Vec<_> =
        streams.iter().map(|_| (0u64, [-1i64; 2], [crc32fast::Hasher::new(), crc32fast::Hasher::new()])).collect();
    for (r, piece) in results.into_iter().zip(&pieces) {
        let stream = streams[piece.mapping].as_ref().filter(|s| !s.irregular.load(Ordering::Relaxed));
        let Some(stream) = stream else { continue };
        if r.error.is_some() {
            return Err(piece_error(r, stream.files.get(piece.file)));
        }
        let (rows, largest, crc) = &mut found[piece.mapping];
        *rows += r.rows;
        for k in 0..2 {
            largest[k] = largest[k].max(r.largest[k]);
            crc[k].combine(&r.crc[k]);
        }
    }
    let mut written = Vec::with_capacity(streams.len());
    for ((stream, mapping), (rows, largest, crc)) in streams.into_iter().zip(mappings).zip(found) {
        let Some(stream) = stream else {
            written.push(None);
            continue;
        };
        let [pairs, labels] = stream.outputs;
        if stream.irregular.into_inner() {
            for path in [&mapping.pairs_path, &mapping.labels_path] {
                std::fs::remove_file(path).map_err(io(path))?;
            }
            written.push(None);
            continue;
        }
        let rows = rows as usize;
        let [pairs_crc, labels_crc] = crc;
        let layout = ArchiveLayout::new_at(&mapping.pairs_path, Dtype::Int64, &[rows, 2], pairs.data_offset)?;
        pairs.finish(layout, pairs_crc.finalize())?;
        let layout = ArchiveLayout::new_at(&mapping.labels_path, Dtype::Float32, &[rows, 1], labels.data_offset)?;
        labels.finish(layout, labels_crc.finalize())?;
        written.push(Some(StreamedMapping { rows, largest }));
    }
    Ok(written)
}

/// A failed piece's error, its line numbered in `file`.
fn piece_error(result: PieceResult, file: Option<&PathBuf>) -> TranscodeError {
    match result.error {
        Some(PieceError::Line { line, message }) => TranscodeError::Malformed {
            path: file.cloned().unwrap_or_default(),
            line: result.first_line + line,
            message,
        },
        Some(PieceError::Io { path, source }) => TranscodeError::Io { path, source },
        None => TranscodeError::Io { path: PathBuf::new(), source: std::io::Error::other("no error (a bug)") },
    }
}

/// The shared state of the parsers.
struct Run<'a> {
    streams: &'a [Option<Streaming<'a>>],
    pieces: &'a [Piece],
    /// Each piece's line count, once counted; a piece waits for those of all pieces before it.
    lines: Mutex<Vec<Option<u64>>>,
}

/// Output windows, passed from a parser to a writer and back.
#[derive(Default)]
struct Windows {
    /// Over-allocated, so that a window starting at any offset within an aligned block exists.
    pairs: Vec<i64>,
    labels: Vec<f32>,
}

/// A parsed piece's aligned middles, for a writer to write with direct I/O.
struct DirectWrite<'a> {
    piece: usize,
    windows: Windows,
    /// Per output: the file, the byte range of the window's buffer, and where it goes.
    spans: Vec<(&'a Output, std::ops::Range<usize>, u64)>,
}

/// Parsers hand their windows to writers and take free ones back.
struct Handoff<'a> {
    to_write: Mutex<std::sync::mpsc::Receiver<DirectWrite<'a>>>,
    free: Mutex<std::sync::mpsc::Receiver<Windows>>,
    freed: std::sync::mpsc::Sender<Windows>,
    /// Errors of direct writes, by piece.
    failures: Mutex<Vec<(usize, PieceError)>>,
}

/// Writer threads: a few requests in flight keep the device busy whatever the parsers do (on our
/// 2-core VM 1 writer gave 0.49-0.62 s for the ML-20m-shaped dataset, 2 gave 0.44-0.58 s, 3 gave
/// 0.42-0.48 s, 4 no better).
const WRITERS: usize = 3;

impl<'a> Run<'a> {
    /// Every piece: one parser per core takes pieces in order, writes the unaligned edges itself
    /// and hands the aligned middles to [`WRITERS`] threads that only do direct I/O, so that the
    /// device never waits for a parser to be scheduled.
    fn all_pieces(&self) -> Vec<PieceResult> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let published = Condvar::new();
        let parsers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (write_tx, write_rx) = std::sync::mpsc::channel::<DirectWrite<'_>>();
        let (freed, free_rx) = std::sync::mpsc::channel();
        for _ in 0..parsers + WRITERS + 1 {
            let _ = freed.send(Windows::default());
        }
        let handoff = Handoff {
            to_write: Mutex::new(write_rx),
            free: Mutex::new(free_rx),
            freed,
            failures: Mutex::new(Vec::new()),
        };
        let mut results: Vec<(usize, PieceResult)> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS).map(|_| scope.spawn(|| handoff.write_all(&failed))).collect();
            let handles: Vec<_> = (0..parsers)
                .map(|_| {
                    let write_tx = write_tx.clone();
                    let (next, failed, published, handoff) = (&next, &failed, &published, &handoff);
                    scope.spawn(move || {
                        let mut parser = Parser::default();
                        let mut done = Vec::new();
                        while !failed.load(Ordering::Relaxed) {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            if k >= self.pieces.len() {
                                break;
                            }
                            let result = parser.piece(self, k, published, handoff, &write_tx);
                            if result.error.is_some() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            done.push((k, result));
                        }
                        done
                    })
                })
                .collect();
            drop(write_tx);
            let done: Vec<_> =
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect();
            for w in writers {
                w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
            done
        });
        for (k, e) in handoff.failures.into_inner().unwrap_or_else(|p| p.into_inner()) {
            if let Some((_, r)) = results.iter_mut().find(|(j, _)| *j == k) {
                r.error.get_or_insert(e);
            }
        }
        results.sort_by_key(|(k, _)| *k);
        // Pieces not taken after a failure come after the failing one: never reported.
        results.into_iter().map(|(_, r)| r).collect()
    }

    /// Publishes piece `k`'s line count, waits for those of all earlier pieces, and returns the
    /// piece's first row in its mapping and first line (1-based) in its file.
    fn place(&self, k: usize, lines: u64, published: &Condvar) -> (u64, u64) {
        let mut all = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        all[k] = Some(lines);
        published.notify_all();
        while !all[..k].iter().all(Option::is_some) {
            all = published.wait(all).unwrap_or_else(|p| p.into_inner());
        }
        let this = self.pieces[k];
        let (mut row, mut line) = (0, 1);
        for (p, n) in self.pieces[..k].iter().zip(all.iter()) {
            let n = n.unwrap_or(0);
            if p.mapping == this.mapping {
                row += n;
                if p.file == this.file {
                    line += n;
                }
            }
        }
        (row, line)
    }
}

impl Handoff<'_> {
    /// A writer: direct writes until the parsers are done, windows back to the free list.
    fn write_all(&self, failed: &AtomicBool) {
        loop {
            let job = self.to_write.lock().unwrap_or_else(|p| p.into_inner()).recv();
            let Ok(job) = job else { return };
            for (out, range, at) in &job.spans {
                let bytes: &[u8] = match out.row_bytes {
                    16 => &bytemuck::cast_slice(&job.windows.pairs)[range.clone()],
                    _ => &bytemuck::cast_slice(&job.windows.labels)[range.clone()],
                };
                if let Err(e) = out.write_direct(bytes, *at) {
                    failed.store(true, Ordering::Relaxed);
                    self.failures.lock().unwrap_or_else(|p| p.into_inner()).push((job.piece, e));
                }
            }
            let _ = self.freed.send(job.windows);
        }
    }

    fn take_free(&self) -> Windows {
        // Never fails: this handoff holds a sender of the free list.
        self.free.lock().unwrap_or_else(|p| p.into_inner()).recv().unwrap_or_default()
    }
}

/// A parser's own buffer, reused from piece to piece.
#[derive(Default)]
struct Parser {
    text: Vec<u8>,
}

impl Parser {
    fn piece<'a>(
        &mut self,
        run: &'a Run<'_>,
        k: usize,
        published: &Condvar,
        handoff: &Handoff<'a>,
        write_tx: &std::sync::mpsc::Sender<DirectWrite<'a>>,
    ) -> PieceResult {
        let piece = run.pieces[k];
        let mut result = PieceResult {
            rows: 0,
            crc: [crc32fast::Hasher::new(), crc32fast::Hasher::new()],
            largest: [-1, -1],
            first_line: 1,
            irregular: false,
            error: None,
        };
        let Some(stream) = &run.streams[piece.mapping] else {
            run.place(k, 0, published);
            return result;
        };
        let read = self.read(stream, piece);
        let lines = read.as_ref().map_or(0, |range| count_lines(&self.text[range.clone()]) as u64);
        // Published even on failure, so that no later piece waits forever.
        let (first_row, first_line) = run.place(k, lines, published);
        result.first_line = first_line;
        let range = match read {
            Ok(range) => range,
            Err(e) => {
                result.error = Some(e);
                return result;
            }
        };
        if stream.irregular.load(Ordering::Relaxed) {
            return result;
        }
        let [pairs_out, labels_out] = &stream.outputs;
        let n = lines as usize;
        let mut windows = handoff.take_free();
        let pairs_at = pairs_out.data_offset + 16 * first_row;
        let labels_at = labels_out.data_offset + 4 * first_row;
        let (pairs, pairs_start) = window(&mut windows.pairs, pairs_at, 2 * n);
        let (labels, labels_start) = window(&mut windows.labels, labels_at, n);
        let parsed = parse_rows(&self.text[range], stream.slots, pairs, labels, &mut result.largest);
        match parsed {
            Err(e) => result.error = Some(e),
            Ok(rows) if rows != n => {
                result.irregular = true;
                stream.irregular.store(true, Ordering::Relaxed);
            }
            Ok(rows) => {
                result.rows = rows as u64;
                let mut spans = Vec::with_capacity(2);
                let pairs_bytes: &[u8] = bytemuck::cast_slice(pairs);
                let labels_bytes: &[u8] = bytemuck::cast_slice(labels);
                let written = pairs_out
                    .write_edges(pairs_bytes, pairs_at, &mut result.crc[0])
                    .and_then(|middle| {
                        spans.extend(middle.map(|(r, at)| (pairs_out, shift(r, 8 * pairs_start), at)));
                        labels_out.write_edges(labels_bytes, labels_at, &mut result.crc[1])
                    })
                    .map(|middle| spans.extend(middle.map(|(r, at)| (labels_out, shift(r, 4 * labels_start), at))));
                match written {
                    Err(e) => result.error = Some(e),
                    Ok(()) if !spans.is_empty() => {
                        // The writers outlive the parsers: the send cannot fail.
                        let _ = write_tx.send(DirectWrite { piece: k, windows, spans });
                        return result;
                    }
                    Ok(()) => {}
                }
            }
        }
        let _ = handoff.freed.send(windows);
        result
    }

    /// Reads the piece's bytes (with the byte before it and the rest of its last line) and returns
    /// the range of `self.text` holding the lines that start inside the piece.
    fn read(&mut self, stream: &Streaming<'_>, piece: Piece) -> Result<std::ops::Range<usize>, PieceError> {
        let path = &stream.files[piece.file];
        let io = |source| PieceError::Io { path: path.clone(), source };
        let len = stream.lens[piece.file];
        // From one byte before the piece: a line starts at its first byte if that one is a `\n`.
        let from = piece.start.saturating_sub(1);
        let mut to = (piece.end + (64 << 10)).min(len);
        loop {
            self.text.resize((to - from) as usize, 0);
            stream.inputs[piece.file].read_exact_at(&mut self.text, from).map_err(io)?;
            let start = if piece.start == 0 { Some(0) } else { memchr::memchr(b'\n', &self.text).map(|i| i + 1) };
            let start = match start {
                Some(s) if from + (s as u64) < piece.end => s,
                // No line starts inside the piece (one long line runs through it).
                _ => return Ok(0..0),
            };
            // The piece's last line ends at the first line end at or after its last byte.
            let last = (piece.end - 1 - from) as usize;
            match memchr::memchr(b'\n', &self.text[last..]) {
                Some(i) => return Ok(start..last + i + 1),
                None if to == len => return Ok(start..self.text.len()),
                // A long last line: read further.
                None => to = (to + (to - from)).min(len),
            }
        }
    }
}

/// `len` elements of `buf` (grown as needed) starting at an address that is `file_offset` modulo
/// [`align`], so that the aligned blocks of the file map to aligned blocks of memory; and the index
/// of its first element in `buf`.
fn window<T: bytemuck::Pod>(buf: &mut Vec<T>, file_offset: u64, len: usize) -> (&mut [T], usize) {
    let size = std::mem::size_of::<T>();
    let align = align();
    let spare = 2 * align / size;
    if buf.len() < len + spare {
        *buf = vec![T::zeroed(); len + spare];
    }
    let skip = buf.as_ptr().align_offset(align) + (file_offset as usize % align) / size;
    (&mut buf[skip..skip + len], skip)
}

fn shift(range: std::ops::Range<usize>, by: usize) -> std::ops::Range<usize> {
    range.start + by..range.end + by
}

impl Output {
    /// Takes a piece's bytes (their CRC too) that go at file offset `at`: keeps what direct I/O
    /// cannot write (the unaligned edges) for [`Output::finish`], or writes everything through the
    /// page cache without direct I/O, and returns the aligned middle left to write directly, as a
    /// range of `bytes` and its offset. Why keep the edges: on ext4 a direct write into fresh
    /// blocks holds the file's lock until the device is done, so an ordinary write meanwhile would
    /// stall the parser that makes it.
    fn write_edges(
        &self,
        bytes: &[u8],
        at: u64,
        crc: &mut crc32fast::Hasher,
    ) -> Result<Option<(std::ops::Range<usize>, u64)>, PieceError> {
        crc.update(bytes);
        let io = |source| PieceError::Io { path: self.path.clone(), source };
        let end = at + bytes.len() as u64;
        let align = align() as u64;
        let (lo, hi) = (at.next_multiple_of(align), end / align * align);
        if self.direct.is_none() {
            self.buffered.write_all_at(bytes, at).map_err(io)?;
            return Ok(None);
        }
        let mut edges = self.edges.lock().unwrap_or_else(|p| p.into_inner());
        if lo >= hi {
            // No whole block: all of it is edge (under two blocks).
            edges.push((at, bytes.to_vec()));
            return Ok(None);
        }
        let (head, tail) = ((lo - at) as usize, (hi - at) as usize);
        edges.push((at, bytes[..head].to_vec()));
        edges.push((hi, bytes[tail..].to_vec()));
        Ok(Some((head..tail, lo)))
    }

    /// Writes an aligned span with direct I/O (through the page cache on a file system that opens
    /// files for direct I/O but refuses the writes).
    fn write_direct(&self, bytes: &[u8], at: u64) -> Result<(), PieceError> {
        let io = |source| PieceError::Io { path: self.path.clone(), source };
        match self.direct.as_ref().map(|d| d.write_all_at(bytes, at)) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => Err(io(e)),
            _ => self.buffered.write_all_at(bytes, at).map_err(io),
        }
    }

    fn create(path: &Path, data_offset: u64, row_bytes: u64, direct: bool) -> Result<Output, TranscodeError> {
        let io = |source| TranscodeError::Io { path: path.to_owned(), source };
        let buffered = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
        let direct = if direct { open_direct(path) } else { None };
        let edges = Mutex::new(Vec::new());
        Ok(Output { path: path.to_owned(), data_offset, direct, buffered, row_bytes, edges })
    }

    /// Writes the archive around the data, now that the row count and CRC are known.
    fn finish(self, layout: ArchiveLayout, crc: u32) -> Result<(), TranscodeError> {
        let path = self.path.clone();
        let io = |source| TranscodeError::Io { path: path.clone(), source };
        for (at, bytes) in self.edges.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.buffered.write_all_at(&bytes, at).map_err(io)?;
        }
        let data_end = layout.data_offset() + layout.data_len();
        self.buffered.write_all_at(&layout.tail(crc), data_end).map_err(io)?;
        self.buffered.write_all_at(&layout.head(crc), 0).map_err(io)?;
        self.buffered.set_len(layout.len()).map_err(io)
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

/// Parses a piece's lines into `pairs` (2 per line) and `labels` (1 per line), tracking the largest
/// user and item id; returns the rows written (fewer than the lines when some are blank), or the
/// first bad line (numbered within the piece, from 0) and why.
fn parse_rows(
    text: &[u8],
    slots: &[Slot],
    pairs: &mut [i64],
    labels: &mut [f32],
    largest: &mut [i64; 2],
) -> Result<usize, PieceError> {
    let roles: Vec<Role> = slots.iter().map(|s| s.role()).collect();
    let mut cells = vec![Cell::default(); roles.len()];
    let standard = slots == [Slot::User, Slot::Item, Slot::Label];
    let (mut max_user, mut max_item) = (largest[0], largest[1]);
    let mut pos = 0;
    let mut row = 0;
    let mut line = 0;
    while pos < text.len() && row < labels.len() {
        line += 1;
        let parsed = if standard { parse_standard(text, pos) } else { None };
        let (user, item, label) = match parsed {
            Some((user, item, label, next)) => {
                pos = next;
                (user, item, label)
            }
            None => {
                let end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i + 1);
                let whole = &text[pos..end];
                pos = end;
                let whole = whole.strip_suffix(b"\n").unwrap_or(whole);
                let is_row = parse_any_line(whole, &roles, &mut cells)
                    .map_err(|message| PieceError::Line { line: line - 1, message })?;
                if !is_row {
                    continue; // a blank line
                }
                let (mut user, mut item, mut label) = (0, 0, 0.0);
                for (cell, slot) in cells.iter().zip(slots) {
                    match slot {
                        Slot::User => user = cell.id,
                        Slot::Item => item = cell.id,
                        Slot::Label => label = cell.label,
                        Slot::Skip => {}
                    }
                }
                (user, item, label)
            }
        };
        pairs[2 * row] = user;
        pairs[2 * row + 1] = item;
        labels[row] = label;
        max_user = max_user.max(user);
        max_item = max_item.max(item);
        row += 1;
    }
    *largest = [max_user, max_item];
    Ok(row)
}

/// `user,item,label` with plain digits (1 to 18) and a 0/1 label, ending in `\n`, `\r\n` or the
/// end of the text: the values and where the next line starts. `None` for anything else.
#[inline(always)]
fn parse_standard(text: &[u8], pos: usize) -> Option<(i64, i64, f32, usize)> {
    let (user, pos) = id_and_comma(text, pos)?;
    let (item, pos) = id_and_comma(text, pos)?;
    let label = match text.get(pos) {
        Some(b'0') => 0.0,
        Some(b'1') => 1.0,
        _ => return None,
    };
    match text.get(pos + 1) {
        None => Some((user, item, label, pos + 1)),
        Some(b'\n') => Some((user, item, label, pos + 2)),
        Some(b'\r') if text.get(pos + 2) == Some(&b'\n') => Some((user, item, label, pos + 3)),
        _ => None,
    }
}

/// An id of 1 to 18 plain digits at `pos` followed by a comma: its value and the position after
/// the comma. Ids of up to 7 digits (all of ML-20m's) are read 8 bytes at a time.
#[inline(always)]
fn id_and_comma(text: &[u8], pos: usize) -> Option<(i64, usize)> {
    if let Some(word) = text.get(pos..pos + 8) {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        if let Some((value, digits)) = swar_digits(word) {
            return (word.to_le_bytes()[digits] == b',').then_some((value as i64, pos + digits + 1));
        }
    }
    let start = pos;
    let mut pos = pos;
    let mut value = 0i64;
    while let Some(&b) = text.get(pos) {
        let d = b.wrapping_sub(b'0');
        if d > 9 || pos - start == 18 {
            break; // a 19th digit may overflow: the general path decides
        }
        value = value * 10 + i64::from(d);
        pos += 1;
    }
    (pos > start && pos - start <= 18 && text.get(pos) == Some(&b',')).then_some((value, pos + 1))
}

/// The value of the 1 to 7 decimal digits that start an 8-byte little-endian word, and how many
/// there are; `None` when it starts with no digit or with 8 (then the byte-wise loop decides).
/// The SWAR scheme: subtract `'0'` from every byte, find the first byte outside 0..=9, shift the
/// digits to the top of the word and fold pairs, quads and octets with three multiplications.
#[inline(always)]
fn swar_digits(word: u64) -> Option<(u64, usize)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = word.wrapping_sub(0x30 * ONES);
    // A byte is not a digit when it went below zero (top bit set) or is 10 or more (+0x76 sets the
    // top bit). Borrows and carries only spill into bytes after the first non-digit.
    let not_digit = (x | x.wrapping_add(0x76 * ONES)) & (0x80 * ONES);
    let digits = (not_digit.trailing_zeros() / 8) as usize;
    if digits == 0 || digits == 8 {
        return None;
    }
    let v = x << (8 * (8 - digits));
    let v = (v.wrapping_mul(1 + (10 << 8)) >> 8) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(1 + (100 << 16)) >> 16) & 0x0000_FFFF_0000_FFFF;
    let v = v.wrapping_mul(1 + (10_000 << 32)) >> 32;
    Some((v, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_one(dir: &Path, text: &str) -> Option<StreamedMapping> {
        stream_one_with(dir, text, true)
    }

    fn stream_one_with(dir: &Path, text: &str, direct: bool) -> Option<StreamedMapping> {
        let files = [dir.join("in.csv")];
        std::fs::write(&files[0], text).unwrap();
        let slots = [Slot::User, Slot::Item, Slot::Label];
        let (pairs_path, labels_path) = (dir.join("pairs.pt"), dir.join("labels.pt"));
        let _ = (std::fs::remove_file(&pairs_path), std::fs::remove_file(&labels_path));
        let mapping = MappingFiles { files: &files, slots: &slots, pairs_path, labels_path, direct };
        stream_mappings(&[mapping]).unwrap().pop().unwrap()
    }

    fn read(path: &Path) -> torchfile::TensorData {
        let mut pt = torchfile::TorchFile::open(path).unwrap();
        let t = pt.tensor().unwrap();
        pt.read(&t).unwrap()
    }

    #[test]
    fn many_pieces_stream_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut text, mut pairs, mut labels) = (String::new(), Vec::new(), Vec::new());
        for i in 0..1_500_000i64 {
            let (user, item, label) = (i / 3, i % 9973, (i % 7 == 0) as u8);
            text.push_str(&match i {
                // A line longer than two pieces, and one ending in CRLF.
                700_000 => format!("{}{user},{item},{label}\n", " ".repeat(9 << 20)),
                700_001 => format!("{user},{item},{label}\r\n"),
                _ => format!("{user},{item},{label}\n"),
            });
            pairs.extend([user, item]);
            labels.push(f32::from(label));
        }
        assert!(text.len() as u64 > 6 * PIECE_BYTES);
        // With direct I/O where the file system takes it, and through the page cache alone.
        for direct in [true, false] {
            let got = stream_one_with(dir.path(), &text, direct).unwrap();
            assert_eq!(got, StreamedMapping { rows: 1_500_000, largest: [499_999, 9972] });
            assert!(read(&dir.path().join("pairs.pt")).to_i64() == pairs, "direct: {direct}");
            assert!(read(&dir.path().join("labels.pt")).to_f32() == labels, "direct: {direct}");
        }
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line_across_pieces_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let good: String = (0..1_000_000).map(|i| format!("{i},{},1\n", i % 50)).collect();
        let mut bad_first = good.clone();
        bad_first.push_str("1,2,3\n");
        let files = [dir.path().join("a.csv"), dir.path().join("b.csv")];
        let slots = [Slot::User, Slot::Item, Slot::Label];
        for (a, b, want) in [
            (&bad_first, "0,0,1\n", "a.csv:1000001: column 3 label `3` is not 0 or 1"),
            (&good, "0,0,1\n0,1,0\n7,x,1\n", "b.csv:3: column 2 id `x` is not an integer"),
        ] {
            std::fs::write(&files[0], a).unwrap();
            std::fs::write(&files[1], b).unwrap();
            let (pairs_path, labels_path) = (dir.path().join("p.pt"), dir.path().join("l.pt"));
            let _ = (std::fs::remove_file(&pairs_path), std::fs::remove_file(&labels_path));
            let mapping = MappingFiles { files: &files, slots: &slots, pairs_path, labels_path, direct: true };
            let err = stream_mappings(&[mapping]).expect_err("a bad line fails").to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_bad_line_after_a_blank_line_fails_the_run_of_every_mapping() {
        // Mapping a: a blank line (which alone would send it to the in-memory path), then a bad
        // line; the run stops before mapping b's pieces are all taken, and must fail as a whole
        // rather than hand b back incomplete. (The case where the failing piece is not the one
        // that found the blank line depends on thread timing; the same early return covers it.)
        let dir = tempfile::tempdir().unwrap();
        let a = [dir.path().join("a.csv")];
        let b = [dir.path().join("b.csv")];
        std::fs::write(&a[0], "0,1,1\n\n1,2,7\n").unwrap();
        std::fs::write(&b[0], (0..3_000_000).map(|i| format!("{i},{},0\n", i % 10)).collect::<String>()).unwrap();
        let slots = [Slot::User, Slot::Item, Slot::Label];
        let path = |name: &str| dir.path().join(name);
        let ma = MappingFiles {
            files: &a,
            slots: &slots,
            pairs_path: path("a0.pt"),
            labels_path: path("a1.pt"),
            direct: true,
        };
        let mb = MappingFiles {
            files: &b,
            slots: &slots,
            pairs_path: path("b0.pt"),
            labels_path: path("b1.pt"),
            direct: true,
        };
        let err = stream_mappings(&[ma, mb]).expect_err("a's bad line").to_string();
        assert!(err.contains("a.csv:3: column 3 label `7` is not 0 or 1"), "{err}");
    }

    #[test]
    fn a_blank_line_turns_the_mapping_down_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stream_one(dir.path(), "0,1,1\n\n1,2,0\n"), None);
        assert!(!dir.path().join("pairs.pt").exists() && !dir.path().join("labels.pt").exists());
    }

    #[test]
    fn swar_digits_agree_with_the_byte_wise_rule() {
        let mut cases: Vec<String> = Vec::new();
        for digits in 1..=9u32 {
            for v in [0u64, 1, 7, 10u64.pow(digits - 1), 10u64.pow(digits) - 1, 1_234_567 % 10u64.pow(digits)] {
                cases.push(format!("{v:0width$}", width = digits as usize));
            }
        }
        for tail in [",", "\n", "/", ":", " ", "\0", "\u{7f}", "\u{b9}", "a"] {
            for case in &cases {
                let text = format!("{case}{tail}12345678");
                let word = u64::from_le_bytes(text.as_bytes()[..8].try_into().unwrap());
                let want = (case.len() < 8).then(|| (case.parse::<u64>().unwrap(), case.len()));
                assert_eq!(swar_digits(word), want, "{text:?}");
            }
        }
        for text in [",1234567", "x0000000", "-1,2,3,4"] {
            assert_eq!(swar_digits(u64::from_le_bytes(text.as_bytes().try_into().unwrap())), None, "{text}");
        }
    }

    #[test]
    fn standard_lines_and_their_fallbacks() {
        assert_eq!(parse_standard(b"12,345,1\n9", 0), Some((12, 345, 1.0, 9)));
        assert_eq!(parse_standard(b"12,345,0\r\n", 0), Some((12, 345, 0.0, 10)));
        assert_eq!(parse_standard(b"1,2,1", 0), Some((1, 2, 1.0, 5)));
        assert_eq!(parse_standard(b"123456789012,3,0\n", 0), Some((123_456_789_012, 3, 0.0, 17)));
        // 19 and 20 digits: left to the general path (which says why), no overflow here.
        assert_eq!(parse_standard(b"9999999999999999999,1,1\n", 0), None);
        assert_eq!(parse_standard(b"1,99999999999999999999,1\n", 0), None);
        for line in [&b"1,2,1.0\n"[..], b" 1,2,1\n", b"1,2,2\n", b"1,,1\n", b"1,2\n", b"1,2,1,\n", b"\n"] {
            assert_eq!(parse_standard(line, 0), None, "{}", String::from_utf8_lossy(line));
        }
    }
}

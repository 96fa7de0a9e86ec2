//! Reading a mapping's CSV chunks: a parallel parser for headerless integer CSV.
//!
//! Why not polars: its general CSV reader spent 2.4 s of the 3.8 s it took to transcode an
//! ML-20m-sized dataset, and its rows with too many fields go through silently. The files here are a
//! narrow case (a few unquoted integer columns), so each file is read whole (into huge pages, see
//! `buffer`), cut into pieces at line ends, every piece's lines counted (which fixes each line's
//! number and row slot), then all pieces of all chunks parsed at once straight into the output
//! tensors: user and item interleaved as `[N, 2]`, labels `[N]`. A digits-only fast path covers
//! nearly every field; anything else goes through [`parse_line`], the general rule, which also
//! words the error.

use crate::buffer::HugeBuffer;
use crate::TranscodeError;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What a chunk column holds, and so how it is parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A user or item id: a non-negative integer.
    Id,
    /// The label: 0 or 1 (`1.0` and the like are accepted, as pandas reads them).
    Label,
    /// Any other feature: skipped, not written (as the reference does).
    Other,
}

/// Where a chunk column's values go in the mapping's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Column 0 of the `[N, 2]` id tensor.
    User,
    /// Column 1 of the `[N, 2]` id tensor.
    Item,
    /// The `[N, 1]` label tensor.
    Label,
    /// Not written.
    Skip,
}

impl Slot {
    pub(crate) fn role(self) -> Role {
        match self {
            Slot::User | Slot::Item => Role::Id,
            Slot::Label => Role::Label,
            Slot::Skip => Role::Other,
        }
    }
}

/// One chunk of a mapping: its files (consecutive rows) and where each of its columns goes.
pub(crate) struct ChunkSource {
    pub files: Vec<PathBuf>,
    pub slots: Vec<Slot>,
}

/// A mapping's output tensors, filled: user/item pairs `[rows, 2]` and labels `[rows]`.
pub(crate) struct MappingColumns {
    pub pairs: HugeBuffer<i64>,
    pub labels: HugeBuffer<f32>,
    pub rows: usize,
}

/// A piece of a file is about this many bytes (cut at the next line end).
const PIECE_BYTES: usize = 4 << 20;

/// A row's worth of parsed values.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cell {
    pub id: i64,
    pub label: f32,
}

/// One input file, read whole into huge pages and cut into pieces.
struct FileText {
    path: PathBuf,
    data: HugeBuffer<u8>,
    pieces: Vec<(usize, usize)>,
}

/// A piece to parse: which chunk and file it belongs to, its first line (in its file) and first
/// row (in its chunk).
struct Job {
    chunk: usize,
    file: usize,
    piece: usize,
    first_line: u64,
    first_row: usize,
    lines: usize,
}

/// The output buffers, written by many pieces at once: every (row, column) element by exactly one.
#[derive(Clone, Copy)]
struct SharedOut {
    pairs: *mut i64,
    labels: *mut f32,
    rows: usize,
}
// SAFETY: the pointers are only written at disjoint elements (see SharedOut) while the buffers they
// point into are alive and not otherwise borrowed (read_mapping holds them for the parse).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Reads every chunk of a mapping (chunks side by side, each chunk's files one after another) into
/// the output tensors. `check_rows(chunk, rows)` vets each chunk's row count (they must agree).
pub(crate) fn read_mapping(
    chunks: &[ChunkSource],
    mut check_rows: impl FnMut(usize, usize) -> Result<(), TranscodeError>,
) -> Result<MappingColumns, TranscodeError> {
    // Read every file, then count the lines of every piece of every file at once.
    let texts: Vec<Vec<FileText>> = chunks
        .iter()
        .map(|c| c.files.iter().map(|p| read_text(p)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<_, _>>()?;
    let mut jobs = Vec::new();
    for (c, files) in texts.iter().enumerate() {
        for (f, text) in files.iter().enumerate() {
            for p in 0..text.pieces.len() {
                jobs.push(Job { chunk: c, file: f, piece: p, first_line: 1, first_row: 0, lines: 0 });
            }
        }
    }
    let counts: Vec<usize> = jobs
        .par_iter()
        .map(|j| {
            let text = &texts[j.chunk][j.file];
            let (s, e) = text.pieces[j.piece];
            count_lines(&text.data.as_slice()[s..e])
        })
        .collect();
    // Line numbers restart per file; row slots run on through a chunk's files.
    let mut lines_per_chunk = vec![0usize; chunks.len()];
    let mut line_in_file = 0u64;
    let mut previous = (usize::MAX, usize::MAX);
    for (job, &n) in jobs.iter_mut().zip(&counts) {
        if (job.chunk, job.file) != previous {
            line_in_file = 1;
            previous = (job.chunk, job.file);
        }
        job.first_line = line_in_file;
        job.first_row = lines_per_chunk[job.chunk];
        job.lines = n;
        line_in_file += n as u64;
        lines_per_chunk[job.chunk] += n;
    }
    let capacity = lines_per_chunk.iter().copied().max().unwrap_or(0);
    let memory = |source| TranscodeError::Io { path: "<memory>".into(), source };
    let mut pairs = HugeBuffer::<i64>::zeroed(2 * capacity).map_err(memory)?;
    let mut labels = HugeBuffer::<f32>::zeroed(capacity).map_err(memory)?;
    let out = SharedOut {
        pairs: pairs.as_mut_slice().as_mut_ptr(),
        labels: labels.as_mut_slice().as_mut_ptr(),
        rows: capacity,
    };

    // Parse every piece straight into its rows; the first failure in file order is reported.
    let results: Vec<Result<usize, (u64, String)>> = jobs
        .par_iter()
        .map(|j| {
            let text = &texts[j.chunk][j.file];
            let (s, e) = text.pieces[j.piece];
            parse_piece(&text.data.as_slice()[s..e], &chunks[j.chunk].slots, j.first_line, j.first_row, out)
        })
        .collect();
    let mut written = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(w) => written.push(w),
            Err((line, message)) => {
                let path = texts[job.chunk][job.file].path.clone();
                return Err(TranscodeError::Malformed { path, line, message });
            }
        }
    }
    let mut rows_per_chunk = vec![0usize; chunks.len()];
    for (job, &w) in jobs.iter().zip(&written) {
        rows_per_chunk[job.chunk] += w;
    }
    for (c, &rows) in rows_per_chunk.iter().enumerate() {
        check_rows(c, rows)?;
    }
    // Blank lines leave their slots unused: close the gaps of the columns each such chunk owns.
    for (c, chunk) in chunks.iter().enumerate() {
        if rows_per_chunk[c] == lines_per_chunk[c] {
            continue;
        }
        let pieces: Vec<(usize, usize)> =
            jobs.iter().zip(&written).filter(|(j, _)| j.chunk == c).map(|(j, &w)| (j.lines, w)).collect();
        for slot in &chunk.slots {
            match slot {
                Slot::User => compact(pairs.as_mut_slice(), 2, 0, &pieces),
                Slot::Item => compact(pairs.as_mut_slice(), 2, 1, &pieces),
                Slot::Label => compact(labels.as_mut_slice(), 1, 0, &pieces),
                Slot::Skip => {}
            }
        }
    }
    let rows = rows_per_chunk.first().copied().unwrap_or(0);
    pairs.truncate(2 * rows);
    labels.truncate(rows);
    Ok(MappingColumns { pairs, labels, rows })
}

/// The first line of a chunk whose `slot` column holds an id of at least `limit`: its file, line
/// (1-based) and id. A plain line-by-line pass, for the error message of an id over a declared
/// cardinality (found first by the fast parsers, which only keep the largest id).
pub(crate) fn find_id_at_least(
    chunk: &ChunkSource,
    slot: Slot,
    limit: u64,
) -> Result<Option<(PathBuf, u64, i64)>, TranscodeError> {
    use std::io::BufRead;
    let roles: Vec<Role> = chunk.slots.iter().map(|s| s.role()).collect();
    let Some(column) = chunk.slots.iter().position(|&s| s == slot) else { return Ok(None) };
    let mut cells = vec![Cell::default(); roles.len()];
    for path in &chunk.files {
        let io = |source| TranscodeError::Io { path: path.clone(), source };
        let reader = std::io::BufReader::new(open_input(path)?);
        for (k, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(io)?;
            let parsed = parse_any_line(&line, &roles, &mut cells).unwrap_or(false);
            if parsed && cells[column].id >= 0 && cells[column].id as u64 >= limit {
                return Ok(Some((path.clone(), k as u64 + 1, cells[column].id)));
            }
        }
    }
    Ok(None)
}

/// Opens a chunk file: a regular file, or an error that says what is wrong with it.
pub(crate) fn open_input(path: &Path) -> Result<std::fs::File, TranscodeError> {
    let io = |source| TranscodeError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            io(std::io::Error::new(e.kind(), "chunk file not found (named in the feature spec)"))
        }
        _ => io(e),
    })?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("is not a regular file")));
    }
    Ok(file)
}

/// Reads a whole file into huge pages and cuts it into pieces.
fn read_text(path: &Path) -> Result<FileText, TranscodeError> {
    use std::io::Read;
    let io = |source| TranscodeError::Io { path: path.to_owned(), source };
    let mut file = open_input(path)?;
    let meta = file.metadata().map_err(io)?;
    let mut data = HugeBuffer::<u8>::zeroed(meta.len() as usize).map_err(io)?;
    file.read_exact(data.as_mut_slice()).map_err(io)?;
    let pieces = cut_pieces(data.as_slice());
    Ok(FileText { path: path.to_owned(), data, pieces })
}

/// `[start, end)` byte ranges of about [`PIECE_BYTES`] each, every one ending just after a `\n`
/// (or at the end of the data).
fn cut_pieces(data: &[u8]) -> Vec<(usize, usize)> {
    let mut pieces = Vec::with_capacity(data.len() / PIECE_BYTES + 1);
    let mut start = 0;
    while start < data.len() {
        let target = (start + PIECE_BYTES).min(data.len());
        let end = match memchr::memchr(b'\n', &data[target - 1..]) {
            Some(i) => target - 1 + i + 1,
            None => data.len(),
        };
        pieces.push((start, end));
        start = end;
    }
    pieces
}

/// Lines in a piece: its `\n`s, plus one for a last line without one.
pub(crate) fn count_lines(bytes: &[u8]) -> usize {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// Moves each piece's `written` rows of one column (element `offset` of every `stride`) to follow
/// the previous piece's; `pieces` holds (lines, written) in order.
fn compact<T: Copy>(buf: &mut [T], stride: usize, offset: usize, pieces: &[(usize, usize)]) {
    let (mut from, mut to) = (0, 0);
    for &(lines, written) in pieces {
        for k in 0..written {
            buf[(to + k) * stride + offset] = buf[(from + k) * stride + offset];
        }
        from += lines;
        to += written;
    }
}

/// Parses a piece's lines into rows `first_row..`; returns the rows written, or the first bad line
/// (numbered from `first_line`) and why.
fn parse_piece(
    bytes: &[u8],
    slots: &[Slot],
    first_line: u64,
    first_row: usize,
    out: SharedOut,
) -> Result<usize, (u64, String)> {
    let roles: Vec<Role> = slots.iter().map(|s| s.role()).collect();
    let mut cells = vec![Cell::default(); roles.len()];
    let mut row = first_row;
    for (k, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if !parse_any_line(line, &roles, &mut cells).map_err(|message| (first_line + k as u64, message))? {
            continue;
        }
        assert!(row < out.rows, "row slot past the counted lines");
        for (cell, slot) in cells.iter().zip(slots) {
            // SAFETY: row < out.rows (checked above), so the elements are inside the buffers; this
            // piece alone owns rows first_row.. of its own lines, and this chunk alone owns the slot.
            unsafe {
                match slot {
                    Slot::User => *out.pairs.add(2 * row) = cell.id,
                    Slot::Item => *out.pairs.add(2 * row + 1) = cell.id,
                    Slot::Label => *out.labels.add(row) = cell.label,
                    Slot::Skip => {}
                }
            }
        }
        row += 1;
    }
    Ok(row - first_row)
}

/// One line without its `\n` (a `\r` before it is dropped): `Ok(true)` when it is a row, parsed into
/// `cells`; `Ok(false)` when it is blank (skipped, as pandas does); or why it is malformed.
pub(crate) fn parse_any_line(line: &[u8], roles: &[Role], cells: &mut [Cell]) -> Result<bool, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if parse_fast(line, roles, cells) {
        return Ok(true);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    parse_line(line, roles, cells).map(|()| true)
}

/// The common case: ids of 1 to 18 plain digits, labels `0` or `1`, other fields anything without
/// a comma, exactly one field per role. `false` sends the line to [`parse_line`].
#[inline]
fn parse_fast(line: &[u8], roles: &[Role], cells: &mut [Cell]) -> bool {
    let mut pos = 0;
    let last = roles.len() - 1;
    for (k, (role, cell)) in roles.iter().zip(cells.iter_mut()).enumerate() {
        // Where this field must end: a comma, or the end of the line for the last field.
        let end = match role {
            Role::Id => {
                let mut value: i64 = 0;
                let start = pos;
                while pos < line.len() && line[pos].is_ascii_digit() {
                    if pos - start == 18 {
                        return false; // a 19th digit may overflow: the general path decides
                    }
                    value = value * 10 + i64::from(line[pos] - b'0');
                    pos += 1;
                }
                if pos == start {
                    return false;
                }
                cell.id = value;
                pos
            }
            Role::Label => {
                match line.get(pos) {
                    Some(b'0') => cell.label = 0.0,
                    Some(b'1') => cell.label = 1.0,
                    _ => return false,
                }
                pos + 1
            }
            Role::Other => match memchr::memchr(b',', &line[pos..]) {
                Some(i) => pos + i,
                None => line.len(),
            },
        };
        if k == last {
            if end != line.len() {
                return false;
            }
        } else {
            if line.get(end) != Some(&b',') {
                return false;
            }
            pos = end + 1;
        }
    }
    true
}

/// The general rule for one line (without its line end): exactly one comma-separated field per role;
/// ids are non-negative integers and labels 0 or 1 (surrounding spaces allowed, `1.0` accepted).
/// The error says what is wrong, quoting the line.
fn parse_line(line: &[u8], roles: &[Role], cells: &mut [Cell]) -> Result<(), String> {
    let text = String::from_utf8_lossy(line);
    let fields: Vec<&[u8]> = line.split(|&b| b == b',').collect();
    if fields.len() != roles.len() {
        return Err(format!("expected {} comma-separated columns, found {}: `{text}`", roles.len(), fields.len()));
    }
    for (k, ((field, role), cell)) in fields.iter().zip(roles).zip(cells.iter_mut()).enumerate() {
        if *role == Role::Other {
            continue;
        }
        let Ok(value) = std::str::from_utf8(field).map(str::trim) else {
            return Err(format!("column {} is not valid UTF-8: `{text}`", k + 1));
        };
        match role {
            Role::Id => match value.parse::<i64>() {
                Ok(v) if v >= 0 => cell.id = v,
                Ok(v) => return Err(format!("column {} holds a negative id {v}: `{text}`", k + 1)),
                Err(_) => return Err(format!("column {} id `{value}` is not an integer: `{text}`", k + 1)),
            },
            Role::Label => match value.parse::<f64>() {
                Ok(v) if v == 0.0 || v == 1.0 => cell.label = v as f32,
                _ => return Err(format!("column {} label `{value}` is not 0 or 1: `{text}`", k + 1)),
            },
            Role::Other => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 3] = [Role::Id, Role::Id, Role::Label];

    fn parse(line: &str) -> Result<(i64, i64, f32), String> {
        let mut cells = [Cell::default(); 3];
        if !parse_fast(line.as_bytes(), &ROLES, &mut cells) {
            parse_line(line.as_bytes(), &ROLES, &mut cells)?;
        }
        Ok((cells[0].id, cells[1].id, cells[2].label))
    }

    #[test]
    fn fast_and_general_paths_agree_on_good_lines() {
        assert_eq!(parse("12,0,1"), Ok((12, 0, 1.0)));
        assert_eq!(parse(" 12 , 7 ,0.0"), Ok((12, 7, 0.0)));
        assert_eq!(parse("3,4,1.0"), Ok((3, 4, 1.0)));
        assert_eq!(parse("9223372036854775807,0,0"), Ok((i64::MAX, 0, 0.0)));
    }

    #[test]
    fn bad_lines_are_refused_with_the_reason() {
        assert!(parse("1,2").unwrap_err().contains("expected 3 comma-separated columns, found 2"));
        assert!(parse("1,2,1,").unwrap_err().contains("found 4"));
        assert!(parse("1,-2,1").unwrap_err().contains("negative id -2"));
        assert!(parse("1,x,1").unwrap_err().contains("id `x` is not an integer"));
        assert!(parse("1,2,2").unwrap_err().contains("label `2` is not 0 or 1"));
        assert!(parse("1,2,").unwrap_err().contains("label `` is not 0 or 1"));
        assert!(parse("99999999999999999999,0,0").unwrap_err().contains("is not an integer"));
        assert!(parse("1,2,10").unwrap_err().contains("label `10`"));
    }

    #[test]
    fn pieces_end_at_line_ends_and_cover_the_data() {
        let mut data = Vec::new();
        for i in 0..2_000_000u32 {
            data.extend_from_slice(format!("{i},{},1\n", i % 97).as_bytes());
        }
        data.extend_from_slice(b"5,5,0"); // no final newline
        let pieces = cut_pieces(&data);
        assert!(pieces.len() > 1);
        assert_eq!(pieces[0].0, 0);
        assert_eq!(pieces.last().unwrap().1, data.len());
        for w in pieces.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert_eq!(data[w[0].1 - 1], b'\n');
        }
        let lines: usize = pieces.iter().map(|&(s, e)| count_lines(&data[s..e])).sum();
        assert_eq!(lines, 2_000_001);
    }

    #[test]
    fn compact_closes_the_gaps_of_blank_lines() {
        // Pieces of 3, 3 and 1 lines wrote 2, 1 and 1 rows: one column, and the second of pairs.
        let mut column = vec![1, 2, 0, 3, 0, 0, 4];
        compact(&mut column, 1, 0, &[(3, 2), (3, 1), (1, 1)]);
        assert_eq!(&column[..4], &[1, 2, 3, 4]);
        let mut pairs = vec![9, 1, 9, 2, 0, 0, 9, 3, 0, 0, 0, 0, 9, 4];
        compact(&mut pairs, 2, 1, &[(3, 2), (3, 1), (1, 1)]);
        assert_eq!([pairs[1], pairs[3], pairs[5], pairs[7]], [1, 2, 3, 4]);
    }
}

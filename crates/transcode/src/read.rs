//! Reading the CSV files of one chunk: a parallel parser for headerless integer CSV.
//!
//! Why not polars: its general CSV reader spent 2.4 s of the 3.8 s it took to transcode an
//! ML-20m-sized dataset, and its rows with too many fields go through silently. The files here are a
//! narrow case (a few unquoted integer columns), so a file is memory-mapped, cut into pieces at line
//! ends, each piece's lines counted (which fixes every line's number and row slot), then all pieces
//! parsed at once straight into the output columns. A digits-only fast path covers nearly every
//! field; anything else goes through [`parse_line`], the general rule, which also words the error.

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

/// One parsed column of a chunk.
pub(crate) enum Values {
    Ids(Vec<i64>),
    Labels(Vec<f32>),
    Skipped,
}

/// A piece of a file is about this many bytes (cut at the next line end).
const PIECE_BYTES: usize = 4 << 20;

/// Reads every file of a chunk (consecutive rows); returns one [`Values`] per feature and the rows.
pub(crate) fn read_chunk(files: &[PathBuf], roles: &[Role]) -> Result<(Vec<Values>, usize), TranscodeError> {
    let mut columns: Vec<Values> = roles
        .iter()
        .map(|r| match r {
            Role::Id => Values::Ids(Vec::new()),
            Role::Label => Values::Labels(Vec::new()),
            Role::Other => Values::Skipped,
        })
        .collect();
    let mut rows = 0;
    for path in files {
        let parsed = read_file(path, roles)?;
        for (column, values) in columns.iter_mut().zip(parsed.columns) {
            match (column, values) {
                // The first file's vectors are taken as they are, later files appended.
                (Values::Ids(all), Values::Ids(v)) if all.is_empty() => *all = v,
                (Values::Ids(all), Values::Ids(v)) => all.extend_from_slice(&v),
                (Values::Labels(all), Values::Labels(v)) if all.is_empty() => *all = v,
                (Values::Labels(all), Values::Labels(v)) => all.extend_from_slice(&v),
                _ => {}
            }
        }
        rows += parsed.rows;
    }
    Ok((columns, rows))
}

/// One file's columns.
struct FileColumns {
    columns: Vec<Values>,
    rows: usize,
}

/// A row's worth of parsed values, written into the column slices of its piece.
#[derive(Clone, Copy, Default)]
struct Cell {
    id: i64,
    label: f32,
}

fn read_file(path: &Path, roles: &[Role]) -> Result<FileColumns, TranscodeError> {
    let io = |source| TranscodeError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            io(std::io::Error::new(e.kind(), "chunk file not found (named in the feature spec)"))
        }
        _ => io(e),
    })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("is not a regular file")));
    }
    let empty = || roles.iter().map(|_| Values::Skipped).collect();
    if meta.len() == 0 {
        return Ok(FileColumns { columns: empty(), rows: 0 });
    }
    // SAFETY: the map is only read. A file truncated by another process while we read it would
    // fault (SIGBUS); the same holds for polars' and pandas' memory-mapped readers.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let data: &[u8] = &map;

    let pieces = cut_pieces(data);
    // Pass 1: lines per piece, so each piece knows its first line number and first row slot.
    let counts: Vec<usize> = pieces.par_iter().map(|&(s, e)| count_lines(&data[s..e])).collect();
    let lines: usize = counts.iter().sum();

    // Pass 2: parse every piece straight into its slots of the output columns.
    let mut ids: Vec<Vec<i64>> = Vec::new();
    let mut labels: Vec<Vec<f32>> = Vec::new();
    for role in roles {
        match role {
            Role::Id => ids.push(vec![0; lines]),
            Role::Label => labels.push(vec![0.0; lines]),
            Role::Other => {}
        }
    }
    let mut jobs = Vec::with_capacity(pieces.len());
    {
        let mut id_rest: Vec<&mut [i64]> = ids.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut label_rest: Vec<&mut [f32]> = labels.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut first_line = 1u64;
        for (&(s, e), &n) in pieces.iter().zip(&counts) {
            let id_out = split_front(&mut id_rest, n);
            let label_out = split_front(&mut label_rest, n);
            jobs.push(Piece { bytes: &data[s..e], first_line, id_out, label_out });
            first_line += n as u64;
        }
    }
    let written: Vec<usize> = jobs
        .into_par_iter()
        .map(|piece| piece.parse(roles))
        .collect::<Result<_, (u64, String)>>()
        .map_err(|(line, message)| TranscodeError::Malformed { path: path.to_owned(), line, message })?;

    // Blank lines leave their slots unused: close the gaps (rare, so done in one thread).
    let rows: usize = written.iter().sum();
    if rows != lines {
        for column in &mut ids {
            compact(column, &counts, &written);
        }
        for column in &mut labels {
            compact(column, &counts, &written);
        }
    }
    let (mut ids, mut labels) = (ids.into_iter(), labels.into_iter());
    let columns = roles
        .iter()
        .map(|role| match role {
            Role::Id => Values::Ids(ids.next().unwrap_or_default()),
            Role::Label => Values::Labels(labels.next().unwrap_or_default()),
            Role::Other => Values::Skipped,
        })
        .collect();
    Ok(FileColumns { columns, rows })
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
fn count_lines(bytes: &[u8]) -> usize {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// Takes the first `n` elements off each slice, returning them; the slices keep the rest.
fn split_front<'a, T>(rest: &mut [&'a mut [T]], n: usize) -> Vec<&'a mut [T]> {
    rest.iter_mut()
        .map(|slice| {
            let (head, tail) = std::mem::take(slice).split_at_mut(n);
            *slice = tail;
            head
        })
        .collect()
}

/// Moves each piece's `written` values to follow the previous piece's, then truncates.
fn compact<T: Copy>(column: &mut Vec<T>, counts: &[usize], written: &[usize]) {
    let (mut from, mut to) = (0, 0);
    for (&n, &w) in counts.iter().zip(written) {
        column.copy_within(from..from + w, to);
        from += n;
        to += w;
    }
    column.truncate(to);
}

/// One piece of a file and the slots its rows go to.
struct Piece<'a> {
    bytes: &'a [u8],
    first_line: u64,
    id_out: Vec<&'a mut [i64]>,
    label_out: Vec<&'a mut [f32]>,
}

impl Piece<'_> {
    /// Parses the piece's lines; returns the rows written, or the first bad line and why.
    fn parse(mut self, roles: &[Role]) -> Result<usize, (u64, String)> {
        let mut cells = vec![Cell::default(); roles.len()];
        let mut row = 0;
        for (k, line) in self.bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !parse_fast(line, roles, &mut cells) {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // a blank line, skipped as pandas does
                }
                parse_line(line, roles, &mut cells).map_err(|message| (self.first_line + k as u64, message))?;
            }
            let (mut i, mut l) = (0, 0);
            for (cell, role) in cells.iter().zip(roles) {
                match role {
                    Role::Id => {
                        self.id_out[i][row] = cell.id;
                        i += 1;
                    }
                    Role::Label => {
                        self.label_out[l][row] = cell.label;
                        l += 1;
                    }
                    Role::Other => {}
                }
            }
            row += 1;
        }
        Ok(row)
    }
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
        let mut column = vec![1, 2, 0, 3, 0, 0, 4];
        compact(&mut column, &[3, 3, 1], &[2, 1, 1]);
        assert_eq!(column, vec![1, 2, 3, 4]);
    }
}

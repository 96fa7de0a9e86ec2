//! Reading the CSV files of one chunk with polars; a line-by-line pass names the first bad line.

use crate::TranscodeError;
use polars::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What a chunk column holds, and so how it is parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A user or item id: a non-negative integer.
    Id,
    /// The label: 0 or 1.
    Label,
    /// Any other feature: read as text, not written.
    Other,
}

/// One parsed column of a chunk.
pub(crate) enum Values {
    Ids(Vec<i64>),
    Labels(Vec<f32>),
    Skipped,
}

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
        if !path.is_file() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "chunk file not found");
            return Err(TranscodeError::Io { path: path.clone(), source });
        }
        let (parsed, height) = match read_file(path, roles) {
            Ok(Some(parsed)) => parsed,
            Ok(None) | Err(_) => return Err(first_bad_line(path, roles)),
        };
        for (column, values) in columns.iter_mut().zip(parsed) {
            match (column, values) {
                (Values::Ids(all), Values::Ids(v)) => all.extend(v),
                (Values::Labels(all), Values::Labels(v)) => all.extend(v),
                _ => {}
            }
        }
        rows += height;
    }
    Ok((columns, rows))
}

/// Parses one file into its columns and row count; `None` when a value is missing, malformed or
/// out of its rule.
fn read_file(path: &Path, roles: &[Role]) -> PolarsResult<Option<(Vec<Values>, usize)>> {
    let n = roles.len();
    // One more column than the chunk has: all missing on a good file, so a row with an extra field
    // shows up (polars itself accepts such rows silently).
    let schema: Schema = (0..=n)
        .map(|i| {
            let dtype = match roles.get(i) {
                Some(Role::Id) => DataType::Int64,
                Some(Role::Label) => DataType::Float64,
                Some(Role::Other) => DataType::String,
                None => DataType::Boolean,
            };
            Field::new(format!("c{i}").into(), dtype)
        })
        .collect();
    let df = match CsvReadOptions::default()
        .with_has_header(false)
        .with_schema(Some(Arc::new(schema)))
        .map_parse_options(|o| o.with_quote_char(None))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))?
        .finish()
    {
        Ok(df) => df,
        Err(PolarsError::NoData(_)) => return Ok(Some((roles.iter().map(|_| Values::Skipped).collect(), 0))),
        Err(e) => return Err(e),
    };
    let columns = df.columns();
    if columns[n].null_count() != df.height() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(n);
    for (column, role) in columns.iter().zip(roles) {
        if column.null_count() > 0 {
            return Ok(None);
        }
        let series = column.as_materialized_series();
        out.push(match role {
            Role::Id => {
                let ids: Vec<i64> = series.i64()?.into_no_null_iter().collect();
                if ids.iter().any(|&v| v < 0) {
                    return Ok(None);
                }
                Values::Ids(ids)
            }
            Role::Label => {
                let labels: Vec<f64> = series.f64()?.into_no_null_iter().collect();
                if labels.iter().any(|&v| v != 0.0 && v != 1.0) {
                    return Ok(None);
                }
                Values::Labels(labels.into_iter().map(|v| v as f32).collect())
            }
            Role::Other => Values::Skipped,
        });
    }
    Ok(Some((out, df.height())))
}

/// The first line of `path` that breaks the chunk's rules, as an error.
fn first_bad_line(path: &Path, roles: &[Role]) -> TranscodeError {
    let bad = |line: u64, message: String| TranscodeError::Malformed { path: path.to_owned(), line, message };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(source) => return TranscodeError::Io { path: path.to_owned(), source },
    };
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line_no = n as u64 + 1;
        let Ok(text) = line else { return bad(line_no, "is not valid UTF-8".into()) };
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != roles.len() {
            return bad(
                line_no,
                format!("expected {} comma-separated columns, found {}: `{text}`", roles.len(), fields.len()),
            );
        }
        for (k, (field, role)) in fields.iter().zip(roles).enumerate() {
            let value = field.trim();
            match role {
                Role::Id => match value.parse::<i64>() {
                    Ok(v) if v >= 0 => {}
                    Ok(v) => return bad(line_no, format!("column {} holds a negative id {v}: `{text}`", k + 1)),
                    Err(_) => {
                        return bad(line_no, format!("column {} id `{value}` is not an integer: `{text}`", k + 1))
                    }
                },
                Role::Label => match value.parse::<f64>() {
                    Ok(v) if v == 0.0 || v == 1.0 => {}
                    _ => return bad(line_no, format!("column {} label `{value}` is not 0 or 1: `{text}`", k + 1)),
                },
                Role::Other => {}
            }
        }
    }
    bad(0, "cannot be read as CSV (no line-level problem found)".into())
}

//! Reading raw ratings files with polars; a line-by-line check names the first bad line when the
//! fast parse fails or yields missing values.

use crate::format::RawFormat;
use crate::PrepareError;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Raw ratings in file order: user and item ids as the file has them, and unix-second timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRatings {
    pub users: Vec<i64>,
    pub items: Vec<i64>,
    pub timestamps: Vec<i64>,
}

impl RawRatings {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Reads a raw ratings file of the given format.
///
/// Errors name the file and, for malformed content, the first bad line (missing or extra field,
/// a non-integer id or timestamp, a wrong separator, a short row), or say the file has no ratings.
pub fn load_raw(path: &Path, format: RawFormat) -> Result<RawRatings, PrepareError> {
    let meta = std::fs::metadata(path).map_err(|source| PrepareError::Io { path: path.to_owned(), source })?;
    if meta.is_dir() {
        return Err(PrepareError::Input { path: path.to_owned(), message: "is a folder, not a ratings file".into() });
    }
    let parsed = read_with_polars(path, format);
    let ratings = match parsed {
        Ok(Some(r)) => r,
        Err(PolarsError::NoData(_)) => RawRatings::default(),
        // Polars refused the file or produced missing values: find and name the first bad line.
        Ok(None) | Err(_) => {
            let detail = parsed.err().map(|e| e.to_string());
            return Err(crate::diagnose::first_bad_line(path, format)?.unwrap_or_else(|| PrepareError::Input {
                path: path.to_owned(),
                message: format!(
                    "cannot be read as {format} ratings{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            }));
        }
    };
    if ratings.is_empty() {
        let skipped = if format.skips_first_line() && meta.len() > 0 { ", whose first line is skipped" } else { "" };
        return Err(PrepareError::Input {
            path: path.to_owned(),
            message: format!("holds no ratings (read as {format}{skipped})"),
        });
    }
    Ok(ratings)
}

fn read_with_polars(path: &Path, format: RawFormat) -> PolarsResult<Option<RawRatings>> {
    // `::` is not a single byte: split on ':' and skip the empty fields in between.
    let (separator, fields, columns) = match format.separator() {
        "::" => (b':', format.fields() * 2 - 1, format.columns().map(|c| c * 2)),
        sep => (sep.as_bytes()[0], format.fields(), format.columns()),
    };
    // One more column than the format has: on a good file it is all missing, so a row with an extra
    // field shows up as a value there (polars itself accepts such rows silently).
    let names: Vec<PlSmallStr> = (0..=fields).map(|i| format!("f{i}").into()).collect();
    let schema: Schema = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let dtype = if columns.contains(&i) {
                DataType::Int64
            } else if i == fields {
                DataType::Boolean // the sentinel: the cheapest all-missing column
            } else {
                DataType::String
            };
            Field::new(n.clone(), dtype)
        })
        .collect();
    let df = CsvReadOptions::default()
        .with_has_header(false)
        .with_skip_rows(usize::from(format.skips_first_line()))
        .with_schema(Some(Arc::new(schema)))
        .with_projection(Some(Arc::new(vec![columns[0], columns[1], columns[2], fields])))
        .map_parse_options(|o| o.with_separator(separator).with_quote_char(None))
        .try_into_reader_with_file_path(Some(PathBuf::from(path)))?
        .finish()?;
    if df.columns()[3].null_count() != df.height() {
        return Ok(None);
    }
    // Column by column, each dropped once copied out, to keep the peak memory low.
    let mut out = Vec::with_capacity(3);
    for column in df.into_columns().into_iter().take(3) {
        let ca = column.as_materialized_series().i64()?.clone();
        drop(column);
        if ca.null_count() > 0 {
            return Ok(None);
        }
        out.push(ca.into_no_null_iter().collect::<Vec<i64>>());
    }
    let (timestamps, items, users) =
        (out.pop().unwrap_or_default(), out.pop().unwrap_or_default(), out.pop().unwrap_or_default());
    Ok(Some(RawRatings { users, items, timestamps }))
}

//! Reading raw ratings files with polars; a line-by-line check names the first bad line when the
//! fast parse fails or yields missing values.

use crate::format::RawFormat;
use crate::PrepareError;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Raw ratings in file order: user and item ids, and unix-second timestamps.
///
/// A column whose ids are all integers holds them as they are (`users`, `user_names: None`). A
/// column with any other id (`u196`, a UUID, a SKU) is read verbatim as text, as pandas reads it:
/// then `user_names` lists each distinct id in order of first appearance and `users[k]` is the
/// position of row `k`'s id there (so every code must be below `user_names.len()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRatings {
    pub users: Vec<i64>,
    pub items: Vec<i64>,
    pub timestamps: Vec<i64>,
    /// The text ids `users` points into, when the user column is not all integers.
    pub user_names: Option<Vec<String>>,
    /// The text ids `items` points into, when the item column is not all integers.
    pub item_names: Option<Vec<String>>,
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
/// Ids may be any text (the reference renumbers them with `pd.factorize`); a column of integers
/// only is read as integers. Errors name the file and, for malformed content, the first bad line
/// (missing or extra field, an empty id, a non-integer timestamp, a wrong separator, a short row),
/// or say the file has no ratings.
pub fn load_raw(path: &Path, format: RawFormat) -> Result<RawRatings, PrepareError> {
    let meta = std::fs::metadata(path).map_err(|source| PrepareError::Io { path: path.to_owned(), source })?;
    if meta.is_dir() {
        return Err(PrepareError::Input { path: path.to_owned(), message: "is a folder, not a ratings file".into() });
    }
    // Integer ids first (MovieLens, the fast path); text ids when that parse does not fit.
    let parsed = match read_with_polars(path, format, [IdKind::Int, IdKind::Int]) {
        Ok(Some(r)) => Ok(Some(r)),
        Err(PolarsError::NoData(e)) => Err(PolarsError::NoData(e)),
        Ok(None) | Err(_) => read_mixed(path, format),
    };
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

/// How an id column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Int,
    Text,
}

/// Reads the file with text ids, then takes back as integers a column whose ids all are.
fn read_mixed(path: &Path, format: RawFormat) -> PolarsResult<Option<RawRatings>> {
    let Some(mut raw) = read_with_polars(path, format, [IdKind::Text, IdKind::Text])? else { return Ok(None) };
    for (codes, names) in [(&mut raw.users, &mut raw.user_names), (&mut raw.items, &mut raw.item_names)] {
        let Some(text) = names.as_ref() else { continue };
        // Integers only: the codes become the integers themselves (pandas reads the column as int).
        let ints: Option<Vec<i64>> = text.iter().map(|s| s.trim().parse::<i64>().ok()).collect();
        if let Some(ints) = ints {
            for c in codes.iter_mut() {
                *c = ints[*c as usize];
            }
            *names = None;
        }
    }
    Ok(Some(raw))
}

fn read_with_polars(path: &Path, format: RawFormat, ids: [IdKind; 2]) -> PolarsResult<Option<RawRatings>> {
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
            let dtype = if i == columns[0] && ids[0] == IdKind::Text || i == columns[1] && ids[1] == IdKind::Text {
                DataType::String
            } else if columns.contains(&i) {
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
        // Text ids may be quoted, as pandas reads them (`"u1"` is u1); integer files never are.
        .map_parse_options(|o| o.with_separator(separator).with_quote_char(ids.contains(&IdKind::Text).then_some(b'"')))
        .try_into_reader_with_file_path(Some(PathBuf::from(path)))?
        .finish()?;
    if df.columns()[3].null_count() != df.height() {
        return Ok(None);
    }
    // Column by column, each dropped once copied out, to keep the peak memory low.
    let mut out = Vec::with_capacity(3);
    let mut names = Vec::with_capacity(2);
    for (k, column) in df.into_columns().into_iter().take(3).enumerate() {
        let series = column.as_materialized_series();
        if series.null_count() > 0 {
            return Ok(None);
        }
        if k < 2 && ids[k] == IdKind::Text {
            let (codes, uniques) = factorize_text(series.str()?.iter().map(Option::unwrap_or_default));
            out.push(codes);
            names.push(Some(uniques));
        } else {
            out.push(series.i64()?.into_no_null_iter().collect::<Vec<i64>>());
            names.push(None);
        }
    }
    if names.iter().flatten().any(|n| n.iter().any(|s| s.is_empty())) {
        return Ok(None); // an empty id: the line-by-line check names it
    }
    let (timestamps, items, users) =
        (out.pop().unwrap_or_default(), out.pop().unwrap_or_default(), out.pop().unwrap_or_default());
    let (user_names, item_names) = (names[0].take(), names[1].take());
    Ok(Some(RawRatings { users, items, timestamps, user_names, item_names }))
}

/// Codes by first appearance, and the distinct values in that order.
fn factorize_text<'a>(values: impl Iterator<Item = &'a str>) -> (Vec<i64>, Vec<String>) {
    let mut table: std::collections::HashMap<&'a str, i64> = std::collections::HashMap::new();
    let mut uniques = Vec::new();
    let codes = values
        .map(|v| {
            *table.entry(v).or_insert_with(|| {
                uniques.push(v.to_owned());
                uniques.len() as i64 - 1
            })
        })
        .collect();
    (codes, uniques)
}

//! Finding the first malformed line of a raw ratings file, for an error a person can act on.
//! Runs only after the fast parse failed, so it favours clarity over speed.

use crate::format::RawFormat;
use crate::PrepareError;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The first line that does not fit `format`, as an error; `None` if every line fits.
pub(crate) fn first_bad_line(path: &Path, format: RawFormat) -> Result<Option<PrepareError>, PrepareError> {
    let io = |source| PrepareError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let sep = format.separator();
    let columns = format.columns();
    let bad = |line: u64, message: String| Ok(Some(PrepareError::Malformed { path: path.to_owned(), line, message }));
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line_no = n as u64 + 1;
        let raw = line.map_err(io)?;
        if n == 0 && format.skips_first_line() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&raw) else { return bad(line_no, "is not valid UTF-8".into()) };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(sep).collect();
        if fields.len() != format.fields() {
            let hint = if fields.len() == 1 {
                format!(" (no `{}` separator: is this really a {format} file? pass --format)", sep.escape_default())
            } else {
                String::new()
            };
            return bad(
                line_no,
                format!(
                    "expected {} fields separated by `{}`, found {}{hint}: `{text}`",
                    format.fields(),
                    sep.escape_default(),
                    fields.len()
                ),
            );
        }
        // Ids may be any text (the reference factorizes them), but not empty.
        for (what, &i) in ["user id", "item id"].iter().zip(&columns) {
            if fields[i].is_empty() {
                return bad(line_no, format!("{what} is empty: `{text}`"));
            }
        }
        if fields[columns[2]].trim().parse::<i64>().is_err() {
            return bad(
                line_no,
                format!("timestamp `{}` is not an integer (unix seconds): `{text}`", fields[columns[2]]),
            );
        }
    }
    Ok(None)
}

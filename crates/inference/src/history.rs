//! Histories of people to fold in, read from a CSV file of raw ids.

use crate::InferenceError;
use std::path::Path;

/// One person's events from a history file: their raw id as written, and the raw ids of the items
/// they touched, oldest first (file order where the file has no timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub user: String,
    pub items: Vec<String>,
}

/// Reads a history file: one event per line, `user_id,item_id`, `user_id,item_id,timestamp` or
/// MovieLens' `userId,movieId,rating,timestamp` (so a `ratings.csv` or `ncf-serve`'s journal reads
/// as is), raw ids as the ratings file had them (quoted when they hold a comma). A first line whose
/// first field is `userId`, `user_id` or `user` is a header. People come back in the order they
/// first appear; each one's items sorted by timestamp (stable) where every line has one. A line
/// with fewer than two fields, an empty id, or a timestamp that is not an integer is an error
/// naming the file and line.
pub fn read_histories(path: &Path) -> Result<Vec<History>, InferenceError> {
    let bad = |line: u64, reason: String| InferenceError::HistoryFile { path: path.to_owned(), line, reason };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_path(path).map_err(
            |e| match e.into_kind() {
                csv::ErrorKind::Io(source) => InferenceError::Io { path: path.to_owned(), source },
                other => bad(0, format!("{other:?}")),
            },
        )?;
    let mut order: Vec<String> = Vec::new();
    let mut events: std::collections::HashMap<String, Vec<(Option<i64>, String)>> = Default::default();
    let mut all_timed = true;
    for (k, record) in reader.records().enumerate() {
        let line = k as u64 + 1;
        let record = record.map_err(|e| bad(line, e.to_string()))?;
        if line == 1
            && matches!(record.get(0).map(str::to_ascii_lowercase).as_deref(), Some("userid" | "user_id" | "user"))
        {
            continue;
        }
        if record.len() == 1 && record.get(0) == Some("") {
            continue; // a blank line
        }
        let (user, item) = match (record.get(0), record.get(1)) {
            (Some(u), Some(i)) if !u.is_empty() && !i.is_empty() => (u, i),
            _ => {
                return Err(bad(line, format!("expected user_id,item_id[,timestamp], found {} field(s)", record.len())))
            }
        };
        let time_field = match record.len() {
            2 => None,
            3 => record.get(2),
            _ => record.get(3),
        };
        let time = match time_field {
            None => None,
            Some(t) => Some(t.parse::<i64>().map_err(|_| bad(line, format!("timestamp {t:?} is not an integer")))?),
        };
        all_timed &= time.is_some();
        let list = events.entry(user.to_owned()).or_insert_with(|| {
            order.push(user.to_owned());
            Vec::new()
        });
        list.push((time, item.to_owned()));
    }
    Ok(order
        .into_iter()
        .map(|user| {
            let mut list = events.remove(&user).unwrap_or_default();
            if all_timed {
                list.sort_by_key(|(t, _)| *t);
            }
            History { user, items: list.into_iter().map(|(_, i)| i).collect() }
        })
        .collect())
}

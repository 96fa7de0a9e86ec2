//! Item titles for people to read: MovieLens' `movies.csv` (`movieId,title,genres`).

use crate::ServeError;
use std::collections::HashMap;
use std::path::Path;

/// Titles (and genres, when the file has them) by raw item id, as the ratings file wrote the id.
#[derive(Debug, Default, Clone)]
pub struct ItemNames {
    by_id: HashMap<String, (String, Option<String>)>,
}

impl ItemNames {
    /// Reads a CSV with a header whose first column is the item id and second the title (a third,
    /// `genres`, is kept when present); RFC 4180 quoting, as `movies.csv` quotes titles with commas.
    pub fn read(path: &Path) -> Result<ItemNames, ServeError> {
        let bad = |message: String| ServeError::ItemNames { path: path.to_owned(), message };
        let file = std::fs::File::open(path).map_err(|source| ServeError::Io { path: path.to_owned(), source })?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(file);
        let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
        if headers.len() < 2 {
            return Err(bad(format!(
                "the header has {} column(s); expected at least an id and a title (MovieLens movies.csv: movieId,title,genres)",
                headers.len()
            )));
        }
        let mut by_id = HashMap::new();
        for (row, record) in reader.records().enumerate() {
            let record = record.map_err(|e| bad(format!("line {}: {e}", row + 2)))?;
            let (Some(id), Some(title)) = (record.get(0), record.get(1)) else {
                return Err(bad(format!("line {}: expected an id and a title", row + 2)));
            };
            let genres = record.get(2).map(str::to_owned);
            by_id.insert(id.trim().to_owned(), (title.to_owned(), genres));
        }
        Ok(ItemNames { by_id })
    }

    /// The title of a raw item id.
    pub fn title(&self, raw_id: &str) -> Option<&str> {
        self.by_id.get(raw_id).map(|(t, _)| t.as_str())
    }

    /// The genres of a raw item id, as the file wrote them (`Comedy|Romance`).
    pub fn genres(&self, raw_id: &str) -> Option<&str> {
        self.by_id.get(raw_id).and_then(|(_, g)| g.as_deref())
    }

    /// Number of items named.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no item is named.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

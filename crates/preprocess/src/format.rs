//! The raw ratings formats the reference reads, and how to tell them apart.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A raw MovieLens-style ratings file layout (reference-semantics.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// `ratings.csv` with header `userId,movieId,rating,timestamp` (ml-20m, ml-25m, ml-latest...).
    Ml20m,
    /// `ratings.dat`: `user::item::rating::timestamp`, no header.
    Ml1m,
    /// Same layout as ml-1m.
    Ml10m,
    /// `u.data`: tab-separated `user item rating timestamp`, no header.
    Ml100k,
    /// Anything else: `user,item,timestamp`; the first row is skipped (header or not, as the
    /// reference does); every rating counts as 5.
    LikeMovielens,
}

impl RawFormat {
    /// Chooses the format from the file, as the reference does from its name, except that a `.csv`
    /// whose header is ml-20m's (`userId,movieId,rating,timestamp`) is read as ml-20m whatever its
    /// folder is called (ml-latest-small, ml-25m...).
    pub fn detect(path: &Path) -> RawFormat {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let parent = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().to_lowercase());
        match name.as_str() {
            "u.data" => RawFormat::Ml100k,
            "ratings.dat" if parent.as_deref().is_some_and(|p| p.contains("ml-10m")) => RawFormat::Ml10m,
            "ratings.dat" => RawFormat::Ml1m,
            _ if ml20m_header(path) => RawFormat::Ml20m,
            _ => RawFormat::LikeMovielens,
        }
    }

    /// Field separator as written in the file.
    pub fn separator(self) -> &'static str {
        match self {
            RawFormat::Ml20m | RawFormat::LikeMovielens => ",",
            RawFormat::Ml1m | RawFormat::Ml10m => "::",
            RawFormat::Ml100k => "\t",
        }
    }

    /// Fields per row.
    pub fn fields(self) -> usize {
        match self {
            RawFormat::LikeMovielens => 3,
            _ => 4,
        }
    }

    /// Positions of user, item and timestamp among the fields.
    pub fn columns(self) -> [usize; 3] {
        match self {
            RawFormat::LikeMovielens => [0, 1, 2],
            _ => [0, 1, 3],
        }
    }

    /// Whether the first line is skipped (a header, or the reference's skipped first row).
    pub fn skips_first_line(self) -> bool {
        matches!(self, RawFormat::Ml20m | RawFormat::LikeMovielens)
    }
}

pub(crate) const ML20M_HEADER: &str = "userId,movieId,rating,timestamp";

fn ml20m_header(path: &Path) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut first = String::new();
    let _ = BufReader::new(file).take(256).read_line(&mut first);
    first.trim_end() == ML20M_HEADER
}

impl fmt::Display for RawFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RawFormat::Ml20m => "ml-20m",
            RawFormat::Ml1m => "ml-1m",
            RawFormat::Ml10m => "ml-10m",
            RawFormat::Ml100k => "ml-100k",
            RawFormat::LikeMovielens => "like-movielens",
        })
    }
}

impl FromStr for RawFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_lowercase().replace('_', "-").as_str() {
            "ml-20m" => RawFormat::Ml20m,
            "ml-1m" => RawFormat::Ml1m,
            "ml-10m" => RawFormat::Ml10m,
            "ml-100k" => RawFormat::Ml100k,
            "like-movielens" => RawFormat::LikeMovielens,
            other => {
                return Err(format!(
                    "unknown format `{other}` (expected ml-20m, ml-1m, ml-10m, ml-100k or like-movielens)"
                ))
            }
        })
    }
}

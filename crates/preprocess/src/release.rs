//! The MovieLens releases `prepare_dataset.sh` knows: where their zip comes from and what is in it.

use crate::{PrepareError, RawFormat};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A MovieLens release the one-step flow handles (`ncf-prepare --dataset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovieLensRelease {
    Ml20m,
    Ml1m,
}

impl MovieLensRelease {
    pub fn name(self) -> &'static str {
        match self {
            MovieLensRelease::Ml20m => "ml-20m",
            MovieLensRelease::Ml1m => "ml-1m",
        }
    }

    /// The page to download the zip from (GroupLens' terms ask users to fetch it themselves).
    pub fn download_page(self) -> &'static str {
        match self {
            MovieLensRelease::Ml20m => "https://grouplens.org/datasets/movielens/20m/",
            MovieLensRelease::Ml1m => "https://grouplens.org/datasets/movielens/1m/",
        }
    }

    /// `ml-20m.zip`, ...
    pub fn zip_name(self) -> String {
        format!("{}.zip", self.name())
    }

    /// The ratings file inside the extracted folder, relative to the raw folder.
    pub fn ratings_path(self) -> PathBuf {
        match self {
            MovieLensRelease::Ml20m => Path::new("ml-20m").join("ratings.csv"),
            MovieLensRelease::Ml1m => Path::new("ml-1m").join("ratings.dat"),
        }
    }

    pub fn format(self) -> RawFormat {
        match self {
            MovieLensRelease::Ml20m => RawFormat::Ml20m,
            MovieLensRelease::Ml1m => RawFormat::Ml1m,
        }
    }
}

impl fmt::Display for MovieLensRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MovieLensRelease {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ml-20m" => Ok(MovieLensRelease::Ml20m),
            "ml-1m" => Ok(MovieLensRelease::Ml1m),
            other => Err(format!("unknown dataset `{other}` (expected ml-20m or ml-1m)")),
        }
    }
}

/// Extracts `zip` into `raw_dir` unless `raw_dir/<release>` already exists (the reference unzips
/// once). Extraction goes to a temporary folder renamed into place, and refuses entries that would
/// land outside it. Returns the path of the ratings file.
pub fn extract_release(release: MovieLensRelease, raw_dir: &Path) -> Result<PathBuf, PrepareError> {
    let ratings = raw_dir.join(release.ratings_path());
    let folder = raw_dir.join(release.name());
    if folder.is_dir() {
        return Ok(ratings);
    }
    let zip_path = raw_dir.join(release.zip_name());
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PrepareError::Io { path, source }
    };
    let file = std::fs::File::open(&zip_path).map_err(io(&zip_path))?;
    let bad_zip = |e: zip::result::ZipError| PrepareError::Input { path: zip_path.clone(), message: e.to_string() };
    let mut archive = zip::ZipArchive::new(file).map_err(bad_zip)?;
    let tmp = raw_dir.join(format!(".{}.unzip-{}", release.name(), std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(bad_zip)?;
            let Some(relative) = entry.enclosed_name() else {
                return Err(PrepareError::Input {
                    path: zip_path.clone(),
                    message: format!(
                        "entry `{}` would be written outside the folder",
                        entry.name().map(|n| n.into_owned()).unwrap_or_default()
                    ),
                });
            };
            let target = tmp.join(relative);
            if entry.is_dir() {
                std::fs::create_dir_all(&target).map_err(io(&target))?;
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut out = std::fs::File::create(&target).map_err(io(&target))?;
            std::io::copy(&mut entry, &mut out).map_err(io(&target))?;
        }
        let extracted = tmp.join(release.name());
        if !extracted.is_dir() {
            return Err(PrepareError::Input {
                path: zip_path.clone(),
                message: format!("does not contain a `{}/` folder", release.name()),
            });
        }
        std::fs::rename(&extracted, &folder).map_err(io(&folder))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| ratings)
}

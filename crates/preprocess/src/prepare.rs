//! The whole job: raw file -> dataset folder.

use crate::negatives::NegativeSampler;
use crate::pipeline::{LeaveLastOut, Stats};
use crate::{load_raw, write, PrepareError, RawFormat};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Options of [`prepare`]; the defaults are the reference's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareOptions {
    /// The raw format; `None` detects it ([`RawFormat::detect`]).
    pub format: Option<RawFormat>,
    /// Test negatives per user (reference `--valid_negative`, default 100).
    pub negatives: usize,
    /// Seed of the negative sampler (reference default 1).
    pub seed: u64,
    /// Replace an existing output folder.
    pub replace: bool,
    /// Also hold out each user's second-latest interaction as a `validation` mapping
    /// ([`crate::LeaveLastOut::hold_out_validation`]), with its own negatives.
    pub validation: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions { format: None, negatives: 100, seed: 1, replace: false, validation: false }
    }
}

/// The steps [`prepare`] reports as it enters them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Reading,
    Splitting,
    Sampling,
    Writing,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Reading => "reading ratings",
            Stage::Splitting => "renumbering, sorting, deduplicating, splitting",
            Stage::Sampling => "drawing test negatives",
            Stage::Writing => "writing tensors",
        })
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareSummary {
    pub format: RawFormat,
    pub users: usize,
    pub items: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    /// Rows of the validation mapping (0 without `--validation`).
    pub validation_rows: usize,
    /// Users without a validation list (fewer than three distinct items), with `--validation`.
    pub users_without_validation: usize,
    pub stats: Stats,
    /// Whether the user / item ids were read as text (a column with any non-integer id).
    pub text_ids: (bool, bool),
    pub elapsed: Duration,
}

impl fmt::Display for PrepareSummary {
    /// The reference's summary line, then what it does not say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ratings on {} items from {} users from {} to {}",
            self.stats.ratings,
            self.items,
            self.users,
            utc(self.stats.first_timestamp),
            utc(self.stats.last_timestamp)
        )?;
        write!(
            f,
            "\n{} train rows, {} test rows ({} per user); {} duplicate (user, item) rows dropped; {} users with a single rating (test only)",
            self.train_rows,
            self.test_rows,
            self.test_rows / self.users.max(1),
            self.stats.duplicates,
            self.stats.single_rating_users
        )?;
        if self.validation_rows > 0 || self.users_without_validation > 0 {
            write!(
                f,
                "\n{} validation rows (each user's second-latest item and its negatives); {} users with fewer than 3 items have no validation list",
                self.validation_rows, self.users_without_validation
            )?;
        }
        let text: Vec<&str> = [("user", self.text_ids.0), ("item", self.text_ids.1)]
            .into_iter()
            .filter_map(|(name, text)| text.then_some(name))
            .collect();
        if !text.is_empty() {
            write!(f, "\n{} ids read as text (not every one an integer); id maps in *_ids.txt", text.join(" and "))?;
        }
        Ok(())
    }
}

/// Prepares `raw` into the dataset folder `out` (written atomically), reporting each stage.
pub fn prepare(
    raw: &Path,
    out: &Path,
    options: &PrepareOptions,
    mut progress: impl FnMut(Stage),
) -> Result<PrepareSummary, PrepareError> {
    let start = Instant::now();
    let format = options.format.unwrap_or_else(|| RawFormat::detect(raw));
    tracing::info!(path = %raw.display(), %format, "reading raw ratings");
    progress(Stage::Reading);
    let ratings = load_raw(raw, format)?;
    let text_ids = (ratings.user_names.is_some(), ratings.item_names.is_some());
    tracing::info!(rows = ratings.len(), elapsed = ?start.elapsed(), "read");
    progress(Stage::Splitting);
    let mut data = LeaveLastOut::from_raw(ratings);
    let split = options.validation.then(|| data.hold_out_validation());
    tracing::info!(users = data.n_users(), items = data.n_items(), elapsed = ?start.elapsed(), "split");
    progress(Stage::Sampling);
    let sampler = NegativeSampler { count: options.negatives, seed: options.seed };
    let (negatives, validation_negatives) = match &split {
        Some(split) => {
            let (test, validation) = sampler.sample_with_validation(&data, split)?;
            (test, Some(validation))
        }
        None => (sampler.sample(&data)?, None),
    };
    tracing::info!(elapsed = ?start.elapsed(), "negatives drawn");
    progress(Stage::Writing);
    let validation = split.as_ref().zip(validation_negatives.as_deref());
    write::write_atomically(out, options.replace, |dir| {
        write::write_files(dir, &data, &negatives, options.negatives, validation)
    })?;
    let validation_users = split.as_ref().map_or(0, |s| s.users.len());
    tracing::info!(elapsed = ?start.elapsed(), out = %out.display(), "written");
    Ok(PrepareSummary {
        format,
        users: data.n_users(),
        items: data.n_items(),
        train_rows: data.train_items.len(),
        test_rows: data.n_users() * (options.negatives + 1),
        validation_rows: validation_users * (options.negatives + 1),
        users_without_validation: if options.validation { data.n_users() - validation_users } else { 0 },
        stats: data.stats,
        text_ids,
        elapsed: start.elapsed(),
    })
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix seconds, without a date crate.
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(964_982_703), "2000-07-30 18:45:03");
        assert_eq!(super::utc(1_427_784_002), "2015-03-31 06:40:02");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59");
    }
}

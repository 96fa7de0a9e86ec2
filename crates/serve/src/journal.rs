//! The interaction journal: every event the service acknowledges is first appended here and
//! flushed to the disk (fsync), so nothing answered 2xx is lost to a crash; at start the journal
//! is replayed into the running state.
//!
//! One file per UTC day, `interactions-YYYY-MM-DD.csv`, in MovieLens' `userId,movieId,rating,
//! timestamp` layout with a header (the rating is 1.0: an implicit event), raw ids as the ratings
//! file had them, so `ncf-prepare` takes the files in directly (beside the ratings they extend). A
//! crash while appending can leave a torn last line: replay drops it with a warning and cuts the
//! file back to its last whole line, so later appends start clean.

use crate::ServeError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The journal's header line.
const HEADER: &str = "userId,movieId,rating,timestamp";

/// One interaction: a person (raw id) touched an item (raw id) at a time (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub user: String,
    pub item: String,
    pub timestamp: i64,
}

/// The journal of a service (`ncf-serve --journal DIR`).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The open file of the day last written, appends serialised.
    open: Mutex<Option<(String, File)>>,
}

/// What replaying a journal found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every whole event, oldest file first, in file order.
    pub events: Vec<Event>,
    /// One line per torn last line dropped (the file and what was cut).
    pub warnings: Vec<String>,
}

impl Journal {
    /// Opens (creating) the journal folder `dir` and replays it: each `interactions-*.csv` in name
    /// (date) order. A torn last line (no line end) is cut off with a warning; any other line that
    /// is not `user,item,rating,timestamp` is an error naming the file and line.
    pub fn open(dir: &Path) -> Result<(Journal, Replay), ServeError> {
        let io = |path: &Path, source| ServeError::Io { path: path.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("interactions-") && n.ends_with(".csv"))
            })
            .collect();
        files.sort();
        let mut replay = Replay::default();
        for path in files {
            // A device or a folder under a journal's name holds no events (and reading one, such
            // as /dev/zero, might never end).
            if !std::fs::metadata(&path).map_err(|e| io(&path, e))?.is_file() {
                replay.warnings.push(format!("{}: not a regular file; not replayed", path.display()));
                continue;
            }
            replay_file(&path, &mut replay)?;
        }
        Ok((Journal { dir: dir.to_owned(), open: Mutex::new(None) }, replay))
    }

    /// The journal folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `events` (one write) to the file of the first event's day and flushes it to the
    /// disk before returning; a new file gets the header, and the folder is flushed too so the
    /// file's name survives a crash. An error (a full disk, a read-only folder) records nothing
    /// the caller should acknowledge.
    pub fn append(&self, events: &[Event]) -> std::io::Result<()> {
        let Some(first) = events.first() else { return Ok(()) };
        let day = utc_day(first.timestamp);
        let mut text = Vec::new();
        {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(&mut text);
            for e in events {
                w.write_record([e.user.as_str(), e.item.as_str(), "1.0", &e.timestamp.to_string()])
                    .map_err(std::io::Error::other)?;
            }
            w.flush()?;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_ref().is_none_or(|(d, _)| *d != day) {
            let path = self.dir.join(format!("interactions-{day}.csv"));
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            if file.metadata()?.len() == 0 {
                file.write_all(format!("{HEADER}\n").as_bytes())?;
                file.sync_data()?;
                File::open(&self.dir)?.sync_all()?;
            }
            *open = Some((day, file));
        }
        let Some((_, file)) = open.as_mut() else { return Ok(()) };
        let written = file.write_all(&text).and_then(|()| file.sync_data());
        if written.is_err() {
            // The file may hold part of the write: drop the handle, so the next append reopens it
            // (a torn line stays for replay to cut, after a restart).
            *open = None;
        }
        written
    }
}

fn replay_file(path: &Path, replay: &mut Replay) -> Result<(), ServeError> {
    let io = |source| ServeError::Io { path: path.to_owned(), source };
    let bytes = std::fs::read(path).map_err(io)?;
    let whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => 0,
    };
    if whole < bytes.len() {
        let torn = String::from_utf8_lossy(&bytes[whole..]).into_owned();
        replay.warnings.push(format!(
            "{}: dropped a torn last line {torn:?} (a crash while appending; that event was never acknowledged)",
            path.display()
        ));
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(whole as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&bytes[..whole]);
    for (k, record) in reader.records().enumerate() {
        let line = k + 1;
        let bad = |why: String| ServeError::Journal { path: path.to_owned(), line, message: why };
        let record = record.map_err(|e| bad(e.to_string()))?;
        if line == 1 && record.get(0) == Some("userId") {
            continue;
        }
        if record.len() != 4 {
            return Err(bad(format!("expected userId,movieId,rating,timestamp, found {} field(s)", record.len())));
        }
        let timestamp =
            record[3].parse::<i64>().map_err(|_| bad(format!("timestamp {:?} is not an integer", &record[3])))?;
        replay.events.push(Event { user: record[0].to_owned(), item: record[1].to_owned(), timestamp });
    }
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time, in UTC (days to civil date, Howard Hinnant's algorithm).
fn utc_day(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399), "1970-01-01");
        assert_eq!(utc_day(951_782_400), "2000-02-29");
        assert_eq!(utc_day(1_796_256_000), "2026-12-03");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    #[test]
    fn appended_events_replay_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, replay) = Journal::open(dir.path()).unwrap();
        assert!(replay.events.is_empty());
        let events = vec![
            Event { user: "u, 1".into(), item: "31".into(), timestamp: 1_796_256_000 },
            Event { user: "7".into(), item: "\"x\"".into(), timestamp: 1_796_256_001 },
        ];
        journal.append(&events).unwrap();
        let file = dir.path().join("interactions-2026-12-03.csv");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("userId,movieId,rating,timestamp\n"), "{text}");
        // A crash mid-append: half a line.
        std::fs::write(&file, format!("{text}8,4")).unwrap();
        let (_, replay) = Journal::open(dir.path()).unwrap();
        assert_eq!(replay.events, events);
        assert_eq!(replay.warnings.len(), 1, "{:?}", replay.warnings);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "the torn line is cut off");
        // A broken whole line is an error naming the file and line.
        std::fs::write(&file, format!("{text}8,4,1.0,soon\n")).unwrap();
        let err = Journal::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("interactions-2026-12-03.csv") && err.contains("line 4"), "{err}");
    }
}

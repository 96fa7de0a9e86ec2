//! DLLogger's JSON-lines format, as the reference's `dllogger.JSONStreamBackend` writes it:
//! `DLLL {"timestamp": "...", "datetime": "...", "elapsedtime": "...", "type": "LOG", "step": [...],
//! "data": {...}}`, so tools that parse the reference's `log.json` parse ours.
//!
//! **What it is for:** writing such logs ([`DlLogger`]: `LOG` and `METADATA` lines, Python's
//! `json.dumps` spacing and float spelling). **What it is not:** a reader, or a general logger
//! (human output goes through `tracing`).
//!
//! ```
//! use dllogger::{DlLogger, LogValue, Step};
//! let dir = tempfile::tempdir()?;
//! let mut log = DlLogger::create(dir.path().join("log.json"))?;
//! log.log(Step::Epoch(0), &[("hr@10", LogValue::from(0.61)), ("train_loss", LogValue::from(0.35))])?;
//! let text = std::fs::read_to_string(dir.path().join("log.json"))?;
//! assert!(text.starts_with("DLLL {") && text.contains(r#""step": [0], "data": {"hr@10": 0.61"#));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A value in a log line's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    Float(f64),
    Int(i64),
    Text(String),
    Bool(bool),
    Null,
    List(Vec<LogValue>),
}

impl From<f64> for LogValue {
    fn from(v: f64) -> Self {
        LogValue::Float(v)
    }
}
impl From<i64> for LogValue {
    fn from(v: i64) -> Self {
        LogValue::Int(v)
    }
}
impl From<usize> for LogValue {
    fn from(v: usize) -> Self {
        LogValue::Int(v as i64)
    }
}
impl From<bool> for LogValue {
    fn from(v: bool) -> Self {
        LogValue::Bool(v)
    }
}
impl From<&str> for LogValue {
    fn from(v: &str) -> Self {
        LogValue::Text(v.to_owned())
    }
}
impl<T: Into<LogValue>> From<Option<T>> for LogValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(LogValue::Null, Into::into)
    }
}

/// The `step` of a line: an epoch `[e]`, the end `[]`, or a name (`"PARAMETER"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Epoch(usize),
    End,
    Named(String),
}

/// Writes DLLogger lines to a file (created, or truncated, as the reference does).
#[derive(Debug)]
pub struct DlLogger {
    path: PathBuf,
    out: BufWriter<File>,
    start: Instant,
}

impl DlLogger {
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let out = BufWriter::new(File::create(&path)?);
        Ok(DlLogger { path, out, start: Instant::now() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A `METADATA` line (e.g. a metric's unit).
    pub fn metadata(&mut self, metric: &str, metadata: &[(&str, &str)]) -> std::io::Result<()> {
        let meta: Vec<(&str, LogValue)> = metadata.iter().map(|(k, v)| (*k, LogValue::from(*v))).collect();
        let (timestamp, datetime, elapsed) = self.now();
        let line = format!(
            "DLLL {{\"timestamp\": {}, \"elapsedtime\": {}, \"datetime\": {}, \"type\": \"METADATA\", \"metric\": {}, \"metadata\": {}}}\n",
            quote(&timestamp),
            quote(&elapsed),
            quote(&datetime),
            quote(metric),
            object(&meta)
        );
        self.out.write_all(line.as_bytes())?;
        self.out.flush()
    }

    /// A `LOG` line with `data` in the given order.
    pub fn log<K: AsRef<str>>(&mut self, step: Step, data: &[(K, LogValue)]) -> std::io::Result<()> {
        let step = match step {
            Step::Epoch(e) => format!("[{e}]"),
            Step::End => "[]".into(),
            Step::Named(name) => quote(&name),
        };
        let (timestamp, datetime, elapsed) = self.now();
        let line = format!(
            "DLLL {{\"timestamp\": {}, \"datetime\": {}, \"elapsedtime\": {}, \"type\": \"LOG\", \"step\": {step}, \"data\": {}}}\n",
            quote(&timestamp),
            quote(&datetime),
            quote(&elapsed),
            object(data)
        );
        self.out.write_all(line.as_bytes())?;
        self.out.flush()
    }

    /// `str(datetime.timestamp())`, `str(datetime)` (local time) and `str(elapsed seconds)`.
    fn now(&self) -> (String, String, String) {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let timestamp = python_float(since_epoch.as_secs_f64());
        let datetime = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        let elapsed = python_float(self.start.elapsed().as_secs_f64());
        (timestamp, datetime, elapsed)
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A JSON object with Python's `json.dumps` spacing (`", "` and `": "`).
fn object<K: AsRef<str>>(entries: &[(K, LogValue)]) -> String {
    let body: Vec<String> = entries.iter().map(|(k, v)| format!("{}: {}", quote(k.as_ref()), value(v))).collect();
    format!("{{{}}}", body.join(", "))
}

fn value(v: &LogValue) -> String {
    match v {
        LogValue::Float(f) => python_float(*f),
        LogValue::Int(i) => i.to_string(),
        LogValue::Text(s) => quote(s),
        LogValue::Bool(b) => if *b { "true" } else { "false" }.into(),
        LogValue::Null => "null".into(),
        LogValue::List(items) => format!("[{}]", items.iter().map(value).collect::<Vec<_>>().join(", ")),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on whole numbers, `NaN`/`Infinity` as
/// `json.dumps` writes them.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = serde_json::Value::from(f).to_string();
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_json_with_the_reference_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut log = DlLogger::create(&path).unwrap();
        log.metadata("train_throughput", &[("unit", "samples/s")]).unwrap();
        log.log(Step::Named("PARAMETER".into()), &[("epochs", 3usize.into()), ("amp", false.into())]).unwrap();
        log.log(Step::Epoch(0), &[("hr@10", 0.5.into()), ("train_loss", f64::NAN.into())]).unwrap();
        log.log(Step::End, &[("best_epoch", 0i64.into()), ("lr", 1.0.into())]).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.starts_with("DLLL {")));
        assert!(lines[2].contains("\"step\": [0], \"data\": {\"hr@10\": 0.5, \"train_loss\": NaN}"), "{}", lines[2]);
        assert!(lines[3].contains("\"step\": [], \"data\": {\"best_epoch\": 0, \"lr\": 1.0}"), "{}", lines[3]);
        let end: serde_json::Value = serde_json::from_str(&lines[3][5..]).unwrap();
        assert_eq!(end["type"], "LOG");
        assert!(end["timestamp"].as_str().unwrap().parse::<f64>().unwrap() > 1.7e9);
        assert!(end["elapsedtime"].as_str().unwrap().parse::<f64>().unwrap() >= 0.0);
    }
}

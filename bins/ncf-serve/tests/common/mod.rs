//! What the ncf-serve tests share: a prepared dataset with a model for it, a server process on
//! loopback, and `ncf-infer recommend` as the reference for what the server must answer.

#![allow(dead_code)] // each test file uses its own part

use ncf_model::{NeuMf, NeuMfConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::Device;

pub const USERS: usize = 60;
pub const ITEMS: usize = 90;

pub fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// A prepared synthetic dataset (with id maps) in `dir/data`, its raw ratings in `dir/ratings.csv`
/// and a names file in `dir/names.csv` (`Item <id>` for every raw item id, genres for even ids).
pub fn dataset(dir: &Path) -> PathBuf {
    let raw = dir.join("ratings.csv");
    let config = preprocess::SyntheticConfig { users: USERS, items: ITEMS, interactions: 2_000, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &config).unwrap();
    let data = dir.join("data");
    preprocess::prepare(&raw, &data, &preprocess::PrepareOptions { negatives: 20, ..Default::default() }, |_| {})
        .unwrap();
    let items: std::collections::BTreeSet<i64> = raw_ratings(dir).into_values().flatten().collect();
    let mut names = String::from("movieId,title,genres\n");
    for i in items {
        // A title with a comma and quotes, as movies.csv has ("Shawshank Redemption, The").
        names.push_str(&format!("{i},\"Item {i}, \"\"the\"\"\",{}\n", if i % 2 == 0 { "Comedy|Drama" } else { "" }));
    }
    std::fs::write(dir.join("names.csv"), names).unwrap();
    data
}

/// [`dataset`] in `dir` and a [`model`] for it (seed 3) at `dir/model.pth`: (data, checkpoint).
pub fn dataset_and_model(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dataset(dir);
    let ckpt = dir.join("model.pth");
    model(&data, 3, &ckpt);
    (data, ckpt)
}

/// Each raw user's distinct raw items in `dir/ratings.csv`.
pub fn raw_ratings(dir: &Path) -> HashMap<i64, std::collections::BTreeSet<i64>> {
    let mut out: HashMap<i64, std::collections::BTreeSet<i64>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("ratings.csv")).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.entry(f[0].parse().unwrap()).or_default().insert(f[1].parse().unwrap());
    }
    out
}

/// A NeuMF for `data` with weights drawn from `seed` and spread (so the top items are decided by
/// gaps far above float rounding, whatever the CPU's kernels), saved at `path`.
pub fn model(data: &Path, seed: i64, path: &Path) -> NeuMf {
    let (users, items) = cards(data);
    tch::manual_seed(seed);
    let mut model = NeuMf::new(
        NeuMfConfig { mlp_layers: vec![32, 16, 8], mf_dim: 8, ..NeuMfConfig::new(users, items) },
        Device::Cpu,
    )
    .unwrap();
    tch::no_grad(|| {
        for (_, t) in model.state_dict() {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.3));
        }
    });
    model.set_train(false);
    model.save(path).unwrap();
    model
}

pub fn cards(data: &Path) -> (i64, i64) {
    let text = std::fs::read_to_string(data.join("feature_spec.yaml")).unwrap();
    let card = |name: &str| {
        let at = text.find(&format!("  {name}:\n")).unwrap();
        let rest = &text[at..];
        let c = rest.find("cardinality: ").unwrap() + "cardinality: ".len();
        rest[c..].lines().next().unwrap().trim().parse::<i64>().unwrap()
    };
    (card("user"), card("item"))
}

/// A binary of the workspace beside this test's own (`make test` builds them all).
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ncf-serve")).with_file_name(name);
    assert!(path.exists(), "{} is not built: cargo build -p {name}-cli (make test builds it)", path.display());
    path
}

/// `ncf-infer recommend` for raw `users`: each user's (item, score) list, best first.
pub fn ncf_infer(
    data: &Path,
    ckpt: &Path,
    users: &[i64],
    k: usize,
    include_seen: bool,
) -> HashMap<i64, Vec<(i64, f32)>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recs.csv");
    let list = users.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(sibling_binary("ncf-infer"));
    cmd.args(["recommend", "--data", &s(data), "--load_checkpoint_path", &s(ckpt), "--users", &list]);
    cmd.args(["-k", &k.to_string(), "--output", &s(&out), "--device", "cpu"]);
    if include_seen {
        cmd.arg("--include-seen");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got: HashMap<i64, Vec<(i64, f32)>> = HashMap::new();
    for line in std::fs::read_to_string(&out).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        got.entry(f[0].parse().unwrap()).or_default().push((f[2].parse().unwrap(), f[3].parse().unwrap()));
    }
    got
}

/// An `ncf-serve` process listening on a free loopback port; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `ncf-serve --listen 127.0.0.1:0 --device cpu --data DATA --load_checkpoint_path CKPT
    /// EXTRA...`, waiting for its address (the environment's admin token left out).
    pub fn serving(data: &Path, ckpt: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ncf-serve"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--device",
            "cpu",
            "--data",
            &s(data),
            "--load_checkpoint_path",
            &s(ckpt),
        ]);
        cmd.args(extra).env_remove("NCF_SERVE_ADMIN_TOKEN");
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ncf-serve did not start:\n{}", stderr.lock().unwrap());
            }
        };
        Server { child, url, stderr }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// GET `url`: the status and the body as JSON (Null when it is not JSON).
pub fn get(c: &reqwest::blocking::Client, url: &str) -> (u16, serde_json::Value) {
    let r = c.get(url).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// POST `body` (raw bytes) to `url`.
pub fn post(
    c: &reqwest::blocking::Client,
    url: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> (u16, serde_json::Value) {
    let r = c.post(url).header("content-type", "application/json").body(body).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// An answer's `items` as (raw item, score) pairs.
pub fn items(v: &serde_json::Value) -> Vec<(i64, f32)> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {v}"))
        .iter()
        .map(|i| (i["item"].as_i64().unwrap(), i["score"].as_f64().unwrap() as f32))
        .collect()
}

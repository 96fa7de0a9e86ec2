//! `ncf-infer` as a user runs it: recommendations equal to scoring every pair one by one, in raw
//! ids; unknown users refused; the benchmark's table and log.

use ncf_model::{NeuMf, NeuMfConfig};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};
use tch::{Device, Tensor};

fn ncf_infer<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ncf-infer")).args(args).output().unwrap()
}

/// `ncf-infer recommend --data DATA --load_checkpoint_path CKPT REST... --device cpu`.
fn recommend(data: &Path, ckpt: &Path, rest: &[&str]) -> Output {
    let (data, ckpt) = (data.to_str().unwrap(), ckpt.to_str().unwrap());
    let mut args = vec!["recommend", "--data", data, "--load_checkpoint_path", ckpt];
    args.extend_from_slice(rest);
    args.extend(["--device", "cpu"]);
    ncf_infer(args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A prepared synthetic dataset (with id maps) and a random model for it, saved as model.pth.
fn dataset_and_model(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, NeuMf) {
    let raw = dir.join("ratings.csv");
    let config = preprocess::SyntheticConfig { users: 60, items: 90, interactions: 2_000, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &config).unwrap();
    let data = dir.join("data");
    preprocess::prepare(&raw, &data, &preprocess::PrepareOptions { negatives: 20, ..Default::default() }, |_| {})
        .unwrap();
    let spec = featurespec_cards(&data);
    tch::manual_seed(4);
    let mut model = NeuMf::new(
        NeuMfConfig { mlp_layers: vec![32, 16, 8], mf_dim: 8, ..NeuMfConfig::new(spec.0, spec.1) },
        Device::Cpu,
    )
    .unwrap();
    // Spread the weights: a fresh model's N(0, 0.01) embeddings score items a few float32 ulps
    // apart, so which of two near-equal items ranks first would depend on the CPU's kernels;
    // spread, the top items are decided by gaps far above rounding.
    tch::no_grad(|| {
        for (_, t) in model.state_dict() {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.3));
        }
    });
    model.set_train(false);
    let ckpt = dir.join("model.pth");
    model.save(&ckpt).unwrap();
    (data, ckpt, model)
}

fn featurespec_cards(data: &Path) -> (i64, i64) {
    let text = std::fs::read_to_string(data.join("feature_spec.yaml")).unwrap();
    let card = |name: &str| {
        let at = text.find(&format!("  {name}:\n")).unwrap();
        let rest = &text[at..];
        let c = rest.find("cardinality: ").unwrap() + "cardinality: ".len();
        rest[c..].lines().next().unwrap().trim().parse::<i64>().unwrap()
    };
    (card("user"), card("item"))
}

fn ids(path: &Path) -> Vec<i64> {
    Vec::<i64>::try_from(&tch_data::load_tch_tensor(path, Device::Cpu).unwrap()).unwrap()
}

/// The dataset's train pairs, flat: user, item, user, item, ...
fn train_pairs(data: &Path) -> Vec<i64> {
    Vec::<i64>::try_from(&tch_data::load_tch_tensor(data.join("train_data_0.pt"), Device::Cpu).unwrap().view([-1]))
        .unwrap()
}

/// User `u`'s train items.
fn seen_by(train: &[i64], u: usize) -> HashSet<i64> {
    train.chunks(2).filter(|p| p[0] == u as i64).map(|p| p[1]).collect()
}

/// Every item `u` has not seen, scored one pair at a time by `score` (a `[1, 1]` tensor for one
/// (user, item) pair), best first.
fn ranked_pair_by_pair(
    u: usize,
    items: i64,
    seen: &HashSet<i64>,
    score: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> Vec<(f32, i64)> {
    let mut scored: Vec<(f32, i64)> = (0..items)
        .filter(|i| !seen.contains(i))
        .map(|i| {
            let s = tch::no_grad(|| score(&Tensor::from_slice(&[u as i64]), &Tensor::from_slice(&[i])));
            (s.double_value(&[0, 0]) as f32, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
}

/// `recommend`'s CSV as each raw user's (raw item, score) rows, in rank order.
fn recommended(csv: &str) -> HashMap<i64, Vec<(i64, f32)>> {
    let mut got: HashMap<i64, Vec<(i64, f32)>> = HashMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        got.entry(f[0].parse().unwrap()).or_default().push((f[2].parse().unwrap(), f[3].parse().unwrap()));
    }
    got
}

/// The items of [`recommended`]'s rows.
fn items_of(rows: &[(i64, f32)]) -> Vec<i64> {
    rows.iter().map(|&(i, _)| i).collect()
}

#[test]
fn recommendations_equal_pair_by_pair_scoring_in_raw_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt, model) = dataset_and_model(dir.path());
    let (user_raw, item_raw) = (ids(&data.join("user_ids.pt")), ids(&data.join("item_ids.pt")));
    let train = train_pairs(&data);
    let n_items = model.config().items;
    let picked = [0usize, 17, 59];
    let raw_users: Vec<String> = picked.iter().map(|&u| user_raw[u].to_string()).collect();
    let out = dir.path().join("recs.csv");
    ok(&recommend(&data, &ckpt, &["--users", &raw_users.join(","), "-k", "5", "--output", out.to_str().unwrap()]));
    #[cfg(unix)]
    {
        // Written through a temporary file, yet readable like any file this user creates.
        use std::os::unix::fs::PermissionsExt;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&plain), "the umask's mode, not a temporary file's 0600");
    }
    let got = recommended(&std::fs::read_to_string(&out).unwrap());
    for &u in &picked {
        // Score every item for u one pair at a time, drop u's train items, take the top 5.
        let seen = seen_by(&train, u);
        let scored = ranked_pair_by_pair(u, n_items, &seen, |u, i| model.forward_sigmoid(u, i));
        let want: Vec<i64> = scored[..5].iter().map(|&(_, i)| item_raw[i as usize]).collect();
        assert_eq!(items_of(&got[&user_raw[u]]), want, "user {} (raw {})", u, user_raw[u]);
        assert!(want.iter().all(|i| !seen.contains(&(item_raw.iter().position(|r| r == i).unwrap() as i64))));
    }
    // --include-seen may bring train items back; --all writes every user, as JSON lines.
    let all = dir.path().join("all.jsonl");
    ok(&recommend(&data, &ckpt, &["--all", "-k", "3", "--output", all.to_str().unwrap()]));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&all).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 60 * 3);
    assert_eq!(lines[0]["rank"], 1);
}

#[test]
fn an_unknown_user_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt, _) = dataset_and_model(dir.path());
    let o = recommend(&data, &ckpt, &["--users", "987654321"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("user 987654321 is not in the dataset"), "{err}");
}

#[test]
fn a_checkpoint_of_another_dataset_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _) = dataset_and_model(dir.path());
    let other = test_support::reference_prepared().join("reference_model.pth"); // 610 users
    let out = dir.path().join("recs.csv");
    let o = recommend(&data, &other, &["--all", "--output", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the checkpoint has 610 users, the dataset 60"), "{err}");
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn the_benchmark_prints_a_table_and_logs_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let out = ok(&ncf_infer([
        "--n_users",
        "1000",
        "--n_items",
        "500",
        "--batch_sizes",
        "1,64",
        "--num_batches",
        "5",
        "--log_path",
        log.to_str().unwrap(),
        "--device",
        "cpu",
    ]));
    assert!(out.contains("samples/s") && out.lines().count() == 3, "{out}");
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim().strip_prefix("DLLL ").unwrap()).unwrap();
    for b in [1, 64] {
        for k in ["mean_throughput", "mean_latency", "p90_latency", "p95_latency", "p99_latency"] {
            assert!(v["data"][format!("batch_{b}_{k}")].as_f64().unwrap() > 0.0, "batch_{b}_{k}");
        }
    }
    let bad = ncf_infer(["--batch_sizes", "1,x", "--log_path", ""]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("`x` is not a positive integer"));
}

#[test]
fn text_ids_go_in_and_come_out_as_the_ratings_file_had_them() {
    // The synthetic ratings re-keyed as a real log has them (`u17`, `sku-31`): the same rows in
    // the same order make the same tensors, so the same model must give the same lists, in text ids.
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt, _) = dataset_and_model(dir.path());
    let mut log = String::from("user,item,timestamp\n");
    for line in std::fs::read_to_string(dir.path().join("ratings.csv")).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        log += &format!("u{},sku-{},{}\n", f[0], f[1], f[3]);
    }
    let raw = dir.path().join("events.csv");
    std::fs::write(&raw, log).unwrap();
    let keyed = dir.path().join("keyed");
    preprocess::prepare(&raw, &keyed, &preprocess::PrepareOptions { negatives: 20, ..Default::default() }, |_| {})
        .unwrap();
    assert!(keyed.join("user_ids.txt").exists() && keyed.join("item_ids.txt").exists());

    let users = ids(&data.join("user_ids.pt"));
    let picked = [users[0], users[33]];
    let int_csv = ok(&recommend(&data, &ckpt, &["--users", &format!("{},{}", picked[0], picked[1]), "-k", "4"]));
    let text_users = format!("u{},u{}", picked[0], picked[1]);
    let text_csv = ok(&recommend(&keyed, &ckpt, &["--users", &text_users, "-k", "4"]));
    let rekeyed: Vec<String> = int_csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("u{},{},sku-{},{}", f[0], f[1], f[2], f[3])
        })
        .collect();
    assert_eq!(text_csv.lines().skip(1).collect::<Vec<_>>(), rekeyed);
    assert_eq!(rekeyed.len(), 8);

    // JSON lines: text ids as strings (integer ids stay numbers, as the other test reads them).
    let jsonl = dir.path().join("recs.jsonl");
    ok(&recommend(&keyed, &ckpt, &["--users", &text_users, "-k", "1", "--output", jsonl.to_str().unwrap()]));
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["user"], serde_json::json!(format!("u{}", picked[0])));
    assert!(first["item"].as_str().is_some_and(|i| i.starts_with("sku-")), "{first}");
    // An integer typed for a text-keyed dataset is an unknown user, named.
    let o = recommend(&keyed, &ckpt, &["--users", &picked[0].to_string()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("user {} is not in the dataset", picked[0])));
}

#[test]
fn every_model_recommends_what_pair_by_pair_scoring_ranks_first() {
    use ncf_model::{Model, ModelKind};
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _) = dataset_and_model(dir.path());
    let (users, items) = featurespec_cards(&data);
    let (user_raw, item_raw) = (ids(&data.join("user_ids.pt")), ids(&data.join("item_ids.pt")));
    let train = train_pairs(&data);
    for kind in [ModelKind::Gmf, ModelKind::Mlp, ModelKind::Mf] {
        tch::manual_seed(7);
        let shape = NeuMfConfig { mlp_layers: vec![32, 16, 8], mf_dim: 8, ..NeuMfConfig::new(users, items) };
        let mut model = kind.build(&shape, Device::Cpu).unwrap();
        // Spread the weights (a fresh model's N(0, 0.01) embeddings rank items by their biases).
        tch::no_grad(|| {
            for (_, t) in model.state_dict() {
                let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.3));
            }
        });
        model.set_train(false);
        let ckpt = dir.path().join(format!("{kind}.pth"));
        model.save(&ckpt).unwrap();
        let picked = [3usize, 30];
        let raw_users: Vec<String> = picked.iter().map(|&u| user_raw[u].to_string()).collect();
        let o = recommend(&data, &ckpt, &["--users", &raw_users.join(","), "-k", "4"]);
        let text = ok(&o);
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{} from", kind.title())));
        let got = recommended(&text);
        for &u in &picked {
            let scored = ranked_pair_by_pair(u, items, &seen_by(&train, u), |u, i| model.forward_sigmoid(u, i));
            let want: Vec<i64> = scored[..4].iter().map(|&(_, i)| item_raw[i as usize]).collect();
            assert_eq!(items_of(&got[&user_raw[u]]), want, "{kind}: user {u}");
        }
        // The benchmark reads the model from the checkpoint's keys.
        let bench = ncf_infer([
            "--load_checkpoint_path",
            ckpt.to_str().unwrap(),
            "--n_users",
            &users.to_string(),
            "--n_items",
            &items.to_string(),
            "-f",
            "8",
            "--layers",
            "32",
            "16",
            "8",
            "--batch_sizes",
            "1,256",
            "--num_batches",
            "3",
            "--log_path",
            "",
            "--device",
            "cpu",
        ]);
        assert!(ok(&bench).lines().count() == 3);
        assert!(String::from_utf8_lossy(&bench.stderr).contains(&format!("timing {}", kind.title())));
    }
}

#[test]
fn cpu_matmul_changes_the_library_not_the_recommendations() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt, _) = dataset_and_model(dir.path());
    let rows = |lib: &str| -> Vec<(String, String, String, f64)> {
        let out = dir.path().join(format!("recs-{lib}.csv"));
        ok(&recommend(&data, &ckpt, &["--all", "-k", "5", "--cpu-matmul", lib, "--output", out.to_str().unwrap()]));
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_owned(), f[1].to_owned(), f[2].to_owned(), f[3].parse().unwrap())
            })
            .collect()
    };
    let mkl = rows("mkl");
    let auto = rows("auto");
    assert_eq!(mkl.len(), 60 * 5);
    for (a, b) in mkl.iter().zip(&auto) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "the same user and rank");
        assert!((a.3 - b.3).abs() < 1e-5, "scores {a:?} vs {b:?}");
        // The same item, unless two of the user's items tie to rounding (then either order is right).
        let near_tie = mkl.iter().any(|c| c.0 == a.0 && c.2 != a.2 && (c.3 - a.3).abs() < 1e-5);
        assert!(a.2 == b.2 || near_tie, "user {} rank {}: item {} vs {}", a.0, a.1, a.2, b.2);
    }
    // The benchmark names the library it timed.
    let bench = |lib: &str| {
        let o = ncf_infer([
            "--n_users",
            "100",
            "--n_items",
            "50",
            "--batch_sizes",
            "64",
            "--num_batches",
            "2",
            "--log_path",
            "",
            "--device",
            "cpu",
            "--cpu-matmul",
            lib,
        ]);
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (success, err) = bench("mkl");
    assert!(success && err.contains("(MKL matmuls)"), "{err}");
    let (success, err) = bench("onednn");
    if ncf_model::runtime::CpuMatmul::OneDnn.resolve().is_ok() {
        assert!(success && err.contains("(oneDNN matmuls)"), "{err}");
    } else {
        assert!(!success && err.contains("AVX-512"), "{err}");
    }
}

/// A model sure of many items (logits past ~17, whose probabilities all round to 1.0 in float32)
/// still ranks them by what it computed: the lists follow the logits, pair by pair, not the
/// order a sort of equal probabilities would leave.
#[test]
fn saturated_probabilities_keep_the_logits_order() {
    use ncf_model::{Model, ModelKind};
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _) = dataset_and_model(dir.path());
    let (users, items) = featurespec_cards(&data);
    let (user_raw, item_raw) = (ids(&data.join("user_ids.pt")), ids(&data.join("item_ids.pt")));
    let train = train_pairs(&data);
    tch::manual_seed(11);
    let shape = NeuMfConfig { mf_dim: 8, ..NeuMfConfig::new(users, items) };
    let mut model = ModelKind::Mf.build(&shape, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (_, t) in model.state_dict() {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * 4.0));
        }
    });
    model.set_train(false);
    let ckpt = dir.path().join("sure.pth");
    model.save(&ckpt).unwrap();
    let picked = [5usize, 41];
    let raw_users: Vec<String> = picked.iter().map(|&u| user_raw[u].to_string()).collect();
    let got = recommended(&ok(&recommend(&data, &ckpt, &["--users", &raw_users.join(","), "-k", "10"])));
    for &u in &picked {
        let scored = ranked_pair_by_pair(u, items, &seen_by(&train, u), |u, i| model.forward(u, i));
        // What makes this a test: several of the ten round to probability 1.0, and the logits
        // are far apart (no two within rounding of each other).
        let ones = scored[..10].iter().filter(|(l, _)| 1.0 / (1.0 + (-l).exp()) == 1.0f32).count();
        assert!(ones >= 4, "user {u}: only {ones} of the top 10 saturate; logits {:?}", &scored[..10]);
        assert!(scored[..11].windows(2).all(|w| w[0].0 - w[1].0 > 1e-4 * w[0].0.abs()), "{:?}", &scored[..11]);
        let want: Vec<i64> = scored[..10].iter().map(|&(_, i)| item_raw[i as usize]).collect();
        assert_eq!(items_of(&got[&user_raw[u]]), want, "user {u}");
        // The scores are the probabilities: 1 where saturated, never above.
        assert!(got[&user_raw[u]].iter().filter(|&&(_, p)| p == 1.0).count() >= ones);
        assert!(got[&user_raw[u]].iter().all(|&(_, p)| p <= 1.0 && p > 0.0));
    }
}

/// `--bf16` as a user meets it: refused with the reason for a model without bfloat16 scoring (MF,
/// GMF) and, for NeuMF, the float32 lists on a CPU with bfloat16 instructions or a refusal that
/// names the CPU on one without; never a half-written output file.
#[test]
fn bf16_candidates_give_float32_lists_or_a_reason() {
    use ncf_model::{Model, ModelKind};
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt, _) = dataset_and_model(dir.path());
    let (users, items) = featurespec_cards(&data);
    for kind in [ModelKind::Mf, ModelKind::Gmf] {
        let shape = NeuMfConfig { mlp_layers: vec![32, 16, 8], mf_dim: 8, ..NeuMfConfig::new(users, items) };
        let model = kind.build(&shape, Device::Cpu).unwrap();
        let path = dir.path().join(format!("{kind}.pth"));
        model.save(&path).unwrap();
        let out = dir.path().join(format!("{kind}-recs.csv"));
        let o = recommend(&data, &path, &["--all", "--bf16", "--device", "cpu", "--output", out.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{kind}: --bf16 accepted");
        assert!(stderr.contains("--bf16") && stderr.contains("bfloat16"), "{kind}: {stderr}");
        assert!(!out.exists(), "{kind}: an output file was left");
    }
    let float32 = dir.path().join("f32.csv");
    ok(&recommend(&data, &ckpt, &["--all", "-k", "5", "--device", "cpu", "--output", float32.to_str().unwrap()]));
    let bf16 = dir.path().join("bf16.csv");
    let o =
        recommend(&data, &ckpt, &["--all", "-k", "5", "--bf16", "--device", "cpu", "--output", bf16.to_str().unwrap()]);
    if torch_ops::bf16_available() {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("bfloat16 candidates, float32 ranking"));
        let rows = |p: &Path| -> Vec<(String, String, f64)> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f[0].to_owned(), f[2].to_owned(), f[3].parse().unwrap())
                })
                .collect()
        };
        let (a, b) = (rows(&float32), rows(&bf16));
        assert_eq!((a.len(), b.len()), (60 * 5, 60 * 5));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0);
            // The same item, unless two of the user's items score within rounding of each other.
            let near_tie = a.iter().any(|c| c.0 == x.0 && c.1 != x.1 && (c.2 - x.2).abs() < 1e-5);
            assert!(x.1 == y.1 || near_tie, "user {}: {} vs {}", x.0, x.1, y.1);
            assert!((x.2 - y.2).abs() < 1e-5, "{x:?} vs {y:?}");
        }
    } else {
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("bfloat16 instructions"));
        assert!(!bf16.exists());
    }
}

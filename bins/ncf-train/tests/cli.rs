//! `ncf-train` as a user runs it: the reference's checkpoint in test mode, a full train ->
//! checkpoint -> resume -> test cycle on a tiny dataset with its log, and bad input.

mod common;
use common::{log_lines, ncf_train, ok, tiny_dataset};
use std::path::Path;
use test_support::reference_prepared;

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_reference_checkpoint_in_test_mode_logs_the_expected_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = reference_prepared();
    let log = dir.path().join("log.json");
    let out = ok(&ncf_train([
        "--data",
        &s(&data),
        "--mode",
        "test",
        "--load_checkpoint_path",
        &s(&data.join("reference_model.pth")),
        "--log_path",
        &s(&log),
    ]));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("expected_metrics.json")).unwrap()).unwrap();
    let lines = log_lines(&log);
    let (step, end) = lines.last().unwrap();
    assert_eq!(step, &serde_json::json!([]));
    for (key, want, tol) in [
        ("hr@10", &expected["topk_10"]["hr"], 1e-9),
        ("ndcg@10", &expected["topk_10"]["ndcg"], 1e-9),
        ("validation_loss", &expected["validation_loss"], 1e-5),
    ] {
        let (got, want) = (end[key].as_f64().unwrap(), want.as_f64().unwrap());
        assert!((got - want).abs() < tol, "{key}: logged {got}, expected {want}");
    }
    assert!(end["best_eval_throughput"].as_f64().unwrap() > 0.0);
    assert!(out.contains("HR@10 0.608197"), "{out}");
}

/// Model and optimizer tensors of a training state, by name.
fn training_tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    tch_data::load_tch_map(path, tch::Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("model.") || k.starts_with("adam."))
        .collect()
}

#[test]
fn train_checkpoint_resume_test_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let args = |ckpt: &Path, epochs: &str| -> Vec<String> {
        ["--data", &s(&data), "-e", epochs, "-b", "2048", "--seed", "5", "--checkpoint_dir", &s(ckpt)]
            .iter()
            .map(|a| a.to_string())
            .chain(["--log_path".to_string(), s(&ckpt.join("log.json"))])
            .collect()
    };
    // Straight through, 3 epochs.
    let a = dir.path().join("a");
    ok(&ncf_train(args(&a, "3")));
    // Interrupted after 1 epoch, then resumed to 3.
    let b = dir.path().join("b");
    ok(&ncf_train(args(&b, "1")));
    let mut resumed = args(&b, "3");
    resumed.extend(["--resume".into(), s(&b)]);
    ok(&ncf_train(&resumed));

    // Bit for bit the same run: every parameter and Adam moment, and the logged epochs 2 and 3.
    let (ta, tb) = (training_tensors(&a.join("training_state.pt")), training_tensors(&b.join("training_state.pt")));
    assert_eq!(ta.len(), tb.len());
    for ((ka, va), (kb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(ka, kb);
        assert!(va.equal(vb), "{ka} differs after resume");
    }
    let (la, lb) = (log_lines(&a.join("log.json")), log_lines(&b.join("log.json")));
    let epoch = |lines: &[(serde_json::Value, serde_json::Value)], e: usize| {
        lines.iter().find(|(step, _)| step == &serde_json::json!([e])).map(|(_, d)| d.clone()).unwrap()
    };
    for e in [1, 2] {
        for key in ["hr@10", "ndcg@10", "validation_loss", "train_loss"] {
            assert_eq!(epoch(&la, e)[key], epoch(&lb, e)[key], "epoch {e} {key}");
        }
    }

    // The log: a PARAMETER line, every per-epoch and end key of the reference (hr@K for -k), ours too.
    let text = std::fs::read_to_string(a.join("log.json")).unwrap();
    assert!(text.lines().all(|l| l.starts_with("DLLL {")));
    assert_eq!(la[0].0, serde_json::json!("PARAMETER"));
    assert_eq!(la[0].1["batch_size"], 2048);
    let keys =
        |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
    let per_epoch = [
        "train_throughput",
        "hr@10",
        "ndcg@10",
        "train_epoch_time",
        "validation_epoch_time",
        "eval_throughput",
        "validation_loss",
        "train_loss",
    ];
    assert_eq!(keys(&epoch(&la, 0)), per_epoch.iter().map(|k| k.to_string()).collect());
    let (end_step, end) = la.last().unwrap();
    assert_eq!(end_step, &serde_json::json!([]));
    for key in [
        "best_train_throughput",
        "best_eval_throughput",
        "mean_train_throughput",
        "mean_eval_throughput",
        "best_accuracy",
        "best_epoch",
        "time_to_target",
        "time_to_best_model",
        "validation_loss",
        "train_loss",
    ] {
        assert!(end.get(key).is_some(), "end line lacks {key}: {end}");
    }
    let best = end["best_accuracy"].as_f64().unwrap();
    let best_epoch = end["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(epoch(&la, best_epoch)["hr@10"].as_f64().unwrap(), best);
    // A random ranking of 1 positive and 100 negatives has HR@10 10/101 (sd 0.017 over these 300
    // users); twice that is far from chance either way, whatever rounding the CPU's kernels add.
    eprintln!("best HR@10 {best}");
    assert!(best > 2.0 * 10.0 / 101.0, "the tiny dataset is learnable: best HR@10 {best}");

    // model.pth (the best epoch's) read by PyTorch and evaluated with the reference's formulas.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/evaluate_checkpoint.py");
    let py = test_support::run_python(
        &script,
        [s(&data), s(&a.join("model.pth")), "64".into(), "[256,256,128,64]".into(), "10".into()],
    );
    let pytorch: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(pytorch["hr"].as_f64().unwrap(), best, "PyTorch's HR of our checkpoint vs the logged best");

    // Test mode on it gives the same HR.
    let out = ok(&ncf_train([
        "--data",
        &s(&data),
        "--mode",
        "test",
        "--load_checkpoint_path",
        &s(&a.join("model.pth")),
        "--log_path",
        "",
    ]));
    assert!(out.contains(&format!("HR@10 {best:.6}")), "{out} vs {best}");
}

fn fails<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let o = ncf_train(args);
    assert!(!o.status.success(), "must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let d = s(&data);
    let quiet = ["--checkpoint_dir", "", "--log_path", ""];

    // A batch larger than the epoch: the reference silently trains nothing.
    let err = fails(["--data", &d, "-b", "100000000"].iter().chain(&quiet));
    assert!(err.contains("batch(es)") && err.contains("--batch_size"), "{err}");

    // A checkpoint of another shape.
    let reference = reference_prepared().join("reference_model.pth");
    let err = fails(["--data", &d, "--load_checkpoint_path", &s(&reference)].iter().chain(&quiet));
    assert!(err.contains("mf_user_embed.weight") && err.contains("checkpoint shape [610, 64]"), "{err}");

    // A checkpoint folder that cannot exist (under a regular file).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(["--data", &d, "-b", "4096", "--checkpoint_dir", &s(&file.join("ckpt")), "--log_path", ""]);
    assert!(err.contains("a-file"), "{err}");

    // A dataset that breaks the rules: a chunk file missing.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["feature_spec.yaml", "train_data_0.pt", "train_data_1.pt", "test_data_0.pt"] {
        std::fs::copy(data.join(f), broken.join(f)).unwrap();
    }
    let err = fails(["--data", &s(&broken)].iter().chain(&quiet));
    assert!(err.contains("test_data_1.pt"), "{err}");

    // --device cuda without a GPU (on this CPU machine).
    if !tch::Cuda::is_available() {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncf-train"))
            .args(["--device", "cuda", "--data", &d, "--checkpoint_dir", "", "--log_path", ""])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("CUDA is not available"), "{err}");
    }
    // The reference's -b1/-b2 spellings are the Adam betas, not the batch size.
    let log = dir.path().join("betas.json");
    ok(&ncf_train([
        "--data",
        &d,
        "-e",
        "1",
        "-b",
        "4096",
        "-b1",
        "0.3",
        "-b2",
        "0.6",
        "--checkpoint_dir",
        "",
        "--log_path",
        &s(&log),
    ]));
    let params = &log_lines(&log)[0].1;
    assert_eq!(
        (params["beta1"].as_f64(), params["beta2"].as_f64(), params["batch_size"].as_i64()),
        (Some(0.3), Some(0.6), Some(4096))
    );
}

#[test]
fn the_threshold_stops_after_the_first_epoch_that_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let log = dir.path().join("threshold.json");
    let out = ok(&ncf_train([
        "--data",
        &s(&data),
        "-e",
        "5",
        "-b",
        "4096",
        "-t",
        "0.0",
        "--checkpoint_dir",
        "",
        "--log_path",
        &s(&log),
    ]));
    let epochs = log_lines(&log).iter().filter(|(step, _)| step.as_array().is_some_and(|a| a.len() == 1)).count();
    assert_eq!(epochs, 1, "{out}");
    assert!(out.contains("threshold reached"), "{out}");
}

#[test]
fn multi_gpu_launches_without_gpus_are_refused_clearly() {
    if tch::Cuda::is_available() {
        return; // the refusals below are about machines without GPUs
    }
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let nccl = ["--dist-backend", "nccl"];
    let o = ncf_train(
        ["--data", &s(&data), "--nproc-per-node", "2", "--checkpoint_dir", "", "--log_path", ""]
            .into_iter()
            .chain(nccl),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no CUDA device is visible"), "{err}");
    // Under a torchrun-style launcher: rank 1 has no cuda:1 here.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncf-train"))
        .args(["--data", &s(&data), "--checkpoint_dir", "", "--log_path", ""])
        .args(nccl)
        .env("WORLD_SIZE", "2")
        .env("RANK", "1")
        .env("LOCAL_RANK", "1")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs cuda:1, but 0 CUDA device(s) are visible"), "{err}");
}

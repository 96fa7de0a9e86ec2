//! `--model`, pre-training and the launcher's world of one, through the real binary on a small
//! prepared dataset: every model trains, saves a checkpoint PyTorch loads under the keys its
//! PyTorch twin has, is evaluated again from that checkpoint without naming the model, and resumes.

mod common;

use common::{log_lines, ncf_train, ok, tiny_dataset};
use std::path::Path;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["--data", &s(data), "-e", "2", "-b", "2048", "--seed", "3", "-f", "8", "--layers", "16", "8"]
            .iter()
            .map(|a| a.to_string())
            .collect();
    a.extend(["--checkpoint_dir".into(), s(out), "--log_path".into(), s(&out.join("log.json"))]);
    a.extend(extra.iter().map(|e| e.to_string()));
    a
}

fn end_line(log: &Path) -> serde_json::Value {
    log_lines(log).into_iter().rfind(|(step, _)| step == &serde_json::json!([])).unwrap().1
}

/// The keys and shapes PyTorch reads from a checkpoint.
fn pytorch_keys(path: &Path) -> String {
    test_support::python_eval(
        "import sys, torch\nsd = torch.load(sys.argv[1], weights_only=True)\nprint(' '.join(f'{k}:{list(v.shape)}' for k, v in sd.items()))",
        &[&s(path)],
    )
}

#[test]
fn every_model_trains_saves_tests_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    // (model, its keys and shapes as PyTorch reads them: 300 users, 200 items, -f 8, --layers 16 8)
    let cases = [
        ("gmf", "mf_user_embed.weight:[300, 8] mf_item_embed.weight:[200, 8] final.weight:[1, 8] final.bias:[1]"),
        (
            "mlp",
            "mlp_user_embed.weight:[300, 8] mlp_item_embed.weight:[200, 8] mlp.0.weight:[8, 16] mlp.0.bias:[8] final.weight:[1, 8] final.bias:[1]",
        ),
        (
            "mf",
            "user_embed.weight:[300, 8] item_embed.weight:[200, 8] user_bias.weight:[300, 1] item_bias.weight:[200, 1] global_bias:[1]",
        ),
        (
            "neumf",
            "mf_user_embed.weight:[300, 8] mf_item_embed.weight:[200, 8] mlp_user_embed.weight:[300, 8] mlp_item_embed.weight:[200, 8] mlp.0.weight:[8, 16] mlp.0.bias:[8] final.weight:[1, 16] final.bias:[1]",
        ),
    ];
    for (model, keys) in cases {
        let out = dir.path().join(model);
        let stderr = String::from_utf8_lossy(&ncf_train(args(&data, &out, &["--model", model])).stderr).into_owned();
        assert!(stderr.contains(&format!("ncf-train: {model} on")), "{stderr}");
        let log = log_lines(&out.join("log.json"));
        assert_eq!(log[0].1["model"], model);
        let end = end_line(&out.join("log.json"));
        let best = end["best_accuracy"].as_f64().unwrap();
        assert!(best > 0.0, "{model}: HR@10 {best}");
        assert_eq!(pytorch_keys(&out.join("model.pth")).trim(), keys, "{model}");

        // Test mode finds the model from the checkpoint's keys (no --model) and scores as training did.
        let epoch = end["best_epoch"].as_i64().unwrap() as usize;
        let trained_hr =
            log.iter().find(|(st, _)| st == &serde_json::json!([epoch])).unwrap().1["hr@10"].as_f64().unwrap();
        let test_log = out.join("test.json");
        let o = ncf_train([
            "--data",
            &s(&data),
            "--mode",
            "test",
            "--load_checkpoint_path",
            &s(&out.join("model.pth")),
            "-f",
            "8",
            "--layers",
            "16",
            "8",
            "--log_path",
            &s(&test_log),
        ]);
        ok(&o);
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("evaluating {model}")));
        assert_eq!(end_line(&test_log)["hr@10"].as_f64().unwrap(), trained_hr, "{model}");

        // Resumed for a third epoch.
        let mut more = args(&data, &out, &["--model", model, "--resume", &s(&out)]);
        more[3] = "3".into();
        ok(&ncf_train(&more));
        let lines = log_lines(&out.join("log.json"));
        assert!(lines.iter().any(|(st, _)| st == &serde_json::json!([2])), "{model}: no third epoch after --resume");
    }
}

#[test]
fn neumf_pretrained_from_gmf_and_mlp_starts_where_they_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    for model in ["gmf", "mlp"] {
        ok(&ncf_train(args(&data, &dir.path().join(model), &["--model", model])));
    }
    let (gmf, mlp) = (dir.path().join("gmf/model.pth"), dir.path().join("mlp/model.pth"));
    let out = dir.path().join("neumf");
    // One epoch at learning rate 1e-12 (0 is refused): the saved model is the starting point, give
    // or take 1e-11 (an Adam step moves a parameter by about the learning rate).
    let mut a =
        args(&data, &out, &["--pretrained-gmf", &s(&gmf), "--pretrained_mlp", &s(&mlp), "--learning_rate", "1e-12"]);
    a[3] = "1".into();
    ok(&ncf_train(&a));
    // With lr 0 the saved NeuMF is the initialisation: the halves copied, the final layer weighted.
    let check = test_support::python_eval(
        r#"
import sys, torch
n, g, m = (torch.load(p, weights_only=True) for p in sys.argv[1:4])
close = lambda a, b: a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=1e-9)
ok = all(close(n[k], g[k]) for k in g if not k.startswith("final."))
ok &= all(close(n[k], m[k]) for k in m if not k.startswith("final."))
ok &= close(n["final.weight"], torch.cat([0.5 * g["final.weight"], 0.5 * m["final.weight"]], 1))
ok &= close(n["final.bias"], 0.5 * g["final.bias"] + 0.5 * m["final.bias"])
ok &= sorted(n) == sorted(list(g) + [k for k in m if not k.startswith("final.")])
print(ok)
"#,
        &[&s(&out.join("model.pth")), &s(&gmf), &s(&mlp)],
    );
    assert_eq!(check.trim(), "True");

    // Halves that do not fit are refused, naming the shapes.
    let o = ncf_train(args(
        &data,
        &dir.path().join("bad"),
        &["-f", "16", "--pretrained-gmf", &s(&gmf), "--pretrained-mlp", &s(&mlp)],
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("has factors 8 but -f/--factors is 16"), "{err}");
    let o =
        ncf_train(args(&data, &dir.path().join("bad"), &["--pretrained-gmf", &s(&mlp), "--pretrained-mlp", &s(&gmf)]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is an MLP checkpoint, not a GMF checkpoint"), "{err}");
    let o = ncf_train(args(&data, &dir.path().join("bad"), &["--pretrained-gmf", &s(&gmf)]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pretrained-mlp"));
}

#[test]
fn a_launcher_world_of_one_on_the_cpu_trains_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let out = dir.path().join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncf-train"))
        .args(["--device", "cpu"])
        .args(args(&data, &out, &[]))
        .env("WORLD_SIZE", "1")
        .env("RANK", "0")
        .env("LOCAL_RANK", "0")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", "29555")
        .output()
        .unwrap();
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("training alone"));
    assert!(out.join("model.pth").exists());
}

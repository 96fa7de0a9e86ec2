//! A real `ncf-serve` through its life: reloads while requests run (none fails; answers switch
//! from the old model's to the new one's), reloads refused (corrupt file, another dataset's
//! model, a wrong token) with the old model serving on, SIGHUP, overload (503 + Retry-After, then
//! back to normal), SIGTERM draining requests in flight, and start-up errors.

mod common;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn reload(c: &reqwest::blocking::Client, url: &str, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = c
        .post(format!("{url}/v1/admin/reload"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_reload_under_load_fails_no_request_and_a_bad_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (a, b) = (dir.path().join("a.pth"), dir.path().join("b.pth"));
    model(&data, 3, &a);
    model(&data, 4, &b);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = Server::serving(&data, &a, &["--admin-token-file", &s(&token_file), "--max-queue-delay-us", "2000"]);
    let url = server.url.clone();
    let user = *raw_ratings(dir.path()).keys().min().unwrap();
    let (want_a, want_b) = (
        ncf_infer(&data, &a, &[user], 5, false)[&user].clone(),
        ncf_infer(&data, &b, &[user], 5, false)[&user].clone(),
    );
    let item_ids = |l: &[(i64, f32)]| l.iter().map(|&(i, _)| i).collect::<Vec<_>>();
    assert_ne!(item_ids(&want_a), item_ids(&want_b), "two models that answer alike would prove nothing");

    // Four clients ask without pause while the model is swapped under them.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) = get(&c, &format!("{url}/v1/users/{user}/recommendations?k=5"));
                    assert_eq!(status, 200, "{body}");
                    seen.push((body["model_version"].as_u64().unwrap(), items(&body)));
                }
                seen
            })
        })
        .collect();
    let c = client();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(reload(&c, &url, "wrong", json!({})).0, 401);
    let (status, body) = reload(&c, &url, "s3cret", json!({"checkpoint": s(&b)}));
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["previous_version"].as_u64(), body["model"]["version"].as_u64()), (Some(1), Some(2)));
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    let mut versions = std::collections::BTreeSet::new();
    for h in clients {
        let seen = h.join().unwrap();
        assert!(!seen.is_empty());
        // Each client's answers: version 1 (model a's lists) then version 2 (b's), never back.
        for pair in seen.windows(2) {
            assert!(pair[0].0 <= pair[1].0, "a client went back from version {} to {}", pair[0].0, pair[1].0);
        }
        for (version, list) in &seen {
            let want = if *version == 1 { &want_a } else { &want_b };
            assert_eq!(item_ids(list), item_ids(want), "version {version}");
            versions.insert(*version);
        }
    }
    assert_eq!(versions, [1, 2].into(), "the clients saw both models");

    // A corrupt checkpoint, and one of another dataset's shape: refused with the reason, while
    // version 2 serves on.
    let corrupt = dir.path().join("corrupt.pth");
    std::fs::write(&corrupt, &std::fs::read(&b).unwrap()[..1000]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_data = {
        let raw = other_dir.path().join("ratings.csv");
        let config = preprocess::SyntheticConfig { users: 30, items: 40, interactions: 600, ..Default::default() };
        preprocess::write_synthetic_ratings(&raw, &config).unwrap();
        let d = other_dir.path().join("data");
        preprocess::prepare(&raw, &d, &preprocess::PrepareOptions::default(), |_| {}).unwrap();
        d
    };
    let other = other_dir.path().join("other.pth");
    model(&other_data, 5, &other);
    let missing = dir.path().join("missing.pth");
    for (path, says) in [(&corrupt, "corrupt.pth"), (&other, "the checkpoint has"), (&missing, "missing.pth")] {
        let (status, body) = reload(&c, &url, "s3cret", json!({"checkpoint": s(path)}));
        assert_eq!(status, 422, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("reload refused: ") && error.contains(says), "{error}");
        assert!(error.contains("still serving version 2"), "{error}");
        let (_, now) = get(&c, &format!("{url}/v1/users/{user}/recommendations?k=5"));
        assert_eq!((now["model_version"].as_u64(), item_ids(&items(&now))), (Some(2), item_ids(&want_b)));
    }
    let metrics = c.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("ncf_serve_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("ncf_serve_reloads_total{result=\"refused\"} 3"), "{metrics}");
    assert!(metrics.contains("ncf_serve_model_version 2"), "{metrics}");

    // A client that gives up mid-reload (5 ms) does not cancel it: the reload finishes and swaps.
    let impatient = reqwest::blocking::Client::builder().timeout(Duration::from_millis(5)).build().unwrap();
    let _ = impatient
        .post(format!("{url}/v1/admin/reload"))
        .header("authorization", "Bearer s3cret")
        .body(json!({"checkpoint": s(&b)}).to_string())
        .send();
    let start = Instant::now();
    while get(&c, &format!("{url}/v1/model")).1["version"] != 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "the abandoned reload never finished:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGHUP re-reads the last checkpoint loaded: b's file, now holding a's weights.
    std::fs::copy(&a, &b).unwrap();
    server.signal(libc::SIGHUP);
    let start = Instant::now();
    loop {
        let (_, info) = get(&c, &format!("{url}/v1/model"));
        if info["version"] == 4 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no reload after SIGHUP:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, now) = get(&c, &format!("{url}/v1/users/{user}/recommendations?k=5"));
    assert_eq!(item_ids(&items(&now)), item_ids(&want_a));
    assert!(server.log().contains("SIGHUP: serving version 4"), "{}", server.log());
}

#[test]
fn overload_is_answered_503_with_retry_after_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    // Requests of 1,000 users each, scored a few users per pass (--pass-memory-mb 1), keep the
    // scorer busy while a burst released at once arrives: a queue of 2 overflows.
    let server = Server::serving(
        &data,
        &ckpt,
        &["--max-queue", "2", "--max-batch-users", "1000", "--max-queue-delay-us", "0", "--pass-memory-mb", "1"],
    );
    let url = server.url.clone();
    let user = *raw_ratings(dir.path()).keys().min().unwrap();
    let body = json!({"users": vec![user; 1000], "k": 3}).to_string();
    let gate = Arc::new(std::sync::Barrier::new(16));
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let (url, body, gate, c) = (url.clone(), body.clone(), gate.clone(), client());
            std::thread::spawn(move || {
                gate.wait();
                let r = c.post(format!("{url}/v1/recommendations")).body(body).send().unwrap();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), retry)
            })
        })
        .collect();
    let answers: Vec<(u16, Option<String>)> = burst.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("burst of 16: {answers:?}");
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    assert!(refused.iter().all(|(_, r)| r.as_deref() == Some("1")), "{answers:?}");
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 503), "{answers:?}");
    assert!(answers.iter().any(|(s, _)| *s == 200), "{answers:?}");
    // Back to normal once the burst has passed.
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &format!("{url}/v1/users/{user}/recommendations?k=3")).0, 200);
    }
    let metrics = c.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("status=\"503\""), "{metrics}");
}

#[test]
fn sigterm_answers_the_requests_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    // Each batch waits 400 ms for company, so requests are surely in flight at the signal.
    let mut server = Server::serving(&data, &ckpt, &["--max-queue-delay-us", "400000", "--max-batch-users", "64"]);
    let url = server.url.clone();
    let user = *raw_ratings(dir.path()).keys().min().unwrap();
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&client(), &format!("{url}/v1/users/{user}/recommendations?k=3")))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    for h in in_flight {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let status = server.wait_exit(Duration::from_secs(20)).expect("ncf-serve still running 20 s after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(5), "{:?}", signalled.elapsed());
    let log = server.log();
    assert!(log.contains("SIGTERM: finishing the requests in flight") && log.contains("ncf-serve: stopped"), "{log}");
    // Nothing listens any more.
    assert!(client().get(format!("{url}/healthz")).send().is_err());
}

#[test]
fn bad_starts_are_errors_that_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let server = Server::serving(&data, &ckpt, &[]);
    let busy = server.url.trim_start_matches("http://").to_owned();
    let empty_token = dir.path().join("empty");
    std::fs::write(&empty_token, "\n").unwrap();
    let spaced_token = dir.path().join("spaced");
    std::fs::write(&spaced_token, "two words\nsecond line\n").unwrap();
    let bad_names = dir.path().join("names.txt");
    std::fs::write(&bad_names, "just one column\n1\n").unwrap();
    // An MF has no bfloat16 scoring: --bf16 is refused with the reason, not ignored.
    let mf = dir.path().join("mf.pth");
    {
        use ncf_model::{Model, ModelKind, NeuMfConfig};
        let (users, items) = cards(&data);
        let shape = NeuMfConfig { mf_dim: 8, ..NeuMfConfig::new(users, items) };
        ModelKind::Mf.build(&shape, tch::Device::Cpu).unwrap().save(&mf).unwrap();
    }
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--load_checkpoint_path".into(), s(&dir.path().join("nope.pth"))], "nope.pth"),
        (vec!["--load_checkpoint_path".into(), s(&ckpt), "--listen".into(), busy.clone()], "listening on"),
        (vec!["--load_checkpoint_path".into(), s(&ckpt), "--admin-token-file".into(), s(&empty_token)], "is empty"),
        (
            vec!["--load_checkpoint_path".into(), s(&ckpt), "--admin-token-file".into(), s(&spaced_token)],
            "spaces or control",
        ),
        (vec!["--load_checkpoint_path".into(), s(&ckpt), "--item-names".into(), s(&bad_names)], "names.txt"),
        (vec!["--load_checkpoint_path".into(), s(&ckpt), "--max-batch-users".into(), "0".into()], "at least 1"),
        (vec!["--load_checkpoint_path".into(), s(&mf), "--bf16".into()], "no bfloat16 all-item scoring"),
    ];
    for (args, says) in cases {
        let start = Instant::now();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ncf-serve"));
        cmd.args(["--data", &s(&data), "--device", "cpu"]).args(&args);
        if !args.contains(&"--listen".to_string()) {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("ncf-serve: error:") && stderr.contains(says), "{args:?}: {stderr}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    drop(server);
}

#[test]
fn a_request_whose_client_has_gone_is_not_scored_further() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    // 20,000 users scored a couple per pass (--pass-memory-mb 1): seconds of scoring. The client
    // gives up after 300 ms; the scorer notices between passes, drops the request and counts it.
    let server = Server::serving(&data, &ckpt, &["--pass-memory-mb", "1", "--max-users-per-request", "20000"]);
    let url = server.url.clone();
    let user = *raw_ratings(dir.path()).keys().min().unwrap();
    let body = json!({"users": vec![user; 20_000], "k": 3}).to_string();
    let impatient = reqwest::blocking::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let r = impatient.post(format!("{url}/v1/recommendations")).body(body).send();
    assert!(r.as_ref().is_err_and(|e| e.is_timeout()), "the 20,000 users were answered within 300 ms: {r:?}");
    let c = client();
    let counted = (0..100).any(|_| {
        let metrics = c.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
        let done = metrics.contains("ncf_serve_requests_abandoned_total 1");
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(counted, "the abandoned request was not dropped within 10 s");
    // The scorer is free for the next request.
    assert_eq!(get(&c, &format!("{url}/v1/users/{user}/recommendations?k=3")).0, 200);
}

#[test]
fn a_request_still_waiting_at_its_deadline_is_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    // The scorer holds each batch open 2 s for company; the deadline is 300 ms: a lone request is
    // never scored in time, and was never started, so it is 503 (retry), not 504.
    let server = Server::serving(&data, &ckpt, &["--max-queue-delay-us", "2000000", "--request-timeout-ms", "300"]);
    let user = *raw_ratings(dir.path()).keys().min().unwrap();
    let start = Instant::now();
    let r = client().get(format!("{}/v1/users/{user}/recommendations?k=3", server.url)).send().unwrap();
    let waited = start.elapsed();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("1".into()));
    let body: serde_json::Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("waited in the queue past the request deadline"), "{body}");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "{waited:?}");
}

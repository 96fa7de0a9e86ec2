//! Every route of a real `ncf-serve` on loopback, against `ncf-infer recommend`, the raw ratings,
//! the names file and the checkpoint's own bytes; every kind of bad request answered 4xx with a
//! JSON error, never 500.

mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn every_route_answers_what_ncf_infer_the_ratings_and_the_checkpoint_say() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let ckpt = dir.path().join("model.pth");
    let model = model(&data, 3, &ckpt);
    let names = dir.path().join("names.csv");
    let server = Server::serving(&data, &ckpt, &["--item-names", &s(&names)]);
    let (c, url) = (client(), server.url.clone());
    let raw = raw_ratings(dir.path());
    let mut users: Vec<i64> = raw.keys().copied().collect();
    users.sort();
    let picked = [users[0], users[17], users[USERS - 1]];

    // One user per request, and many in one: what ncf-infer recommend writes for the same users,
    // item for item and score for score; exclude_seen=false as --include-seen. (Bit for bit for
    // the same users scored together: another batch shape may round a score's last bit apart.)
    let want = ncf_infer(&data, &ckpt, &picked, 5, false);
    for u in picked {
        let (status, body) = get(&c, &format!("{url}/v1/users/{u}/recommendations?k=5"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"], u);
        assert_eq!(body["model_version"], 1);
        assert_eq!(items(&body), ncf_infer(&data, &ckpt, &[u], 5, false)[&u], "user {u}");
        let (_, body) = get(&c, &format!("{url}/v1/users/{u}/recommendations?k=5&exclude_seen=false"));
        assert_eq!(items(&body), ncf_infer(&data, &ckpt, &[u], 5, true)[&u], "user {u}, seen items kept");
        // Titles and genres from the names file, quotes and commas intact.
        for item in body["items"].as_array().unwrap() {
            let i = item["item"].as_i64().unwrap();
            assert_eq!(item["title"], format!("Item {i}, \"the\""));
            assert_eq!(item.get("genres").is_some(), i % 2 == 0, "{item}");
        }
    }
    let (status, body) = post(&c, &format!("{url}/v1/recommendations"), json!({"users": picked, "k": 5}).to_string());
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (r, u) in results.iter().zip(picked) {
        assert_eq!(r["user"], u);
        assert_eq!(items(r), want[&u]);
    }
    // Ids as strings work as numbers do (a text id dataset sends strings).
    let (_, body) =
        post(&c, &format!("{url}/v1/recommendations"), json!({"users": [picked[0].to_string()], "k": "5"}).to_string());
    assert_eq!(items(&body["results"][0]), ncf_infer(&data, &ckpt, &[picked[0]], 5, false)[&picked[0]]);

    // Pair scores: the model's own probabilities for those pairs (the same libtorch forward pass,
    // so equal to float rounding; the server may run another matmul library than this process).
    let item_raw: Vec<i64> = {
        let t = tch_data::load_tch_tensor(data.join("item_ids.pt"), tch::Device::Cpu).unwrap();
        Vec::<i64>::try_from(&t).unwrap()
    };
    let user_raw: Vec<i64> = {
        let t = tch_data::load_tch_tensor(data.join("user_ids.pt"), tch::Device::Cpu).unwrap();
        Vec::<i64>::try_from(&t).unwrap()
    };
    let pairs: Vec<(usize, usize)> = vec![(0, 0), (5, 17), (59, 89), (30, 44)];
    let body = json!({"pairs": pairs.iter().map(|&(u, i)| json!({"user": user_raw[u], "item": item_raw[i]})).collect::<Vec<_>>()});
    let (status, body) = post(&c, &format!("{url}/v1/scores"), body.to_string());
    assert_eq!(status, 200, "{body}");
    for (got, &(u, i)) in body["scores"].as_array().unwrap().iter().zip(&pairs) {
        let want = tch::no_grad(|| {
            model.forward_sigmoid(&tch::Tensor::from_slice(&[u as i64]), &tch::Tensor::from_slice(&[i as i64]))
        })
        .double_value(&[0, 0]);
        assert_eq!((got["user"].as_i64(), got["item"].as_i64()), (Some(user_raw[u]), Some(item_raw[i])));
        assert!((got["score"].as_f64().unwrap() - want).abs() < 1e-6, "{got} vs {want}");
    }

    // A user's history: the raw ratings' items but the held-out last one, titles attached.
    let u = picked[1];
    let (status, body) = get(&c, &format!("{url}/v1/users/{u}"));
    assert_eq!(status, 200, "{body}");
    let seen: BTreeSet<i64> = body["seen"].as_array().unwrap().iter().map(|i| i["item"].as_i64().unwrap()).collect();
    assert_eq!(body["seen_count"].as_u64().unwrap() as usize, seen.len());
    assert_eq!(seen.len() + 1, raw[&u].len(), "all but the test item");
    assert!(seen.is_subset(&raw[&u]));
    let recommended: BTreeSet<i64> = want[&u].iter().map(|&(i, _)| i).collect();
    assert!(recommended.is_disjoint(&seen), "recommendations leave the user's train items out");
    let (_, list) = get(&c, &format!("{url}/v1/users?offset=10&limit=5"));
    assert_eq!(list["total"], USERS);
    assert_eq!(list["users"].as_array().unwrap().len(), 5);

    // The model: its kind, sizes and the checkpoint's SHA-256 (sha256sum's).
    let (_, info) = get(&c, &format!("{url}/v1/model"));
    let sha = String::from_utf8(std::process::Command::new("sha256sum").arg(&ckpt).output().unwrap().stdout).unwrap();
    assert_eq!(info["sha256"].as_str().unwrap(), sha.split_whitespace().next().unwrap());
    assert_eq!(
        (info["kind"].as_str(), info["users"].as_i64(), info["items"].as_i64()),
        (Some("neumf"), Some(USERS as i64), Some(ITEMS as i64))
    );
    assert_eq!(info["version"], 1);
    assert_eq!(info["parameters"].as_i64().unwrap(), model.parameter_count());

    // Health, readiness, the page, the metrics of what was asked above.
    assert_eq!(get(&c, &format!("{url}/healthz")).0, 200);
    assert_eq!(get(&c, &format!("{url}/readyz")), (200, json!({"ready": true, "model_version": 1})));
    let page = c.get(format!("{url}/")).send().unwrap().text().unwrap();
    assert!(page.contains("<title>ncf-serve</title>") && page.contains("/v1/users"));
    let metrics = c.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    for line in [
        "ncf_serve_requests_total{route=\"/v1/users/{user}/recommendations\",status=\"200\"} 6",
        "ncf_serve_requests_total{route=\"/v1/recommendations\",status=\"200\"} 2",
        "ncf_serve_requests_total{route=\"/v1/scores\",status=\"200\"} 1",
        "ncf_serve_model_version 1",
        "ncf_serve_queue_depth 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(metrics.contains("ncf_serve_batch_users_bucket") && metrics.contains("ncf_serve_request_seconds_bucket"));
    // Compressed when the client accepts it and the body is over 1 KiB (the page); a small answer
    // (a top 2, ~120 bytes) is sent as is, as gzip would save less than its headers.
    let encoding = |path: &str| {
        let r = c.get(format!("{url}{path}")).header("accept-encoding", "gzip").send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(encoding("/").as_deref(), Some("gzip"));
    assert_eq!(encoding(&format!("/v1/users/{u}/recommendations?k=2")), None);
}

#[test]
fn bad_requests_get_a_4xx_that_says_what_to_fix_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let server = Server::serving(
        &data,
        &ckpt,
        &["--max-users-per-request", "4", "--max-pairs-per-request", "3", "--max-body-bytes", "2000"],
    );
    let (c, url) = (client(), server.url.clone());
    let u = *raw_ratings(dir.path()).keys().min().unwrap();
    let big = format!("{{\"users\": [{}]}}", vec!["1"; 1500].join(","));
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("GET", "/v1/users/999999/recommendations".into(), None, 404, "user 999999 is not in the dataset"),
        ("GET", "/v1/users/abc/recommendations".into(), None, 404, "user abc"),
        ("GET", format!("/v1/users/{u}/recommendations?k=0"), None, 400, "k must be an integer from 1 to"),
        ("GET", format!("/v1/users/{u}/recommendations?k=ten"), None, 400, "k must be"),
        ("GET", format!("/v1/users/{u}/recommendations?k=100000"), None, 400, "from 1 to 90"),
        (
            "GET",
            format!("/v1/users/{u}/recommendations?exclude_seen=maybe"),
            None,
            400,
            "exclude_seen must be true or false",
        ),
        ("GET", format!("/v1/users/{u}/recommendations?kk=3"), None, 400, "unknown query parameter `kk`"),
        ("POST", "/v1/recommendations".into(), Some("{\"users\": [1,".into()), 400, "not valid JSON"),
        ("POST", "/v1/recommendations".into(), Some("[1, 2]".into()), 400, "must be a JSON object"),
        ("POST", "/v1/recommendations".into(), Some("{\"users\": 1}".into()), 400, "`users` must be a list"),
        ("POST", "/v1/recommendations".into(), Some("{\"users\": []}".into()), 400, "send 1 to 4"),
        (
            "POST",
            "/v1/recommendations".into(),
            Some(format!("{{\"users\": [{u},{u},{u},{u},{u}]}}")),
            400,
            "holds 5 ids; send 1 to 4",
        ),
        (
            "POST",
            "/v1/recommendations".into(),
            Some(format!("{{\"users\": [{u}], \"top\": 3}}")),
            400,
            "unknown key `top`",
        ),
        (
            "POST",
            "/v1/recommendations".into(),
            Some("{\"users\": [null]}".into()),
            400,
            "a user id must be a number or a string",
        ),
        ("POST", "/v1/recommendations".into(), Some(big), 413, "over the limit of 2000 bytes"),
        (
            "POST",
            "/v1/scores".into(),
            Some(format!("{{\"pairs\": [{{\"user\": {u}}}]}}")),
            400,
            "pairs[0] needs a user and an item",
        ),
        (
            "POST",
            "/v1/scores".into(),
            Some(format!("{{\"pairs\": [{{\"user\": {u}, \"item\": 123456}}]}}")),
            404,
            "item 123456 is not in the dataset",
        ),
        (
            "POST",
            "/v1/scores".into(),
            Some(format!("{{\"pairs\": [{}]}}", vec![format!("{{\"user\": {u}, \"item\": 1}}"); 4].join(","))),
            400,
            "holds 4 pairs; send 1 to 3",
        ),
        ("POST", "/v1/admin/reload".into(), Some(String::new()), 404, "admin routes are off"),
        ("GET", "/v2/anything".into(), None, 404, "no route GET /v2/anything"),
        ("DELETE", "/v1/model".into(), None, 405, "/v1/model does not take DELETE"),
        ("GET", "/v1/recommendations".into(), None, 405, "does not take GET"),
    ];
    for (method, path, body, status, says) in cases {
        let mut request = c.request(method.parse().unwrap(), format!("{url}{path}"));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let r = request.send().unwrap();
        let got = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert_eq!(json["status"], status);
        assert!(json["error"].as_str().unwrap().contains(says), "{method} {path}: {text}");
    }

    // Thousands of malformed requests (random bytes, truncated and mistyped JSON): all 4xx.
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let shapes = [
        "{\"users\": [",
        "{\"users\": [1, \"x\"",
        "{\"pairs\": [{\"user\": [], \"item\": {}}]}",
        "{\"k\": -1, \"users\": [1]}",
        "\u{0}\u{1}",
        "{\"users\": [1e400]}",
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for n in 0..2000 {
        let route = if n % 2 == 0 { "/v1/recommendations" } else { "/v1/scores" };
        let body: Vec<u8> = match n % 3 {
            0 => (0..next() % 200).map(|_| next() as u8).collect(),
            1 => shapes[next() % shapes.len()].as_bytes().to_vec(),
            _ => {
                let s = shapes[next() % shapes.len()].as_bytes();
                s[..next() % (s.len() + 1)].to_vec()
            }
        };
        let (status, json) = post(&c, &format!("{url}{route}"), body);
        assert!((400..500).contains(&status), "{route}: {status} {json}");
        assert!(json["error"].is_string(), "{json}");
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.contains_key(&400), "{statuses:?}");
    assert_eq!(get(&c, &format!("{url}/healthz")).0, 200);
    assert_eq!(get(&c, &format!("{url}/v1/users/{u}/recommendations?k=3")).0, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// `POST /v1/recommendations/for-history`: a person the model never met, folded in, answered as
/// `ncf-infer recommend --history` answers the same history (the same fit, the same seed); items
/// the dataset lacks listed back; the history's items left out unless asked.
#[test]
fn a_history_is_folded_in_as_ncf_infer_folds_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let server = Server::serving(&data, &ckpt, &[]);
    let (c, url) = (client(), server.url.clone());
    let raw = raw_ratings(dir.path());
    let mut users: Vec<i64> = raw.keys().copied().collect();
    users.sort();
    let history: Vec<i64> = raw[&users[3]].iter().copied().take(8).collect();

    let file = dir.path().join("history.csv");
    let lines: String = history.iter().map(|i| format!("someone-new,{i}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let out = dir.path().join("recs.csv");
    let o = std::process::Command::new(sibling_binary("ncf-infer"))
        .args(["recommend", "--data", &s(&data), "--load_checkpoint_path", &s(&ckpt), "--history", &s(&file)])
        .args(["-k", "5", "--output", &s(&out), "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Vec<(i64, f32)> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    assert_eq!(want.len(), 5);

    let mut sent: Vec<serde_json::Value> = history.iter().map(|&i| json!(i)).collect();
    sent.push(json!(999_999_999));
    let (status, body) =
        post(&c, &format!("{url}/v1/recommendations/for-history"), json!({"items": sent, "k": 5}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(items(&body), want, "the server's fold-in differs from ncf-infer's");
    assert_eq!(body["history_items_used"], 8);
    assert_eq!(body["unknown_items"], json!([999_999_999]));
    assert!(items(&body).iter().all(|(i, _)| !history.contains(i)), "{body}");

    // exclude_seen=false may return the history's items; an empty history is the average user.
    let (status, body) = post(
        &c,
        &format!("{url}/v1/recommendations/for-history"),
        json!({"items": history, "k": 40, "exclude_seen": false}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(items(&body).iter().any(|(i, _)| history.contains(i)), "{body}");
    let (status, body) = post(&c, &format!("{url}/v1/recommendations/for-history"), json!({"items": []}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(items(&body).len(), 10);

    // Bad bodies: 400 naming what to fix.
    for (bad, says) in [
        (json!({"items": 5}), "`items` must be a list"),
        (json!({"items": [1], "user": 3}), "user"),
        (json!({"items": [[1]]}), "items[0]"),
        (json!({"items": [1], "k": 0}), "k"),
    ] {
        let (status, body) = post(&c, &format!("{url}/v1/recommendations/for-history"), bad.to_string());
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(says), "{bad}: {body}");
    }
    let (status, _) = get(&c, &format!("{url}/healthz"));
    assert_eq!(status, 200);
}

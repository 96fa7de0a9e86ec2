//! `POST /v1/users/{user}/interactions` and the journal: nothing acknowledged is lost to a
//! `kill -9`; a torn last line is dropped with a warning; a journal that cannot be written answers
//! 503 for writes while reads keep working; no journal, no route.

mod common;
use common::*;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every (user, item) event line in the journal folder's files.
fn journal_events(dir: &Path) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.starts_with("userId,")) {
            let f: Vec<&str> = line.split(',').collect();
            out.insert((f[0].to_owned(), f[1].to_owned()));
        }
    }
    out
}

/// A user's history as the server shows it: raw item ids.
fn history(c: &reqwest::blocking::Client, url: &str, user: &str) -> Vec<String> {
    let (status, body) = get(c, &format!("{url}/v1/users/{user}"));
    assert_eq!(status, 200, "{body}");
    body["seen"].as_array().unwrap().iter().map(|i| i["item"].to_string()).collect()
}

#[test]
fn every_acknowledged_event_survives_a_kill_and_comes_back_in_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let journal = dir.path().join("journal");
    let raw = raw_ratings(dir.path());
    let mut users: Vec<i64> = raw.keys().copied().collect();
    users.sort();
    let known = users[5].to_string();
    let items: Vec<i64> = raw.values().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();

    let mut server = Server::serving(&data, &ckpt, &["--journal", &s(&journal)]);
    let url = server.url.clone();
    // One writer sends events one at a time and keeps what was acknowledged; the process is
    // killed (SIGKILL) while it writes.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writer = {
        let (acked, items, known, url) = (acked.clone(), items.clone(), known.clone(), url.clone());
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            for n in 0..2000 {
                let user = if n % 3 == 0 { known.clone() } else { "new-person".to_owned() };
                let item = items[(n * 7) % items.len()].to_string();
                let sent = c
                    .post(format!("{url}/v1/users/{user}/interactions?k=3"))
                    .header("content-type", "application/json")
                    .body(json!({"items": [item.parse::<i64>().unwrap()]}).to_string())
                    .send();
                match sent {
                    Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().push((user, item)),
                    Ok(r) => panic!("event {n}: {} {:?}", r.status(), r.text()),
                    Err(_) => return, // the server is gone
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 40 {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap();
    let _ = server.child.wait();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40 && acked.len() < 2000, "{} acknowledged", acked.len());

    // Every acknowledged event is in the journal ...
    let kept = journal_events(&journal);
    for e in &acked {
        assert!(kept.contains(e), "{e:?} was acknowledged but is not in the journal");
    }
    // ... and, after a restart, in the answers: the histories hold them, the new person is known,
    // and their recommendations leave them out.
    let server = Server::serving(&data, &ckpt, &["--journal", &s(&journal)]);
    assert!(server.log().contains("replayed"), "{}", server.log());
    let c = client();
    for user in [known.as_str(), "new-person"] {
        let seen: HashSet<String> = history(&c, &server.url, user).into_iter().collect();
        for (_, item) in acked.iter().filter(|(u, _)| u == user) {
            assert!(seen.contains(item), "{user}: {item} missing after the restart");
        }
        let (status, body) = get(&c, &format!("{}/v1/users/{user}/recommendations?k=10", server.url));
        assert_eq!(status, 200, "{body}");
        let recommended = items_of(&body);
        assert_eq!(recommended.len(), 10);
        assert!(recommended.iter().all(|i| !seen.contains(&i.to_string())), "{user}: {body}");
    }
}

fn items_of(body: &serde_json::Value) -> Vec<i64> {
    body["items"].as_array().unwrap().iter().map(|i| i["item"].as_i64().unwrap()).collect()
}

#[test]
fn a_torn_last_line_is_dropped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let raw = raw_ratings(dir.path());
    let item = *raw.values().next().unwrap().iter().next().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let file = journal.join("interactions-2026-01-01.csv");
    let whole = format!("userId,movieId,rating,timestamp\nnew-a,{item},1.0,100\n");
    std::fs::write(&file, format!("{whole}new-a,12")).unwrap();

    let server = Server::serving(&data, &ckpt, &["--journal", &s(&journal)]);
    assert!(server.log().contains("dropped a torn last line"), "{}", server.log());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), whole, "the torn line is cut off");
    let c = client();
    assert_eq!(history(&c, &server.url, "new-a"), vec![item.to_string()]);
    // Appends after the cut start on a line of their own.
    let (status, body) =
        post(&c, &format!("{}/v1/users/new-a/interactions", server.url), json!({"items": [item]}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recorded"], 1);
}

#[test]
fn a_journal_that_cannot_be_written_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let raw = raw_ratings(dir.path());
    let (&user, items) = raw.iter().next().unwrap();
    let item = *items.iter().next().unwrap();
    // Today's file is /dev/full: every write fails as on a full disk.
    let journal = dir.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let today = std::process::Command::new("date").args(["-u", "+%F"]).output().unwrap();
    let today = String::from_utf8(today.stdout).unwrap();
    std::os::unix::fs::symlink("/dev/full", journal.join(format!("interactions-{}.csv", today.trim()))).unwrap();

    let server = Server::serving(&data, &ckpt, &["--journal", &s(&journal)]);
    let c = client();
    let before = history(&c, &server.url, &user.to_string());
    let (status, body) =
        post(&c, &format!("{}/v1/users/{user}/interactions", server.url), json!({"items": [item]}).to_string());
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nothing was recorded"), "{body}");
    // Nothing recorded: the history is unchanged; reads answer.
    assert_eq!(history(&c, &server.url, &user.to_string()), before);
    let (status, _) = get(&c, &format!("{}/v1/users/{user}/recommendations", server.url));
    assert_eq!(status, 200);
}

#[test]
fn without_a_journal_the_route_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let server = Server::serving(&data, &ckpt, &[]);
    let (status, body) =
        post(&client(), &format!("{}/v1/users/1/interactions", server.url), json!({"items": [1]}).to_string());
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--journal"), "{body}");
}

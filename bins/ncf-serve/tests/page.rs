//! The page at `/` in a real browser: headless Chromium loads it against a running `ncf-serve`,
//! and the DOM it builds shows a known user's recommendations (ncf-infer's, in order) beside their
//! history, titles included; an unknown user shows the server's error; the new-visitor panel,
//! clicked twice, shows the server's fold-in of the two items. A screenshot is saved
//! (`target/tmp/ncf-serve-page.png`) for a person to look at.
//!
//! Needs Chromium: `scripts/setup-chromium.sh` installs Debian's (`.ci/run` and `make test` call
//! it), or set NCF_CHROMIUM to a Chrome binary.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("NCF_CHROMIUM").unwrap_or_default(),
        "chromium".into(),
        "chromium-browser".into(),
        "google-chrome".into(),
    ];
    for name in candidates.iter().filter(|n| !n.is_empty()) {
        if let Ok(out) = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output() {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("no Chromium for the page test: run scripts/setup-chromium.sh (Debian: apt-get install chromium), or set NCF_CHROMIUM");
}

/// Chromium, headless, with `args` then `url`, given up to 10 s of the page's time to settle.
fn browse(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=10000", "--window-size=1280,900"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-item` values of the rows of the table with `id`, in order.
fn rows(dom: &str, id: &str) -> Vec<i64> {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let table = &dom[at..at + dom[at..].find("</table>").unwrap()];
    table.split("<tr data-item=\"").skip(1).map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap()).collect()
}

#[test]
fn the_page_shows_a_users_recommendations_and_history_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpt) = dataset_and_model(dir.path());
    let names = dir.path().join("names.csv");
    let server = Server::serving(&data, &ckpt, &["--item-names", &s(&names)]);
    let raw = raw_ratings(dir.path());
    let user = *raw.keys().max().unwrap();

    let dom = browse(&["--dump-dom"], &format!("{}/?user={user}", server.url));
    assert!(dom.contains(&format!("data-shown=\"{user}\"")), "the page did not finish showing user {user}:\n{dom}");
    let want: Vec<i64> = ncf_infer(&data, &ckpt, &[user], 10, false)[&user].iter().map(|&(i, _)| i).collect();
    assert_eq!(rows(&dom, "recs"), want, "the recommendations table, top to bottom");
    let history = rows(&dom, "history");
    assert_eq!(history.len() + 1, raw[&user].len(), "every rating but the held-out one");
    assert!(history.iter().all(|i| raw[&user].contains(i)));
    assert!(dom.contains(&format!("Item {}, \"the\"", want[0])), "titles from the names file");
    assert!(dom.contains(&format!("Recommendations for user {user}")));
    assert!(dom.contains("neumf · 60 users · 90 items · version 1"), "the model line");

    let unknown = browse(&["--dump-dom"], &format!("{}/?user=999999", server.url));
    assert!(
        unknown.contains("data-shown=\"error\"") && unknown.contains("user 999999 is not in the dataset"),
        "{unknown}"
    );

    // The new-visitor panel: two clicks, each on the list the previous one produced; the history
    // and list it then shows are the server's fold-in of those two items.
    let c = client();
    let for_history = |items: &[i64]| {
        let (status, body) = post(
            &c,
            &format!("{}/v1/recommendations/for-history", server.url),
            serde_json::json!({"items": items, "k": 10}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        items_of(&body)
    };
    let first = for_history(&[])[2];
    let second = for_history(&[first])[0];
    let want = for_history(&[first, second]);
    let dom = browse(&["--dump-dom"], &format!("{}/?user={user}&visitor={first},{second}", server.url));
    assert!(dom.contains(&format!("data-visitor=\"{first},{second}\"")), "the panel did not take both clicks:\n{dom}");
    assert_eq!(rows(&dom, "visitor-history"), vec![first, second]);
    assert_eq!(rows(&dom, "visitor-recs"), want, "the visitor's recommendations, top to bottom");
    assert!(dom.contains("Their history: 2 items"));

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ncf-serve-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(&[&format!("--screenshot={}", shot.display())], &format!("{}/?user={user}&visitor={first}", server.url));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}

fn items_of(body: &serde_json::Value) -> Vec<i64> {
    body["items"].as_array().unwrap().iter().map(|i| i["item"].as_i64().unwrap()).collect()
}

//! `ncf-infer recommend --history`: people given by what they did, folded in, on models really
//! trained (MF and NeuMF, six epochs on planted-structure synthetic data), against the trained
//! users' own recommendations.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn recommend(data: &Path, ckpt: &Path, rest: &[&str]) -> Output {
    let (data, ckpt) = (data.to_str().unwrap(), ckpt.to_str().unwrap());
    let mut args = vec!["recommend", "--data", data, "--load_checkpoint_path", ckpt];
    args.extend_from_slice(rest);
    args.extend(["--device", "cpu"]);
    Command::new(env!("CARGO_BIN_EXE_ncf-infer")).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `user,rank,item,score` CSV -> user -> items best first.
fn lists(csv: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.entry(f[0].to_owned()).or_default().push(f[2].to_owned());
    }
    out
}

/// A synthetic dataset with planted tastes (1,000 users, 800 items) and `model` trained on it
/// for 6 epochs through the ncf-train library.
fn trained(dir: &Path, model: ncf_model::ModelKind) -> (PathBuf, PathBuf) {
    let raw = dir.join("ratings.csv");
    let data = dir.join("data");
    if !data.exists() {
        let synthetic =
            preprocess::SyntheticConfig { users: 1000, items: 800, interactions: 50_000, ..Default::default() };
        preprocess::write_synthetic_ratings(&raw, &synthetic).unwrap();
        preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {}).unwrap();
    }
    let out = dir.join(model.to_string());
    let config = ncf_train::TrainConfig {
        data: data.clone(),
        model: Some(model),
        // Small batches, many steps: enough for the users' rows to leave their initial noise (the
        // reference's batch of 1M would leave a popularity model here).
        epochs: 6,
        batch_size: 1024,
        learning_rate: 0.005,
        seed: Some(1),
        checkpoint_dir: Some(out.clone()),
        log_path: None,
        device: tch::Device::Cpu,
        ..ncf_train::TrainConfig::default()
    };
    let result = ncf_train::Trainer::new(config).unwrap().run(&mut ncf_train::Quiet).unwrap();
    eprintln!("{model}: trained to HR@10 {:.3}", result.best_hr);
    (data, out.join("model.pth"))
}

#[test]
fn a_new_person_with_a_trained_users_history_is_recommended_as_that_user() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [ncf_model::ModelKind::Mf, ncf_model::ModelKind::NeuMf] {
        let (data, ckpt) = trained(tmp.path(), kind);
        let rec = inference::Recommender::open(&data, &ckpt, tch::Device::Cpu).unwrap();
        // 40 trained users; each one's train items become the history of a person the model has
        // never seen ("new-<id>"), in raw ids.
        let users: Vec<i64> = (0..rec.catalog().users()).step_by(25).take(40).collect();
        let mut history = String::from("user_id,item_id\n");
        let raw: Vec<String> = users.iter().map(|&u| rec.catalog().user_raw_id(u).to_string()).collect();
        for (&u, raw_id) in users.iter().zip(&raw) {
            for &i in rec.catalog().seen(u) {
                history += &format!("new-{raw_id},{}\n", rec.catalog().item_raw_id(i));
            }
        }
        let file = tmp.path().join("history.csv");
        std::fs::write(&file, history).unwrap();

        let trained = lists(&ok(&recommend(&data, &ckpt, &["--users", &raw.join(",")])));
        let folded = lists(&ok(&recommend(&data, &ckpt, &["--history", file.to_str().unwrap()])));
        // The same file with no fitting: every person is the users' mean (their items still left out).
        let mean = lists(&ok(&recommend(&data, &ckpt, &["--history", file.to_str().unwrap(), "--fold-in-steps", "0"])));
        let overlap = |got: &HashMap<String, Vec<String>>| {
            raw.iter()
                .map(|r| {
                    let want: HashSet<&String> = trained[r].iter().collect();
                    got[&format!("new-{r}")].iter().filter(|i| want.contains(i)).count()
                })
                .sum::<usize>() as f64
                / raw.len() as f64
        };
        let (f, m) = (overlap(&folded), overlap(&mean));
        eprintln!("{kind}: top-10 overlap with the trained user's own list: fold-in {f:.2}, the users' mean {m:.2}");
        assert!(f >= 5.0 && f >= m + 2.0, "{kind}: fold-in {f:.2} of 10, the users' mean {m:.2}");
        // No item of a person's history comes back to them.
        for (&u, r) in users.iter().zip(&raw) {
            let seen: HashSet<String> =
                rec.catalog().seen(u).iter().map(|&i| rec.catalog().item_raw_id(i).to_string()).collect();
            assert!(folded[&format!("new-{r}")].iter().all(|i| !seen.contains(i)), "{kind}: {r}");
        }
    }
}

#[test]
fn known_users_are_refreshed_unknown_items_skipped_and_bad_files_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpt) = trained(tmp.path(), ncf_model::ModelKind::Mf);
    let rec = inference::Recommender::open(&data, &ckpt, tch::Device::Cpu).unwrap();
    let user = rec.catalog().user_raw_id(3).to_string();
    let before = lists(&ok(&recommend(&data, &ckpt, &["--users", &user])));
    // The known user just took their first recommendation, twice, and an item the dataset lacks.
    let first = before[&user][0].clone();
    let file = tmp.path().join("events.csv");
    std::fs::write(
        &file,
        format!(
            "userId,movieId,rating,timestamp\n{user},{first},5.0,10\n{user},999999999,4.0,11\n{user},{first},5.0,12\n"
        ),
    )
    .unwrap();
    let out = recommend(
        &data,
        &ckpt,
        &["--history", file.to_str().unwrap(), "--output", tmp.path().join("recs.csv").to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(stderr.contains("1 known and refreshed"), "{stderr}");
    assert!(stderr.contains("skipped 1 event(s)") && stderr.contains("999999999"), "{stderr}");
    let after = lists(&std::fs::read_to_string(tmp.path().join("recs.csv")).unwrap());
    assert_eq!(after[&user].len(), 10);
    assert!(!after[&user].contains(&first), "the item just taken is left out");
    let train: HashSet<String> =
        rec.catalog().seen(3).iter().map(|&i| rec.catalog().item_raw_id(i).to_string()).collect();
    assert!(after[&user].iter().all(|i| !train.contains(i)), "train items are left out too");

    // A malformed line: the file and line named, a non-zero exit, no output written.
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "user_id,item_id\n7,12\n8\n").unwrap();
    let target = tmp.path().join("never.csv");
    let out = recommend(&data, &ckpt, &["--history", bad.to_str().unwrap(), "--output", target.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv, line 3") && stderr.contains("found 1 field"), "{stderr}");
    assert!(!target.exists());
    // --history with --users is refused by the command line.
    let out = recommend(&data, &ckpt, &["--history", bad.to_str().unwrap(), "--users", "1"]);
    assert!(!out.status.success());
}

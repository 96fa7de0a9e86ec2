//! Each raw format, hand-made files with hand-computed expectations, read back with the `.pt`
//! reader: renumbering by first appearance, stable time order, dedupe, leave-last-out, negatives.

use preprocess::{prepare, PrepareOptions, RawFormat};
use std::path::Path;
use torchfile::TorchFile;

fn read_i64(path: &Path) -> (Vec<usize>, Vec<i64>) {
    let mut f = TorchFile::open(path).unwrap();
    let t = f.tensor().unwrap();
    (t.shape.clone(), f.read(&t).unwrap().to_i64())
}

fn prepared(name: &str, text: &str, negatives: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join(name);
    std::fs::write(&raw, text).unwrap();
    let out = dir.path().join("out");
    let options = PrepareOptions { negatives, seed: 7, ..Default::default() };
    prepare(&raw, &out, &options, |_| {}).unwrap();
    (dir, out)
}

/// (user, item, time) rows: user 5 rates items 30, 10, 20, 10 (dup, later), user 9 rates 20 twice
/// at the same time as item 40 (tie: file order), user 7 has one rating.
const ROWS: [(i64, i64, i64); 8] =
    [(5, 30, 100), (9, 20, 50), (5, 10, 90), (9, 40, 50), (5, 20, 300), (7, 10, 1), (5, 10, 400), (9, 50, 10)];

fn expected_train_and_test() -> (Vec<i64>, Vec<i64>) {
    // users by first appearance: 5 -> 0, 9 -> 1, 7 -> 2; items: 30 -> 0, 20 -> 1, 10 -> 2, 40 -> 3, 50 -> 4
    // user 0 by time: 10@90 (2), 30@100 (0), 20@300 (1), 10@400 (dup, dropped) -> train [2, 0], test 1
    // user 1 by time: 50@10 (4), 20@50 (1), 40@50 (3, after 20 in file order) -> train [4, 1], test 3
    // user 2: 10@1 (2) -> no train, test 2
    (vec![0, 2, 0, 0, 1, 4, 1, 1], vec![0, 1, 1, 3, 2, 2])
}

fn check(dir: &Path, negatives: usize) {
    let (train, test) = expected_train_and_test();
    let (shape, got) = read_i64(&dir.join("train_data_0.pt"));
    assert_eq!((shape, got), (vec![4, 2], train));
    let (shape, got) = read_i64(&dir.join("test_data_0.pt"));
    let series = negatives + 1;
    assert_eq!(shape, vec![3 * series, 2]);
    for u in 0..3 {
        assert_eq!(
            &got[2 * u * series..2 * u * series + 2],
            &test[2 * u..2 * u + 2],
            "user {u}'s positive comes first"
        );
        for k in 1..series {
            let (user, item) = (got[2 * (u * series + k)], got[2 * (u * series + k) + 1]);
            assert_eq!(user, u as i64);
            // Items are drawn from 0..(max train item + 1) = 0..5, never one of the user's train items.
            let train_items: &[i64] = [&[2, 0][..], &[4, 1], &[]][u];
            assert!((0..5).contains(&item) && !train_items.contains(&item), "user {u} negative {item}");
        }
    }
    let (_, users) = read_i64(&dir.join("user_ids.pt"));
    let (_, items) = read_i64(&dir.join("item_ids.pt"));
    assert_eq!((users, items), (vec![5, 9, 7], vec![30, 20, 10, 40, 50]));
}

#[test]
fn ml20m_csv() {
    let mut text = String::from("userId,movieId,rating,timestamp\n");
    for (u, i, t) in ROWS {
        text += &format!("{u},{i},3.5,{t}\n");
    }
    let (_d, out) = prepared("ratings.csv", &text, 4);
    check(&out, 4);
}

#[test]
fn ml1m_double_colon() {
    let text: String = ROWS.iter().map(|(u, i, t)| format!("{u}::{i}::4::{t}\n")).collect();
    let (_d, out) = prepared("ratings.dat", &text, 3);
    check(&out, 3);
}

#[test]
fn ml100k_tab_separated() {
    let text: String = ROWS.iter().map(|(u, i, t)| format!("{u}\t{i}\t4\t{t}\n")).collect();
    let (_d, out) = prepared("u.data", &text, 2);
    check(&out, 2);
}

#[test]
fn like_movielens_skips_its_first_row_and_allows_spaces() {
    // The first row is skipped whatever it holds, as the reference does.
    let mut text = String::from("1000, 1000, 1\n");
    for (u, i, t) in ROWS {
        text += &format!("{u}, {i}, {t}\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("events.csv");
    std::fs::write(&raw, &text).unwrap();
    assert_eq!(RawFormat::detect(&raw), RawFormat::LikeMovielens);
    let out = dir.path().join("out");
    let summary = prepare(&raw, &out, &PrepareOptions { negatives: 5, ..Default::default() }, |_| {}).unwrap();
    assert_eq!((summary.stats.ratings, summary.stats.duplicates, summary.stats.single_rating_users), (8, 1, 1));
    check(&out, 5);
}

#[test]
fn zero_negatives_gives_series_of_one() {
    let text: String = ROWS.iter().map(|(u, i, t)| format!("{u}\t{i}\t4\t{t}\n")).collect();
    let (_d, out) = prepared("u.data", &text, 0);
    check(&out, 0);
    let yaml = std::fs::read_to_string(out.join("feature_spec.yaml")).unwrap();
    assert!(yaml.contains("test_samples_per_series: 1"), "{yaml}");
}

#[test]
fn a_user_who_rated_every_item_is_a_clear_error() {
    // user 1 rated items 1, 2 in train and 3 as test; user 2 rated 3 only: train items {1, 2}
    // cover the whole draw range 0..2 for user 1.
    let text = "userId,movieId,rating,timestamp\n1,1,5,1\n1,2,5,2\n1,3,5,3\n2,3,5,1\n";
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ratings.csv");
    std::fs::write(&raw, text).unwrap();
    let err = prepare(&raw, &dir.path().join("out"), &PrepareOptions::default(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("user 1 (raw id) has rated every one of the 2 items"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn the_same_seed_gives_the_same_files_and_another_seed_other_negatives() {
    let text: String = ROWS.iter().map(|(u, i, t)| format!("{u}\t{i}\t4\t{t}\n")).collect();
    let (_a, a) = prepared("u.data", &text, 50);
    let (_b, b) = prepared("u.data", &text, 50);
    assert_eq!(read_i64(&a.join("test_data_0.pt")), read_i64(&b.join("test_data_0.pt")));
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("u.data");
    std::fs::write(&raw, &text).unwrap();
    prepare(&raw, &dir.path().join("c"), &PrepareOptions { negatives: 50, seed: 8, ..Default::default() }, |_| {})
        .unwrap();
    assert_ne!(read_i64(&a.join("test_data_0.pt")), read_i64(&dir.path().join("c/test_data_0.pt")));
}

fn text_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn text_ids_are_renumbered_by_first_appearance_and_kept_as_text() {
    // The same rows with ids as a real log has them: `u5`, `sku-30`... The tensors are those of the
    // integer file (renumbering only looks at first appearance); the maps hold the text.
    let mut text = String::from("user_id,item_id,timestamp\n");
    for (u, i, t) in ROWS {
        text += &format!("u{u},sku-{i},{t}\n");
    }
    let (_d, out) = prepared("events.csv", &text, 4);
    let (train, test) = expected_train_and_test();
    assert_eq!(read_i64(&out.join("train_data_0.pt")), (vec![4, 2], train));
    let (_, got) = read_i64(&out.join("test_data_0.pt"));
    for u in 0..3 {
        assert_eq!(&got[2 * u * 5..2 * u * 5 + 2], &test[2 * u..2 * u + 2]);
    }
    assert_eq!(text_lines(&out.join("user_ids.txt")), ["u5", "u9", "u7"]);
    assert_eq!(text_lines(&out.join("item_ids.txt")), ["sku-30", "sku-20", "sku-10", "sku-40", "sku-50"]);
    assert!(!out.join("user_ids.pt").exists() && !out.join("item_ids.pt").exists());
    // The spec is the reference's: no key names the maps.
    let yaml = std::fs::read_to_string(out.join("feature_spec.yaml")).unwrap();
    assert!(!yaml.contains("id_map"), "{yaml}");
}

#[test]
fn each_column_is_text_or_integer_on_its_own_as_pandas_reads_it() {
    // Users: one text id makes the whole column text, so `5` and `05` are two users (pandas reads
    // an object column). Items: integers only, so `010` is item 10 (pandas reads an int column).
    let text = "user,item,ts\n5,10,1\n05,010,2\nbob,20,3\n5,30,4\nbob,40,5\n05,50,6\n";
    let (_d, out) = prepared("log.csv", text, 1);
    assert_eq!(text_lines(&out.join("user_ids.txt")), ["5", "05", "bob"]);
    assert_eq!(read_i64(&out.join("item_ids.pt")).1, [10, 20, 30, 40, 50]);
    // The oracle: pandas' own factorize of the same file, as the reference's convert.py does.
    let oracle = test_support::python_eval(
        "import sys, pandas as pd\n\
         df = pd.read_csv(sys.argv[1], names=['user_id', 'item_id', 'timestamp'], header=0, engine='python')\n\
         print('|'.join(map(str, pd.factorize(df['user_id'])[1])), '|'.join(map(str, pd.factorize(df['item_id'])[1])))",
        &[_d.path().join("log.csv").to_str().unwrap()],
    );
    assert_eq!(oracle.trim(), "5|05|bob 10|20|30|40|50");
}

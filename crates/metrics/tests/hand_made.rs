//! Hand-made cases whose answers are worked out by hand (in the comments), and random lists full of
//! ties and duplicates checked against the reference's evaluation code run by PyTorch.

use metrics::{rank_metrics, RankSums, TestSeries};
use std::f64::consts::LN_2;
use tch::Tensor;

/// HR and NDCG sums of one call.
fn sums(scores: &[f32], items: &[i64], labels: &[f32], s: i64, k: i64) -> RankSums {
    rank_metrics(&Tensor::from_slice(scores), &Tensor::from_slice(items), &Tensor::from_slice(labels), s, k).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_single_list_at_every_k() {
    // Items 10..13, the positive is 12 (0.7); only item 10 (0.9) scores higher: rank 1.
    let (scores, items, labels) = ([0.9, 0.1, 0.7, 0.3], [10, 11, 12, 13], [0., 0., 1., 0.]);
    let miss = sums(&scores, &items, &labels, 4, 1);
    assert_eq!((miss.hits, miss.lists, miss.ndcg), (0, 1, 0.0));
    for k in [2, 3, 4, 10] {
        // k = S and k > S (counted as S) included: a hit at rank 1, NDCG log(2)/log(3).
        let hit = sums(&scores, &items, &labels, 4, k);
        assert_eq!(hit.hits, 1, "k = {k}");
        assert!(close(hit.ndcg, LN_2 / 3f64.ln()), "k = {k}: {}", hit.ndcg);
    }
}

#[test]
fn repeated_negatives_count_once() {
    // Negative item 3 three times at 0.9, positive 5 at 0.5: after the mask one 3 is left above the
    // positive, so rank 1 (without the mask it would be rank 3, a miss at k = 2).
    let r = sums(&[0.5, 0.9, 0.9, 0.9], &[5, 3, 3, 3], &[1., 0., 0., 0.], 4, 2);
    assert_eq!(r.hits, 1);
    assert!(close(r.ndcg, LN_2 / 3f64.ln()));
}

#[test]
fn the_positive_repeated_among_its_negatives_never_outranks_it() {
    // A negative equal to the positive item 7 (scored 0.9) is masked; item 2 (0.6) stays above the
    // positive (0.5): rank 1.
    let (scores, items, labels) = ([0.9, 0.5, 0.6], [7, 7, 2], [0., 1., 0.]);
    assert_eq!(sums(&scores, &items, &labels, 3, 1).hits, 0);
    let r = sums(&scores, &items, &labels, 3, 2);
    assert_eq!(r.hits, 1);
    assert!(close(r.ndcg, LN_2 / 3f64.ln()));
}

#[test]
fn ties_above_the_cut_and_below_it() {
    // Every score equal: at k = S the positive is in whatever order, so a hit; its NDCG is between
    // that of the last and the first rank.
    let r = sums(&[0.5; 4], &[1, 2, 3, 4], &[1., 0., 0., 0.], 4, 4);
    assert_eq!(r.hits, 1);
    assert!(r.ndcg >= LN_2 / 5f64.ln() - 1e-6 && r.ndcg <= 1.0 + 1e-6);
    // The positive tied with one negative, both below two others: ranks 2 and 3, a miss at k = 2.
    assert_eq!(sums(&[0.4, 0.4, 0.8, 0.9], &[1, 2, 3, 4], &[1., 0., 0., 0.], 4, 2).hits, 0);
}

#[test]
fn one_row_lists() {
    // S = 1: every list is its positive alone, a hit at rank 0 (NDCG 1).
    let r = sums(&[0.1, 0.2, 0.3], &[4, 5, 6], &[1., 1., 1.], 1, 1);
    assert_eq!((r.hits, r.lists), (3, 3));
    assert!(close(r.ndcg, 3.0));
    assert_eq!((r.hit_rate(), r.ndcg()), (1.0, r.ndcg / 3.0));
}

#[test]
fn shards_add_up_to_the_whole() {
    // Five lists of 3; the positive wins in lists 0, 2 and 4 only (at k = 1).
    let mut scores = Vec::new();
    let mut items = Vec::new();
    let mut labels = Vec::new();
    for l in 0..5i64 {
        let win = l % 2 == 0;
        scores.extend([if win { 0.9f32 } else { 0.1 }, 0.5, 0.4]);
        items.extend([l, 100 + l, 200 + l]);
        labels.extend([1f32, 0., 0.]);
    }
    let users = Tensor::from_slice(&scores); // scores ride along as the "users"
    let series = TestSeries::new(&users, &Tensor::from_slice(&items), &Tensor::from_slice(&labels), 3).unwrap();
    let whole = series.rank_sums(&series.users(), 1).unwrap();
    assert_eq!((whole.hits, whole.lists), (3, 5));
    let (a, b) = (series.shard(0, 2), series.shard(1, 2));
    assert_eq!((a.lists(), b.lists()), (3, 2)); // the first `lists % world` ranks take one more
    let parts = a.rank_sums(&a.users(), 1).unwrap().combine(&b.rank_sums(&b.users(), 1).unwrap());
    assert_eq!(parts, whole);
}

#[test]
fn bad_shapes_are_errors() {
    let t = |v: &[i64]| Tensor::from_slice(v);
    let f = |v: &[f32]| Tensor::from_slice(v);
    assert!(rank_metrics(&f(&[0.1, 0.2, 0.3]), &t(&[1, 2, 3]), &f(&[1., 0., 0.]), 2, 1).is_err());
    assert!(rank_metrics(&f(&[0.1, 0.2]), &t(&[1, 2]), &f(&[1., 0.]), 2, 0).is_err());
    assert!(rank_metrics(&f(&[0.1, 0.2]), &t(&[1, 2]), &f(&[1., 0.]), 0, 1).is_err());
    let series = TestSeries::new(&t(&[0, 0]), &t(&[1, 2]), &f(&[1., 0.]), 2).unwrap();
    assert!(series.rank_sums(&f(&[0.1, 0.2, 0.3]), 1).is_err());
}

#[test]
fn random_lists_with_ties_and_duplicates_equal_the_reference_code() {
    tch::manual_seed(11);
    let (lists, s) = (400i64, 21i64);
    // Few distinct items and scores, so duplicates, the positive among its negatives and tied
    // scores are everywhere; a duplicate scores as its twin, as a model would.
    let items = Tensor::randint(12, [lists, s], (tch::Kind::Int64, tch::Device::Cpu));
    let labels = Tensor::zeros([lists, s], (tch::Kind::Float, tch::Device::Cpu));
    let _ = labels.narrow(1, 0, 1).fill_(1.0);
    let levels = Tensor::randint(6, [lists, 12], (tch::Kind::Int64, tch::Device::Cpu)).to_kind(tch::Kind::Float) / 8.0;
    let scores = levels.gather(1, &items, false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lists.pt");
    let flat = |t: &Tensor| t.reshape([-1]);
    tch_data::save_tch_map(&file, &[("items", flat(&items)), ("labels", flat(&labels)), ("scores", flat(&scores))])
        .unwrap();
    let ks = [1i64, 3, 10, 21];
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/reference_eval.py");
    let mut args = vec![file.display().to_string(), s.to_string()];
    args.extend(ks.iter().map(|k| k.to_string()));
    let out = test_support::run_python(&script, &args);
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ks {
        let got = rank_metrics(&flat(&scores), &flat(&items), &flat(&labels), s, k).unwrap();
        let w = &want[k.to_string()];
        assert_eq!(got.hits, w["hits"].as_i64().unwrap(), "hits at k = {k}");
        assert!(
            (got.ndcg - w["ndcg"].as_f64().unwrap()).abs() < 1e-9,
            "NDCG at k = {k}: {} vs {}",
            got.ndcg,
            w["ndcg"]
        );
    }
}

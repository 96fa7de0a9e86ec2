//! Full-ranking metrics against numpy (tests/py/full_ranking.py, one loop per user): ranks with ties
//! and excluded items, every metric at several k, and the seen-item masks.

use metrics::{positive_ranks, FullRankSums, SeenItems};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn numpy(input: &[(&str, Tensor)], k: i64) -> HashMap<String, Tensor> {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.pt"), dir.path().join("out.pt"));
    tch_data::save_tch_map(&inp, input).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/full_ranking.py");
    test_support::run_python(&script, [inp.display().to_string(), out.display().to_string(), k.to_string()]);
    tch_data::load_tch_map(&out, Device::Cpu).unwrap().into_iter().collect()
}

#[test]
fn ranks_and_metrics_equal_numpys_with_ties_and_seen_items() {
    tch::manual_seed(3);
    let (users, items, block) = (40i64, 60i64, 25i64);
    // Scores from a handful of values, so ties are everywhere; a few NaNs.
    let scores = Tensor::randint(6, [block, items], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float);
    let _ = scores.get(3).get(7).fill_(f64::NAN);
    let _ = scores.get(5).fill_(1.0); // a user whose items all tie
    let block_users = Tensor::randperm(users, (Kind::Int64, Device::Cpu)).narrow(0, 0, block);
    let positives = Tensor::randint(items, [block], (Kind::Int64, Device::Cpu));
    let _ = scores.get(9).get(positives.int64_value(&[9])).fill_(f64::NAN); // a NaN positive
                                                                            // Seen pairs: random, with duplicates, and including some users' own positives (kept ranked).
    let seen_users = Tensor::randint(users, [600], (Kind::Int64, Device::Cpu));
    let seen_items = Tensor::randint(items, [600], (Kind::Int64, Device::Cpu));
    let seen_users = Tensor::cat(&[seen_users, block_users.narrow(0, 0, 4)], 0);
    let seen_items = Tensor::cat(&[seen_items, positives.narrow(0, 0, 4)], 0);

    let seen = SeenItems::new(&seen_users, &seen_items, users, items, Device::Cpu).unwrap();
    let mask = seen.mask(&block_users);
    let ranks = positive_ranks(&scores, &positives, Some(&mask)).unwrap();
    for k in [1, 5, 10, 59] {
        let want = numpy(
            &[
                ("scores", scores.shallow_clone()),
                ("positives", positives.shallow_clone()),
                ("seen_users", seen_users.shallow_clone()),
                ("seen_items", seen_items.shallow_clone()),
                ("block_users", block_users.shallow_clone()),
            ],
            k,
        );
        assert!(mask.equal(&want["mask"]), "seen-item mask");
        assert!(ranks.equal(&want["ranks"]), "ranks {ranks:?} vs {:?}", want["ranks"]);
        let sums = FullRankSums::from_ranks(&ranks, k).unwrap();
        for (name, got) in [
            ("hr", sums.hit_rate()),
            ("ndcg", sums.ndcg()),
            ("mrr", sums.mrr()),
            ("precision", sums.precision()),
            ("map", sums.map()),
        ] {
            let w = want[name].double_value(&[]);
            assert!((got - w).abs() < 1e-12, "k={k} {name}: {got} vs numpy {w}");
        }
    }
    // The all-tie user ranks last among what is left; the NaN positive ranks last too.
    let left = items - 1 - mask.get(5).sum(Kind::Int64).int64_value(&[])
        + mask.get(5).get(positives.int64_value(&[5])).to_kind(Kind::Int64).int64_value(&[]);
    assert_eq!(ranks.int64_value(&[5]), left);
}

#[test]
fn sums_split_into_blocks_add_up_and_bad_shapes_are_refused() {
    let ranks = Tensor::from_slice(&[0i64, 3, 9, 10, 200, 1]);
    let whole = FullRankSums::from_ranks(&ranks, 10).unwrap();
    let parts = FullRankSums::from_ranks(&ranks.narrow(0, 0, 2), 10)
        .unwrap()
        .combine(&FullRankSums::from_ranks(&ranks.narrow(0, 2, 4), 10).unwrap());
    assert_eq!(whole.users, 6);
    assert!((whole.hit_rate() - 4.0 / 6.0).abs() < 1e-12 && (parts.hit_rate() - whole.hit_rate()).abs() < 1e-12);
    assert!((parts.ndcg() - whole.ndcg()).abs() < 1e-12);
    assert!(FullRankSums::from_ranks(&ranks, 0).is_err());
    let scores = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
    assert!(positive_ranks(&scores, &Tensor::from_slice(&[0i64, 1]), None).is_err());
    assert!(positive_ranks(&scores.view([-1]), &Tensor::from_slice(&[0i64]), None).is_err());
    assert!(SeenItems::new(&Tensor::from_slice(&[5i64]), &Tensor::from_slice(&[0i64]), 3, 4, Device::Cpu).is_err());
}

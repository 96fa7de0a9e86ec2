//! Two-stage ranking (`Recommender::set_bf16_candidates`): bfloat16 all-item scoring picks
//! candidates, float32 ranks them. On the reference NeuMF of the shared ml-latest-small (trained
//! by PyTorch), every user's list must be the float32 list: the same items, each with float32's
//! score for that pair. Also the bfloat16 logits themselves against float32's, and the refusals.
//! On a CPU without bfloat16 instructions the switch must refuse (tested) and the rest is skipped.

use inference::{FoldInOptions, Recommender};
use ncf_model::Model;
use tch::{Device, Tensor};

fn reference() -> Recommender {
    let dir = test_support::reference_prepared();
    Recommender::open(&dir, &dir.join("reference_model.pth"), Device::Cpu).unwrap()
}

/// Lists equal up to the order of items whose float32 scores are within `tie` of each other (the
/// two-stage list scores pairs one by one, the float32 list all items at once: the same float32
/// arithmetic in another order).
fn assert_same_list(who: &str, got: &[(String, f32)], want: &[(String, f32)], tie: f32) {
    assert_eq!(got.len(), want.len(), "{who}: {got:?} against {want:?}");
    for (rank, ((gi, gs), (wi, ws))) in got.iter().zip(want).enumerate() {
        assert!((gs - ws).abs() <= tie, "{who}, rank {rank}: score {gs} against {ws}");
        if gi != wi {
            // A swap of near-equal scores: the item must sit in the other list with that score.
            let other = want.iter().find(|(i, _)| i == gi).unwrap_or_else(|| panic!("{who}: {gi} not in {want:?}"));
            assert!((other.1 - gs).abs() <= tie, "{who}, rank {rank}: {gi} against {wi} ({got:?} / {want:?})");
        }
    }
}

fn strings(items: &[(inference::RawId, f32)]) -> Vec<(String, f32)> {
    items.iter().map(|(i, s)| (i.to_string(), *s)).collect()
}

#[test]
fn bf16_candidates_give_the_float32_lists() {
    let float32 = reference();
    let mut two_stage = reference();
    if !torch_ops::bf16_available() {
        let e = two_stage.set_bf16_candidates(true).unwrap_err().to_string();
        assert!(e.contains("bfloat16 instructions"), "{e}");
        eprintln!("skipped: this CPU lacks bfloat16 instructions (the refusal is checked)");
        return;
    }
    two_stage.set_bf16_candidates(true).unwrap();
    assert!(two_stage.bf16_candidates());
    let users = float32.all_users();
    for (k, include_seen) in [(10, false), (1, true), (50, false)] {
        let want = float32.recommend(&users, k, include_seen);
        let got = two_stage.recommend(&users, k, include_seen);
        for (g, w) in got.iter().zip(&want) {
            assert_same_list(&format!("user {} k {k}", w.user), &strings(&g.items), &strings(&w.items), 2e-6);
        }
        // The scores are float32's pair scores (what PyTorch's forward gives, tested elsewhere), to
        // float32 rounding (oneDNN sums in an order that depends on the batch's rows).
        let first = &got[0];
        let items: Vec<i64> = first.items.iter().map(|(i, _)| i.to_string().parse().unwrap()).collect();
        let pairs = float32.score_pairs(&vec![users[0]; items.len()], &items).unwrap();
        for ((_, s), p) in first.items.iter().zip(pairs) {
            assert!((s - p).abs() <= 1e-6, "user 0, k {k}: {s} against {p}");
        }
    }
    // A person given as rows (a float32 fold-in): the same.
    let history = [0i64, 5, 17, 123, 2000];
    let options = FoldInOptions::default();
    let person = float32.fold_in(&history, &options).unwrap();
    let want = float32.recommend_for(&person, 10, &history).unwrap();
    let got = two_stage.recommend_for(&person, 10, &history).unwrap();
    assert_same_list("a folded-in person", &strings(&got), &strings(&want), 2e-6);
    // Every item left out: no candidates, an empty list (no pass over zero pairs), as float32's.
    let person = two_stage.fold_in(&history, &options).unwrap();
    let every_item: Vec<i64> = (0..two_stage.catalog().items()).collect();
    assert!(two_stage.recommend_for(&person, 10, &every_item).unwrap().is_empty());
    assert!(float32.recommend_for(&person, 10, &every_item).unwrap().is_empty());
    // A huge k is every item not excluded, not an overflow.
    assert_eq!(two_stage.recommend_for(&person, usize::MAX, &every_item[5..]).unwrap().len(), 5);

    two_stage.set_bf16_candidates(false).unwrap();
    assert!(!two_stage.bf16_candidates());
}

/// With bfloat16 candidates the fold-in fits through the bfloat16 side: in bfloat16 on a CPU with
/// AMX (a person's vectors close to the float32 fit's, not equal), in float32 elsewhere (the same
/// vectors). Forty trained users' train items given as new people's histories: their top 10
/// after a `--bf16` fit against after a float32 fit, both ranked in float32. On AMX at least 9 of
/// 10 on average and 7 for each person (measured on an Intel Xeon with AMX, 2026-12-05: all 10
/// for each of the 40); elsewhere the same lists.
#[test]
fn a_bf16_fit_recommends_what_a_float32_fit_does() {
    let float32 = reference();
    let mut two_stage = reference();
    if two_stage.set_bf16_candidates(true).is_err() {
        eprintln!("skipped: this CPU lacks bfloat16 instructions");
        return;
    }
    let options = FoldInOptions::default();
    let (mut shared, mut fewest) = (0usize, 10usize);
    let people = 40;
    for user in 0..people {
        let history = float32.catalog().seen(user * 13 % float32.catalog().users()).to_vec();
        let want = float32.recommend_for_history(None, &history, 10, false, &options).unwrap();
        let got = two_stage.recommend_for_history(None, &history, 10, false, &options).unwrap();
        assert_eq!(got.len(), want.len());
        if !torch_ops::amx_available() {
            assert_same_list(&format!("person {user}"), &strings(&got), &strings(&want), 2e-6);
            continue;
        }
        let want: std::collections::HashSet<String> = want.iter().map(|(i, _)| i.to_string()).collect();
        let common = got.iter().filter(|(i, _)| want.contains(&i.to_string())).count();
        shared += common;
        fewest = fewest.min(common);
    }
    if torch_ops::amx_available() {
        let mean = shared as f64 / people as f64;
        eprintln!("bfloat16 fit against float32 fit: {mean:.2} of 10 shared on average, {fewest} at least");
        assert!(mean >= 9.0 && fewest >= 7, "{mean:.2} of 10 shared on average, {fewest} at least");
    }
}

#[test]
fn bf16_logits_are_within_bfloat16_rounding_of_float32() {
    let rec = reference();
    let model = rec.model();
    let Ok(side) = model.bf16_item_side() else {
        assert!(!torch_ops::bf16_available(), "refused on a CPU with bfloat16 instructions");
        eprintln!("skipped: this CPU lacks bfloat16 instructions");
        return;
    };
    let users = Tensor::arange(model.users(), (tch::Kind::Int64, Device::Cpu));
    let exact = model.all_item_logits(&users, &model.item_side());
    let bf16 = model.all_item_logits(&users, &side);
    let err = f64::try_from((&bf16 - &exact).abs().max()).unwrap();
    let scale = f64::try_from(exact.abs().max()).unwrap();
    // Three layers of bfloat16 inputs and outputs (8 significant bits each): errors of a few
    // 2^-8 of the activations, far below the spread of the logits, and not zero (it ran in
    // bfloat16).
    assert!(err > 0.0 && err < 0.02 * scale.max(1.0), "max error {err} for logits up to {scale}");
}

#[test]
fn models_without_bf16_scoring_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = test_support::reference_prepared();
    let mf = ncf_model::Mf::new(ncf_model::MfConfig { users: 610, items: 9724, factors: 8 }, Device::Cpu).unwrap();
    let path = tmp.path().join("mf.pth");
    mf.save(&path).unwrap();
    let mut rec = Recommender::open(&dir, &path, Device::Cpu).unwrap();
    let e = rec.set_bf16_candidates(true).unwrap_err().to_string();
    assert!(e.contains("mf model has no bfloat16"), "{e}");
    assert!(!rec.bf16_candidates());
}

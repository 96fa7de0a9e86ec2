//! Fold-in against an independent PyTorch implementation (same steps, same negatives: the same
//! rows to float tolerance) for every model kind; a trained user's own rows score as the user.
//! (How close a folded-in user's recommendations come to the trained user's, on trained models:
//! `bins/ncf-infer/tests/history.rs`.)

use inference::{FoldIn, FoldInOptions};
use ncf_model::{AnyModel, Gmf, GmfConfig, Mf, MfConfig, Mlp, MlpConfig, Model, NeuMf, NeuMfConfig};
use std::collections::HashSet;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const USERS: i64 = 60;
const ITEMS: i64 = 200;

/// A model of each kind with spread weights: a fresh model's N(0, 0.01) embeddings give every
/// item nearly the same score, and the fit nothing to move.
fn models() -> Vec<AnyModel> {
    // libtorch's generator is global: tests running at once would interleave their draws.
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(21);
    let layers = vec![32, 16, 8];
    let mut out: Vec<AnyModel> = vec![
        Box::new(
            NeuMf::new(
                NeuMfConfig { users: USERS, items: ITEMS, mf_dim: 8, mlp_layers: layers.clone(), dropout: 0.0 },
                Device::Cpu,
            )
            .unwrap(),
        ),
        Box::new(Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap()),
        Box::new(Mlp::new(MlpConfig { users: USERS, items: ITEMS, layers, dropout: 0.0 }, Device::Cpu).unwrap()),
        Box::new(Mf::new(MfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap()),
    ];
    for m in &mut out {
        tch::no_grad(|| {
            for (_, t) in m.state_dict() {
                let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.3));
            }
        });
        m.set_train(false);
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).abs()).fold(0.0, f64::max)
}

#[test]
fn fold_in_equals_an_independent_pytorch_fit_for_every_model_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fold_in_oracle.py");
    // Repeats are allowed (a person who watched twice); 7 steps of 4 negatives per item.
    let history = [3i64, 17, 17, 40, 99, 150, 199];
    let options = FoldInOptions { steps: 25, negatives: 4, learning_rate: 0.1, prior_weight: 0.2, seed: 5 };
    for model in models() {
        let name = model.name().to_owned();
        let ckpt = tmp.path().join(format!("{name}.pth"));
        model.save(&ckpt).unwrap();
        let fold = FoldIn::new(model.as_ref()).unwrap();
        let negatives = fold.negatives(&history, &options);
        assert_eq!(negatives.len(), options.steps);
        let seen: HashSet<i64> = history.iter().copied().collect();
        for step in &negatives {
            assert_eq!(step.len(), history.len() * options.negatives);
            assert!(step.iter().all(|i| (0..ITEMS).contains(i) && !seen.contains(i)), "{name}: {step:?}");
        }
        let side = model.item_side();
        let fitted = fold.fit(model.as_ref(), &side, &history, &options).unwrap();

        let job = tmp.path().join(format!("{name}.json"));
        let job_text = serde_json::json!({
            "history": history, "negatives": negatives, "learning_rate": options.learning_rate, "prior_weight": options.prior_weight,
        });
        std::fs::write(&job, job_text.to_string()).unwrap();
        let out = tmp.path().join(format!("{name}-out.json"));
        test_support::run_python(&oracle, [&ckpt, &job, &out]);
        let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let as_f64 =
            |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };

        // float32 arithmetic in two summation orders, through 25 Adam steps whose moves are at
        // most the learning rate (in standard deviations) each: agreement to 1e-4 of rows that
        // moved by tenths.
        let rows = fitted.to_vecs();
        let prior = fold.prior().to_vecs();
        let spread = fold.spread().to_vecs();
        let mut moved = 0.0f64;
        let tables = model.user_tables();
        assert_eq!(rows.len(), tables.len());
        for (k, (row, want)) in rows.iter().zip(expected["rows"].as_array().unwrap()).enumerate() {
            let want = as_f64(want);
            let diff = max_abs_diff(row, &want);
            assert!(diff < 1e-4, "{name}: {}: fold-in differs from PyTorch's by {diff}", tables[k].key);
            moved = moved.max(max_abs_diff(&prior[k], &want));
            let sd = spread[k].iter().copied().fold(0f32, f32::max);
            eprintln!(
                "{name}: {}: moved up to {moved:.3} (the users' spread: up to {sd:.3}), off by {diff:.1e}",
                tables[k].key
            );
        }
        // The fit went a hundred times the tolerance from where it started.
        assert!(moved > 1e-2, "{name}: the fit barely moved ({moved:.4}): the comparison would prove nothing");

        let logits = model.all_item_logits_of_rows(fitted.rows(), &side).unwrap();
        let logits = Vec::<f32>::try_from(&logits.view([-1])).unwrap();
        let diff = max_abs_diff(&logits, &as_f64(&expected["logits"]));
        assert!(diff < 1e-3, "{name}: all-item logits differ from PyTorch's by {diff}");
    }
}

#[test]
fn a_trained_users_own_rows_score_as_the_user() {
    for model in models() {
        let side = model.item_side();
        let users = Tensor::from_slice(&[0i64, 5, 59]);
        let rows = model.user_rows(&users).unwrap();
        let by_rows = model.all_item_logits_of_rows(&rows, &side).unwrap();
        let by_ids = model.all_item_logits(&users, &side);
        let diff = (by_rows - &by_ids).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{}: {diff}", model.name());
        // Pair by pair, with gradients reaching the rows only.
        let items = Tensor::from_slice(&[0i64, 7, 199]);
        let pair_rows: Vec<Tensor> = rows.iter().map(|r| r.copy().set_requires_grad(true)).collect();
        let pairs = model.logits_of_rows(&pair_rows, &items, &side).unwrap();
        let want = tch::no_grad(|| model.forward(&users, &items));
        assert!(pairs.allclose(&want, 1e-5, 1e-5, false), "{}", model.name());
        pairs.sum(Kind::Float).backward();
        assert!(pair_rows.iter().all(|r| r.grad().defined()));
        assert!(
            model.state_dict().iter().all(|(_, p)| !p.grad().defined()),
            "{}: a parameter got a gradient",
            model.name()
        );
    }
}

#[test]
fn negatives_follow_the_seed_and_bad_items_are_refused() {
    let model = models().remove(0);
    let fold = FoldIn::new(model.as_ref()).unwrap();
    let history = [1i64, 2, 3];
    let a = FoldInOptions { seed: 1, ..Default::default() };
    assert_eq!(fold.negatives(&history, &a), fold.negatives(&history, &a));
    assert_ne!(fold.negatives(&history, &a), fold.negatives(&history, &FoldInOptions { seed: 2, ..a.clone() }));
    let side = model.item_side();
    let err = fold.fit(model.as_ref(), &side, &[1, ITEMS], &a).unwrap_err().to_string();
    assert!(err.contains(&format!("item id {ITEMS}")), "{err}");
    // A history of all but three items: every negative is one of the three (drawn from the list
    // of unseen items, not by retrying).
    let dense: Vec<i64> = (0..ITEMS).filter(|i| ![5, 77, 150].contains(i)).collect();
    let negatives = fold.negatives(&dense, &FoldInOptions { steps: 2, ..a.clone() });
    assert!(negatives.iter().flatten().all(|i| [5, 77, 150].contains(i)));
    assert_eq!(negatives[0].len(), dense.len() * 4);
    // Options a fit cannot use are refused.
    for bad in
        [FoldInOptions { prior_weight: -1.0, ..a.clone() }, FoldInOptions { learning_rate: f64::NAN, ..a.clone() }]
    {
        assert!(fold.fit(model.as_ref(), &side, &history, &bad).is_err(), "{bad:?}");
    }
    // No history: the trained users' mean.
    let empty = fold.fit(model.as_ref(), &side, &[], &a).unwrap();
    assert_eq!(empty.to_vecs(), fold.prior().to_vecs());
}

//! Criterion benches of fold-in (issue #29) on one core: a person with a 50-item history folded
//! into an ML-20m-shaped model (138,493 users, 26,744 items; NeuMF with the reference's sizes and
//! MF with 64 factors; random weights, the time does not depend on them), default options (30
//! Adam steps, 4 negatives per item), alone and followed by top-10 over every item (float32, and
//! for NeuMF on a CPU with bfloat16 instructions, bfloat16 candidates ranked in float32, after a
//! float32 fit or one on the bfloat16 side: bfloat16 on AMX tiles where the CPU has them).
//!
//! `cargo bench -p ncf-rs --bench fold_in`

use criterion::{criterion_group, criterion_main, Criterion};
use inference::{FoldIn, FoldInOptions};
use ncf_model::{AnyModel, Mf, MfConfig, Model, NeuMf, NeuMfConfig};
use tch::{Device, Kind, Tensor};

const USERS: i64 = 138_493;
const ITEMS: i64 = 26_744;

fn fold_in(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let models: Vec<AnyModel> = vec![
        Box::new(Mf::new(MfConfig { users: USERS, items: ITEMS, factors: 64 }, Device::Cpu).expect("model")),
        Box::new(NeuMf::new(NeuMfConfig::new(USERS, ITEMS), Device::Cpu).expect("model")),
    ];
    let history: Vec<i64> =
        Vec::<i64>::try_from(&Tensor::randint(ITEMS, [50], (Kind::Int64, Device::Cpu))).expect("ids");
    let options = FoldInOptions::default();
    for mut model in models {
        model.set_train(false);
        let name = model.name().to_owned();
        let side = model.item_side();
        let fold = FoldIn::new(model.as_ref()).expect("fold-in");
        c.bench_function(&format!("{name}: fold-in of 50 items, ML-20m shape, 1 thread"), |b| {
            b.iter(|| fold.fit(model.as_ref(), &side, &history, &options).expect("fit"))
        });
        c.bench_function(&format!("{name}: fold-in of 50 items + top 10 of 26,744, ML-20m shape, 1 thread"), |b| {
            b.iter(|| {
                let user = fold.fit(model.as_ref(), &side, &history, &options).expect("fit");
                let scores = model.all_item_logits_of_rows(user.rows(), &side).expect("scores");
                let _ = scores.view([-1]).index_fill_(0, &Tensor::from_slice(&history), f64::NEG_INFINITY);
                scores.topk(10, 1, true, true)
            })
        });
        // Two-stage ranking (`Recommender::set_bf16_candidates`): bfloat16 all-item scoring picks
        // 72 candidates (4k + 32), float32 pair scores rank them. Where the model or CPU has
        // no bfloat16 scoring, no row.
        let Ok(bf16_side) = model.bf16_item_side() else { continue };
        // The bfloat16 side also fits in bfloat16 where the CPU has AMX (`Model::rows_loss_gradient`;
        // elsewhere the same float32 fit as above): what `recommend --bf16` and `ncf-serve --bf16`
        // run.
        c.bench_function(&format!("{name}: fold-in of 50 items, bf16 side, ML-20m shape, 1 thread"), |b| {
            b.iter(|| fold.fit(model.as_ref(), &bf16_side, &history, &options).expect("fit"))
        });
        for (what, fit_side) in [("float32 fit", &side), ("bf16 fit", &bf16_side)] {
            c.bench_function(
                &format!(
                    "{name}: fold-in of 50 items + top 10 of 26,744, {what}, bf16 candidates, ML-20m shape, 1 thread"
                ),
                |b| {
                    b.iter(|| {
                        let user = fold.fit(model.as_ref(), fit_side, &history, &options).expect("fit");
                        let scores = model.all_item_logits_of_rows(user.rows(), &bf16_side).expect("scores");
                        let _ = scores.view([-1]).index_fill_(0, &Tensor::from_slice(&history), f64::NEG_INFINITY);
                        let (_, candidates) = scores.topk(72, 1, true, true);
                        let candidates = candidates.view([-1]);
                        let rows: Vec<Tensor> =
                            user.rows().iter().map(|r| r.expand([72, r.size()[1]], false)).collect();
                        let exact = tch::no_grad(|| model.logits_of_rows(&rows, &candidates, &side)).expect("pairs");
                        exact.view([-1]).topk(10, 0, true, true)
                    })
                },
            );
        }
        // The scoring alone, for a person already folded in: every item's logit, float32 and
        // bfloat16 (the MLP's share of the above).
        let person = fold.fit(model.as_ref(), &side, &history, &options).expect("fit");
        for (what, s) in [("float32", &side), ("bfloat16", &bf16_side)] {
            c.bench_function(
                &format!("{name}: every item's logit for one person, {what}, ML-20m shape, 1 thread"),
                |b| b.iter(|| model.all_item_logits_of_rows(person.rows(), s).expect("scores")),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = fold_in
}
criterion_main!(benches);

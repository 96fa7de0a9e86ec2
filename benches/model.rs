//! Criterion benches of the model-side hot paths, on the CPU:
//! - a training step (forward, BCE loss, backward, fused Adam) at batch 16,384 on an
//!   ml-latest-small-shaped NeuMF (610 users, 9,724 items, the reference's default layers), with
//!   the MLP's products in the default library (oneDNN on AVX-512 CPUs) and in MKL;
//! - evaluation: scoring and ranking 610 test lists of 101 (HR@10, NDCG@10, the duplicate mask);
//! - an inference batch of 16,384 on an ML-20m-shaped NeuMF (138,493 users, 26,744 items);
//! - a single pair on that model, through libtorch and through `inference::SmallBatchScorer`;
//! - full-ranking evaluation of 610 users x 9,724 items (ml-latest-small shape), NeuMF and MF: the
//!   all-item logits alone (the matrix work), then with the seen-item masks, ranks and metrics
//!   (what `ncf-train --eval full` adds per list set).
//!
//! `cargo bench -p ncf-rs --bench model`

use criterion::{criterion_group, criterion_main, Criterion};
use metrics::{positive_ranks, FullRankSums, SeenItems, TestSeries};
use ncf_model::runtime::CpuMatmul;
use ncf_model::{Mf, MfConfig, Model, NeuMf, NeuMfConfig};
use ncf_train::Adam;
use tch::{Device, Kind, Tensor};

fn training_step(c: &mut Criterion) {
    // As ncf-train does: freed batch-sized tensors stay in the heap (no page faults every step).
    cli_support::keep_freed_memory();
    tch::manual_seed(1);
    let mut model = NeuMf::new(NeuMfConfig::new(610, 9_724), Device::Cpu).expect("model");
    let params: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&params, 0.0045, 0.25, 0.5, 1e-8);
    let users = Tensor::randint(610, [16_384], (Kind::Int64, Device::Cpu));
    let items = Tensor::randint(9_724, [16_384], (Kind::Int64, Device::Cpu));
    let labels = Tensor::randint(2, [16_384, 1], (Kind::Float, Device::Cpu));
    // The default library for the MLP's float32 products (oneDNN on AVX-512 CPUs), then MKL's.
    for choice in [CpuMatmul::Auto, CpuMatmul::Mkl] {
        model.set_cpu_matmul(choice).expect("a choice every CPU runs");
        let name = format!("training step, batch 16384, ml-latest-small shape, {}", choice.engine());
        c.bench_function(&name, |b| {
            b.iter(|| {
                let loss = model.forward(&users, &items).binary_cross_entropy_with_logits::<Tensor>(
                    &labels,
                    None,
                    None,
                    tch::Reduction::Mean,
                );
                loss.backward();
                adam.step(&params, None);
                adam.zero_grad(&params);
            })
        });
    }
}

fn evaluation(c: &mut Criterion) {
    tch::manual_seed(2);
    let mut model = NeuMf::new(NeuMfConfig::new(610, 9_724), Device::Cpu).expect("model");
    model.set_train(false);
    let users = Tensor::arange(610, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(101, 0, None);
    let items = Tensor::randint(9_724, [610 * 101], (Kind::Int64, Device::Cpu));
    let labels = Tensor::zeros([610, 101], (Kind::Float, Device::Cpu));
    let _ = labels.narrow(1, 0, 1).fill_(1.0);
    let series = TestSeries::new(&users, &items, &labels.view([-1]), 101).expect("series");
    c.bench_function("evaluation, 610 lists of 101 (score + HR/NDCG@10)", |b| {
        b.iter(|| {
            let scores = tch::no_grad(|| model.forward_sigmoid(&series.users(), &series.items()));
            series.rank_sums(&scores, 10).expect("rank")
        })
    });
}

fn inference_batch(c: &mut Criterion) {
    tch::manual_seed(3);
    let mut model = NeuMf::new(NeuMfConfig::new(138_493, 26_744), Device::Cpu).expect("model");
    model.set_train(false);
    let users = Tensor::randint(138_493, [16_384], (Kind::Int64, Device::Cpu));
    let items = Tensor::randint(26_744, [16_384], (Kind::Int64, Device::Cpu));
    c.bench_function("inference batch 16384, ML-20m shape", |b| {
        b.iter(|| tch::no_grad(|| model.forward_sigmoid(&users, &items)))
    });
}

fn single_pair(c: &mut Criterion) {
    tch::manual_seed(4);
    let mut model = NeuMf::new(NeuMfConfig::new(138_493, 26_744), Device::Cpu).expect("model");
    model.set_train(false);
    let (user, item) = (Tensor::from_slice(&[4_242i64]), Tensor::from_slice(&[777i64]));
    let threads = tch::get_num_threads();
    tch::set_num_threads(1); // as the benchmark does below 512 pairs
    c.bench_function("one pair, ML-20m shape, libtorch forward", |b| {
        b.iter(|| tch::no_grad(|| model.forward_sigmoid(&user, &item)))
    });
    let scorer = inference::SmallBatchScorer::new(&model).expect("a float32 CPU model");
    let mut out = [0f32; 1];
    c.bench_function("one pair, ML-20m shape, SmallBatchScorer", |b| {
        b.iter(|| scorer.score(&[4_242], &[777], &mut out).expect("ids in range"))
    });
    // Runs even when a filter skips these benches: the ones after it need every thread back.
    tch::set_num_threads(threads);
}

fn full_ranking(c: &mut Criterion) {
    cli_support::keep_freed_memory();
    tch::manual_seed(5);
    let (users, items) = (610i64, 9_724i64);
    // ~100k train pairs, as ml-latest-small has, and one held-out positive per user.
    let seen_users = Tensor::randint(users, [100_000], (Kind::Int64, Device::Cpu));
    let seen_items = Tensor::randint(items, [100_000], (Kind::Int64, Device::Cpu));
    let seen = SeenItems::new(&seen_users, &seen_items, users, items, Device::Cpu).expect("seen");
    let all = Tensor::arange(users, (Kind::Int64, Device::Cpu));
    let positives = Tensor::randint(items, [users], (Kind::Int64, Device::Cpu));
    let mut neumf = NeuMf::new(NeuMfConfig::new(users, items), Device::Cpu).expect("model");
    let mut mf = Mf::new(MfConfig { users, items, factors: 64 }, Device::Cpu).expect("model");
    Model::set_train(&mut neumf, false);
    mf.set_train(false);
    // The trainer's block: about 2^26 floats of intermediate results per pass.
    for (name, model) in [("NeuMF", &neumf as &dyn Model), ("MF", &mf as &dyn Model)] {
        let block = ((1i64 << 26) / (items * model.floats_per_scored_pair())).max(1);
        let side = model.item_side();
        c.bench_function(&format!("full ranking 610 x 9724, {name}: all-item logits only"), |b| {
            b.iter(|| {
                let mut at = 0;
                while at < users {
                    let len = block.min(users - at);
                    let _ = std::hint::black_box(model.all_item_logits(&all.narrow(0, at, len), &side));
                    at += len;
                }
            })
        });
        c.bench_function(&format!("full ranking 610 x 9724, {name}: logits + masks + ranks + metrics"), |b| {
            b.iter(|| {
                let mut sums = FullRankSums::default();
                let mut at = 0;
                while at < users {
                    let len = block.min(users - at);
                    let u = all.narrow(0, at, len);
                    let logits = model.all_item_logits(&u, &side);
                    let ranks =
                        positive_ranks(&logits, &positives.narrow(0, at, len), Some(&seen.mask(&u))).expect("ranks");
                    sums = sums.combine(&FullRankSums::from_ranks(&ranks, 10).expect("sums"));
                    at += len;
                }
                sums
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = training_step, evaluation, inference_batch, single_pair, full_ranking
}
criterion_main!(benches);

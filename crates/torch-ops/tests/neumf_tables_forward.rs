//! `neumf_tables_forward` against the steps it runs (`gather_add_relu`, `onednn_linear_relu` per
//! deeper layer, `neumf_head` or the final linear layer): the same logits up to float summation
//! order for every split of the batch (one run of rows, one per thread, runs of a single row), on
//! one thread and on two, with and without the GMF branch; and its refusals. A test binary of its
//! own, as it changes libtorch's global thread count.

use tch::{Device, Kind, Tensor};
use torch_ops::{
    gather_add_relu, neumf_head, neumf_tables_forward, onednn_f32_available, onednn_linear_relu, TabledMlp,
};

const CPU_F32: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Arithmetic values, about half of them negative (tests share libtorch's generator across threads).
fn wave(rows: i64, cols: i64, step: f64, scale: f64) -> Tensor {
    (Tensor::arange(rows * cols, CPU_F32) * step).sin().view([rows, cols]) * scale
}

/// A NeuMF of the reference's widths (first layer 256, then 128 and 64; GMF 64) over 61 users and
/// 997 items, as its tables and parameters, with parameters that ask for gradients as a trained
/// model's do.
struct Net {
    user_half: Tensor,
    item_half: Tensor,
    layers: Vec<(Tensor, Tensor)>,
    p: Tensor,
    q: Tensor,
    last_gmf: (Tensor, Tensor),
    last_mlp: (Tensor, Tensor),
}

fn net() -> Net {
    let param = |t: Tensor| t.set_requires_grad(true);
    Net {
        user_half: wave(61, 256, 0.37, 1.0),
        item_half: wave(997, 256, 0.11, 1.0),
        layers: vec![
            (param(wave(128, 256, 0.7, 0.2)), param(wave(1, 128, 1.3, 0.1).view([128]))),
            (param(wave(64, 128, 0.3, 0.3)), param(wave(1, 64, 0.9, 0.1).view([64]))),
        ],
        p: param(wave(61, 64, 0.23, 0.3)),
        q: param(wave(997, 64, 0.17, 0.3)),
        last_gmf: (param(wave(1, 128, 0.5, 1.0)), param(Tensor::from_slice(&[0.25f32]))),
        last_mlp: (param(wave(1, 64, 0.5, 1.0)), param(Tensor::from_slice(&[-0.1f32]))),
    }
}

impl Net {
    fn tabled(&self, gmf: bool) -> TabledMlp<'_> {
        let last = if gmf { &self.last_gmf } else { &self.last_mlp };
        TabledMlp {
            user_half: &self.user_half,
            item_half: &self.item_half,
            layers: self.layers.iter().map(|(w, b)| (w, b)).collect(),
            gmf: gmf.then_some((&self.p, &self.q)),
            last: (&last.0, &last.1),
        }
    }

    /// The steps one by one, each on the whole batch.
    fn steps(&self, users: &Tensor, items: &Tensor, gmf: bool) -> Tensor {
        tch::no_grad(|| {
            let mut x = gather_add_relu(&self.user_half, users, &self.item_half, items).unwrap();
            for (w, b) in &self.layers {
                x = onednn_linear_relu(&x, w, b).unwrap();
            }
            match gmf {
                true => neumf_head(&self.p, users, &self.q, items, &x, &self.last_gmf.0, &self.last_gmf.1).unwrap(),
                false => x.linear(&self.last_mlp.0, Some(&self.last_mlp.1)),
            }
        })
    }
}

fn ids(rows: i64, step: i64, n: i64) -> Tensor {
    (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * step).remainder(n)
}

#[test]
fn every_split_gives_the_steps_logits() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear_relu, one of the steps, refuses here");
        return;
    }
    let net = net();
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        for rows in [0i64, 1, 7, 255, 1024, 4097] {
            let (users, items) = (ids(rows, 7, 61), ids(rows, 13, 997));
            for gmf in [true, false] {
                let want = net.steps(&users, &items, gmf);
                // Not a constant: the logits spread over a range (a wrong row would show).
                let spread = if rows == 0 { 0.0 } else { (want.max() - want.min()).double_value(&[]) };
                assert!(rows < 7 || spread > 0.1, "{rows} rows: logits spread only {spread}");
                // One run (rows_per_part past the batch), a run per thread from 128 rows, and a
                // run per thread whatever the batch (a row each for the 1-row batch).
                for rows_per_part in [1i64 << 40, 128, 1] {
                    let got =
                        tch::no_grad(|| neumf_tables_forward(&net.tabled(gmf), &users, &items, rows_per_part)).unwrap();
                    let what = format!("{threads} threads, {rows} rows, gmf {gmf}, runs of >= {rows_per_part}");
                    assert_eq!(got.size(), [rows, 1], "{what}");
                    // Float32 sums of at most 256 products of values below 1 in another order: far
                    // below 1e-4 apart; a row scored with another row's ids would be ~0.1 off.
                    if rows == 0 {
                        continue;
                    }
                    let gap = (&got - &want).abs().max().double_value(&[]);
                    assert!(gap <= 1e-4, "{what}: {gap} from the steps");
                }
            }
        }
    }
}

#[test]
fn a_network_without_deeper_layers_is_the_gather_and_the_head() {
    let mut net = net();
    net.layers.clear();
    // The head's MLP share now reads the 256-wide first layer.
    net.last_gmf.0 = wave(1, 64 + 256, 0.5, 0.3);
    net.last_mlp.0 = wave(1, 256, 0.5, 0.3);
    let (users, items) = (ids(300, 7, 61), ids(300, 13, 997));
    tch::set_num_threads(2);
    for gmf in [true, false] {
        let want = tch::no_grad(|| {
            let x = gather_add_relu(&net.user_half, &users, &net.item_half, &items).unwrap();
            match gmf {
                true => neumf_head(&net.p, &users, &net.q, &items, &x, &net.last_gmf.0, &net.last_gmf.1).unwrap(),
                false => x.linear(&net.last_mlp.0, Some(&net.last_mlp.1)),
            }
        });
        let got = tch::no_grad(|| neumf_tables_forward(&net.tabled(gmf), &users, &items, 128)).unwrap();
        let gap = (&got - &want).abs().max().double_value(&[]);
        assert!(gap <= 1e-4, "gmf {gmf}: {gap}");
    }
}

#[test]
fn refuses_what_the_steps_refuse() {
    let net = net();
    // Two threads, so the bad id below lies in the second thread's run.
    tch::set_num_threads(2);
    let (users, items) = (ids(300, 7, 61), ids(300, 13, 997));
    // Parameters that ask for gradients, in grad mode.
    let err = neumf_tables_forward(&net.tabled(true), &users, &items, 128).expect_err("grad mode").to_string();
    assert!(err.contains("inference only") && err.contains("no_grad"), "{err}");
    // An id out of range, in the second run of rows (a thread of its own), is reported, not read
    // (where the products can run at all: elsewhere their refusal may come first).
    if !onednn_f32_available() {
        return;
    }
    let bad = items.copy();
    let _ = bad.narrow(0, 290, 1).fill_(997);
    let err =
        tch::no_grad(|| neumf_tables_forward(&net.tabled(true), &users, &bad, 128)).expect_err("range").to_string();
    assert!(err.contains("out of range"), "{err}");
    // Vectors of different lengths.
    let err = tch::no_grad(|| neumf_tables_forward(&net.tabled(true), &users, &items.narrow(0, 0, 299), 128))
        .expect_err("lengths")
        .to_string();
    assert!(err.contains("users and items must be [R] of one R"), "{err}");
}

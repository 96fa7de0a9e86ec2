//! `neumf_head`'s backward pass splits the columns among threads, so its sums run over the rows in
//! order whatever the thread count: one thread and two give the same bits. A test binary of its own,
//! as it changes libtorch's global thread count.

use tch::{Device, Kind, Tensor};
use torch_ops::neumf_head;

fn run(threads: i32) -> Vec<Tensor> {
    tch::set_num_threads(threads);
    let opts = (Kind::Float, Device::Cpu);
    let (f, d, rows) = (64, 64, 20_000);
    let leaf = |t: Tensor| t.set_requires_grad(true);
    let p = leaf((Tensor::arange(610 * f, opts) * 0.37).sin().view([610, f]));
    let q = leaf((Tensor::arange(9_000 * f, opts) * 0.11).cos().view([9_000, f]));
    let h = leaf((Tensor::arange(rows * d, opts) * 0.013).sin().view([rows, d]));
    let w = leaf((Tensor::arange(f + d, opts) * 0.7).cos().view([1, f + d]));
    let b = leaf(Tensor::from_slice(&[0.1f32]));
    let users = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 7).remainder(610);
    let items = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 13).remainder(9_000);
    let y = neumf_head(&p, &users, &q, &items, &h, &w, &b).unwrap();
    let dy = (Tensor::arange(rows, opts) * 0.29).sin().view([-1, 1]);
    let mut out = Tensor::run_backward(&[(&y * dy).sum(Kind::Float)], &[&p, &q, &h, &w, &b], false, false);
    out.push(y.detach());
    out
}

#[test]
fn one_thread_and_two_give_the_same_bits() {
    let (one, two) = (run(1), run(2));
    for (name, (a, b)) in ["p", "q", "h", "w", "b", "logits"].iter().zip(one.iter().zip(&two)) {
        assert!(a.equal(b), "{name} differs between 1 and 2 threads");
    }
}

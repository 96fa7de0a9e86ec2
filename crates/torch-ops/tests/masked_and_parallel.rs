//! `masked_by` (an output computed outside autograd made differentiable as `x * mask`) against
//! libtorch's own product, and `parallel_for` covering its range exactly once on libtorch's pool.

use std::sync::atomic::{AtomicU32, Ordering};
use tch::{Device, Kind, Tensor};
use torch_ops::{masked_by, parallel_for};

#[test]
fn masked_by_has_the_products_value_and_gradient() {
    let x = (Tensor::arange(600, (Kind::Float, Device::Cpu)) * 0.13).sin().view([20, 30]).set_requires_grad(true);
    let mask = (Tensor::arange(600, (Kind::Float, Device::Cpu)).remainder(3.0).eq(0.0).to_kind(Kind::Float) * 1.5)
        .view([20, 30]);
    let out = tch::no_grad(|| &x * &mask);
    let y = masked_by(&x, &out, &mask).unwrap();
    assert!(y.equal(&out));
    assert!(y.requires_grad(), "a node of the graph, not a constant");
    // Through a further operation, against libtorch's product and its autograd.
    let dy = (Tensor::arange(600, (Kind::Float, Device::Cpu)) * 0.7).cos().view([20, 30]);
    let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Float)], &[&x], false, false).remove(0);
    let plain = &x * &mask;
    let g_plain = Tensor::run_backward(&[(&plain * &dy).sum(Kind::Float)], &[&x], false, false).remove(0);
    assert!(g.equal(&g_plain));
    // Without gradients, the output itself.
    let frozen = x.detach();
    assert!(masked_by(&frozen, &out, &mask).unwrap().equal(&out));
    let err = masked_by(&x, &out.view([30, 20]), &mask).unwrap_err().to_string();
    assert!(err.contains("must have one shape"), "{err}");
}

#[test]
fn parallel_for_covers_every_index_once() {
    for (n, grain) in [(1_000_003i64, 4096i64), (5, 1), (5, 100), (0, 10)] {
        let seen: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        parallel_for(n, grain, |begin, end| {
            assert!(0 <= begin && begin < end && end <= n);
            for i in begin..end {
                seen[i as usize].fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "n {n} grain {grain}");
    }
}

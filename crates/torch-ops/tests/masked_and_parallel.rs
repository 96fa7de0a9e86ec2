//! `masked_by` (an output computed outside autograd made differentiable as `x * mask`) against
//! libtorch's own product, `masked_by_keep` (the same with a byte mask) against `masked_by`, and `parallel_for` covering its range exactly once on libtorch's pool.

use std::sync::atomic::{AtomicU32, Ordering};
use tch::{Device, Kind, Tensor};
use torch_ops::{masked_by, masked_by_keep, parallel_for};

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
fn masked_by_keep_gives_the_float_masks_gradient_bit_for_bit() {
    // 300k elements: several pieces of the backward pass's parallel loop. The upstream gradient
    // holds negatives, zeros and a NaN, so signs of zero and NaNs must come out as the float
    // mask's product makes them.
    let n = 300_000i64;
    let x = (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.13).sin().view([1000, 300]).set_requires_grad(true);
    let keep = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3).ne(0).to_kind(Kind::Uint8).view([1000, 300]);
    let mask = keep.to_kind(Kind::Float) * 2.0;
    let out = tch::no_grad(|| &x * &mask);
    let y = masked_by_keep(&x, &out, &keep, 2.0).unwrap();
    assert!(y.equal(&out));
    assert!(y.requires_grad(), "a node of the graph, not a constant");
    let dy = (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7).cos().view([1000, 300]);
    let dy = dy.where_self(
        &Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(7).ne(0).view([1000, 300]),
        &Tensor::from(0f32),
    );
    let _ = dy.get(0).get(1).fill_(f64::NAN);
    let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Float)], &[&x], false, false).remove(0);
    let by_float = masked_by(&x, &out, &mask).unwrap();
    let g_float = Tensor::run_backward(&[(&by_float * &dy).sum(Kind::Float)], &[&x], false, false).remove(0);
    let bits =
        |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&g), bits(&g_float));
    // Refusals: a float keep, a shape mismatch.
    let err = masked_by_keep(&x, &out, &mask, 2.0).unwrap_err().to_string();
    assert!(err.contains("uint8"), "{err}");
    let err = masked_by_keep(&x, &out.view([300, 1000]), &keep, 2.0).unwrap_err().to_string();
    assert!(err.contains("one shape"), "{err}");
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

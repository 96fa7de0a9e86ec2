//! Moving a linear layer's bias out of its oneDNN product and into the pass after it (the dropout
//! pass, `masked_by_keep_with_bias`; the first layer's gather, `gather_add_with_bias`) changes no
//! bit: oneDNN's product with the bias inside is `acc + b`, and the bias gradient is the same row
//! sum. Skipped (with a note) on a CPU without AVX-512, where `onednn_linear` refuses by design.

use tch::{Device, Kind, Tensor};
use torch_ops::{
    gather_add, gather_add_with_bias, masked_by_keep, masked_by_keep_with_bias, onednn_f32_available, onednn_linear,
};

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.reshape([-1])).unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Arithmetic values (tests share libtorch's generator across threads).
fn values(n: i64, step: f64, shape: &[i64]) -> Tensor {
    (Tensor::arange(n, (Kind::Float, Device::Cpu)) * step).sin().view(shape)
}

#[test]
fn onednn_with_the_bias_inside_is_the_product_plus_the_bias() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear refuses here");
        return;
    }
    for (n, k, m) in [(16384, 256, 128), (16384, 128, 64), (7000, 128, 256), (333, 77, 19)] {
        let x = values(n * k, 0.37, &[n, k]);
        let w = values(m * k, 0.11, &[m, k]) * 0.1;
        let b = values(m, 0.7, &[m]);
        let inside = onednn_linear(&x, &w, Some(&b)).unwrap();
        let after = onednn_linear(&x, &w, None).unwrap() + &b;
        assert_eq!(bits(&inside), bits(&after), "{n}x{k} -> {m}");
    }
}

#[test]
fn bias_in_the_mask_pass_equals_the_bias_in_the_product_bit_for_bit() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear refuses here");
        return;
    }
    let (n, k, m) = (4096i64, 256i64, 128i64);
    let leaf = |t: Tensor| t.set_requires_grad(true);
    let x = leaf(values(n * k, 0.37, &[n, k]));
    let w = leaf(values(m * k, 0.11, &[m, k]) * 0.1);
    let b = leaf(values(m, 0.7, &[m]));
    // Keep two of three elements, and only where the pre-activation is positive (ReLU folded in).
    let pattern = Tensor::arange(n * m, (Kind::Int64, Device::Cpu)).remainder(3).ne(0).view([n, m]);
    let dy = values(n * m, 0.29, &[n, m]);
    let grads = |y: &Tensor| Tensor::run_backward(&[(y * &dy).sum(Kind::Float)], &[&x, &w, &b], false, false);

    // The bias inside the product, then the mask.
    let z = onednn_linear(&x, &w, Some(&b)).unwrap();
    let keep = tch::no_grad(|| pattern.logical_and(&z.gt(0.0)).to_kind(Kind::Uint8));
    let out = tch::no_grad(|| &z * keep.to_kind(Kind::Float) * 2.0);
    let inside = masked_by_keep(&z, &out, &keep, 2.0).unwrap();
    // The product alone, the bias added where the mask is applied.
    let z0 = onednn_linear(&x, &w, None).unwrap();
    let out0 = tch::no_grad(|| (&z0 + &b) * keep.to_kind(Kind::Float) * 2.0);
    let moved = masked_by_keep_with_bias(&z0, &b, &out0, &keep, 2.0).unwrap();

    assert_eq!(bits(&inside), bits(&moved), "outputs");
    for (name, (g1, g2)) in ["x", "w", "b"].iter().zip(grads(&inside).iter().zip(&grads(&moved))) {
        assert_eq!(bits(g1), bits(g2), "gradient of {name}");
    }
}

#[test]
fn bias_in_the_gather_equals_the_bias_in_the_item_product_bit_for_bit() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear refuses here");
        return;
    }
    // The first layer per distinct id: a user side without bias, an item side with it.
    let (users, items, rows, k, m) = (61i64, 1_000i64, 16_384i64, 128i64, 256i64);
    let leaf = |t: Tensor| t.set_requires_grad(true);
    let eu = leaf(values(users * k, 0.37, &[users, k]));
    let ei = leaf(values(items * k, 0.13, &[items, k]));
    let wu = leaf(values(m * k, 0.11, &[m, k]) * 0.1);
    let wi = leaf(values(m * k, 0.23, &[m, k]) * 0.1);
    let b = leaf(values(m, 0.7, &[m]));
    let au = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 7).remainder(users);
    let ai = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 13).remainder(items);
    let dy = values(rows * m, 0.29, &[rows, m]);
    let grads =
        |y: &Tensor| Tensor::run_backward(&[(y * &dy).sum(Kind::Float)], &[&eu, &ei, &wu, &wi, &b], false, false);

    // Each graph its own user product (a backward pass frees what its graph saved).
    let zu = || onednn_linear(&eu, &wu, None).unwrap();
    let inside = gather_add(&zu(), &au, &onednn_linear(&ei, &wi, Some(&b)).unwrap(), &ai).unwrap();
    let moved = gather_add_with_bias(&zu(), &au, &onednn_linear(&ei, &wi, None).unwrap(), &ai, &b).unwrap();
    assert_eq!(bits(&inside), bits(&moved), "outputs");
    let names = ["user embeddings", "item embeddings", "user weights", "item weights", "bias"];
    for (name, (g1, g2)) in names.iter().zip(grads(&inside).iter().zip(&grads(&moved))) {
        assert_eq!(bits(g1), bits(g2), "gradient of the {name}");
    }
    let err = gather_add_with_bias(&zu(), &au, &zu(), &au, &b.narrow(0, 0, 5)).unwrap_err().to_string();
    assert!(err.contains("float32 CPU [W]"), "{err}");
}

#[test]
fn refuses_a_bias_of_the_wrong_width_or_kind() {
    let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let keep = Tensor::ones([4, 3], (Kind::Uint8, Device::Cpu));
    let wide = Tensor::zeros([4], (Kind::Float, Device::Cpu));
    let err = masked_by_keep_with_bias(&x, &wide, &x, &keep, 2.0).unwrap_err().to_string();
    assert!(err.contains("bias [W]"), "{err}");
    let double = Tensor::zeros([3], (Kind::Double, Device::Cpu));
    let err = masked_by_keep_with_bias(&x, &double, &x, &keep, 2.0).unwrap_err().to_string();
    assert!(err.contains("float32"), "{err}");
    // The mask is checked as masked_by_keep checks it.
    let b = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    let err = masked_by_keep_with_bias(&x, &b, &x, &keep.to_kind(Kind::Float), 2.0).unwrap_err().to_string();
    assert!(err.contains("uint8"), "{err}");
}

//! The oneDNN linear layer against libtorch's own (`F.linear`, MKL's sgemm) in float64: values and
//! the three gradients, with and without a bias, on shapes of NeuMF's MLP and odd ones; and its
//! refusals. Skipped (with a note) on a CPU without AVX-512, where it refuses by design.

use tch::{Device, Kind, Tensor};
use torch_ops::{onednn_f32_available, onednn_linear};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Largest |a - b| relative to the largest |b|.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    max_abs(a, b) / b.to_kind(Kind::Double).abs().max().double_value(&[]).max(1e-30)
}

#[test]
fn values_and_gradients_equal_the_float64_linear_layer() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear refuses here (tested below)");
        return;
    }
    tch::manual_seed(7);
    // NeuMF's layers at a training batch, a per-distinct-id first layer, and shapes with tails.
    for &(n, fan_in, fan_out, bias) in
        &[(16384, 256, 128, true), (4096, 128, 64, true), (611, 128, 256, false), (37, 13, 5, true), (1, 3, 1, true)]
    {
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([n, fan_in], opts).set_requires_grad(true);
        let w = (Tensor::randn([fan_out, fan_in], opts) * 0.1).set_requires_grad(true);
        let b = bias.then(|| Tensor::randn([fan_out], opts).set_requires_grad(true));
        let dy = Tensor::randn([n, fan_out], opts);

        let b_before = b.as_ref().map(|b| b.detach().copy());
        let y = onednn_linear(&x, &w, b.as_ref()).unwrap();
        assert_eq!(y.size(), [n, fan_out]);
        // The bias is the product's starting value, copied: never overwritten (with one row, a
        // `contiguous()` view of it would have been).
        if let (Some(b), Some(before)) = (&b, &b_before) {
            assert!(b.detach().equal(before), "the bias changed, {n} rows");
        }
        assert_eq!(y.kind(), Kind::Float);
        let mut inputs = vec![x.shallow_clone(), w.shallow_clone()];
        inputs.extend(b.iter().map(|b| b.shallow_clone()));
        let grads = Tensor::run_backward(&[(&y * &dy).sum(Kind::Float)], &inputs, false, false);

        // The oracle: the same layer in float64 through libtorch's own linear and autograd.
        let x64 = x.detach().to_kind(Kind::Double).set_requires_grad(true);
        let w64 = w.detach().to_kind(Kind::Double).set_requires_grad(true);
        let b64 = b.as_ref().map(|b| b.detach().to_kind(Kind::Double).set_requires_grad(true));
        let y64 = x64.linear(&w64, b64.as_ref());
        let mut inputs64 = vec![x64.shallow_clone(), w64.shallow_clone()];
        inputs64.extend(b64.iter().map(|b| b.shallow_clone()));
        let grads64 =
            Tensor::run_backward(&[(&y64 * dy.to_kind(Kind::Double)).sum(Kind::Double)], &inputs64, false, false);

        // float32 rounding over sums of up to 16,384 terms; a wrong operand or transpose is O(1).
        let what = format!("n={n} in={fan_in} out={fan_out} bias={bias}");
        assert!(rel(&y, &y64) < 1e-5, "values, {what}: {}", rel(&y, &y64));
        for (k, name) in ["dx", "dw", "db"].iter().enumerate().take(grads.len()) {
            let r = rel(&grads[k], &grads64[k]);
            assert!(r < 1e-5, "{name}, {what}: {r}");
        }
        // And as close to float64 as libtorch's own float32 layer is, within a small factor.
        let y_mkl = x.detach().linear(&w.detach(), b.as_ref().map(|b| b.detach()).as_ref());
        assert!(max_abs(&y, &y64) <= 4.0 * max_abs(&y_mkl, &y64) + 1e-6, "{what}");
    }
}

#[test]
fn a_bias_free_layer_gets_no_bias_gradient_and_frozen_inputs_none() {
    if !onednn_f32_available() {
        return;
    }
    let x = Tensor::randn([64, 8], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([4, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let y = onednn_linear(&x, &w, None).unwrap();
    y.sum(Kind::Float).backward();
    // dw = dy^T x with dy all ones: every row of dw is the column sums of x.
    let expected = x.sum_dim_intlist(0, false, Kind::Float).unsqueeze(0).expand([4, 8], false);
    assert!(max_abs(&w.grad(), &expected) < 1e-4);
    assert!(!x.grad().defined());
}

#[test]
fn refuses_what_it_cannot_compute() {
    let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));
    let cases = [
        ("double input", x.to_kind(Kind::Double), w.shallow_clone(), None),
        ("inner sizes differ", x.shallow_clone(), Tensor::randn([2, 4], (Kind::Float, Device::Cpu)), None),
        (
            "bias of the wrong size",
            x.shallow_clone(),
            w.shallow_clone(),
            Some(Tensor::zeros([3], (Kind::Float, Device::Cpu))),
        ),
        ("3-D input", x.view([2, 2, 3]), w.shallow_clone(), None),
    ];
    for (what, x, w, b) in cases {
        let err = onednn_linear(&x, &w, b.as_ref()).expect_err(what).to_string();
        let expected = if onednn_f32_available() { "needs float32 CPU tensors" } else { "lacks AVX-512" };
        assert!(err.contains(expected), "{what}: {err}");
    }
}

//! The oneDNN linear layer against libtorch's own (`F.linear`, MKL's sgemm) in float64: values and
//! the three gradients, with and without a bias, on shapes of NeuMF's MLP and odd ones; and its
//! refusals. Skipped (with a note) on a CPU without AVX-512, where it refuses by design.

use tch::{Device, Kind, Tensor};
use torch_ops::{onednn_f32_available, onednn_linear};

/// [`test_support::within_f32_rounding`] on tensors.
fn within(what: &str, got: &Tensor, exact: &Tensor, magnitude: &Tensor, stages: u32, k: u64) -> Result<f64, String> {
    let values = |t: &Tensor| Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).unwrap();
    assert_eq!(got.size(), exact.size(), "{what}: shapes");
    test_support::within_f32_rounding(what, &values(got), &values(exact), &values(magnitude), stages, k)
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

        // Each within float32's rounding bound of float64's, whatever kernels the CPU gets: a
        // sum of K products is off by at most gamma_K times the sum of their absolute values
        // (test_support::f32_gamma); a wrong operand, transpose or missing row is far outside.
        let what = format!("n={n} in={fan_in} out={fan_out} bias={bias}");
        let abs64 = |t: &Tensor| t.detach().to_kind(Kind::Double).abs();
        let (x_abs, w_abs, dy_abs) = (abs64(&x), abs64(&w), abs64(&dy));
        let mut y_magnitude = x_abs.matmul(&w_abs.tr());
        if let Some(b) = &b {
            y_magnitude += abs64(b);
        }
        let magnitudes =
            [dy_abs.matmul(&w_abs), dy_abs.tr().matmul(&x_abs), dy_abs.sum_dim_intlist(0, false, Kind::Double)];
        let terms = [fan_out, n, n];
        within(&format!("values, {what}"), &y, &y64, &y_magnitude, 1, fan_in as u64 + 1)
            .unwrap_or_else(|e| panic!("{e}"));
        for (k, name) in ["dx", "dw", "db"].iter().enumerate().take(grads.len()) {
            let check = format!("{name}, {what}");
            within(&check, &grads[k], &grads64[k], &magnitudes[k], 1, terms[k] as u64)
                .unwrap_or_else(|e| panic!("{e}"));
        }
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
    let column_sums = |t: Tensor| t.sum_dim_intlist(0, false, Kind::Double).unsqueeze(0).expand([4, 8], false);
    let expected = column_sums(x.to_kind(Kind::Double));
    within("dw", &w.grad(), &expected, &column_sums(x.abs()), 1, 64).unwrap_or_else(|e| panic!("{e}"));
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

//! The two inference-only fusions, `gather_add_relu` and `onednn_linear_relu`, against the libtorch
//! steps they replace: the same values bit for bit, on NeuMF's shapes and odd ones, on one thread
//! and on several (the element-wise pass splits a large batch), and their refusals (gradients
//! asked for, kinds, shapes, ids out of range).

use tch::{Device, Kind, Tensor};
use torch_ops::{gather_add_relu, onednn_f32_available, onednn_linear, onednn_linear_relu};

const CPU_F32: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Arithmetic values, half of them negative (tests share libtorch's generator across threads).
fn wave(rows: i64, cols: i64, step: f64) -> Tensor {
    (Tensor::arange(rows * cols, CPU_F32) * step).sin().view([rows, cols])
}

#[test]
fn gather_add_relu_equals_the_three_steps_bit_for_bit() {
    let (a, b) = (wave(37, 256, 0.37), wave(1000, 256, 0.11) * 0.9);
    for rows in [1i64, 7, 1024, 16_384] {
        let ia = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 7).remainder(37);
        let ib = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 13).remainder(1000);
        let ours = tch::no_grad(|| gather_add_relu(&a, &ia, &b, &ib)).unwrap();
        let theirs = (a.index_select(0, &ia) + b.index_select(0, &ib)).relu();
        assert!(ours.equal(&theirs), "{rows} rows");
        // Not trivially equal: some sums were negative and are now zero.
        let zeros = ours.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(zeros > 0 && zeros < rows * 256, "{rows} rows: {zeros} zeros");
    }
    // NaN stays NaN, as in torch.relu.
    let nan = Tensor::from_slice(&[f32::NAN, -1.0, 2.0]).view([1, 3]);
    let idx = Tensor::from_slice(&[0i64]);
    let got = Vec::<f32>::try_from(gather_add_relu(&nan, &idx, &nan.zeros_like(), &idx).unwrap().view([-1])).unwrap();
    assert!(got[0].is_nan() && got[1] == 0.0 && got[2] == 2.0, "{got:?}");
}

#[test]
fn onednn_linear_relu_equals_the_linear_layer_and_relu_bit_for_bit() {
    if !onednn_f32_available() {
        eprintln!("skipped: this CPU lacks AVX-512; onednn_linear_relu refuses here (tested below)");
        return;
    }
    // NeuMF's second and third layers at scoring batches (one row; 1,024; a batch large enough
    // for the element-wise pass to split across threads), and shapes with tails.
    for &(n, fan_in, fan_out) in &[(1, 256, 128), (1024, 256, 128), (1024, 128, 64), (16_384, 128, 64), (37, 13, 5)] {
        let x = wave(n, fan_in, 0.013).relu();
        let w = wave(fan_out, fan_in, 0.7) * 0.1;
        let b = wave(1, fan_out, 1.3).view([fan_out]) * 0.05;
        let ours = tch::no_grad(|| onednn_linear_relu(&x, &w, &b)).unwrap();
        let theirs = tch::no_grad(|| onednn_linear(&x, &w, Some(&b))).unwrap().relu();
        assert_eq!(ours.size(), [n, fan_out]);
        assert!(ours.equal(&theirs), "{n} x {fan_in} -> {fan_out}");
        let zeros = ours.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(zeros > 0 && zeros < n * fan_out, "{n} x {fan_in} -> {fan_out}: {zeros} zeros");
        // And against the layer in float64, within float32's rounding bound of a sum of fan_in
        // products plus the bias (relu moves no value further apart), whatever kernels the CPU gets.
        let f64s = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let (x64, w64, b64) = (x.to_kind(Kind::Double), w.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let exact = x64.linear(&w64, Some(&b64)).relu();
        let magnitude = x64.abs().matmul(&w64.abs().tr()) + b64.abs();
        let what = format!("{n} x {fan_in} -> {fan_out} against float64");
        test_support::within_f32_rounding(&what, &f64s(&ours), &f64s(&exact), &f64s(&magnitude), 1, fan_in as u64 + 1)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn both_refuse_inputs_that_want_gradients_and_bad_shapes() {
    let a = Tensor::ones([4, 8], CPU_F32).set_requires_grad(true);
    let idx = Tensor::from_slice(&[0i64, 3, 1]);
    let err = gather_add_relu(&a, &idx, &a, &idx).expect_err("grad mode").to_string();
    assert!(err.contains("inference only") && err.contains("no_grad"), "{err}");
    // Under no_grad the same call is fine.
    assert_eq!(tch::no_grad(|| gather_add_relu(&a, &idx, &a, &idx)).unwrap().size(), [3, 8]);
    let b = Tensor::ones([4, 8], CPU_F32);
    let out_of_range = gather_add_relu(&b, &Tensor::from_slice(&[0i64, 4]), &b, &idx.narrow(0, 0, 2));
    assert!(out_of_range.expect_err("out of range").to_string().contains("out of range at row 1"));

    let (x, w, bias) = (Tensor::ones([4, 3], CPU_F32), Tensor::ones([2, 3], CPU_F32), Tensor::zeros([2], CPU_F32));
    let cases = [
        (
            "needs a gradient",
            onednn_linear_relu(&x, &Tensor::ones([2, 3], CPU_F32).set_requires_grad(true), &bias),
            "inference only",
        ),
        ("double input", onednn_linear_relu(&x.to_kind(Kind::Double), &w, &bias), "float32 CPU"),
        ("inner sizes differ", onednn_linear_relu(&x, &Tensor::ones([2, 4], CPU_F32), &bias), "needs x [N, in]"),
        ("bias of the wrong size", onednn_linear_relu(&x, &w, &Tensor::zeros([3], CPU_F32)), "needs x [N, in]"),
    ];
    for (what, result, expected) in cases {
        let err = result.expect_err(what).to_string();
        let expected = if onednn_f32_available() { expected } else { "lacks AVX-512" };
        assert!(err.contains(expected), "{what}: {err}");
    }
}

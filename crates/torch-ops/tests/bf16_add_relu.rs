//! `bf16_add_relu` against libtorch's own steps, `(a.float() + u).relu().bfloat16()`: the same
//! bits (a NaN for a NaN) on NeuMF's all-item block shape and odd ones, including values whose sum lands exactly
//! halfway between two bfloat16 numbers (round to even), NaN, infinities and negative zero; and
//! its refusals; and `bf16_rows_dot` against the float64 product. Runs on any CPU (plain float32
//! arithmetic and bit operations).

use tch::{Device, Kind, Tensor};
use torch_ops::{bf16_add_relu, bf16_rows_dot};

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

fn oracle(a: &Tensor, u: &Tensor) -> Tensor {
    (a.to_kind(Kind::Float) + u).relu().to_kind(Kind::BFloat16)
}

/// The raw bits of a bfloat16 tensor, every NaN as one value (libtorch's conversions keep a
/// NaN's payload and sign, ours writes the quiet NaN 0x7FC0: both NaN, not the same bits).
fn bits(t: &Tensor) -> Vec<i16> {
    let raw = Vec::<i16>::try_from(t.view_dtype(Kind::Int16).flatten(0, -1)).unwrap();
    let nan = Vec::<bool>::try_from(t.isnan().flatten(0, -1)).unwrap();
    raw.into_iter().zip(nan).map(|(b, n)| if n { 0x7FC0 } else { b }).collect()
}

#[test]
fn equals_libtorchs_add_relu_and_rounding_bit_for_bit() {
    tch::manual_seed(5);
    for &(n, w) in &[(8192i64, 256i64), (4096, 256), (37, 13), (1, 1), (3, 17)] {
        let a = (Tensor::randn([n, w], F32) * 2.0).to_kind(Kind::BFloat16);
        let u = Tensor::randn([w], F32);
        let got = tch::no_grad(|| bf16_add_relu(&a, &u)).unwrap();
        assert_eq!(got.size(), [n, w]);
        assert_eq!(got.kind(), Kind::BFloat16);
        assert_eq!(bits(&got), bits(&oracle(&a, &u)), "{n} x {w}");
        // Not trivially zero or trivially positive.
        let zeros = got.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(zeros > 0 && zeros < n * w || n * w < 4, "{n} x {w}: {zeros} zeros");
    }
}

#[test]
fn rounds_ties_to_even_and_keeps_nan_and_infinities() {
    // 1 + 2^-8 lies halfway between bfloat16's 1 and 1 + 2^-7: even is 1. 1 + 3 * 2^-8 lies halfway
    // between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6. Then just above a tie, NaN, +inf, -inf
    // (relu: 0), -0 + -0 (relu keeps -0: it is not below 0), and a sum that overflows float32's
    // range to +inf. Repeated over 50 columns so the 16-wide vector loop sees each case, and its
    // tail too.
    let a0 = [1.0f32, 1.0, 1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 3.0e38, -1.0, 0.5];
    let u0 =
        [2f32.powi(-8), 3.0 * 2f32.powi(-8), 2f32.powi(-8) + 2f32.powi(-12), 0.0, 1.0, 1.0, -0.0, 3.0e38, 0.5, 0.25];
    let (a0, u0): (Vec<f32>, Vec<f32>) =
        (a0.iter().cycle().take(50).copied().collect(), u0.iter().cycle().take(50).copied().collect());
    let a = Tensor::from_slice(&a0).view([1, 50]).to_kind(Kind::BFloat16);
    let u = Tensor::from_slice(&u0);
    let got = bf16_add_relu(&a, &u).unwrap();
    assert_eq!(bits(&got), bits(&oracle(&a, &u)));
    let v = Vec::<f32>::try_from(got.to_kind(Kind::Float).view([-1])).unwrap();
    for at in (0..50).step_by(10) {
        assert_eq!(v[at], 1.0);
        assert_eq!(v[at + 1], 1.0 + 2f32.powi(-6));
        assert_eq!(v[at + 2], 1.0 + 2f32.powi(-7));
        assert!(v[at + 3].is_nan());
        assert_eq!((v[at + 4], v[at + 5], v[at + 7], v[at + 8]), (f32::INFINITY, 0.0, f32::INFINITY, 0.0));
        assert!(v[at + 6] == 0.0 && v[at + 6].is_sign_negative(), "-0 + -0 stays -0");
    }
}

#[test]
fn refuses_other_kinds_shapes_and_gradients() {
    let a = Tensor::zeros([4, 8], (Kind::BFloat16, Device::Cpu));
    let u = Tensor::zeros([8], F32);
    let cases = [
        (bf16_add_relu(&a.to_kind(Kind::Float), &u), "a must be bfloat16"),
        (bf16_add_relu(&a, &u.to_kind(Kind::BFloat16)), "u float32"),
        (bf16_add_relu(&a, &Tensor::zeros([7], F32)), "needs a [N, W] and u [W]"),
        (bf16_add_relu(&a.view([32]), &u), "needs a [N, W] and u [W]"),
        (bf16_add_relu(&a, &u.set_requires_grad(true)), "inference only"),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        let err = got.expect_err("refused").to_string();
        assert!(err.contains(want), "case {i}: {err}");
    }
    // A view that is not contiguous is read as it is.
    let wide = (Tensor::arange(64, F32) - 30.0).view([8, 8]).to_kind(Kind::BFloat16);
    let t = wide.tr();
    let got = tch::no_grad(|| bf16_add_relu(&t, &u)).unwrap();
    assert_eq!(bits(&got), bits(&oracle(&t, &u)));
}

#[test]
fn rows_dot_equals_the_float32_product_up_to_summation_order() {
    tch::manual_seed(9);
    // NeuMF's last hidden layer (64 wide) at an all-item block, and widths with tails.
    for &(n, d) in &[(8192i64, 64i64), (37, 13), (5, 17), (3, 1), (2, 48)] {
        let x = Tensor::randn([n, d], F32).relu().to_kind(Kind::BFloat16);
        let w = Tensor::randn([d], F32);
        let got = tch::no_grad(|| bf16_rows_dot(&x, &w)).unwrap();
        assert_eq!((got.size(), got.kind()), (vec![n], Kind::Float));
        // Exact in float64 (bfloat16 times float32 is exact there); float32 sums of d products
        // round by at most d * 2^-24 of the sum of magnitudes each.
        let (x64, w64) = (x.to_kind(Kind::Double), w.to_kind(Kind::Double));
        let exact = Vec::<f64>::try_from(x64.matmul(&w64)).unwrap();
        let magnitude = Vec::<f64>::try_from(x64.abs().matmul(&w64.abs())).unwrap();
        let got = Vec::<f64>::try_from(got.to_kind(Kind::Double)).unwrap();
        for (r, ((g, e), m)) in got.iter().zip(&exact).zip(&magnitude).enumerate() {
            assert!((g - e).abs() <= m * d as f64 * 2f64.powi(-23) + 1e-30, "{n} x {d}, row {r}: {g} vs {e}");
        }
    }
    let err = bf16_rows_dot(&Tensor::zeros([2, 3], F32), &Tensor::zeros([3], F32)).expect_err("kind").to_string();
    assert!(err.contains("x must be bfloat16"), "{err}");
    let x = Tensor::zeros([2, 3], (Kind::BFloat16, Device::Cpu));
    let err = bf16_rows_dot(&x, &Tensor::zeros([4], F32)).expect_err("shape").to_string();
    assert!(err.contains("needs x [N, D] and w [D]"), "{err}");
}

//! The bfloat16 linear-relu (oneDNN, bias and relu fused) against the same layer in float64 on the
//! bfloat16 inputs: only the output's rounding to bfloat16 and float32 accumulation apart. Skipped
//! (with a note) on a CPU without AVX512-BF16, where it refuses by design (tested below).

use tch::{Device, Kind, Tensor};
use torch_ops::{bf16_available, bf16_linear_relu};

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn equals_the_float64_layer_to_bfloat16_rounding() {
    if !bf16_available() {
        eprintln!("skipped: this CPU lacks AVX512-BF16; bf16_linear_relu refuses here (tested below)");
        return;
    }
    tch::manual_seed(11);
    // NeuMF's all-item blocks (first layer from the item embeddings, then the two hidden layers)
    // and shapes with tails.
    for &(n, fan_in, fan_out) in &[(4096, 128, 256), (4096, 256, 128), (4096, 128, 64), (37, 13, 5), (1, 3, 1)] {
        let bf = (Kind::BFloat16, Device::Cpu);
        let x = Tensor::randn([n, fan_in], (Kind::Float, Device::Cpu)).to_kind(bf.0);
        let w = (Tensor::randn([fan_out, fan_in], (Kind::Float, Device::Cpu)) * 0.1).to_kind(bf.0);
        let b = Tensor::randn([fan_out], (Kind::Float, Device::Cpu)).to_kind(bf.0);
        let y = tch::no_grad(|| bf16_linear_relu(&x, &w, &b)).unwrap();
        assert_eq!(y.size(), [n, fan_out]);
        assert_eq!(y.kind(), Kind::BFloat16);
        // The oracle: bfloat16 values are exact in float64.
        let (x64, w64, b64) = (x.to_kind(Kind::Double), w.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let exact = x64.linear(&w64, Some(&b64)).relu();
        let magnitude = x64.abs().linear(&w64.abs(), Some(&b64.abs()));
        let (got, exact, magnitude) = (values(&y), values(&exact), values(&magnitude));
        let mut zeros = 0;
        for (j, ((g, e), m)) in got.iter().zip(&exact).zip(&magnitude).enumerate() {
            // Rounding to bfloat16 (8 significant bits: half an ulp is 2^-9 relative) and float32
            // sums of at most fan_in + 1 terms (each rounding at most 2^-24 of the magnitude).
            let tolerance = e.abs() * 2f64.powi(-8) + m * (fan_in as f64 + 1.0) * 2f64.powi(-23) + 1e-30;
            assert!(
                (g - e).abs() <= tolerance,
                "[{n}, {fan_in}] -> {fan_out}, element {j}: {g} against {e} (tolerance {tolerance:e})"
            );
            zeros += usize::from(*e == 0.0);
        }
        // The relu did something: about half the outputs are clipped.
        if n * fan_out >= 1000 {
            assert!(zeros > got.len() / 4 && zeros < got.len() * 3 / 4, "{zeros} zeros of {}", got.len());
        }
    }
}

#[test]
fn refuses_what_it_cannot_run() {
    let bf = (Kind::BFloat16, Device::Cpu);
    let x = Tensor::ones([4, 3], bf);
    let w = Tensor::ones([2, 3], bf);
    let b = Tensor::ones([2], bf);
    if !bf16_available() {
        let e = bf16_linear_relu(&x, &w, &b).unwrap_err().to_string();
        assert!(e.contains("lacks bfloat16"), "{e}");
        return;
    }
    let float = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
    let e = tch::no_grad(|| bf16_linear_relu(&float, &w, &b)).unwrap_err().to_string();
    assert!(e.contains("must be bfloat16 CPU tensors"), "{e}");
    let e = tch::no_grad(|| bf16_linear_relu(&x, &Tensor::ones([2, 4], bf), &b)).unwrap_err().to_string();
    assert!(e.contains("needs x [N, in], w [out, in] and b [out]"), "{e}");
    let trained = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16).set_requires_grad(true);
    let e = bf16_linear_relu(&x, &trained, &b).unwrap_err().to_string();
    assert!(e.contains("inference only"), "{e}");
}

//! Dropout on the CPU without libtorch's Bernoulli sampler.
//!
//! Why: libtorch draws dropout masks on the CPU one element at a time from a single generator
//! (`bernoulli_` runs serially); profiling a CPU training step on ml-latest-small put 28% of the
//! time there. Here each mask element is a counter-based hash of (key, call, index), so elements
//! are independent of each other and the loop runs in 32-bit SIMD lanes on the calling thread (a
//! mask of 4M elements takes about a millisecond; a thread pool here would only fight libtorch's
//! OpenMP threads for the cores). The sequence depends only on the key (seeded per epoch by the
//! trainer) and the call count, which keeps runs reproducible and resumable. On CUDA, libtorch's
//! fused dropout is used as is.

use std::cell::Cell;
use tch::{Kind, Tensor};

/// Where a model's CPU dropout masks come from.
#[derive(Debug)]
pub(crate) struct MaskStream {
    key: Cell<u64>,
    calls: Cell<u64>,
}

impl MaskStream {
    pub(crate) fn new(key: u64) -> Self {
        MaskStream { key: Cell::new(key), calls: Cell::new(0) }
    }

    /// Restarts the stream from `key`.
    pub(crate) fn reseed(&self, key: u64) {
        self.key.set(key);
        self.calls.set(0);
    }

    /// `x * mask / (1 - p)` with `mask` ~ Bernoulli(1 - p), differentiable in `x`.
    pub(crate) fn dropout(&self, x: &Tensor, p: f64) -> Tensor {
        self.masked(x, p, false)
    }

    /// `dropout(relu(x))` in one multiplication: the mask also zeroes where `x <= 0`, so the forward
    /// pass skips ReLU's own pass and the backward pass its threshold kernel (ReLU's gradient is
    /// the same 0/1 pattern). Equal to `dropout(&x.relu(), p)` with the same key and call, except
    /// where `x` is -inf (NaN instead of 0). Falls back to the two steps for a non-float32,
    /// non-contiguous or non-CPU `x`.
    pub(crate) fn relu_dropout(&self, x: &Tensor, p: f64) -> Tensor {
        if x.kind() == Kind::Float && x.is_contiguous() && x.device() == tch::Device::Cpu {
            self.masked(x, p, true)
        } else {
            self.dropout(&x.relu(), p)
        }
    }

    fn masked(&self, x: &Tensor, p: f64, relu: bool) -> Tensor {
        let call = self.calls.get();
        self.calls.set(call + 1);
        let key = splitmix64(self.key.get() ^ splitmix64(call));
        let scale = (1.0 / (1.0 - p)) as f32;
        // Keep an element when its 32-bit draw is at least p * 2^32.
        let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        let n = x.numel();
        let mask = Tensor::empty([n as i64], (Kind::Float, tch::Device::Cpu));
        if n > 0 {
            // SAFETY: `mask` is a fresh contiguous float CPU tensor of n elements, owned here.
            let out = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, n) };
            // SAFETY: `relu` is only asked for on a contiguous float32 CPU tensor of n elements,
            // alive for this call and not written while the slice lives.
            let input = relu.then(|| unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n) });
            fill_mask(out, input, key, Rule { threshold, scale });
        }
        x * mask.view(x.size().as_slice()).to_kind(x.kind())
    }
}

/// What a kept element of the mask holds, and when it is kept.
#[derive(Clone, Copy)]
struct Rule {
    threshold: u32,
    scale: f32,
}

/// Element `i` of block `b` (2^20 elements) keeps when `draw(key_b, i) >= threshold` (and, with
/// `input`, when `input[i] > 0`), where `key_b = splitmix64(key + b)` and `draw` is two rounds of
/// murmur3's 32-bit finaliser keyed by both halves of `key_b`: a bijection of `i` per block, so no
/// two elements of a block share a draw input. 32-bit lanes let the loop run 8 (AVX2) or 16
/// (AVX-512) elements per instruction.
fn fill_mask(out: &mut [f32], input: Option<&[f32]>, key: u64, rule: Rule) {
    const BLOCK: usize = 1 << 20;
    for (b, block) in out.chunks_mut(BLOCK).enumerate() {
        let kb = splitmix64(key.wrapping_add(b as u64));
        let input = input.map(|x| &x[b * BLOCK..b * BLOCK + block.len()]);
        fill_block(block, input, kb as u32, (kb >> 32) as u32, rule);
    }
}

fn fill_block(out: &mut [f32], input: Option<&[f32]>, k0: u32, k1: u32, rule: Rule) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(out: &mut [f32], input: Option<&[f32]>, k0: u32, k1: u32, rule: Rule) {
            fill_block_portable(out, input, k0, k1, rule)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(out: &mut [f32], input: Option<&[f32]>, k0: u32, k1: u32, rule: Rule) {
            fill_block_portable(out, input, k0, k1, rule)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(out, input, k0, k1, rule) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(out, input, k0, k1, rule) };
        }
    }
    fill_block_portable(out, input, k0, k1, rule)
}

#[inline(always)]
fn fill_block_portable(out: &mut [f32], input: Option<&[f32]>, k0: u32, k1: u32, rule: Rule) {
    let draw = |i: usize| fmix32(fmix32(i as u32 ^ k0) ^ k1);
    match input {
        None => {
            for (i, v) in out.iter_mut().enumerate() {
                *v = if draw(i) >= rule.threshold { rule.scale } else { 0.0 };
            }
        }
        Some(x) => {
            for (i, (v, &x)) in out.iter_mut().zip(x).enumerate() {
                *v = if draw(i) >= rule.threshold && x > 0.0 { rule.scale } else { 0.0 };
            }
        }
    }
}

/// murmur3's 32-bit finaliser (a bijection with full avalanche).
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_1_minus_p_scaled_and_repeats_for_the_same_key() {
        let x = Tensor::ones([1000, 400], (Kind::Float, tch::Device::Cpu));
        let stream = MaskStream::new(7);
        let y = stream.dropout(&x, 0.5);
        let kept = y.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.5).abs() < 0.005, "kept {kept}");
        assert_eq!(y.max().double_value(&[]), 2.0);
        // E[y] = x.
        assert!((y.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 0.01);
        let z = stream.dropout(&x, 0.5);
        assert!(!y.equal(&z), "a new call draws a new mask");
        stream.reseed(7);
        assert!(y.equal(&stream.dropout(&x, 0.5)), "the same key and call give the same mask");
        let p = 0.2;
        let kept = stream.dropout(&x, p).ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.8).abs() < 0.005, "kept {kept}");
    }

    #[test]
    fn fused_relu_dropout_equals_relu_then_dropout_and_its_gradient() {
        // Arithmetic input (tests share libtorch's generator across threads): about half positive.
        let x = (Tensor::arange(300 * 77, (Kind::Float, tch::Device::Cpu)) * 0.37).sin().view([300, 77]);
        let positive = x.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        let x = x.set_requires_grad(true);
        let (a, b) = (MaskStream::new(11), MaskStream::new(11));
        for p in [0.5, 0.1, 0.9] {
            let fused = a.relu_dropout(&x, p);
            let plain = b.dropout(&x.relu(), p);
            assert!(fused.equal(&plain), "p = {p}");
            let kept = fused.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
            // The positive elements, and 1 - p of those survive (4 sigma at this size is < 0.015).
            assert!((kept - positive * (1.0 - p)).abs() < 0.015, "p = {p}: kept {kept}");
            let g_fused = Tensor::run_backward(&[fused.sum(Kind::Float)], &[&x], false, false).remove(0);
            let g_plain = Tensor::run_backward(&[plain.sum(Kind::Float)], &[&x], false, false).remove(0);
            assert!(g_fused.equal(&g_plain), "p = {p}: gradients differ");
        }
        // Not contiguous: the two-step path, still the same masks.
        let t = x.detach().tr();
        assert!(a.relu_dropout(&t, 0.5).equal(&b.dropout(&t.relu(), 0.5)));
    }

    #[test]
    fn masks_of_neighbouring_elements_calls_and_blocks_are_uncorrelated() {
        // 2.5M elements: three blocks of the counter.
        let n = 2_500_000;
        let x = Tensor::ones([n], (Kind::Float, tch::Device::Cpu));
        let stream = MaskStream::new(5);
        let m1 = stream.dropout(&x, 0.5).ne(0.0).to_kind(Kind::Float);
        let m2 = stream.dropout(&x, 0.5).ne(0.0).to_kind(Kind::Float);
        let agree = |a: &Tensor, b: &Tensor| a.eq_tensor(b).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        // Independent fair coins agree half the time; 4 sigma at these sizes is well under 0.01.
        for (what, share) in [
            ("neighbours", agree(&m1.narrow(0, 0, n - 1), &m1.narrow(0, 1, n - 1))),
            ("elements 64 apart", agree(&m1.narrow(0, 0, n - 64), &m1.narrow(0, 64, n - 64))),
            ("consecutive calls", agree(&m1, &m2)),
            ("first and second block", agree(&m1.narrow(0, 0, 1 << 20), &m1.narrow(0, 1 << 20, 1 << 20))),
        ] {
            assert!((share - 0.5).abs() < 0.01, "{what}: agree {share}");
        }
        for block in 0..3 {
            let part = m1.narrow(0, block * (1 << 20), (1 << 20).min(n - block * (1 << 20)));
            let kept = part.mean(Kind::Float).double_value(&[]);
            assert!((kept - 0.5).abs() < 0.005, "block {block}: kept {kept}");
        }
    }

    #[test]
    fn gradients_flow_through_the_kept_elements() {
        let x = Tensor::ones([64, 32], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = MaskStream::new(1).dropout(&x, 0.5);
        y.sum(Kind::Float).backward();
        assert!(x.grad().equal(&y.detach()), "d(sum y)/dx is the scaled mask");
    }
}

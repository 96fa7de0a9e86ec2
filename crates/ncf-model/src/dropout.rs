//! Dropout on the CPU without libtorch's Bernoulli sampler.
//!
//! Why: libtorch draws dropout masks on the CPU one element at a time from a single generator
//! (`bernoulli_` runs serially); profiling a CPU training step on ml-latest-small put 28% of the
//! time there. Here each mask element is a counter-based hash of (key, call, index), so elements
//! are independent of each other and the loop runs in 32-bit SIMD lanes, in pieces on libtorch's
//! own OpenMP pool (`torch_ops::parallel_for`; a pool of our own would fight libtorch's threads for
//! the cores). One pass writes both the output and the mask its backward pass needs (one byte per
//! element), and the output is handed to autograd as `x * mask` (`torch_ops::masked_by_keep`).
//! The sequence depends only on the key (seeded per epoch by the trainer) and the call count, which
//! keeps runs reproducible and resumable. On CUDA, libtorch's fused dropout is used as is.

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
        if fusable(x) {
            self.masked(x, p, true)
        } else {
            self.dropout(&x.relu(), p)
        }
    }

    /// `dropout(relu(x + b))` for `x` `[N, W]` and a bias `b` `[W]`, the bias added inside the same
    /// pass: the linear layer before it then skips writing the bias into its output before its
    /// product (a `[N, W]` copy) and the product skips reading it back. Equal bit for bit to
    /// `relu_dropout(&(x + b), p)`; and to `relu_dropout` of a layer whose product added the bias
    /// itself wherever that product computes `acc + b` (oneDNN's does, tested in torch-ops). The
    /// bias's gradient is the row sum of `x`'s, as the linear layer's own would be. Falls back to
    /// the two steps for anything the one pass cannot read (see [`fusable`]).
    pub(crate) fn bias_relu_dropout(&self, x: &Tensor, b: &Tensor, p: f64) -> Tensor {
        let width = x.size().last().copied().unwrap_or(0);
        let fits = fusable(x) && x.dim() == 2 && fusable(b) && b.size() == [width];
        if !fits {
            return self.relu_dropout(&(x + b), p);
        }
        self.masked_with(x, p, true, Some(b))
    }

    fn masked(&self, x: &Tensor, p: f64, relu: bool) -> Tensor {
        self.masked_with(x, p, relu, None)
    }

    /// `x` (plus `bias` on every row, where given: `x` is then a fusable `[N, W]`, `bias` `[W]`)
    /// through the mask, ReLU folded in under `relu`.
    fn masked_with(&self, x: &Tensor, p: f64, relu: bool, bias: Option<&Tensor>) -> Tensor {
        let call = self.calls.get();
        self.calls.set(call + 1);
        let key = splitmix64(self.key.get() ^ splitmix64(call));
        let scale = (1.0 / (1.0 - p)) as f32;
        // Keep an element when its 32-bit draw is at least p * 2^32.
        let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        let rule = Rule { threshold, scale, relu };
        let n = x.numel();
        let opts = (Kind::Float, tch::Device::Cpu);
        if !fusable(x) {
            // The mask alone, then libtorch's product (any kind or layout; never with ReLU folded).
            let mask = Tensor::empty([n as i64], opts);
            fill_parallel::<f32>(&mask, None, None, key, Rule { relu: false, ..rule });
            return x * mask.view(x.size().as_slice()).to_kind(x.kind());
        }
        // One pass writes both the output (x * mask) and the mask the backward pass multiplies by,
        // as one byte per element (0/1; the scale is applied there): a quarter of a float mask's
        // traffic, written here and read back in the backward pass.
        let keep = Tensor::empty(x.size(), (Kind::Uint8, tch::Device::Cpu));
        let out = Tensor::empty(x.size(), opts);
        let rows = bias.map(|b| (b, x.size()[1] as usize));
        fill_parallel::<u8>(&keep, Some((&out, x)), rows, key, rule);
        match bias {
            Some(b) => torch_ops::masked_by_keep_with_bias(x, b, &out, &keep, scale as f64)
                .unwrap_or_else(|_| (x + b) * keep.to_kind(Kind::Float) * scale as f64),
            None => torch_ops::masked_by_keep(x, &out, &keep, scale as f64)
                .unwrap_or_else(|_| x * keep.to_kind(Kind::Float) * scale as f64),
        }
    }
}

/// Whether the one-pass fill (output and mask together, ReLU foldable) can read `x` directly: a
/// contiguous float32 CPU tensor (what the model's other one-pass CPU kernels read too).
pub(crate) fn fusable(x: &Tensor) -> bool {
    x.kind() == Kind::Float && x.is_contiguous() && x.device() == tch::Device::Cpu
}

/// What a kept element of the mask holds, and when it is kept.
#[derive(Clone, Copy)]
struct Rule {
    threshold: u32,
    scale: f32,
    /// Also drop where the input is not positive (ReLU folded into the mask).
    relu: bool,
}

/// One element of a mask: the float mask holds `scale` or 0, the byte mask 1 or 0.
trait MaskCell: Copy + Send + Sync + 'static {
    /// The tensor kind that holds it.
    const KIND: Kind;
    fn of(keep: bool, scale: f32) -> Self;
}

impl MaskCell for f32 {
    const KIND: Kind = Kind::Float;
    #[inline(always)]
    fn of(keep: bool, scale: f32) -> Self {
        if keep {
            scale
        } else {
            0.0
        }
    }
}

impl MaskCell for u8 {
    const KIND: Kind = Kind::Uint8;
    #[inline(always)]
    fn of(keep: bool, _scale: f32) -> Self {
        keep as u8
    }
}

/// Elements per block of the counter: element `i` of the tensor is element `i % BLOCK` of block
/// `i / BLOCK`, whatever piece of the tensor a thread fills.
const BLOCK: usize = 1 << 20;

/// Fills `mask` (and, with `values = (out, x)`, `out = x * mask`, or `(x + bias) * mask` with
/// `rows = (bias, width)` for rows of `width` elements) on libtorch's thread pool, in pieces of
/// 64k elements: the same numbers as one serial pass, since every element's draw depends only on
/// its index.
fn fill_parallel<M: MaskCell>(
    mask: &Tensor,
    values: Option<(&Tensor, &Tensor)>,
    rows: Option<(&Tensor, usize)>,
    key: u64,
    rule: Rule,
) {
    assert!(mask.kind() == M::KIND && mask.is_contiguous(), "a contiguous {:?} mask", M::KIND);
    let n = mask.numel();
    if n == 0 {
        return;
    }
    // Addresses as integers so that the closure can be shared by the pool's threads.
    let mask_at = mask.data_ptr() as usize;
    let values_at = values.map(|(out, x)| (out.data_ptr() as usize, x.data_ptr() as usize));
    let bias_at = rows.map(|(b, width)| {
        assert!(b.kind() == Kind::Float && b.is_contiguous() && b.numel() == width && width > 0, "a [width] bias");
        (b.data_ptr() as usize, width)
    });
    let fill = |begin: i64, end: i64| {
        let (begin, len) = (begin as usize, (end - begin) as usize);
        // SAFETY: `mask` (of M's kind), `out` and `x` (float32) are contiguous CPU tensors of n elements, alive for
        // this call; the pool hands each thread a disjoint [begin, end), so no element is written
        // twice, and `x` is only read.
        let m = unsafe { std::slice::from_raw_parts_mut((mask_at as *mut M).add(begin), len) };
        let v = values_at.map(|(o, x)| unsafe {
            (
                std::slice::from_raw_parts_mut((o as *mut f32).add(begin), len),
                std::slice::from_raw_parts((x as *const f32).add(begin), len),
            )
        });
        // SAFETY: `bias` is a contiguous float32 tensor of `width` elements, alive and only read.
        let b =
            bias_at.map(|(b, width)| (unsafe { std::slice::from_raw_parts(b as *const f32, width) }, begin % width));
        fill_range(m, v, b, begin, key, rule);
    };
    if torch_ops::parallel_for(n as i64, 1 << 16, fill).is_err() {
        fill(0, n as i64);
    }
}

/// Elements `[start, start + mask.len())` of the tensor, block by block. Element `i` of block `b`
/// keeps when `draw(key_b, i) >= threshold`, where `key_b = splitmix64(key + b)` and `draw` is two
/// rounds of murmur3's 32-bit finaliser keyed by both halves of `key_b`: a bijection of `i` per
/// block, so no two elements of a block share a draw input. 32-bit lanes let the loop run 8 (AVX2)
/// or 16 (AVX-512) elements per instruction.
/// With `bias = (b, column)`, `b` is added to every row of the values (rows of `b.len()` elements),
/// the first element of `mask` being in column `column`.
fn fill_range<M: MaskCell>(
    mask: &mut [M],
    mut values: Option<(&mut [f32], &[f32])>,
    bias: Option<(&[f32], usize)>,
    start: usize,
    key: u64,
    rule: Rule,
) {
    let mut done = 0;
    while done < mask.len() {
        let at = start + done;
        let (block, offset) = (at / BLOCK, at % BLOCK);
        let len = (BLOCK - offset).min(mask.len() - done);
        let kb = splitmix64(key.wrapping_add(block as u64));
        let piece = values.as_mut().map(|(out, x)| (&mut out[done..done + len], &x[done..done + len]));
        let b = bias.map(|(b, column)| (b, (column + done) % b.len()));
        fill_block(&mut mask[done..done + len], piece, b, offset as u32, kb as u32, (kb >> 32) as u32, rule);
        done += len;
    }
}

/// A bias added to every row of the values, and the column of the first element.
type RowBias<'a> = Option<(&'a [f32], usize)>;

fn fill_block<M: MaskCell>(
    mask: &mut [M],
    values: Option<(&mut [f32], &[f32])>,
    bias: RowBias,
    offset: u32,
    k0: u32,
    k1: u32,
    rule: Rule,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<M: MaskCell>(
            m: &mut [M],
            v: Option<(&mut [f32], &[f32])>,
            b: RowBias,
            offset: u32,
            k0: u32,
            k1: u32,
            rule: Rule,
        ) {
            fill_block_portable(m, v, b, offset, k0, k1, rule)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<M: MaskCell>(
            m: &mut [M],
            v: Option<(&mut [f32], &[f32])>,
            b: RowBias,
            offset: u32,
            k0: u32,
            k1: u32,
            rule: Rule,
        ) {
            fill_block_portable(m, v, b, offset, k0, k1, rule)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(mask, values, bias, offset, k0, k1, rule) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(mask, values, bias, offset, k0, k1, rule) };
        }
    }
    fill_block_portable(mask, values, bias, offset, k0, k1, rule)
}

/// Element `offset + j` of a block keeps when its draw is at least the threshold (and, under
/// `rule.relu`, its input is positive); the mask holds [`MaskCell::of`] that, the output `x * scale` or 0.
#[inline(always)]
fn fill_block_portable<M: MaskCell>(
    mask: &mut [M],
    values: Option<(&mut [f32], &[f32])>,
    bias: RowBias,
    offset: u32,
    k0: u32,
    k1: u32,
    rule: Rule,
) {
    let draw = |j: usize| fmix32(fmix32((offset + j as u32) ^ k0) ^ k1);
    let Some((out, x)) = values else {
        for (j, m) in mask.iter_mut().enumerate() {
            *m = M::of(draw(j) >= rule.threshold, rule.scale);
        }
        return;
    };
    let Some((b, column)) = bias else {
        return fill_values(mask, out, x, None, 0, &draw, rule);
    };
    // Row by row (or what of a row this piece holds), so that each piece adds a contiguous run of
    // the bias.
    let (mut done, mut column) = (0, column);
    while done < mask.len() {
        let len = (b.len() - column).min(mask.len() - done);
        let (m, o, v) = (&mut mask[done..done + len], &mut out[done..done + len], &x[done..done + len]);
        fill_values(m, o, v, Some(&b[column..column + len]), done, &draw, rule);
        done += len;
        column = 0;
    }
}

/// `out = (x [+ b]) * scale` where kept and 0 elsewhere, and the mask, for the elements whose draws
/// are `draw(first + j)`.
#[inline(always)]
fn fill_values<M: MaskCell>(
    mask: &mut [M],
    out: &mut [f32],
    x: &[f32],
    bias: Option<&[f32]>,
    first: usize,
    draw: &impl Fn(usize) -> u32,
    rule: Rule,
) {
    // In chunks, the decisions first as 32-bit lanes, then the mask from them: one loop that also
    // narrowed them to bytes would not vectorise (measured 10x slower).
    const CHUNK: usize = 64;
    let mut at = 0;
    while at < mask.len() {
        let len = CHUNK.min(mask.len() - at);
        let (mc, oc, xc) = (&mut mask[at..at + len], &mut out[at..at + len], &x[at..at + len]);
        let mut value = [0f32; CHUNK];
        match bias {
            // The same sum the product would have made with the bias in it (acc + b).
            Some(b) => value.iter_mut().zip(xc.iter().zip(&b[at..at + len])).for_each(|(v, (&x, &b))| *v = x + b),
            None => value.iter_mut().zip(xc).for_each(|(v, &x)| *v = x),
        }
        let mut keep = [0u32; CHUNK];
        for (j, ((k, o), &x)) in keep.iter_mut().zip(oc.iter_mut()).zip(&value).enumerate() {
            let kept = (draw(first + at + j) >= rule.threshold) & (!rule.relu | (x > 0.0));
            *k = kept as u32;
            *o = if kept { x * rule.scale } else { 0.0 };
        }
        for (m, &k) in mc.iter_mut().zip(&keep) {
            *m = M::of(k != 0, rule.scale);
        }
        at += len;
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
    fn pieces_filled_in_parallel_equal_one_serial_pass_across_blocks() {
        // 2.5M elements: the pool's pieces (64k and up) cut across the counter's 1M blocks.
        let n = 2_500_000usize;
        let x = (Tensor::arange(n as i64, (Kind::Float, tch::Device::Cpu)) * 0.011).sin();
        let rule = Rule { threshold: 1 << 31, scale: 2.0, relu: true };
        let (mask, out) = (x.empty_like(), x.empty_like());
        fill_parallel::<f32>(&mask, Some((&out, &x)), None, 99, rule);
        let xs = Vec::<f32>::try_from(&x).unwrap();
        let (mut m, mut o) = (vec![0f32; n], vec![0f32; n]);
        fill_range(&mut m, Some((&mut o, &xs)), None, 0, 99, rule);
        assert_eq!(Vec::<f32>::try_from(&mask).unwrap(), m);
        assert_eq!(Vec::<f32>::try_from(&out).unwrap(), o);
        // And the output is the input times the mask.
        assert!(out.equal(&(&x * &mask)));
        // The byte mask (what training saves) keeps the same elements and writes the same output.
        let (keep, out8) = (Tensor::empty([n as i64], (Kind::Uint8, tch::Device::Cpu)), x.empty_like());
        fill_parallel::<u8>(&keep, Some((&out8, &x)), None, 99, rule);
        assert!(out8.equal(&out));
        assert!((keep.to_kind(Kind::Float) * 2.0).equal(&mask));
    }

    #[test]
    fn bias_added_in_the_pass_equals_relu_dropout_of_the_sum_and_its_gradients() {
        // Rows of 300: the pool's 64k pieces and the counter's 1M blocks both cut rows in the middle.
        let (rows, width) = (9_001i64, 300i64);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = (Tensor::arange(rows * width, opts) * 0.37).sin().view([rows, width]).set_requires_grad(true);
        let b = ((Tensor::arange(width, opts) * 0.7).cos() * 0.5).set_requires_grad(true);
        let (a, c) = (MaskStream::new(21), MaskStream::new(21));
        let fused = a.bias_relu_dropout(&x, &b, 0.5);
        let plain = c.relu_dropout(&(&x + &b), 0.5);
        let bits =
            |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fused), bits(&plain));
        let dy = (Tensor::arange(rows * width, opts) * 0.29).cos().view([rows, width]);
        let g_fused = Tensor::run_backward(&[(&fused * &dy).sum(Kind::Float)], &[&x, &b], false, false);
        let g_plain = Tensor::run_backward(&[(&plain * &dy).sum(Kind::Float)], &[&x, &b], false, false);
        assert_eq!(bits(&g_fused[0]), bits(&g_plain[0]), "gradient of x");
        // The bias gradient is the row sum of x's either way (libtorch sums in its own order for
        // the broadcast add, so equal up to rounding here; bit for bit against a linear layer's in
        // torch-ops' tests).
        let worst = (&g_fused[1] - &g_plain[1]).abs().max().double_value(&[]);
        assert!(worst < 1e-3, "gradient of b off by {worst}");
        // A bias that does not fit the rows: the two-step path, still the same masks.
        let short = Tensor::zeros([1], opts);
        assert!(a.bias_relu_dropout(&x.detach(), &short, 0.5).equal(&c.relu_dropout(&x.detach(), 0.5)));
    }

    #[test]
    fn gradients_flow_through_the_kept_elements() {
        let x = Tensor::ones([64, 32], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = MaskStream::new(1).dropout(&x, 0.5);
        y.sum(Kind::Float).backward();
        assert!(x.grad().equal(&y.detach()), "d(sum y)/dx is the scaled mask");
    }
}

//! libtorch operations that tch 0.24 does not bind, through a small C++ bridge (`cpp/ops.cpp`,
//! compiled against the same libtorch headers): PyTorch's fused Adam (`torch._fused_adam_`, one
//! multi-tensor kernel over all parameters on CUDA, a fused loop on CPU), the AMP gradient check
//! (`torch._amp_foreach_non_finite_check_and_unscale_`), the float32 matmul precision switch
//! (TF32 on CUDA), a linear layer whose products run in oneDNN ([`onednn_linear`], and
//! [`onednn_linear_relu`] for inference, [`bf16_linear_relu`] in bfloat16), two row gathers and their sum in one pass
//! ([`gather_add`], [`gather_add_with_bias`], [`gather_add_relu`]), NeuMF's final layer read
//! straight from the GMF tables ([`neumf_head`]), NeuMF's whole evaluation pass from its
//! first-layer tables with one fork of the thread pool ([`neumf_tables_forward`]), bfloat16
//! all-item scoring's element-wise steps ([`bf16_add_relu`], [`bf16_rows_dot`]), an autograd node for an output computed outside
//! autograd ([`masked_by`], [`masked_by_keep`], [`masked_by_keep_with_bias`]), and libtorch's
//! thread pool for loops written in Rust ([`parallel_for`]), and libtorch's gloo process group for
//! data-parallel training on CPUs across processes ([`GlooProcessGroup`]).
//!
//! **What it is not:** an optimizer or a scaler; `ncf-train` builds those on these calls.
//!
//! ```
//! use tch::{Kind, Tensor};
//! use torch_ops::{fused_adam, AdamHyper};
//! let params = [Tensor::ones([3], (Kind::Float, tch::Device::Cpu))];
//! let grads = [Tensor::from_slice(&[1f32, -1.0, 0.5])];
//! let (m, v) = ([params[0].zeros_like()], [params[0].zeros_like()]);
//! let step = Tensor::from(1f32); // the step number, already incremented
//! let hyper = AdamHyper { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
//! fused_adam(&params, &grads, &m, &v, &step, hyper, None)?;
//! // The first Adam step moves each parameter by lr against the sign of its gradient.
//! assert_eq!(Vec::<f32>::try_from(&params[0]).unwrap().iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>(), [0.9, 1.1, 0.9]);
//! # Ok::<(), torch_ops::TorchOpError>(())
//! ```

use std::ffi::{c_char, CString};
use tch::Tensor;

mod amx;
pub use amx::{amx_available, AmxMlp, FoldInSide};
mod gloo;
pub use gloo::{gloo_available, GlooProcessGroup, GlooRendezvous};

/// A libtorch error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchOpError(pub String);

impl std::fmt::Display for TorchOpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libtorch: {}", self.0)
    }
}

impl std::error::Error for TorchOpError {}

type Handle = *mut std::ffi::c_void;

extern "C" {
    fn ncf_fused_adam(
        params: *const Handle,
        grads: *const Handle,
        exp_avgs: *const Handle,
        exp_avg_sqs: *const Handle,
        n: usize,
        step: Handle,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        grad_scale: Handle,
        found_inf: Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_amp_check_and_unscale(
        grads: *const Handle,
        n: usize,
        found_inf: Handle,
        inv_scale: Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_set_float32_matmul_precision(precision: *const c_char, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_set_cuda_device(index: i32, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_clear_grads(tensors: *const Handle, n: usize, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_onednn_linear(x: Handle, w: Handle, b: Handle, out: *mut Handle, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_onednn_linear_relu(
        x: Handle,
        w: Handle,
        b: Handle,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_bf16_linear_relu(x: Handle, w: Handle, b: Handle, out: *mut Handle, err: *mut c_char, err_len: usize)
        -> i32;
    fn ncf_gather_add_relu(
        a: Handle,
        ia: Handle,
        b: Handle,
        ib: Handle,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_gather_add(
        a: Handle,
        ia: Handle,
        b: Handle,
        ib: Handle,
        bias: Handle,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_masked_by(
        x: Handle,
        out: Handle,
        mask: Handle,
        result: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_masked_by_keep(
        x: Handle,
        b: Handle,
        out: Handle,
        keep: Handle,
        scale: f64,
        result: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_neumf_head(
        p: Handle,
        q: Handle,
        h: Handle,
        w: Handle,
        b: Handle,
        users: Handle,
        items: Handle,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_neumf_tables_forward(
        ut: Handle,
        users: Handle,
        it: Handle,
        items: Handle,
        ws: *const Handle,
        bs: *const Handle,
        layers: usize,
        p: Handle,
        q: Handle,
        w: Handle,
        b: Handle,
        rows_per_part: i64,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_bf16_add_relu(a: Handle, u: Handle, out: *mut Handle, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_bf16_rows_dot(x: Handle, w: Handle, out: *mut Handle, err: *mut c_char, err_len: usize) -> i32;
    fn ncf_parallel_for(
        n: i64,
        grain: i64,
        f: extern "C" fn(*mut std::ffi::c_void, i64, i64),
        ctx: *mut std::ffi::c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

fn handle(t: &Tensor) -> Handle {
    t.as_ptr() as Handle
}

fn handles(ts: &[Tensor]) -> Vec<Handle> {
    ts.iter().map(handle).collect()
}

fn check(code: i32, err: &[u8]) -> Result<(), TorchOpError> {
    if code == 0 {
        return Ok(());
    }
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    Err(TorchOpError(String::from_utf8_lossy(&err[..end]).into_owned()))
}

/// Runs a bridge function that hands back a new tensor: `call(out, err, err_len)` gets where to
/// put the `at::Tensor*` and the error buffer, and returns the bridge's status.
fn new_tensor(call: impl FnOnce(*mut Handle, *mut c_char, usize) -> i32) -> Result<Tensor, TorchOpError> {
    let mut out: Handle = std::ptr::null_mut();
    let mut err = vec![0u8; 1024];
    let code = call(&mut out, err.as_mut_ptr() as *mut c_char, err.len());
    check(code, &err)?;
    // SAFETY: on success `out` is a new at::Tensor allocated with `new`, as tch's own tensors are,
    // owned from here by the tch Tensor made from it.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// The hyper-parameters of [`fused_adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// One Adam step over all `params` at once (PyTorch's fused kernel): `step` is a float32 scalar
/// tensor on the parameters' device holding the step number (already incremented). With
/// `amp = Some((grad_scale, found_inf))`, gradients are unscaled by `1 / grad_scale` inside the
/// kernel and the whole step is skipped when `found_inf` is non-zero.
pub fn fused_adam(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    step: &Tensor,
    hyper: AdamHyper,
    amp: Option<(&Tensor, &Tensor)>,
) -> Result<(), TorchOpError> {
    let n = params.len();
    if grads.len() != n || exp_avgs.len() != n || exp_avg_sqs.len() != n {
        return Err(TorchOpError("fused_adam: lists of different lengths".into()));
    }
    // The kernel indexes the other lists by each parameter's size; it must not be trusted to check.
    for (k, p) in params.iter().enumerate() {
        for (what, t) in [("gradient", &grads[k]), ("exp_avg", &exp_avgs[k]), ("exp_avg_sq", &exp_avg_sqs[k])] {
            if !t.defined() || t.size() != p.size() || t.device() != p.device() || !t.is_contiguous() {
                return Err(TorchOpError(format!(
                    "fused_adam: parameter {k} is {:?} on {:?}, its {what} is not a contiguous tensor of that shape on that device",
                    p.size(),
                    p.device()
                )));
            }
        }
    }
    let (p, g, m, v) = (handles(params), handles(grads), handles(exp_avgs), handles(exp_avg_sqs));
    let (scale, inf) = amp.map_or((std::ptr::null_mut(), std::ptr::null_mut()), |(s, f)| (handle(s), handle(f)));
    let mut err = vec![0u8; 1024];
    // SAFETY: every handle is a live tch tensor (an at::Tensor*) borrowed for the call; the lists
    // have n entries; err has err.len() bytes.
    let code = unsafe {
        ncf_fused_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            n,
            handle(step),
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.eps,
            scale,
            inf,
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    check(code, &err)
}

/// Multiplies every gradient by `inv_scale` (a float32 scalar tensor) and sets `found_inf` (a
/// float32 scalar tensor) to 1 if any gradient holds an inf or NaN.
pub fn amp_check_and_unscale(grads: &[Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<(), TorchOpError> {
    let g = handles(grads);
    let mut err = vec![0u8; 1024];
    // SAFETY: as in fused_adam.
    let code = unsafe {
        ncf_amp_check_and_unscale(
            g.as_ptr(),
            g.len(),
            handle(found_inf),
            handle(inv_scale),
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    check(code, &err)
}

/// Drops the gradients of `tensors` (`p.grad = None`, PyTorch's `zero_grad(set_to_none=True)`),
/// so the next backward pass writes new gradients instead of filling zeros and adding into them.
pub fn clear_grads(tensors: &[Tensor]) -> Result<(), TorchOpError> {
    let t = handles(tensors);
    let mut err = vec![0u8; 1024];
    // SAFETY: t holds t.len() live tensor handles borrowed for this call; err has err.len() bytes.
    let code = unsafe { ncf_clear_grads(t.as_ptr(), t.len(), err.as_mut_ptr() as *mut c_char, err.len()) };
    check(code, &err)
}

/// Allows TF32 for float32 matrix products on CUDA (`true`: PyTorch's "high") or not ("highest").
pub fn set_tf32(allowed: bool) -> Result<(), TorchOpError> {
    let precision = CString::new(if allowed { "high" } else { "highest" }).unwrap_or_default();
    let mut err = vec![0u8; 1024];
    // SAFETY: precision is a NUL-terminated string; err has err.len() bytes.
    let code =
        unsafe { ncf_set_float32_matmul_precision(precision.as_ptr(), err.as_mut_ptr() as *mut c_char, err.len()) };
    check(code, &err)
}

/// Makes `cuda:index` the current CUDA device of the calling thread (`torch.cuda.set_device`),
/// e.g. before NCCL joins a group on it.
pub fn set_cuda_device(index: usize) -> Result<(), TorchOpError> {
    let mut err = vec![0u8; 1024];
    // SAFETY: err has err.len() bytes.
    let code = unsafe { ncf_set_cuda_device(index as i32, err.as_mut_ptr() as *mut c_char, err.len()) };
    check(code, &err)
}

/// Whether [`onednn_linear`] can run here: an x86-64 CPU with AVX-512 (F, BW, VL, DQ), where
/// oneDNN's float32 kernels use 512-bit registers. (libtorch's own float32 products go to MKL,
/// which takes its 256-bit AVX2 branch on AMD CPUs and when pinned by `MKL_CBWR=AVX2`.)
pub fn onednn_f32_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x w^T + b` (PyTorch's `F.linear`) for float32 CPU tensors, `x` `[N, in]`, `w` `[out, in]`,
/// `b` `[out]`, with the forward product and both backward products (`dx = dy w`,
/// `dw = dy^T x`) run by oneDNN's matmul instead of MKL's sgemm: the same float32 arithmetic in
/// another summation order, 2-2.5x faster on AVX-512 CPUs where MKL runs its AVX2 code (AMD EPYC).
/// Differentiable in all three. Refused (an error, nothing computed) off the CPU, for other kinds
/// or shapes, and where [`onednn_f32_available`] is false.
pub fn onednn_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor, TorchOpError> {
    if !onednn_f32_available() {
        return Err(TorchOpError("onednn_linear: this CPU lacks AVX-512 (F, BW, VL, DQ)".into()));
    }
    let float_cpu = |t: &Tensor| t.kind() == tch::Kind::Float && t.device() == tch::Device::Cpu;
    let (xs, ws) = (x.size(), w.size());
    let shapes_fit = xs.len() == 2 && ws.len() == 2 && xs[1] == ws[1] && b.is_none_or(|b| b.size() == [ws[0]]);
    if !shapes_fit || !float_cpu(x) || !float_cpu(w) || !b.is_none_or(float_cpu) {
        return Err(TorchOpError(format!(
            "onednn_linear: needs float32 CPU tensors x [N, in], w [out, in], b [out]; got x {xs:?}, w {ws:?}, b {:?}",
            b.map(|b| b.size())
        )));
    }
    let bias = b.map_or(std::ptr::null_mut(), handle);
    // SAFETY: x, w and b (or null) are live tensor handles borrowed for the call.
    new_tensor(|out, err, len| unsafe { ncf_onednn_linear(handle(x), handle(w), bias, out, err, len) })
}

/// `relu(x w^T + b)` for inference (no gradient: refused when grad mode is on and an input
/// requires one): [`onednn_linear`]'s product, then the bias and the relu in one pass over the
/// output in place. The same bits as `onednn_linear(x, w, Some(b))?.relu()` (oneDNN adds the bias
/// after its sum either way), without writing the bias into the output before the product, the
/// separate relu pass or its second tensor. Refused as [`onednn_linear`] is.
pub fn onednn_linear_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor, TorchOpError> {
    if !onednn_f32_available() {
        return Err(TorchOpError("onednn_linear_relu: this CPU lacks AVX-512 (F, BW, VL, DQ)".into()));
    }
    // SAFETY: x, w and b are live tensor handles borrowed for the call; the bridge checks kinds,
    // devices and shapes.
    new_tensor(|out, err, len| unsafe { ncf_onednn_linear_relu(handle(x), handle(w), handle(b), out, err, len) })
}

/// `relu(x w^T + b)` in bfloat16 for inference (refused when grad mode is on and an input requires
/// a gradient): `x` `[N, in]`, `w` `[out, in]`, `b` `[out]`, all bfloat16 CPU tensors, through
/// oneDNN's matmul with the bias and relu fused into it (PyTorch's `mkldnn::_linear_pointwise`,
/// AMX tiles where the CPU has them), float32 accumulation, a bfloat16 `[N, out]` result. Refused
/// where [`bf16_available`] is false and for other kinds, devices or shapes.
pub fn bf16_linear_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor, TorchOpError> {
    if !bf16_available() {
        return Err(TorchOpError("bf16_linear_relu: this CPU lacks bfloat16 instructions (AVX512-BF16)".into()));
    }
    // SAFETY: x, w and b are live tensor handles borrowed for the call; the bridge checks kinds,
    // devices and shapes.
    new_tensor(|out, err, len| unsafe { ncf_bf16_linear_relu(handle(x), handle(w), handle(b), out, err, len) })
}

/// `relu(a + u)` rounded to bfloat16, for a bfloat16 `[N, W]` matrix `a` and a float32 `[W]` row
/// `u` on the CPU: the sum and the relu in float32, then round-to-nearest-even as libtorch's
/// `.to(torch.bfloat16)` rounds, so the result is bit for bit `(a.float() + u).relu().bfloat16()`
/// in one pass and one `[N, W]` tensor (a NaN stays a NaN, written as the quiet NaN 0x7FC0). NeuMF's first MLP layer in bfloat16
/// all-item scoring: the item half computed once in float32 and stored in bfloat16, plus the
/// user's part. Inference only (refused in grad mode when an input requires a gradient); other
/// kinds, devices and shapes are refused with the reason.
pub fn bf16_add_relu(a: &Tensor, u: &Tensor) -> Result<Tensor, TorchOpError> {
    // SAFETY: two live tensor handles borrowed for the call.
    new_tensor(|out, err, len| unsafe { ncf_bf16_add_relu(handle(a), handle(u), out, err, len) })
}

/// Each row of a bfloat16 `[N, D]` matrix `x` dotted with a float32 `[D]` vector `w` on the CPU:
/// float32 `[N]`, the products and their sum in float32 (bfloat16 values are exact there), so
/// `x.float() @ w` up to float summation order, without the float32 copy of `x`. The MLP branch's
/// share of NeuMF's final layer in bfloat16 all-item scoring. Inference only; other kinds,
/// devices and shapes are refused with the reason.
pub fn bf16_rows_dot(x: &Tensor, w: &Tensor) -> Result<Tensor, TorchOpError> {
    // SAFETY: two live tensor handles borrowed for the call.
    new_tensor(|out, err, len| unsafe { ncf_bf16_rows_dot(handle(x), handle(w), out, err, len) })
}

/// Whether [`bf16_linear_relu`] can run here: an x86-64 CPU with AVX512-BF16 (every one with AMX
/// has it), where oneDNN's bfloat16 products beat float32's instead of being emulated.
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        onednn_f32_available() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out`, already computed as `x * mask` (e.g. dropout written in one fused pass), returned as the
/// differentiable result of that product: the backward pass gives `x` the gradient `dy * mask`.
/// The caller vouches that `out` holds `x * mask` (same shape, `mask` free of gradients); nothing
/// is computed here but the autograd node. Without gradients the result is `out` itself.
pub fn masked_by(x: &Tensor, out: &Tensor, mask: &Tensor) -> Result<Tensor, TorchOpError> {
    if x.size() != out.size() || x.size() != mask.size() {
        return Err(TorchOpError(format!(
            "masked_by: x {:?}, out {:?} and mask {:?} must have one shape",
            x.size(),
            out.size(),
            mask.size()
        )));
    }
    // SAFETY: three live tensor handles borrowed for the call.
    new_tensor(|result, err, len| unsafe { ncf_masked_by(handle(x), handle(out), handle(mask), result, err, len) })
}

/// [`masked_by`] with the mask given as a uint8 0/1 tensor `keep` and one `scale`: `out` holds
/// `x * keep * scale`, and the backward pass gives `x` the gradient `dy * (keep ? scale : 0)`,
/// bit for bit what `masked_by` with the float mask `keep * scale` gives, while the saved mask takes
/// a quarter of the memory (dropout: `scale = 1 / (1 - p)`). `x` and `out` float32, `keep`
/// contiguous on the CPU, all three of one shape; anything else is refused.
pub fn masked_by_keep(x: &Tensor, out: &Tensor, keep: &Tensor, scale: f64) -> Result<Tensor, TorchOpError> {
    let cpu_kind = |t: &Tensor, kind| t.kind() == kind && t.device() == tch::Device::Cpu;
    if x.size() != out.size()
        || x.size() != keep.size()
        || !cpu_kind(keep, tch::Kind::Uint8)
        || !keep.is_contiguous()
        || x.kind() != tch::Kind::Float
        || out.kind() != tch::Kind::Float
    {
        return Err(TorchOpError(format!(
            "masked_by_keep: needs float32 x {:?} and out {:?} and a contiguous uint8 CPU keep {:?} ({:?}) of one shape",
            x.size(),
            out.size(),
            keep.size(),
            keep.kind()
        )));
    }
    let no_bias = std::ptr::null_mut();
    // SAFETY: three live tensor handles borrowed for the call, and no bias.
    new_tensor(|result, err, len| unsafe {
        ncf_masked_by_keep(handle(x), no_bias, handle(out), handle(keep), scale, result, err, len)
    })
}

/// [`masked_by_keep`] for a layer whose bias was added in the same pass: `out` holds
/// `(x + b) * keep * scale` for `x` `[N, W]` and `b` `[W]`; the backward pass gives `x` the gradient
/// `dy * (keep ? scale : 0)` and `b` its row sum (`sum(0)`, as a linear layer's bias gradient), bit
/// for bit what a linear layer with the bias inside its product followed by [`masked_by_keep`]
/// gives, wherever that product computes `acc + b` (oneDNN's does, tested). `b` float32 `[W]`;
/// anything else as [`masked_by_keep`] refuses it.
pub fn masked_by_keep_with_bias(
    x: &Tensor,
    b: &Tensor,
    out: &Tensor,
    keep: &Tensor,
    scale: f64,
) -> Result<Tensor, TorchOpError> {
    let width = x.size().last().copied();
    if x.dim() != 2 || b.size() != [width.unwrap_or(-1)] || b.kind() != tch::Kind::Float {
        return Err(TorchOpError(format!(
            "masked_by_keep_with_bias: needs x [N, W] and a float32 bias [W]; got x {:?}, b {:?} ({:?})",
            x.size(),
            b.size(),
            b.kind()
        )));
    }
    // SAFETY: four live tensor handles borrowed for the call; the bridge checks `out` and `keep` as
    // masked_by_keep's does.
    new_tensor(|result, err, len| unsafe {
        ncf_masked_by_keep(handle(x), handle(b), handle(out), handle(keep), scale, result, err, len)
    })
}

/// Runs `f(begin, end)` over `[0, n)` in pieces of at least `grain` elements on libtorch's thread
/// pool (`at::parallel_for`, OpenMP), so that a loop written in Rust uses the cores libtorch's
/// threads hold instead of competing with them. Pieces run concurrently: `f` must only touch
/// what its range owns. A panic inside `f` aborts the process (it cannot unwind through C++).
pub fn parallel_for<F: Fn(i64, i64) + Sync>(n: i64, grain: i64, f: F) -> Result<(), TorchOpError> {
    extern "C" fn trampoline<F: Fn(i64, i64) + Sync>(ctx: *mut std::ffi::c_void, begin: i64, end: i64) {
        // SAFETY: ctx is the `&F` passed below, alive for the whole parallel_for call.
        let f = unsafe { &*(ctx as *const F) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(begin, end))).is_err() {
            std::process::abort();
        }
    }
    if n <= 0 {
        return Ok(());
    }
    let mut err = vec![0u8; 1024];
    // SAFETY: the trampoline matches the C signature and `&f` outlives the (blocking) call.
    let code = unsafe {
        ncf_parallel_for(
            n,
            grain.max(1),
            trampoline::<F>,
            &f as *const F as *mut std::ffi::c_void,
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    check(code, &err)
}

/// `a.index_select(0, ia) + b.index_select(0, ib)` in one pass: row `r` of the result is
/// `a[ia[r]] + b[ib[r]]`, written once (not two gathered copies and their sum), in parallel on
/// libtorch's pool. `a` `[Na, W]` and `b` `[Nb, W]` float32 CPU, `ia` and `ib` int64 `[R]`.
/// Differentiable in `a` and `b`; the backward pass sums the gradient's rows into each side in row
/// order, as index_select's does, so values and gradients are bit for bit those of the three-step
/// expression. Refused (an error, nothing computed) for other
/// kinds or shapes and for an index out of range.
pub fn gather_add(a: &Tensor, ia: &Tensor, b: &Tensor, ib: &Tensor) -> Result<Tensor, TorchOpError> {
    let null = std::ptr::null_mut();
    // SAFETY: four live tensor handles borrowed for the call, and no bias.
    new_tensor(|out, err, len| unsafe {
        ncf_gather_add(handle(a), handle(ia), handle(b), handle(ib), null, out, err, len)
    })
}

/// [`gather_add`] with a bias `[W]` added to `b`'s rows in the same pass: row `r` is
/// `a[ia[r]] + (b[ib[r]] + bias)`, for a `b` that holds a product computed without its bias. The
/// bias's gradient is the row sum of `b`'s (`sum(0)`, as a linear layer's bias gradient), so values
/// and gradients are bit for bit those of [`gather_add`] over a product with the bias inside,
/// wherever that product computes `acc + bias` (oneDNN's does; see `onednn_linear`). It saves
/// writing the bias into the product's output first. `bias` float32 on the CPU; otherwise as
/// [`gather_add`].
pub fn gather_add_with_bias(
    a: &Tensor,
    ia: &Tensor,
    b: &Tensor,
    ib: &Tensor,
    bias: &Tensor,
) -> Result<Tensor, TorchOpError> {
    // SAFETY: five live tensor handles borrowed for the call.
    new_tensor(|out, err, len| unsafe {
        ncf_gather_add(handle(a), handle(ia), handle(b), handle(ib), handle(bias), out, err, len)
    })
}

/// `(a.index_select(0, ia) + b.index_select(0, ib)).relu()` in one pass, for inference (no
/// gradient: refused when grad mode is on and `a` or `b` requires one): NeuMF's first MLP layer
/// read from per-user and per-item tables. The same bits as the three-step expression; refused as
/// [`gather_add`] is.
pub fn gather_add_relu(a: &Tensor, ia: &Tensor, b: &Tensor, ib: &Tensor) -> Result<Tensor, TorchOpError> {
    // SAFETY: four live tensor handles borrowed for the call.
    new_tensor(|out, err, len| unsafe {
        ncf_gather_add_relu(handle(a), handle(ia), handle(b), handle(ib), out, err, len)
    })
}

/// NeuMF's final layer over its two branches, read straight from the GMF embedding tables:
/// `logit[r] = b + (p[users[r]] * q[items[r]]) . w[..f] + h[r] . w[f..]`, `[R, 1]`, what
/// `final(cat([p[users] * q[items], h], 1))` computes, in one pass over the rows and, backward, one
/// pass over the columns (the threads split the columns, so every sum runs over the rows in order
/// and the result does not depend on the number of threads). It skips the gathered `[R, f]`
/// tables, their product, the `[R, f + d]` concatenation and their backward passes.
///
/// `p` `[Nu, f]` and `q` `[Ni, f]` (GMF's user and item tables), `h` `[R, d]` (the MLP branch's
/// output), `w` `[1, f + d]`, `b` `[1]`: contiguous float32 CPU tensors; `users`, `items` int64
/// `[R]`. Differentiable in `p`, `q`, `h`, `w` and `b` (the tables get dense gradients, as
/// `nn.Embedding` does). Equal to the plain expression up to float summation order. Anything else
/// (kinds, shapes, devices, an id out of range) is refused with an error and nothing computed.
#[allow(clippy::too_many_arguments)]
pub fn neumf_head(
    p: &Tensor,
    users: &Tensor,
    q: &Tensor,
    items: &Tensor,
    h: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<Tensor, TorchOpError> {
    // SAFETY: seven live tensor handles borrowed for the call; the bridge checks kinds and shapes.
    new_tensor(|out, err, len| unsafe {
        ncf_neumf_head(
            handle(p),
            handle(q),
            handle(h),
            handle(w),
            handle(b),
            handle(users),
            handle(items),
            out,
            err,
            len,
        )
    })
}

/// The tables and layers [`neumf_tables_forward`] takes a NeuMF (or MLP) through.
#[derive(Debug)]
pub struct TabledMlp<'a> {
    /// The first MLP layer's per-user half `[Nu, W]` and per-item half with the bias `[Ni, W]`.
    pub user_half: &'a Tensor,
    /// See `user_half`.
    pub item_half: &'a Tensor,
    /// Each deeper MLP layer's weight `[out, in]` and bias `[out]`, in order.
    pub layers: Vec<(&'a Tensor, &'a Tensor)>,
    /// The GMF branch's user and item tables `[Nu, f]`, `[Ni, f]` (NeuMF); `None` for an MLP.
    pub gmf: Option<(&'a Tensor, &'a Tensor)>,
    /// The final layer: weight `[1, f + d]` (or `[1, d]` without GMF) and bias `[1]`.
    pub last: (&'a Tensor, &'a Tensor),
}

/// Logits `[R, 1]` of a trained NeuMF (or MLP) in evaluation mode for the pairs `users[r]`,
/// `items[r]` (int64 `[R]`), from the first layer's tables: [`gather_add_relu`], then
/// [`onednn_linear_relu`] for each deeper layer, then [`neumf_head`] (or the final linear layer
/// without GMF), with the batch split into one run of rows per libtorch thread and each thread
/// taking its rows through every step, so the pool forks once per call rather than once per step.
/// Runs thinner than `rows_per_part` are not made (a small batch stays on one thread). Float32 CPU
/// tensors, no gradients (refused in grad mode when a parameter requires one); refused as the
/// steps are (kinds, shapes, ids out of range), with nothing returned. Each row equals the
/// step-by-step result up to float summation order.
pub fn neumf_tables_forward(
    mlp: &TabledMlp<'_>,
    users: &Tensor,
    items: &Tensor,
    rows_per_part: i64,
) -> Result<Tensor, TorchOpError> {
    let ws: Vec<Handle> = mlp.layers.iter().map(|(w, _)| handle(w)).collect();
    let bs: Vec<Handle> = mlp.layers.iter().map(|(_, b)| handle(b)).collect();
    let (p, q) = mlp.gmf.map_or((std::ptr::null_mut(), std::ptr::null_mut()), |(p, q)| (handle(p), handle(q)));
    // SAFETY: live tensor handles (or null for an absent GMF branch) borrowed for the call; `ws` and
    // `bs` hold `layers.len()` handles each.
    new_tensor(|out, err, len| unsafe {
        ncf_neumf_tables_forward(
            handle(mlp.user_half),
            handle(users),
            handle(mlp.item_half),
            handle(items),
            ws.as_ptr(),
            bs.as_ptr(),
            ws.len(),
            p,
            q,
            handle(mlp.last.0),
            handle(mlp.last.1),
            rows_per_part,
            out,
            err,
            len,
        )
    })
}

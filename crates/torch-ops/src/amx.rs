//! NeuMF's MLP branch in bfloat16 on Intel AMX tiles ([`AmxMlp`]): all-item scoring for one user
//! and fold-in's forward and backward pass, 32 rows at a time from the first layer to the
//! logit with every intermediate in the core's L1 cache. libtorch's own bfloat16 products (oneDNN)
//! spend ~20 us setting up each call, more than the arithmetic of fold-in's small products.
//!
//! Only where [`amx_available`] says so (Intel Xeon from Sapphire Rapids on, Linux granting the
//! tile state); elsewhere callers keep their float32 or oneDNN path.

use crate::{check, handle, handles, new_tensor, Handle, TorchOpError};
use std::ffi::c_char;
use tch::{Kind, Tensor};

extern "C" {
    fn ncf_amx_available() -> i32;
    fn ncf_amx_mlp_logits(
        first: Handle,
        u: Handle,
        fwd: *const Handle,
        bias: *const Handle,
        layers: usize,
        w: Handle,
        out: *mut Handle,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn ncf_amx_fold_in_step(
        first: Handle,
        w_user: Handle,
        mf: Handle,
        final_mf: Handle,
        final_bias: f64,
        fwd: *const Handle,
        bwd: *const Handle,
        bias: *const Handle,
        layers: usize,
        w: Handle,
        items: *const i64,
        n: i64,
        positives: i64,
        u_mlp: *const f32,
        d: i64,
        u_mf: *const f32,
        f: i64,
        grad_mlp: *mut f32,
        grad_mf: *mut f32,
        loss: *mut f64,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Whether [`AmxMlp`] runs here: a CPU with AMX-TILE, AMX-BF16 and AVX512-BF16, and a Linux kernel
/// that grants this process the tile state. Asked once per process.
pub fn amx_available() -> bool {
    // SAFETY: no arguments; the C++ side only reads CPUID and asks the kernel once.
    unsafe { ncf_amx_available() == 1 }
}

/// Widths the AMX kernels take: multiples of 32 (one tile row of bfloat16 values).
const WIDTH_MULTIPLE: i64 = 32;

/// An MLP's layers after the first, packed for AMX: `relu(x W_l^T + b_l)` for each, then the final
/// layer's MLP weights `w` (a dot per row). Built once per model; the weights are rounded to
/// bfloat16 (round to nearest even), biases and `w` stay float32, products accumulate in float32.
#[derive(Debug)]
pub struct AmxMlp {
    /// `W_l^T` as `[in/2, out, 2]` bfloat16 (the forward products).
    forward: Vec<Tensor>,
    /// `W_l` as `[out/2, in, 2]` bfloat16 (the backward products, to the layer's input).
    backward: Vec<Tensor>,
    bias: Vec<Tensor>,
    w: Tensor,
    first_width: i64,
}

/// `b` `[k, n]` (float) in AMX's pair layout: bfloat16 `[k/2, n, 2]`, each column's consecutive k
/// values side by side.
fn pack(b: &Tensor) -> Tensor {
    let (k, n) = (b.size()[0], b.size()[1]);
    b.to_kind(Kind::BFloat16).contiguous().view([k / 2, 2, n]).transpose(1, 2).contiguous()
}

impl AmxMlp {
    /// Packs the layers after the first (`(W_l [out, in], b_l [out])`, float32 or any float kind,
    /// a missing bias as zeros) and the final layer's MLP weights `w` `[h_L]`. Refused where
    /// [`amx_available`] is false, without a layer, or when a width is not a multiple of 32
    /// (NeuMF's defaults, 256/128/64, are).
    pub fn new(layers: &[(Tensor, Option<Tensor>)], w: &Tensor) -> Result<Self, TorchOpError> {
        if !amx_available() {
            return Err(TorchOpError("AMX: this CPU (or kernel) has no AMX bfloat16 tiles".into()));
        }
        let Some((first, _)) = layers.first() else {
            return Err(TorchOpError("AMX: the MLP needs at least one layer after the first".into()));
        };
        if let Some((l, (w, _))) = layers.iter().enumerate().find(|(_, (w, _))| w.dim() != 2) {
            return Err(TorchOpError(format!("AMX: layer {} weight is {:?}, not a matrix", l + 1, w.size())));
        }
        let first_width = first.size()[1];
        let mut width = first_width;
        let (mut forward, mut backward, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        tch::no_grad(|| -> Result<(), TorchOpError> {
            for (l, (weight, b)) in layers.iter().enumerate() {
                let (out, inp) = (weight.size()[0], weight.size()[1]);
                if inp != width || out % WIDTH_MULTIPLE != 0 || inp % WIDTH_MULTIPLE != 0 {
                    return Err(TorchOpError(format!(
                        "AMX: layer {} is {inp} -> {out}; widths must chain and be multiples of {WIDTH_MULTIPLE}",
                        l + 1
                    )));
                }
                let weight = weight.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
                forward.push(pack(&weight.tr()));
                backward.push(pack(&weight));
                // Copies, as the packed weights are: a later in-place change of the model's
                // parameters leaves this snapshot whole.
                bias.push(match b {
                    Some(b) if b.numel() as i64 == out => {
                        b.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().copy()
                    }
                    Some(b) => {
                        return Err(TorchOpError(format!(
                            "AMX: layer {} has {} bias values for {out} outputs",
                            l + 1,
                            b.numel()
                        )))
                    }
                    None => Tensor::zeros([out], (Kind::Float, tch::Device::Cpu)),
                });
                width = out;
            }
            Ok(())
        })?;
        if w.numel() as i64 != width {
            return Err(TorchOpError(format!(
                "AMX: the final MLP weights have {} values, the last layer {width}",
                w.numel()
            )));
        }
        let w = w.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]).copy();
        Ok(AmxMlp { forward, backward, bias, w, first_width })
    }

    /// The first layer's output width (`h1`, the input of the first packed layer).
    pub fn first_width(&self) -> i64 {
        self.first_width
    }

    /// The MLP's share of each row's logit (`mlp(relu(first_r + u)) . w`) for users given as the
    /// first layer's user part `u` (float32 `[h1]` for one user: `[N]` back; `[U, h1]` for
    /// several: `[U, N]`) against bfloat16 first-layer item rows `first` `[N, h1]` (the item half
    /// with the layer's bias). Each layer's activations are rounded to bfloat16 as the next
    /// product's input; the last layer's stay float32. Several users share one pass over `first`
    /// (each block of rows read from memory once for all of them); threads split the rows (1,024
    /// at least per thread).
    pub fn logits(&self, first: &Tensor, u: &Tensor) -> Result<Tensor, TorchOpError> {
        let (f, b) = (handles(&self.forward), handles(&self.bias));
        // SAFETY: live tensor handles, the lists as long as `layers`, borrowed for the call.
        new_tensor(|out, err, len| unsafe {
            ncf_amx_mlp_logits(
                handle(first),
                handle(u),
                f.as_ptr(),
                b.as_ptr(),
                f.len(),
                handle(&self.w),
                out,
                err,
                len,
            )
        })
    }

    /// One fold-in step for one person (`mlp_user` `[d]`, and `gmf_user` `[f]` with a GMF
    /// branch, empty without) against `items`, the first `positives` labelled 1, the rest 0:
    /// `p = W_user mlp_user`,
    /// `logit_r = final_bias + mlp(relu(first[i_r] + p)) . w + sum_k gmf_item[i_r, k] gmf_user[k] final_gmf[k]`.
    /// Writes the gradient of the binary cross-entropy summed over the pairs with respect to
    /// `mlp_user` and `gmf_user` into `grad_mlp` and `grad_gmf` (as long as the rows) and returns
    /// that loss (float64). Activations and the gradients between layers are rounded to bfloat16
    /// as products' inputs: the gradient differs from an unrounded one by a few percent (1-10%
    /// relative L2 at fold-in's shape in the tests). One thread.
    pub fn fold_in_step(
        &self,
        side: &FoldInSide<'_>,
        items: &[i64],
        positives: usize,
        (mlp_user, gmf_user): (&[f32], &[f32]),
        (grad_mlp, grad_gmf): (&mut [f32], &mut [f32]),
    ) -> Result<f64, TorchOpError> {
        if grad_mlp.len() != mlp_user.len() || grad_gmf.len() != gmf_user.len() {
            return Err(TorchOpError("AMX fold-in step: each gradient must be as long as its row".into()));
        }
        if gmf_user.is_empty() != side.gmf.is_none() {
            return Err(TorchOpError(
                "AMX fold-in step: a GMF user row goes with the GMF item table and final weights, and only with them"
                    .into(),
            ));
        }
        let (f, g, b) = (handles(&self.forward), handles(&self.backward), handles(&self.bias));
        let (mf, final_mf) =
            side.gmf.map_or((std::ptr::null_mut(), std::ptr::null_mut()), |(t, w)| (handle(t), handle(w)));
        let mut loss = 0f64;
        let mut err = vec![0u8; 1024];
        // SAFETY: live tensor handles (or null without the GMF branch), the lists as long as
        // `layers`, and slices whose lengths are passed with them, borrowed for the call; the
        // C++ side writes only `grad_mlp[..d]`, `grad_gmf[..f]` and `loss`.
        let code = unsafe {
            ncf_amx_fold_in_step(
                handle(side.first),
                handle(side.user_weight),
                mf,
                final_mf,
                side.final_bias,
                f.as_ptr(),
                g.as_ptr(),
                b.as_ptr(),
                f.len(),
                handle(&self.w),
                items.as_ptr(),
                items.len() as i64,
                positives as i64,
                mlp_user.as_ptr(),
                mlp_user.len() as i64,
                gmf_user.as_ptr(),
                gmf_user.len() as i64,
                grad_mlp.as_mut_ptr(),
                grad_gmf.as_mut_ptr(),
                &mut loss,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        check(code, &err)?;
        Ok(loss)
    }
}

/// What [`AmxMlp::fold_in_step`] reads besides the MLP, float32 CPU tensors, contiguous.
#[derive(Debug, Clone, Copy)]
pub struct FoldInSide<'a> {
    /// The first layer's item half with its bias, `[items, h1]`.
    pub first: &'a Tensor,
    /// The first layer's user columns `[h1, d]`.
    pub user_weight: &'a Tensor,
    /// With the GMF branch: its item table `[items, f]` and the final layer's GMF weights `[f]`.
    pub gmf: Option<(&'a Tensor, &'a Tensor)>,
    /// The final layer's bias.
    pub final_bias: f64,
}

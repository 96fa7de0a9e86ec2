// The few libtorch operations ncf-rs needs that tch 0.24 does not bind. Each takes tch's tensor
// handles (pointers to at::Tensor), catches every C++ exception and returns its message through
// `err` (0 = success), so nothing unwinds into Rust.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_fused_adam.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/custom_function.h>
#include "bridge.h"
#include <immintrin.h>
#include <algorithm>
#include <optional>
#include <cstring>
#include <vector>

// Exported by libtorch_cpu (ATen/native/mkldnn/Matmul.h, a header the wheels do not ship):
// result = beta * result + alpha * mat1 @ mat2 through oneDNN's matmul primitive. Takes float32
// on CPUs with AVX-512 (BW, VL, DQ), and contiguous or transposed (column-major) operands as they are.
namespace at {
namespace native {
TORCH_API void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta, float alpha);
}  // namespace native
}  // namespace at

namespace {
using ncf_bridge::fail;
using ncf_bridge::list;
using ncf_bridge::new_tensor;

// The products of y = x w^T (+ b) in oneDNN: forward, and both of the backward pass (dx = dy w,
// dw = dy^T x); db sums dy's rows. Two functions, as autograd takes no undefined (absent) input.
at::Tensor onednn_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor* b) {
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  if (b) {
    // The bias is the product's starting value (beta = 1), as addmm adds it. A copy, never
    // `contiguous()`: for one row that would be the bias itself, which the product would overwrite.
    // (oneDNN's inner product takes the bias itself, but builds a new kernel for every new row
    // count, and the first layer's row count changes with every batch: 70x slower here.)
    y.copy_(b->expand({x.size(0), w.size(0)}));
    at::native::mkldnn_matmul(x, w.t(), y, 1.0f, 1.0f);
  } else {
    at::native::mkldnn_matmul(x, w.t(), y, 0.0f, 1.0f);
  }
  return y;
}

torch::autograd::variable_list onednn_backward(torch::autograd::AutogradContext* ctx,
                                               const torch::autograd::variable_list& grads, bool bias) {
  auto saved = ctx->get_saved_variables();
  const at::Tensor& x = saved[0];
  const at::Tensor& w = saved[1];
  at::Tensor dy = grads[0].contiguous();
  torch::autograd::variable_list out(bias ? 3 : 2);
  if (ctx->needs_input_grad(0)) {
    out[0] = at::empty({dy.size(0), w.size(1)}, dy.options());
    at::native::mkldnn_matmul(dy, w, out[0], 0.0f, 1.0f);
  }
  if (ctx->needs_input_grad(1)) {
    out[1] = at::empty({w.size(0), w.size(1)}, dy.options());
    at::native::mkldnn_matmul(dy.t(), x.contiguous(), out[1], 0.0f, 1.0f);
  }
  if (bias && ctx->needs_input_grad(2)) out[2] = dy.sum(0);
  return out;
}

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b) {
    ctx->save_for_backward({x, w});
    return onednn_forward(x, w, &b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return onednn_backward(ctx, grads, true);
  }
};

struct OneDnnLinearNoBias : public torch::autograd::Function<OneDnnLinearNoBias> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return onednn_forward(x, w, nullptr);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return onednn_backward(ctx, grads, false);
  }
};

// An output computed outside autograd (`out`, e.g. x * mask written in one fused pass) made
// differentiable as `x * mask`: its gradient with respect to x is dy * mask. `out` and `mask`
// come as pointers, so autograd does not take them for inputs; `out` becomes the node's output.
struct MaskedBy : public torch::autograd::Function<MaskedBy> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::Tensor* out,
                            at::Tensor* mask) {
    (void)x;
    ctx->saved_data["mask"] = *mask;
    return *out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor mask = ctx->saved_data["mask"].toTensor();
    return {grads[0] * mask, at::Tensor(), at::Tensor()};
  }
};

// dx = dy * (keep ? scale : 0), element by element: the product by the float mask MaskedBy
// multiplies by, to the bit (signs of zero and NaNs included), reading one byte per element.
__attribute__((target_clones("avx512f", "avx2", "default"))) void scale_kept(const float* dy, const uint8_t* keep,
                                                                           float scale, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (keep[i] ? scale : 0.0f);
}

// MaskedBy with the mask as a uint8 0/1 `keep` and one `scale` (x * keep * scale): the mask saved
// for the backward pass takes a quarter of the float mask's memory.
struct MaskedByKeep : public torch::autograd::Function<MaskedByKeep> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::Tensor* out,
                            at::Tensor* keep, double scale) {
    TORCH_CHECK(keep->scalar_type() == at::kByte && keep->device().is_cpu() && keep->is_contiguous(),
                "masked_by_keep: keep must be a contiguous uint8 CPU tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat && out->scalar_type() == at::kFloat,
                "masked_by_keep: x and out must be float32");
    TORCH_CHECK(x.sizes() == out->sizes() && x.sizes() == keep->sizes(),
                "masked_by_keep: x, out and keep must have one shape");
    ctx->saved_data["keep"] = *keep;
    ctx->saved_data["scale"] = scale;
    return *out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor keep = ctx->saved_data["keep"].toTensor();
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty_like(dy, at::MemoryFormat::Contiguous);
    const float* pdy = dy.data_ptr<float>();
    const uint8_t* pk = keep.data_ptr<uint8_t>();
    float* pdx = dx.data_ptr<float>();
    at::parallel_for(0, dy.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      scale_kept(pdy + begin, pk + begin, scale, pdx + begin, end - begin);
    });
    return {dx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// dst[c] += src[c] for c < n.
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_row(float* __restrict__ dst,
                                                                        const float* __restrict__ src, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] += src[c];
}

// How many column ranges a row-summing loop splits `width` columns into: one per thread, each at
// least 16 columns (a 64-byte cache line of floats) so no two threads share a line of a row.
int64_t column_parts(int64_t width) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), width / 16));
}

// MaskedByKeep for `out = (x + b) * keep * scale`, x [N, W] and a bias b [W] added to every row (the
// sum made in the pass that wrote `out`): the gradient of x is MaskedByKeep's, and b's the row sum
// of it, computed as a linear layer's backward computes its bias gradient (at::sum over dim 0), so
// both are bit for bit those of a linear layer with the bias inside followed by MaskedByKeep.
struct MaskedByKeepWithBias : public torch::autograd::Function<MaskedByKeepWithBias> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& b,
                            at::Tensor* out, at::Tensor* keep, double scale) {
    TORCH_CHECK(x.dim() == 2 && b.dim() == 1 && b.size(0) == x.size(1),
                "masked_by_keep_with_bias: x must be [N, W] and b [W]; got x ", x.sizes(), ", b ", b.sizes());
    TORCH_CHECK(b.scalar_type() == at::kFloat, "masked_by_keep_with_bias: b must be float32");
    return MaskedByKeep::forward(ctx, x, out, keep, scale);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor dx = MaskedByKeep::backward(ctx, grads)[0];
    at::Tensor db = dx.sum(0);
    return {dx, db, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// relu(v) as torch.relu computes it: NaN stays NaN.
inline float relu1(float v) { return v < 0.f ? 0.f : v; }

// Rows this many ahead of the one being summed are asked for before they are needed: the tables
// are larger than the L2 cache and the rows random, so each row read otherwise waits a memory
// latency in turn (the loop's time at batch 1,024 of the reference NeuMF; see gather_add_forward).
constexpr int64_t PREFETCH_ROWS_AHEAD = 6;

// Asks the cache for every line of a row of `width` floats (a hint: no fault, no effect on values).
inline void prefetch_row(const float* row, int64_t width) {
  for (int64_t c = 0; c < width; c += 16) __builtin_prefetch(row + c, 0, 3);
}

// o = x + (y + bias), or x + y without a bias, or relu(x + y): one row, in the widest vector
// instructions the CPU has (the build targets plain x86-64).
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_rows(float* __restrict__ o,
                                                                         const float* __restrict__ x,
                                                                         const float* __restrict__ y,
                                                                         const float* __restrict__ bias, bool relu,
                                                                         int64_t width) {
  if (bias) {
    for (int64_t c = 0; c < width; ++c) o[c] = x[c] + (y[c] + bias[c]);
  } else if (relu) {
    for (int64_t c = 0; c < width; ++c) o[c] = relu1(x[c] + y[c]);
  } else {
    for (int64_t c = 0; c < width; ++c) o[c] = x[c] + y[c];
  }
}

// out[r] = a[ia[r]] + b[ib[r]] for float32 CPU matrices a [Na, W], b [Nb, W] and int64 indices
// [R]: two row gathers and their sum in one pass that writes `out` once (instead of two gathered
// copies and a third for the sum). The backward pass sums the gradient's rows into each side in
// row order, as index_select's backward does, so the gradients are bit for bit those of
// `a.index_select(0, ia) + b.index_select(0, ib)`.
// The forward pass of GatherAdd and GatherAddBias: out[r] = a[ia[r]] + b[ib[r]], or with a bias
// [W] a[ia[r]] + (b[ib[r]] + bias), the sum b's product would have made with the bias inside.
// Without a ctx (inference, gather_add_relu) nothing is saved for a backward pass; `relu` applies
// relu to each sum in the same pass.
at::Tensor gather_add_forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& ia,
                              const at::Tensor& b, const at::Tensor& ib, const at::Tensor* bias, bool relu = false) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), "gather_add: a and b must be [N, W] of one W");
  TORCH_CHECK(a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.device().is_cpu() &&
                  b.device().is_cpu(),
              "gather_add: a and b must be float32 CPU tensors");
  TORCH_CHECK(ia.scalar_type() == at::kLong && ib.scalar_type() == at::kLong && ia.dim() == 1 && ib.dim() == 1 &&
                  ia.size(0) == ib.size(0),
              "gather_add: ia and ib must be int64 [R] of one R");
  TORCH_CHECK(!bias || (bias->scalar_type() == at::kFloat && bias->device().is_cpu() && bias->dim() == 1 &&
                        bias->size(0) == a.size(1)),
              "gather_add: the bias must be a float32 CPU [W]");
  at::Tensor ac = a.contiguous(), bc = b.contiguous(), iac = ia.contiguous(), ibc = ib.contiguous();
  at::Tensor biasc = bias ? bias->contiguous() : at::Tensor();
  const int64_t rows = iac.size(0), width = ac.size(1), na = ac.size(0), nb = bc.size(0);
  const int64_t* pa = iac.data_ptr<int64_t>();
  const int64_t* pb = ibc.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(pa[r] >= 0 && pa[r] < na && pb[r] >= 0 && pb[r] < nb, "gather_add: index out of range at row ", r);
  }
  at::Tensor out = at::empty({rows, width}, ac.options());
  const float* da = ac.data_ptr<float>();
  const float* db = bc.data_ptr<float>();
  const float* dbias = bias ? biasc.data_ptr<float>() : nullptr;
  float* dout = out.data_ptr<float>();
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < std::min(end, begin + PREFETCH_ROWS_AHEAD); ++r) {
      prefetch_row(da + pa[r] * width, width);
      prefetch_row(db + pb[r] * width, width);
    }
    for (int64_t r = begin; r < end; ++r) {
      if (r + PREFETCH_ROWS_AHEAD < end) {
        prefetch_row(da + pa[r + PREFETCH_ROWS_AHEAD] * width, width);
        prefetch_row(db + pb[r + PREFETCH_ROWS_AHEAD] * width, width);
      }
      const float* x = da + pa[r] * width;
      const float* y = db + pb[r] * width;
      float* o = dout + r * width;
      add_rows(o, x, y, dbias, relu, width);
    }
  });
  if (!ctx) return out;
  ctx->save_for_backward({iac, ibc});
  ctx->saved_data["a_rows"] = na;
  ctx->saved_data["b_rows"] = nb;
  return out;
}

// The gradients of a and b (each undefined where not `want`ed): both sides' row sums in one pass
// over g (index_select's backward is one index_add per side, each sorting its index first). The
// threads split the columns, not the rows, so no two write one element and every element sums its
// rows in row order: the same bits as index_add's (which also adds each destination's rows in
// order, starting from zero), whatever the number of threads.
std::pair<at::Tensor, at::Tensor> gather_add_backward(torch::autograd::AutogradContext* ctx, const at::Tensor& grad,
                                                      bool want_a, bool want_b) {
  auto saved = ctx->get_saved_variables();
  at::Tensor g = grad.contiguous();
  const int64_t width = g.size(1), rows = g.size(0);
  at::Tensor ga, gb;
  if (want_a) ga = at::zeros({ctx->saved_data["a_rows"].toInt(), width}, g.options());
  if (want_b) gb = at::zeros({ctx->saved_data["b_rows"].toInt(), width}, g.options());
  if (!want_a && !want_b) return {ga, gb};
  const float* pg = g.data_ptr<float>();
  const int64_t* pa = saved[0].data_ptr<int64_t>();
  const int64_t* pb = saved[1].data_ptr<int64_t>();
  float* da = want_a ? ga.data_ptr<float>() : nullptr;
  float* db = want_b ? gb.data_ptr<float>() : nullptr;
  const int64_t parts = column_parts(width);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t c0 = width * part / parts, c1 = width * (part + 1) / parts;
      for (int64_t r = 0; r < rows; ++r) {
        if (da) add_row(da + pa[r] * width + c0, pg + r * width + c0, c1 - c0);
        if (db) add_row(db + pb[r] * width + c0, pg + r * width + c0, c1 - c0);
      }
    }
  });
  return {ga, gb};
}

struct GatherAdd : public torch::autograd::Function<GatherAdd> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& ia,
                            const at::Tensor& b, const at::Tensor& ib) {
    return gather_add_forward(ctx, a, ia, b, ib, nullptr);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto [ga, gb] = gather_add_backward(ctx, grads[0], ctx->needs_input_grad(0), ctx->needs_input_grad(2));
    return {ga, at::Tensor(), gb, at::Tensor()};
  }
};

// GatherAdd with b's bias added in the same pass (b holds a product without its bias). The bias's
// gradient is the row sum of b's, computed as a linear layer's backward computes its bias gradient
// (at::sum over dim 0 of the same tensor), so every gradient is bit for bit that of a product with
// the bias inside followed by GatherAdd, wherever that product computes acc + bias (oneDNN's does).
struct GatherAddBias : public torch::autograd::Function<GatherAddBias> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& ia,
                            const at::Tensor& b, const at::Tensor& ib, const at::Tensor& bias) {
    return gather_add_forward(ctx, a, ia, b, ib, &bias);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const bool want_bias = ctx->needs_input_grad(4);
    auto [ga, gb] = gather_add_backward(ctx, grads[0], ctx->needs_input_grad(0), ctx->needs_input_grad(2) || want_bias);
    at::Tensor gbias = want_bias ? gb.sum(0) : at::Tensor();
    return {ga, at::Tensor(), gb, at::Tensor(), gbias};
  }
};

// NeuMF's last layer over its two branches, from the GMF embedding tables themselves:
//   logit[r] = b + sum_k P[u_r, k] Q[i_r, k] w[k] + sum_k h[r, k] w[f + k]
// for P [Nu, f], Q [Ni, f] (GMF's user and item tables), h [R, d] (the MLP's output), w [1, f + d]
// and b [1] (the final Linear), int64 users u and items i [R]. What
// `final(cat([P[u] * Q[i], h], 1))` computes, without its four [R, f]-to-[R, f + d] intermediates
// (two gathered tables, their product and the concatenation) or their backward passes.
__attribute__((target_clones("avx512f", "avx2", "default"))) void head_rows(
    const float* __restrict__ p, const float* __restrict__ q, const float* __restrict__ h,
    const float* __restrict__ w, float bias, const int64_t* __restrict__ users, const int64_t* __restrict__ items,
    int64_t f, int64_t d, float* __restrict__ out, int64_t begin, int64_t end) {
  constexpr int64_t L = 16;
  for (int64_t r = begin; r < end; ++r) {
    const float* pu = p + users[r] * f;
    const float* qi = q + items[r] * f;
    const float* hr = h + r * d;
    const float* wh = w + f;
    float acc[L] = {0};
    int64_t k = 0;
    for (; k + L <= f; k += L)
      for (int64_t j = 0; j < L; ++j) acc[j] += (pu[k + j] * qi[k + j]) * w[k + j];
    for (; k < f; ++k) acc[0] += (pu[k] * qi[k]) * w[k];
    for (k = 0; k + L <= d; k += L)
      for (int64_t j = 0; j < L; ++j) acc[j] += hr[k + j] * wh[k + j];
    for (; k < d; ++k) acc[0] += hr[k] * wh[k];
    float sum = 0.0f;
    for (int64_t j = 0; j < L; ++j) sum += acc[j];
    out[r] = bias + sum;
  }
}

// The backward pass of head_rows for the columns [c0, c1) of the GMF part and [e0, e1) of the MLP
// part, rows in order:
//   dP[u_r, k] += (g_r w[k]) Q[i_r, k],  dQ[i_r, k] += (g_r w[k]) P[u_r, k],
//   dw[k] = sum_r g_r (P[u_r, k] Q[i_r, k]),  dh[r, k] = g_r w[f + k],  dw[f + k] = sum_r g_r h[r, k].
// dP and dQ start at zero; dw and the sums are written whole for their columns.
__attribute__((target_clones("avx512f", "avx2", "default"))) void head_columns(
    const float* __restrict__ p, const float* __restrict__ q, const float* __restrict__ h,
    const float* __restrict__ w, const float* __restrict__ g, const int64_t* __restrict__ users,
    const int64_t* __restrict__ items, int64_t rows, int64_t f, int64_t d, float* __restrict__ dp,
    float* __restrict__ dq, float* __restrict__ dh, float* __restrict__ dw, int64_t c0, int64_t c1, int64_t e0,
    int64_t e1) {
  for (int64_t k = c0; k < c1; ++k) dw[k] = 0.0f;
  for (int64_t k = e0; k < e1; ++k) dw[f + k] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float gr = g[r];
    const float* pu = p + users[r] * f;
    const float* qi = q + items[r] * f;
    float* dpu = dp + users[r] * f;
    float* dqi = dq + items[r] * f;
    for (int64_t k = c0; k < c1; ++k) {
      const float t = gr * w[k];
      dpu[k] += t * qi[k];
      dqi[k] += t * pu[k];
      dw[k] += gr * (pu[k] * qi[k]);
    }
    const float* hr = h + r * d;
    float* dhr = dh + r * d;
    for (int64_t k = e0; k < e1; ++k) {
      dhr[k] = gr * w[f + k];
      dw[f + k] += gr * hr[k];
    }
  }
}

// NeuMfHead's forward values: its checks (kinds, shapes, every id in range) and the logits.
at::Tensor neumf_head_values(const at::Tensor& p, const at::Tensor& q, const at::Tensor& h, const at::Tensor& w,
                             const at::Tensor& b, const at::Tensor& users, const at::Tensor& items) {
  auto float_cpu = [](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat && t.device().is_cpu() && t.is_contiguous();
  };
  TORCH_CHECK(float_cpu(p) && float_cpu(q) && float_cpu(h) && float_cpu(w) && float_cpu(b),
              "neumf_head: P, Q, h, w and b must be contiguous float32 CPU tensors");
  TORCH_CHECK(p.dim() == 2 && q.dim() == 2 && h.dim() == 2 && p.size(1) == q.size(1),
              "neumf_head: P [Nu, f], Q [Ni, f] and h [R, d] must be matrices, P and Q of one width");
  const int64_t f = p.size(1), d = h.size(1), rows = h.size(0);
  TORCH_CHECK(w.numel() == f + d && w.size(0) == 1 && b.numel() == 1,
              "neumf_head: w must be [1, f + d] = [1, ", f + d, "] and b [1]; got w ", w.sizes(), ", b ", b.sizes());
  TORCH_CHECK(users.scalar_type() == at::kLong && items.scalar_type() == at::kLong && users.dim() == 1 &&
                  items.dim() == 1 && users.size(0) == rows && items.size(0) == rows,
              "neumf_head: users and items must be int64 [R] with R = h's rows (", rows, ")");
  at::Tensor uc = users.contiguous(), ic = items.contiguous();
  const int64_t* pu = uc.data_ptr<int64_t>();
  const int64_t* pi = ic.data_ptr<int64_t>();
  const int64_t nu = p.size(0), ni = q.size(0);
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(pu[r] >= 0 && pu[r] < nu && pi[r] >= 0 && pi[r] < ni, "neumf_head: id out of range at row ", r);
  }
  at::Tensor out = at::empty({rows, 1}, h.options());
  const float* pp = p.data_ptr<float>();
  const float* pq = q.data_ptr<float>();
  const float* ph = h.data_ptr<float>();
  const float* pw = w.data_ptr<float>();
  const float bias = b.data_ptr<float>()[0];
  float* po = out.data_ptr<float>();
  at::parallel_for(0, rows, 1024, [&](int64_t begin, int64_t end) {
    // In pieces, each piece's GMF rows asked for before it is summed (see PREFETCH_ROWS_AHEAD).
    constexpr int64_t PIECE = 16;
    auto prefetch = [&](int64_t from, int64_t to) {
      for (int64_t r = from; r < to; ++r) {
        prefetch_row(pp + pu[r] * f, f);
        prefetch_row(pq + pi[r] * f, f);
      }
    };
    prefetch(begin, std::min(end, begin + PIECE));
    for (int64_t piece = begin; piece < end; piece += PIECE) {
      const int64_t stop = std::min(end, piece + PIECE);
      prefetch(stop, std::min(end, stop + PIECE));
      head_rows(pp, pq, ph, pw, bias, pu, pi, f, d, po, piece, stop);
    }
  });
  return out;
}

struct NeuMfHead : public torch::autograd::Function<NeuMfHead> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& p, const at::Tensor& q,
                            const at::Tensor& h, const at::Tensor& w, const at::Tensor& b, const at::Tensor& users,
                            const at::Tensor& items) {
    at::Tensor out = neumf_head_values(p, q, h, w, b, users, items);
    ctx->save_for_backward({p, q, h, w, users.contiguous(), items.contiguous()});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &p = saved[0], &q = saved[1], &h = saved[2], &w = saved[3], &users = saved[4],
                     &items = saved[5];
    at::Tensor g = grads[0].contiguous();
    const int64_t f = p.size(1), d = h.size(1), rows = h.size(0);
    at::Tensor dp = at::zeros_like(p), dq = at::zeros_like(q), dh = at::empty_like(h), dw = at::empty_like(w);
    const float* pg = g.data_ptr<float>();
    // The threads split the columns (each its share of the GMF part and of the MLP part), not
    // the rows: no two write one element, and every sum runs over the rows in order, so the
    // result does not depend on the number of threads.
    const int64_t parts = column_parts(std::max(f, d));
    at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
      for (int64_t part = begin; part < end; ++part) {
        head_columns(p.data_ptr<float>(), q.data_ptr<float>(), h.data_ptr<float>(), w.data_ptr<float>(), pg,
                     users.data_ptr<int64_t>(), items.data_ptr<int64_t>(), rows, f, d, dp.data_ptr<float>(),
                     dq.data_ptr<float>(), dh.data_ptr<float>(), dw.data_ptr<float>(), f * part / parts,
                     f * (part + 1) / parts, d * part / parts, d * (part + 1) / parts);
      }
    });
    at::Tensor db = g.sum().reshape({1});
    return {dp, dq, dh, dw, db, at::Tensor(), at::Tensor()};
  }
};

__attribute__((target_clones("avx512f", "avx2", "default"))) void add_relu_rows(float* __restrict__ y,
                                                                              const float* __restrict__ b,
                                                                              int64_t width, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r, y += width)
    for (int64_t c = 0; c < width; ++c) y[c] = relu1(y[c] + b[c]);
}

// Rows per parallel piece for an element-wise pass over [rows, width]: ~64K elements, so a small
// batch runs on one thread (waking the pool costs more than the pass).
int64_t elementwise_grain(int64_t width) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, width)); }

void inference_only(const char* what, std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return;
  for (const at::Tensor* t : ts)
    TORCH_CHECK(!t->requires_grad(), what, ": inference only (its result has no gradient); call it under no_grad");
}

// relu(a[ia] + b[ib]) row by row, written once: NeuMF's first MLP layer from its per-user and
// per-item tables (the item table holding the bias), in evaluation mode.
at::Tensor gather_add_relu(const at::Tensor& a, const at::Tensor& ia, const at::Tensor& b, const at::Tensor& ib) {
  inference_only("gather_add_relu", {&a, &b});
  return gather_add_forward(nullptr, a, ia, b, ib, nullptr, true);
}

// relu(x w^T + b) in evaluation mode: the product in oneDNN, then the bias and the relu in one pass
// over the output in place. oneDNN's float32 product computes acc + b where the bias is the
// output's starting value (onednn_forward), so adding it after the product gives the same bits,
// without writing the bias into the output first or a separate relu pass and its new tensor.
at::Tensor onednn_linear_relu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  inference_only("onednn_linear_relu", {&x, &w, &b});
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && b.dim() == 1 && b.size(0) == w.size(0),
              "onednn_linear_relu: needs x [N, in], w [out, in] and b [out]; got x ", x.sizes(), ", w ", w.sizes(),
              ", b ", b.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat &&
                  x.device().is_cpu() && w.device().is_cpu() && b.device().is_cpu(),
              "onednn_linear_relu: x, w and b must be float32 CPU tensors");
  at::Tensor y = onednn_forward(x, w, nullptr);
  at::Tensor bc = b.contiguous();
  const float* pb = bc.data_ptr<float>();
  float* py = y.data_ptr<float>();
  const int64_t width = y.size(1);
  at::parallel_for(0, y.size(0), elementwise_grain(width),
                   [&](int64_t begin, int64_t end) { add_relu_rows(py + begin * width, pb, width, end - begin); });
  return y;
}

// NeuMF's (or MLP's) logits in evaluation mode from its first-layer tables, the batch split into
// one run of rows per thread and each thread taking its rows through every layer:
//   x = relu(ut[users] + it[items]);  x = relu(x W_k^T + b_k) for each deeper layer;
//   logit = the head (NeuMfHead's from the GMF tables p, q; without them, x w^T + b).
// The same steps as calling gather_add_relu, onednn_linear_relu and neumf_head in turn, but one
// fork of the thread pool per call instead of one per step: inside a parallel region libtorch's
// and oneDNN's own loops run on the calling thread. At batch 1,024 of the reference NeuMF each
// step's fork and join cost as much as a tenth of the call. `rows_per_part` bounds how thin the
// runs get (a small batch stays on one thread). Each row's values are those of the step-by-step
// calls up to float summation order (oneDNN may block a product of fewer rows differently).
at::Tensor neumf_tables_forward(const at::Tensor& ut, const at::Tensor& users, const at::Tensor& it,
                                const at::Tensor& items, const std::vector<at::Tensor>& ws,
                                const std::vector<at::Tensor>& bs, const at::Tensor* p, const at::Tensor* q,
                                const at::Tensor& w, const at::Tensor& b, int64_t rows_per_part) {
  inference_only("neumf_tables_forward", {&ut, &it, &w, &b});
  for (const auto& t : ws) inference_only("neumf_tables_forward", {&t});
  for (const auto& t : bs) inference_only("neumf_tables_forward", {&t});
  if (p && q) inference_only("neumf_tables_forward", {p, q});
  TORCH_CHECK(ws.size() == bs.size(), "neumf_tables_forward: one bias per layer");
  TORCH_CHECK(!p == !q, "neumf_tables_forward: the GMF tables come as a pair (both or neither)");
  TORCH_CHECK(users.dim() == 1 && items.dim() == 1 && users.size(0) == items.size(0),
              "neumf_tables_forward: users and items must be [R] of one R");
  TORCH_CHECK(w.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && w.device().is_cpu() &&
                  b.device().is_cpu(),
              "neumf_tables_forward: the final layer must be float32 on the CPU");
  const int64_t n = users.size(0);
  const int64_t parts =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / std::max<int64_t>(1, rows_per_part)));
  at::Tensor out = at::empty({n, 1}, w.options());
  at::Tensor wc = w.contiguous(), bc = b.contiguous();
  // The caller's inference mode and dispatch keys (inference mode's, autocast's) in every worker:
  // OpenMP's threads start with libtorch's defaults (grad mode on, no inference mode), so without
  // them a caller in torch.inference_mode() would see `out`, an inference tensor, refused for the
  // in-place copy in a worker, and the grad-mode checks of the steps fail there. (Not the whole
  // at::ThreadLocalState: capturing and installing it measured a few percent slower per
  // 1,024-pair call from Python, 2 cores, noisy.)
  const bool caller_inference = c10::InferenceMode::is_enabled();
  const c10::impl::LocalDispatchKeySet caller_keys = c10::impl::tls_local_dispatch_key_set();
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    std::optional<c10::InferenceMode> inference;
    if (caller_inference) inference.emplace(true);
    c10::impl::ForceDispatchKeyGuard keys(caller_keys);
    at::NoGradGuard no_grad;  // the caller's grad mode was checked above (inference_only)
    for (int64_t part = begin; part < end; ++part) {
      const int64_t lo = n * part / parts, hi = n * (part + 1) / parts;
      if (hi <= lo) continue;
      at::Tensor u = users.narrow(0, lo, hi - lo), i = items.narrow(0, lo, hi - lo);
      at::Tensor x = gather_add_forward(nullptr, ut, u, it, i, nullptr, true);
      for (size_t k = 0; k < ws.size(); ++k) x = onednn_linear_relu(x, ws[k], bs[k]);
      at::Tensor logits = (p && q) ? neumf_head_values(*p, *q, x, wc, bc, u, i) : at::linear(x, wc, bc);
      out.narrow(0, lo, hi - lo).copy_(logits);
    }
  });
  return out;
}

// A bfloat16 value widened to float32 (exact: a bfloat16 is a float32's high half).
inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Sixteen of them at once.
__attribute__((target("avx512f"))) inline __m512 bf16x16_to_float(const uint16_t* p) {
  const __m256i in = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(in), 16));
}

// Whether the CPU runs the AVX-512 loops below (asked once).
bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

// relu(a + u) for a bfloat16 matrix a [N, W] and a float32 row u [W], rounded to bfloat16: the sum
// and relu in float32, then float32 -> bfloat16 round-to-nearest-even with NaN kept a NaN, the
// rounding libtorch's .to(torch.bfloat16) uses (c10::BFloat16), so the result is bit for bit
// `(a.float() + u).relu().bfloat16()` (a NaN is written as c10's quiet NaN 0x7FC0; libtorch's
// vectorized conversion may keep another NaN's bits). One row per call.
inline uint16_t bf16_add_relu_one(uint16_t a, float u) {
  const float v = relu1(bf16_to_float(a) + u);
  if (v != v) return 0x7FC0;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

void bf16_add_relu_row_plain(uint16_t* __restrict__ o, const uint16_t* __restrict__ a, const float* __restrict__ u,
                             int64_t width) {
  for (int64_t c = 0; c < width; ++c) o[c] = bf16_add_relu_one(a[c], u[c]);
}

// The same, 16 columns at a time in AVX-512 (GCC left the plain loop scalar: ~1 ns per element).
__attribute__((target("avx512f"))) void bf16_add_relu_row_avx512(uint16_t* __restrict__ o,
                                                                   const uint16_t* __restrict__ a,
                                                                   const float* __restrict__ u, int64_t width) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i round = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1), qnan = _mm512_set1_epi32(0x7FC0);
  int64_t c = 0;
  for (; c + 16 <= width; c += 16) {
    __m512 v = _mm512_add_ps(bf16x16_to_float(a + c), _mm512_loadu_ps(u + c));
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);  // relu1: NaN stays
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(round, lsb)), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), qnan);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), _mm512_cvtepi32_epi16(r));
  }
  for (; c < width; ++c) o[c] = bf16_add_relu_one(a[c], u[c]);
}

// x[r] . w for bfloat16 rows x [N, D] and float32 weights w [D], float32 products and sums (the
// bfloat16 values are exact in float32): one row per call, plain and AVX-512.
float bf16_row_dot_plain(const uint16_t* __restrict__ x, const float* __restrict__ w, int64_t d) {
  float sum = 0.f;
  for (int64_t k = 0; k < d; ++k) sum += bf16_to_float(x[k]) * w[k];
  return sum;
}

__attribute__((target("avx512f"))) float bf16_row_dot_avx512(const uint16_t* __restrict__ x,
                                                              const float* __restrict__ w, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= d; k += 16) {
    acc = _mm512_add_ps(acc, _mm512_mul_ps(bf16x16_to_float(x + k), _mm512_loadu_ps(w + k)));
  }
  return _mm512_reduce_add_ps(acc) + bf16_row_dot_plain(x + k, w + k, d - k);
}

// The checks bf16_rows_dot and bf16_add_relu share: `m` a bfloat16 matrix [N, width] and `v` a
// float32 row [width], both on the CPU, neither wanting a gradient; the messages name them as the
// caller does.
void check_bf16_matrix_and_row(const char* what, const char* m_name, const at::Tensor& m, const char* v_name,
                               const at::Tensor& v, const char* width) {
  inference_only(what, {&m, &v});
  TORCH_CHECK(m.dim() == 2 && v.dim() == 1 && v.size(0) == m.size(1), what, ": needs ", m_name, " [N, ", width,
              "] and ", v_name, " [", width, "]; got ", m_name, " ", m.sizes(), ", ", v_name, " ", v.sizes());
  TORCH_CHECK(m.scalar_type() == at::kBFloat16 && v.scalar_type() == at::kFloat && m.device().is_cpu() &&
                  v.device().is_cpu(),
              what, ": ", m_name, " must be bfloat16 and ", v_name, " float32, both on the CPU");
}

// Each bfloat16 row of x [N, D] dotted with float32 w [D]: float32 [N]. The MLP branch's share of
// the final layer in bfloat16 all-item scoring, without a float32 copy of x and a matrix-vector
// product over it.
at::Tensor bf16_rows_dot(const at::Tensor& x, const at::Tensor& w) {
  check_bf16_matrix_and_row("bf16_rows_dot", "x", x, "w", w, "D");
  at::Tensor xc = x.contiguous(), wc = w.contiguous();
  at::Tensor out = at::empty({xc.size(0)}, wc.options());
  const int64_t d = xc.size(1);
  const auto* px = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
  const float* pw = wc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const bool avx512 = cpu_has_avx512f();
  at::parallel_for(0, xc.size(0), elementwise_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      po[r] = avx512 ? bf16_row_dot_avx512(px + r * d, pw, d) : bf16_row_dot_plain(px + r * d, pw, d);
  });
  return out;
}

// NeuMF's first MLP layer for all-item scoring in bfloat16: relu(item_half + user_part), where the
// item half (the layer's item columns times every item's embedding, plus the layer's bias) was
// computed once in float32 and stored as bfloat16, and the user's part is float32. An element-wise
// pass over [items, W], in place of a bfloat16 product over the item embeddings.
at::Tensor bf16_add_relu(const at::Tensor& a, const at::Tensor& u) {
  check_bf16_matrix_and_row("bf16_add_relu", "a", a, "u", u, "W");
  at::Tensor ac = a.contiguous(), uc = u.contiguous();
  at::Tensor out = at::empty(ac.sizes(), ac.options());
  const int64_t width = ac.size(1);
  const auto* pa = reinterpret_cast<const uint16_t*>(ac.data_ptr<at::BFloat16>());
  auto* po = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const float* pu = uc.data_ptr<float>();
  const bool avx512 = cpu_has_avx512f();
  at::parallel_for(0, ac.size(0), elementwise_grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (avx512) {
        bf16_add_relu_row_avx512(po + r * width, pa + r * width, pu, width);
      } else {
        bf16_add_relu_row_plain(po + r * width, pa + r * width, pu, width);
      }
    }
  });
  return out;
}

// relu(x w^T + b) in bfloat16 for inference: oneDNN's matmul with the bias and the relu fused as
// post-ops (AMX where the CPU has it), float32 accumulation, a bfloat16 result. Through
// PyTorch's own `mkldnn::_linear_pointwise` (what torch.compile emits for a linear-relu on the
// CPU), called by name through the dispatcher: the op has no public C++ header. Fusing matters in
// bfloat16: libtorch's separate bfloat16 element-wise passes cost more than the product here.
at::Tensor bf16_linear_relu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  inference_only("bf16_linear_relu", {&x, &w, &b});
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && b.dim() == 1 && b.size(0) == w.size(0),
              "bf16_linear_relu: needs x [N, in], w [out, in] and b [out]; got x ", x.sizes(), ", w ", w.sizes(),
              ", b ", b.sizes());
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16 &&
                  b.scalar_type() == at::kBFloat16 && x.device().is_cpu() && w.device().is_cpu() &&
                  b.device().is_cpu(),
              "bf16_linear_relu: x, w and b must be bfloat16 CPU tensors");
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack;
  stack.emplace_back(x.contiguous());
  stack.emplace_back(w.contiguous());
  stack.emplace_back(b.contiguous());
  stack.emplace_back(std::string("relu"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(c10::IValue());
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

}  // namespace

extern "C" {

// torch._fused_adam_ over n parameters (one multi-tensor kernel on CUDA, one fused loop on CPU).
// `step` is one float tensor holding the step number already incremented; grad_scale/found_inf
// may be null (AMP: the kernel unscales by 1/grad_scale and skips every update when found_inf != 0).
int ncf_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                   size_t n, at::Tensor* step, double lr, double beta1, double beta2, double eps,
                   at::Tensor* grad_scale, at::Tensor* found_inf, char* err, size_t err_len) {
  try {
    std::vector<at::Tensor> steps(n, *step);
    std::optional<at::Tensor> scale = grad_scale ? std::optional<at::Tensor>(*grad_scale) : std::nullopt;
    std::optional<at::Tensor> inf = found_inf ? std::optional<at::Tensor>(*found_inf) : std::nullopt;
    at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, steps, lr,
                     beta1, beta2, /*weight_decay=*/0.0, eps, /*amsgrad=*/false, /*maximize=*/false, scale, inf);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// `p.grad = None` for each tensor (PyTorch's zero_grad(set_to_none=True)): the next backward
// writes fresh gradients instead of adding into zeroed ones.
int ncf_clear_grads(at::Tensor** tensors, size_t n, char* err, size_t err_len) {
  try {
    for (size_t i = 0; i < n; ++i) tensors[i]->mutable_grad().reset();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// torch._amp_foreach_non_finite_check_and_unscale_: multiplies every gradient by inv_scale and sets
// found_inf to 1 if any element of any gradient is inf or NaN.
int ncf_amp_check_and_unscale(at::Tensor** grads, size_t n, at::Tensor* found_inf, at::Tensor* inv_scale, char* err,
                              size_t err_len) {
  try {
    auto g = list(grads, n);
    at::_amp_foreach_non_finite_check_and_unscale_(g, *found_inf, *inv_scale);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// torch.set_float32_matmul_precision: "highest" (full float32) or "high" (TF32 on CUDA).
int ncf_set_float32_matmul_precision(const char* precision, char* err, size_t err_len) {
  try {
    at::globalContext().setFloat32MatmulPrecision(precision);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// Makes cuda:index the current device of this thread (torch.cuda.set_device), through c10's
// device-guard registry so no CUDA header is needed here.
int ncf_set_cuda_device(int index, char* err, size_t err_len) {
  try {
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(c10::Device(c10::DeviceType::CUDA, index));
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// y = x w^T + b (b may be null) for float32 CPU tensors, products in oneDNN, differentiable; the
// result is a new tensor handle for tch (which frees it).
int ncf_onednn_linear(at::Tensor* x, at::Tensor* w, at::Tensor* b, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len,
                    [&] { return b ? OneDnnLinear::apply(*x, *w, *b) : OneDnnLinearNoBias::apply(*x, *w); });
}

// `out` as the differentiable result of `x * mask` (see MaskedBy); a new tensor handle for tch.
int ncf_masked_by(at::Tensor* x, at::Tensor* out, at::Tensor* mask, at::Tensor** result, char* err, size_t err_len) {
  return new_tensor(result, err, err_len, [&] { return MaskedBy::apply(*x, out, mask); });
}

// `out` as the differentiable result of `x * keep * scale` (see MaskedByKeep), or with a bias of
// `(x + b) * keep * scale` (MaskedByKeepWithBias); a new tensor handle.
int ncf_masked_by_keep(at::Tensor* x, at::Tensor* b, at::Tensor* out, at::Tensor* keep, double scale,
                       at::Tensor** result, char* err, size_t err_len) {
  return new_tensor(result, err, err_len, [&] {
    return b ? MaskedByKeepWithBias::apply(*x, *b, out, keep, scale) : MaskedByKeep::apply(*x, out, keep, scale);
  });
}

// Runs f(ctx, begin, end) over [0, n) in pieces of at least `grain` on libtorch's own thread pool
// (OpenMP), so work done in Rust shares the cores with libtorch's instead of fighting it. f must
// not throw or unwind.
int ncf_parallel_for(int64_t n, int64_t grain, void (*f)(void*, int64_t, int64_t), void* ctx, char* err,
                     size_t err_len) {
  try {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { f(ctx, begin, end); });
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// NeuMF's final layer over both branches from the GMF tables (see NeuMfHead); a new tensor handle.
int ncf_neumf_head(at::Tensor* p, at::Tensor* q, at::Tensor* h, at::Tensor* w, at::Tensor* b, at::Tensor* users,
                   at::Tensor* items, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return NeuMfHead::apply(*p, *q, *h, *w, *b, *users, *items); });
}

// a[ia] + b[ib] row by row (see GatherAdd), or a[ia] + (b[ib] + bias) with a bias (GatherAddBias);
// a new tensor handle for tch.
int ncf_gather_add(at::Tensor* a, at::Tensor* ia, at::Tensor* b, at::Tensor* ib, at::Tensor* bias, at::Tensor** out,
                   char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] {
    return bias ? GatherAddBias::apply(*a, *ia, *b, *ib, *bias) : GatherAdd::apply(*a, *ia, *b, *ib);
  });
}

// relu(a[ia] + b[ib]) (see gather_add_relu), inference only; a new tensor handle.
int ncf_gather_add_relu(at::Tensor* a, at::Tensor* ia, at::Tensor* b, at::Tensor* ib, at::Tensor** out, char* err,
                        size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return gather_add_relu(*a, *ia, *b, *ib); });
}

// relu(x w^T + b) with the product in oneDNN (see onednn_linear_relu), inference only; a new handle.
int ncf_onednn_linear_relu(at::Tensor* x, at::Tensor* w, at::Tensor* b, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return onednn_linear_relu(*x, *w, *b); });
}

// NeuMF's logits from its first-layer tables, one run of rows per thread (see
// neumf_tables_forward); `p` and `q` null for a model without the GMF branch. A new handle.
int ncf_neumf_tables_forward(at::Tensor* ut, at::Tensor* users, at::Tensor* it, at::Tensor* items, at::Tensor** ws,
                             at::Tensor** bs, size_t layers, at::Tensor* p, at::Tensor* q, at::Tensor* w,
                             at::Tensor* b, int64_t rows_per_part, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] {
    return neumf_tables_forward(*ut, *users, *it, *items, list(ws, layers), list(bs, layers), p, q, *w, *b,
                                rows_per_part);
  });
}

// Each bfloat16 row of x dotted with float32 w (see bf16_rows_dot), inference only; a new handle.
int ncf_bf16_rows_dot(at::Tensor* x, at::Tensor* w, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return bf16_rows_dot(*x, *w); });
}

// relu(a + u) rounded to bfloat16 (see bf16_add_relu), inference only; a new handle.
int ncf_bf16_add_relu(at::Tensor* a, at::Tensor* u, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return bf16_add_relu(*a, *u); });
}

int ncf_bf16_linear_relu(at::Tensor* x, at::Tensor* w, at::Tensor* b, at::Tensor** out, char* err, size_t err_len) {
  return new_tensor(out, err, err_len, [&] { return bf16_linear_relu(*x, *w, *b); });
}
}

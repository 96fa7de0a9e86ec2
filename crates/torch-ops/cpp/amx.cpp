// NeuMF's MLP branch in bfloat16 on Intel AMX (Advanced Matrix Extensions): all-item scoring for
// one user, and fold-in's forward and backward pass for one person's pairs, 32 rows at a
// time from the first layer to the logit (and back) with every intermediate in the core's L1
// cache. libtorch's bfloat16 products (oneDNN, AMX too) cost ~20 us of set-up per call, more than
// the arithmetic of fold-in's [250, 128] x [128, 64] product; here a product of 32 rows is a
// few tile instructions.
//
// The layout AMX multiplies: a tile of 16 rows x 32 bfloat16 values (A: activations, row-major)
// times a tile of 16 pair-rows x 16 columns (B: weights, "VNNI" packed, [K/2, N, 2], each column's
// consecutive k values side by side), added to 16 x 16 float32 accumulators. Widths must be
// multiples of 32 (the caller checks; NeuMF's defaults 256/128/64 are).
//
// Every function here runs only where amx_usable() said yes (the Rust side asks first; each entry
// checks again): the AMX and AVX-512 instructions are compiled per function (NCF_AMX), the build
// itself targets plain x86-64.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "bridge.h"

#define NCF_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace {

constexpr int64_t kTileRows = 16;  // rows of one tile
constexpr int64_t kBlockRows = 32;  // rows of activations per block (two row tiles)
constexpr int64_t kTileK = 32;     // bfloat16 values per A tile row (64 bytes)
constexpr int64_t kTileN = 16;     // float32 columns per accumulator tile

// Whether this CPU and kernel run AMX bfloat16 tiles: the CPU's AMX-TILE and AMX-BF16 (CPUID leaf
// 7), AVX-512 with BF16 for the element-wise steps, and Linux's permission to use the tile data
// state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA; asked once, for the whole process).
bool amx_usable() {
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tiles = (d & (1u << 24)) && (d & (1u << 22));
    if (!tiles) return false;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512bf16")))
      return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

// The tile shapes every kernel here uses, set on the calling thread (tile configuration is per
// thread): tiles 0-3 accumulators (16 x 16 float32), 4-5 activations (16 x 32 bfloat16), 6-7
// weights (16 pair-rows x 16 columns). Released (_tile_release) before the thread returns.
struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

NCF_AMX void configure_tiles() {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTileRows;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// c [32, n] (float32, row stride ldc) = a [32, k] (bfloat16, row stride lda) x b, b packed
// [k/2, n, 2]; k a multiple of 32, n of 16. Two row tiles by two column tiles of accumulators at
// a time, so each weight tile loaded serves both row tiles: the weights (64 KB for NeuMF's
// second layer) come from L2 for every block of rows, and are what the product waits on.
NCF_AMX void tile_product(const uint16_t* a, int64_t lda, const uint16_t* b, int64_t k, int64_t n, float* c,
                          int64_t ldc) {
  const int64_t a_stride = lda * sizeof(uint16_t), b_stride = n * 2 * sizeof(uint16_t), c_stride = ldc * sizeof(float);
  const uint16_t* a1 = a + kTileRows * lda;
  float* c1 = c + kTileRows * ldc;
  for (int64_t n0 = 0; n0 < n; n0 += 2 * kTileN) {
    const bool two = n - n0 >= 2 * kTileN;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
      _tile_loadd(4, a + k0, a_stride);
      _tile_loadd(5, a1 + k0, a_stride);
      const uint16_t* bk = b + (k0 / 2) * n * 2 + n0 * 2;
      _tile_loadd(6, bk, b_stride);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if (two) {
        _tile_loadd(7, bk + 2 * kTileN, b_stride);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, c + n0, c_stride);
    _tile_stored(2, c1 + n0, c_stride);
    if (two) {
      _tile_stored(1, c + n0 + kTileN, c_stride);
      _tile_stored(3, c1 + n0 + kTileN, c_stride);
    }
  }
}

// Sixteen float32 values rounded to bfloat16 (round to nearest even, AVX512-BF16's conversion).
NCF_AMX inline void store_bf16(uint16_t* o, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), (__m256i)_mm512_cvtneps_pbh(v));
}

NCF_AMX inline __m512 load_bf16(const uint16_t* p) {
  const __m256i in = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(in), 16));
}

// relu as torch.relu: max(0, v) with a NaN kept (vmaxps returns its second operand when either is
// NaN).
NCF_AMX inline __m512 relu16(__m512 v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }

// The MLP's deeper layers as raw pointers: widths[0] the first layer's output (h1), widths[l]
// layer l's; fwd[l - 1] packs W_l^T ([widths[l-1], widths[l]]), bwd[l - 1] packs W_l
// ([widths[l], widths[l-1]], for the backward pass; empty when scoring), bias[l - 1] b_l; w the
// final layer's MLP weights [widths.back()].
struct Mlp {
  std::vector<int64_t> widths;
  std::vector<const uint16_t*> fwd, bwd;
  std::vector<const float*> bias;
  const float* w = nullptr;
  int64_t widest = 0;
};

// Checks the tensors and makes the Mlp: fwd/bias (and bwd when given) one per deeper layer,
// shapes chained from h1, every width a multiple of 32, kinds and devices as packed.
Mlp make_mlp(const char* what, int64_t h1, const std::vector<at::Tensor>& fwd, const std::vector<at::Tensor>& bias,
             const std::vector<at::Tensor>* bwd, const at::Tensor& w) {
  TORCH_CHECK(amx_usable(), what, ": this CPU (or kernel) has no AMX bfloat16 tiles; ask torch_ops::amx_available first");
  TORCH_CHECK(!fwd.empty() && fwd.size() == bias.size() && (!bwd || bwd->size() == fwd.size()), what,
              ": needs one packed weight and one bias per deeper layer (at least one)");
  Mlp m;
  m.widths.push_back(h1);
  for (size_t l = 0; l < fwd.size(); ++l) {
    const int64_t in = m.widths.back();
    const at::Tensor& f = fwd[l];
    TORCH_CHECK(f.scalar_type() == at::kBFloat16 && f.device().is_cpu() && f.is_contiguous() && f.dim() == 3 &&
                    f.size(0) * 2 == in && f.size(2) == 2,
                what, ": packed weight ", l, " must be contiguous bfloat16 [", in / 2, ", out, 2]; got ", f.sizes());
    const int64_t out = f.size(1);
    TORCH_CHECK(out % kTileK == 0 && in % kTileK == 0, what, ": widths must be multiples of 32; layer ", l + 1, " is ",
                in, " -> ", out);
    TORCH_CHECK(bias[l].scalar_type() == at::kFloat && bias[l].device().is_cpu() && bias[l].is_contiguous() &&
                    bias[l].numel() == out,
                what, ": bias ", l, " must be contiguous float32 [", out, "] on the CPU");
    m.fwd.push_back(reinterpret_cast<const uint16_t*>(f.data_ptr<at::BFloat16>()));
    m.bias.push_back(bias[l].data_ptr<float>());
    if (bwd) {
      const at::Tensor& g = (*bwd)[l];
      TORCH_CHECK(g.scalar_type() == at::kBFloat16 && g.device().is_cpu() && g.is_contiguous() && g.dim() == 3 &&
                      g.size(0) * 2 == out &&
                      g.size(1) == in && g.size(2) == 2,
                  what, ": packed backward weight ", l, " must be contiguous bfloat16 [", out / 2, ", ", in,
                  ", 2]; got ", g.sizes());
      m.bwd.push_back(reinterpret_cast<const uint16_t*>(g.data_ptr<at::BFloat16>()));
    }
    m.widths.push_back(out);
  }
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.device().is_cpu() && w.is_contiguous() &&
                  w.numel() == m.widths.back(),
              what, ": the final MLP weights must be contiguous float32 [", m.widths.back(), "] on the CPU");
  m.w = w.data_ptr<float>();
  m.widest = *std::max_element(m.widths.begin(), m.widths.end());
  return m;
}

// Per-thread scratch for one block of 32 rows: each layer's bfloat16 activations (the next
// product's input), each layer's relu mask (for the backward pass), one float32 product.
struct Scratch {
  std::vector<std::vector<uint16_t>> act;   // [l] 32 x widths[l], l < last
  std::vector<std::vector<__mmask16>> mask;  // [l] 32 x widths[l] / 16
  std::vector<float> product;               // 32 x widest
  std::vector<float> last;                  // 32 x widths.back(), float32 (relu'd)
  std::vector<uint16_t> grad;               // 32 x widest, bfloat16 (a backward product's input)
  explicit Scratch(const Mlp& m) : product(kBlockRows * m.widest), last(kBlockRows * m.widths.back()), grad(kBlockRows * m.widest) {
    for (size_t l = 0; l + 1 < m.widths.size(); ++l) {
      act.emplace_back(kBlockRows * m.widths[l]);
      mask.emplace_back(kBlockRows * m.widths[l] / 16);
    }
    mask.emplace_back(kBlockRows * m.widths.back() / 16);
  }
};

// The deeper layers for the 32 rows whose first-layer activations (and masks) are in s:
// relu(x W_l^T + b_l) in turn, the last layer's float32 output (and mask) in s.last. Returns each
// row's MLP share of the logit, last . w.
template <bool Masks>
NCF_AMX void forward_block(const Mlp& m, Scratch& s, float* mlp_logit) {
  const size_t deeper = m.fwd.size();
  float* __restrict__ product = s.product.data();
  for (size_t l = 1; l <= deeper; ++l) {
    const int64_t in = m.widths[l - 1], out = m.widths[l];
    tile_product(s.act[l - 1].data(), in, m.fwd[l - 1], in, out, product, out);
    const bool last = l == deeper;
    const float* __restrict__ bias = m.bias[l - 1];
    __mmask16* __restrict__ mask = s.mask[l].data();
    float* __restrict__ last_out = s.last.data();
    uint16_t* __restrict__ act = last ? nullptr : s.act[l].data();
    for (int64_t r = 0; r < kBlockRows; ++r) {
      for (int64_t j = 0; j < out; j += 16) {
        const int64_t e = r * out + j;
        const __m512 v = _mm512_add_ps(_mm512_loadu_ps(product + e), _mm512_loadu_ps(bias + j));
        if (Masks) mask[e / 16] = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 y = relu16(v);
        if (last)
          _mm512_storeu_ps(last_out + e, y);
        else
          store_bf16(act + e, y);
      }
    }
  }
  const int64_t h = m.widths.back();
  const float* __restrict__ last_out = s.last.data();
  for (int64_t r = 0; r < kBlockRows; ++r) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < h; j += 16)
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(last_out + r * h + j), _mm512_loadu_ps(m.w + j), acc);
    mlp_logit[r] = _mm512_reduce_add_ps(acc);
  }
}

// The first layer's activations of one block: relu(row_r + u) for its rows (rows past `rows`
// zero), rounded to bfloat16, with their masks. `row[r]` points at row r's first-layer item half,
// bfloat16 (`Bf16`) or float32.
template <bool Bf16, bool Masks>
NCF_AMX void first_layer(const Mlp& m, Scratch& s, const float* u, int64_t rows, const void* const* row) {
  const int64_t h = m.widths[0];
  uint16_t* __restrict__ act = s.act[0].data();
  __mmask16* __restrict__ mask = s.mask[0].data();
  for (int64_t r = 0; r < kBlockRows; ++r) {
    uint16_t* a = act + r * h;
    if (r >= rows) {
      std::memset(a, 0, h * sizeof(uint16_t));
      if (Masks) std::memset(mask + r * h / 16, 0, h / 16 * sizeof(__mmask16));
      continue;
    }
    const void* item = row[r];
    for (int64_t j = 0; j < h; j += 16) {
      const __m512 x = Bf16 ? load_bf16(static_cast<const uint16_t*>(item) + j)
                            : _mm512_loadu_ps(static_cast<const float*>(item) + j);
      const __m512 v = _mm512_add_ps(x, _mm512_loadu_ps(u + j));
      if (Masks) mask[(r * h + j) / 16] = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
      store_bf16(a + j, relu16(v));
    }
  }
}

// mlp_logits' work for blocks [begin, end) of 32 rows and every one of `users` users (their user
// parts u [users, h1], their logits out [users, n]), on the calling thread. Users run inside the
// block loop: a block's item rows (16 KB for NeuMF) are read from memory once for all of them.
NCF_AMX void mlp_logit_blocks(const Mlp& m, const uint16_t* first, int64_t n, const float* u, int64_t users,
                              float* out, int64_t begin, int64_t end) {
  const int64_t h1 = m.widths[0];
  Scratch s(m);  // allocated before the tiles are configured: a throw leaves no tile state behind
  configure_tiles();
  float logits[kBlockRows];
  const void* row[kBlockRows];
  for (int64_t blk = begin; blk < end; ++blk) {
    const int64_t r0 = blk * kBlockRows, rows = std::min(kBlockRows, n - r0);
    for (int64_t r = 0; r < rows; ++r) row[r] = first + (r0 + r) * h1;
    for (int64_t k = 0; k < users; ++k) {
      first_layer<true, false>(m, s, u + k * h1, rows, row);
      forward_block<false>(m, s, logits);
      std::copy(logits, logits + rows, out + k * n + r0);
    }
  }
  _tile_release();
}

// The MLP branch's share of every row's logit for users given as the first layer's user part u
// (float32 [h1] for one, [U, h1] for several) against bfloat16 first-layer item rows [n, h1]
// (item half plus bias): [n] for one user, [U, n] for several.
at::Tensor mlp_logits(const at::Tensor& first, const at::Tensor& u, const std::vector<at::Tensor>& fwd,
                      const std::vector<at::Tensor>& bias, const at::Tensor& w) {
  const char* what = "amx_mlp_logits";
  TORCH_CHECK(first.dim() == 2 && first.scalar_type() == at::kBFloat16 && first.device().is_cpu(), what,
              ": the first-layer rows must be a bfloat16 CPU matrix [N, h1]; got ", first.sizes());
  const at::Tensor fc = first.contiguous(), uc = u.contiguous();
  const int64_t h1 = fc.size(1), n = fc.size(0);
  TORCH_CHECK(uc.scalar_type() == at::kFloat && uc.device().is_cpu() && (uc.dim() == 1 || uc.dim() == 2) &&
                  uc.size(-1) == h1,
              what, ": the user parts must be float32 [", h1, "] or [U, ", h1, "] on the CPU; got ", uc.sizes());
  const int64_t users = uc.dim() == 2 ? uc.size(0) : 1;
  const Mlp m = make_mlp(what, h1, fwd, bias, nullptr, w);
  at::Tensor out = uc.dim() == 2 ? at::empty({users, n}, uc.options()) : at::empty({n}, uc.options());
  const auto* pf = reinterpret_cast<const uint16_t*>(fc.data_ptr<at::BFloat16>());
  const float* pu = uc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
  // 32 blocks (1,024 rows) per piece at least: a small call stays on one thread.
  at::parallel_for(0, blocks, 32,
                   [&](int64_t begin, int64_t end) { mlp_logit_blocks(m, pf, n, pu, users, po, begin, end); });
  return out;
}

// a . b over n floats (16 at a time, then the tail).
NCF_AMX float dot(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc);
  float sum = _mm512_reduce_add_ps(acc);
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

// o += s * a over n floats.
NCF_AMX void add_scaled(float* o, const float* a, float s, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) _mm512_storeu_ps(o + k, _mm512_fmadd_ps(sv, _mm512_loadu_ps(a + k), _mm512_loadu_ps(o + k)));
  for (; k < n; ++k) o[k] += s * a[k];
}

// One fold-in step for one person: the loss and its gradient with respect to the person's rows,
// the MLP user embedding u_mlp [d] and (with the GMF branch) the GMF one u_mf [f], against items
// [n] whose first `positives` are labelled 1, the rest 0:
//   p = W_user u_mlp                       (the first layer's user part, [h1])
//   logit_r = bias + mlp(relu(first[i_r] + p)) . w + sum_k mf[i_r, k] u_mf[k] final_mf[k]
//   loss = sum_r BCE(logit_r, y_r)
// `first` [items, h1] is the first layer's item half with its bias, W_user [h1, d] its user
// columns. Writes grad_mlp [d] and grad_mf [f], returns the loss. The activations and the
// gradients between layers are rounded to bfloat16 as products' inputs; products, sums and the
// gradient's row sums are float32, each pair's loss float32 summed in float64. One thread.
NCF_AMX double fold_in_step(const Mlp& m, const at::Tensor& first, const at::Tensor& w_user, const at::Tensor* mf,
                            const at::Tensor* final_mf, double final_bias, const int64_t* ids, int64_t n,
                            int64_t positives, const float* u_mlp, int64_t d, const float* u_mf, int64_t f,
                            float* grad_mlp, float* grad_mf) {
  const char* what = "amx_fold_in_step";
  const int64_t h1 = m.widths[0];
  TORCH_CHECK(first.dim() == 2 && first.scalar_type() == at::kFloat && first.device().is_cpu() &&
                  first.is_contiguous() && first.size(1) == h1,
              what, ": the first-layer item table must be a contiguous float32 CPU matrix [items, ", h1, "]");
  const int64_t count = first.size(0);
  TORCH_CHECK(w_user.dim() == 2 && w_user.scalar_type() == at::kFloat && w_user.device().is_cpu() &&
                  w_user.is_contiguous() &&
                  w_user.size(0) == h1 && w_user.size(1) == d,
              what, ": the first layer's user columns must be contiguous float32 [", h1, ", ", d, "]; got ",
              w_user.sizes());
  TORCH_CHECK(positives >= 0 && positives <= n, what, ": ", positives, " positives of ", n, " items");
  TORCH_CHECK((mf == nullptr) == (final_mf == nullptr), what, ": the GMF item table and final weights go together");
  const float *pq = nullptr, *pfm = nullptr;
  if (mf) {
    TORCH_CHECK(mf->dim() == 2 && mf->scalar_type() == at::kFloat && mf->device().is_cpu() && mf->is_contiguous() &&
                    mf->size(0) == count && mf->size(1) == f && final_mf->scalar_type() == at::kFloat &&
                    final_mf->device().is_cpu() && final_mf->is_contiguous() && final_mf->numel() == f,
                what, ": the GMF item table must be contiguous float32 [items, ", f, "] and its final weights [", f,
                "], both on the CPU");
    pq = mf->data_ptr<float>();
    pfm = final_mf->data_ptr<float>();
  } else {
    TORCH_CHECK(f == 0, what, ": a GMF user row of ", f, " values without the GMF item table");
  }
  for (int64_t r = 0; r < n; ++r)
    TORCH_CHECK(ids[r] >= 0 && ids[r] < count, what, ": item ", ids[r], " is out of range for ", count, " items");
  const float* pfirst = first.data_ptr<float>();
  const float* pw_user = w_user.data_ptr<float>();
  std::vector<float> part(h1), grad_u(h1, 0.f), pmu(f), sum_mf(f, 0.f);
  for (int64_t h = 0; h < h1; ++h) part[h] = dot(pw_user + h * d, u_mlp, d);
  for (int64_t k = 0; k < f; ++k) pmu[k] = u_mf[k] * pfm[k];
  const float* pu = part.data();
  float* gu = grad_u.data();
  float* smf = sum_mf.data();
  double total = 0.0;
  // Every pair's rows are asked for up front, into L2: random rows of tables larger than it (a
  // 26,744-item table of 256 floats is 27 MB) otherwise wait a memory latency each, in turn.
  for (int64_t r = 0; r < n; ++r) {
    const char* row = reinterpret_cast<const char*>(pfirst + ids[r] * h1);
    for (int64_t b = 0; b < h1 * int64_t(sizeof(float)); b += 64) _mm_prefetch(row + b, _MM_HINT_T1);
    if (pq) {
      const char* q = reinterpret_cast<const char*>(pq + ids[r] * f);
      for (int64_t b = 0; b < f * int64_t(sizeof(float)); b += 64) _mm_prefetch(q + b, _MM_HINT_T1);
    }
  }
  Scratch s(m);  // allocated before the tiles are configured: a throw leaves no tile state behind
  configure_tiles();
  float mlp_logit[kBlockRows], g[kBlockRows];
  const void* row[kBlockRows];
  const size_t deeper = m.fwd.size();
  for (int64_t r0 = 0; r0 < n; r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, n - r0);
    for (int64_t r = 0; r < rows; ++r) row[r] = pfirst + ids[r0 + r] * h1;
    first_layer<false, true>(m, s, pu, rows, row);
    forward_block<true>(m, s, mlp_logit);
    for (int64_t r = 0; r < kBlockRows; ++r) {
      if (r >= rows) {
        g[r] = 0.f;
        continue;
      }
      const float* q = pq ? pq + ids[r0 + r] * f : nullptr;
      const float logit = float(final_bias) + mlp_logit[r] + (q ? dot(q, pmu.data(), f) : 0.f);
      const float y = (r0 + r) < positives ? 1.f : 0.f;
      // sigmoid and the loss from one exponential: e = exp(-|logit|).
      const float e = std::exp(-std::fabs(logit));
      const float sigmoid = logit >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
      g[r] = sigmoid - y;
      // log(1 + e) in float: e <= 1, the absolute error stays within float32 epsilon (log1pf
      // took 5% of a step).
      total += double(std::max(logit, 0.f)) - double(logit) * y + double(std::log(1.f + e));
      if (q) add_scaled(smf, q, g[r], f);
    }
    // d logit / d last = w, through the last relu; then back through each deeper layer.
    const int64_t hl = m.widths.back();
    for (int64_t r = 0; r < kBlockRows; ++r) {
      const __m512 gr = _mm512_set1_ps(g[r]);
      for (int64_t j = 0; j < hl; j += 16) {
        const __m512 dl = _mm512_maskz_mul_ps(s.mask[deeper][(r * hl + j) / 16], gr, _mm512_loadu_ps(m.w + j));
        store_bf16(&s.grad[r * hl + j], dl);
      }
    }
    for (size_t l = deeper; l >= 1; --l) {
      const int64_t out = m.widths[l], in = m.widths[l - 1];
      tile_product(s.grad.data(), out, m.bwd[l - 1], out, in, s.product.data(), in);
      for (int64_t r = 0; r < kBlockRows; ++r) {
        for (int64_t j = 0; j < in; j += 16) {
          const __m512 dx =
              _mm512_maskz_mov_ps(s.mask[l - 1][(r * in + j) / 16], _mm512_loadu_ps(&s.product[r * in + j]));
          if (l == 1)
            _mm512_storeu_ps(gu + j, _mm512_add_ps(_mm512_loadu_ps(gu + j), dx));
          else
            store_bf16(&s.grad[r * in + j], dx);
        }
      }
    }
  }
  _tile_release();
  // Back through the first layer's user columns, and the GMF branch's final weights.
  std::fill(grad_mlp, grad_mlp + d, 0.f);
  for (int64_t h = 0; h < h1; ++h) add_scaled(grad_mlp, pw_user + h * d, gu[h], d);
  for (int64_t k = 0; k < f; ++k) grad_mf[k] = smf[k] * pfm[k];
  return total;
}

}  // namespace

extern "C" {

// Whether the AMX kernels below run here (see amx_usable).
int ncf_amx_available() { return amx_usable() ? 1 : 0; }

// The MLP branch's logit share per bfloat16 first-layer row (see mlp_logits); a new handle.
int ncf_amx_mlp_logits(at::Tensor* first, at::Tensor* u, at::Tensor** fwd, at::Tensor** bias, size_t layers,
                       at::Tensor* w, at::Tensor** out, char* err, size_t err_len) {
  return ncf_bridge::new_tensor(out, err, err_len, [&] {
    if (!amx_usable()) throw std::runtime_error("amx_mlp_logits: this CPU (or kernel) has no AMX bfloat16 tiles");
    return mlp_logits(*first, *u, ncf_bridge::list(fwd, layers), ncf_bridge::list(bias, layers), *w);
  });
}

// One fold-in step (see fold_in_step): `mf` and `final_mf` null without the GMF branch (f = 0);
// the gradients written to grad_mlp [d] and grad_mf [f], the loss to *loss.
int ncf_amx_fold_in_step(at::Tensor* first, at::Tensor* w_user, at::Tensor* mf, at::Tensor* final_mf,
                         double final_bias, at::Tensor** fwd, at::Tensor** bwd, at::Tensor** bias, size_t layers,
                         at::Tensor* w, const int64_t* items, int64_t n, int64_t positives, const float* u_mlp,
                         int64_t d, const float* u_mf, int64_t f, float* grad_mlp, float* grad_mf, double* loss,
                         char* err, size_t err_len) {
  try {
    if (!amx_usable()) throw std::runtime_error("amx_fold_in_step: this CPU (or kernel) has no AMX bfloat16 tiles");
    const std::vector<at::Tensor> b = ncf_bridge::list(bwd, layers);
    const int64_t h1 = layers > 0 && fwd[0]->dim() == 3 ? fwd[0]->size(0) * 2 : 0;
    const Mlp m =
        make_mlp("amx_fold_in_step", h1, ncf_bridge::list(fwd, layers), ncf_bridge::list(bias, layers), &b, *w);
    *loss = fold_in_step(m, *first, *w_user, mf, final_mf, final_bias, items, n, positives, u_mlp, d, u_mf, f,
                         grad_mlp, grad_mf);
    return 0;
  } catch (const std::exception& e) {
    return ncf_bridge::fail(e, err, err_len);
  }
}
}

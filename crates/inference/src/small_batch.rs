//! Scoring a few (user, item) pairs on the CPU without libtorch's operator calls.
//!
//! Why: a NeuMF forward pass through libtorch is 15 operator calls, and each MLP layer's matrix
//! product with a single row (an sgemm with M = 1) costs ~7 us for a 256x256 layer on our 2-core
//! VM, so a batch-1 pass takes ~33 us, almost none of it arithmetic. [`SmallBatchScorer`] reads the
//! model's weights directly: each pair is four embedding rows and three matrix-vector products over
//! 425 KB of weights that stay in cache, computed with the widest vector instructions the CPU has.
//! It gives `sigmoid(forward)` in evaluation mode, equal to libtorch's up to float rounding (the
//! sums run in another order).
//!
//! Larger batches belong to libtorch (its matrix products use every core and cache blocking); the
//! benchmark uses this scorer below [`SMALL_BATCH_BELOW`] pairs.

use crate::InferenceError;
use ncf_model::NeuMf;
use tch::{Device, Kind, Tensor};

/// Batches smaller than this are scored by [`SmallBatchScorer`] in the benchmark. Measured on our
/// 2-core VM (ML-20m-shaped model, 2,000 calls each): batches of 1, 2, 4 and 8 took 9.5, 14.8,
/// 27.1 and 50.9 us here against libtorch's 34.0, 33.9, 38.7 and 47.7 us.
pub const SMALL_BATCH_BELOW: i64 = 8;

/// Pairs that share one pass over the MLP weights.
const GROUP: usize = 8;

/// A CPU float32 NeuMF in plain memory, for scoring a few pairs at a time (see the module doc).
pub struct SmallBatchScorer {
    users: usize,
    items: usize,
    mf_dim: usize,
    /// Width of each MLP embedding (half the first MLP layer).
    half: usize,
    /// The four embedding tables, row-major; shallow clones, so they share the model's memory.
    tables: [Tensor; 4],
    /// MLP layers: weight `[out, in]` row-major, bias `[out]`.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    /// Final layer weight `[mf_dim + last]` and bias.
    final_w: Vec<f32>,
    final_b: f32,
}

impl SmallBatchScorer {
    /// Takes the model's weights: the embedding tables by reference (no copy), the MLP and final
    /// layers copied (425 KB for the ML-20m model). `None` unless the model is float32 on the CPU.
    ///
    /// The scorer reads the model's current embedding values: do not train the model while a
    /// scorer made from it is in use (the MLP weights would be stale, the embeddings not).
    pub fn new(model: &NeuMf) -> Option<SmallBatchScorer> {
        let state: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
        let get = |name: &str| state.get(name).filter(|t| t.device() == Device::Cpu && t.kind() == Kind::Float);
        let tables = ["mf_user_embed", "mf_item_embed", "mlp_user_embed", "mlp_item_embed"]
            .map(|n| get(&format!("{n}.weight")).map(|t| t.contiguous()));
        let [Some(mf_user), Some(mf_item), Some(mlp_user), Some(mlp_item)] = tables else { return None };
        let c = model.config();
        let copy = |t: &Tensor| -> Option<Vec<f32>> { Vec::<f32>::try_from(t.contiguous().view([-1])).ok() };
        let mut layers = Vec::new();
        for i in 0..c.mlp_layers.len() - 1 {
            let w = copy(get(&format!("mlp.{i}.weight"))?)?;
            let b = copy(get(&format!("mlp.{i}.bias"))?)?;
            layers.push((w, b));
        }
        let final_w = copy(get("final.weight")?)?;
        let final_b = copy(get("final.bias")?)?.first().copied()?;
        Some(SmallBatchScorer {
            users: c.users as usize,
            items: c.items as usize,
            mf_dim: c.mf_dim as usize,
            half: (c.mlp_layers[0] / 2) as usize,
            tables: [mf_user, mf_item, mlp_user, mlp_item],
            layers,
            final_w,
            final_b,
        })
    }

    /// `sigmoid(forward)` of each (user, item) pair into `out` (evaluation mode: no dropout).
    /// An id outside the model's tables is an error, as in libtorch's embedding lookup.
    pub fn score(&self, users: &[i64], items: &[i64], out: &mut [f32]) -> Result<(), InferenceError> {
        assert!(users.len() == items.len() && items.len() == out.len(), "users, items and out differ in length");
        let widest = self.layers.iter().map(|(_, b)| b.len()).max().unwrap_or(0).max(2 * self.half);
        let group = users.len().clamp(1, GROUP);
        let mut a = vec![0f32; group * widest];
        let mut b = vec![0f32; group * widest];
        // Pairs go through the MLP a group at a time, so each weight row is read once per group.
        for ((users, items), out) in users.chunks(GROUP).zip(items.chunks(GROUP)).zip(out.chunks_mut(GROUP)) {
            let g = users.len();
            let mut ids = [(0usize, 0usize); GROUP];
            for (p, (&u, &i)) in users.iter().zip(items).enumerate() {
                let (u, i) = (checked(u, self.users, "user")?, checked(i, self.items, "item")?);
                ids[p] = (u, i);
                a[p * 2 * self.half..(p * 2 + 1) * self.half].copy_from_slice(self.row(2, u));
                a[(p * 2 + 1) * self.half..(p + 1) * 2 * self.half].copy_from_slice(self.row(3, i));
            }
            let mut width = 2 * self.half;
            for (w, bias) in &self.layers {
                kernels::relu_affine(w, bias, &a[..g * width], &mut b[..g * bias.len()]);
                width = bias.len();
                std::mem::swap(&mut a, &mut b);
            }
            let (w_mf, w_mlp) = self.final_w.split_at(self.mf_dim);
            for (p, o) in out.iter_mut().enumerate() {
                let (mf_u, mf_i) = (self.row(0, ids[p].0), self.row(1, ids[p].1));
                let mf: f32 = w_mf.iter().zip(mf_u).zip(mf_i).map(|((w, x), y)| w * x * y).sum();
                let mlp: f32 = w_mlp.iter().zip(&a[p * width..(p + 1) * width]).map(|(w, x)| w * x).sum();
                let logit = mf + mlp + self.final_b;
                *o = 1.0 / (1.0 + (-logit).exp());
            }
        }
        Ok(())
    }

    /// Row `row` of embedding table `table` (checked against the table's size by the caller).
    fn row(&self, table: usize, row: usize) -> &[f32] {
        let t = &self.tables[table];
        let dim = if table < 2 { self.mf_dim } else { self.half };
        debug_assert!(row < if table % 2 == 0 { self.users } else { self.items });
        // SAFETY: the tensor is a contiguous CPU float32 tensor of [rows, dim] (checked in `new`,
        // its shape fixed by the model's config), kept alive by `self.tables`; row < rows (the
        // callers check ids with `checked`).
        unsafe {
            let base = t.data_ptr() as *const f32;
            std::slice::from_raw_parts(base.add(row * dim), dim)
        }
    }
}

fn checked(id: i64, n: usize, what: &str) -> Result<usize, InferenceError> {
    usize::try_from(id).ok().filter(|&i| i < n).ok_or_else(|| InferenceError::IdOutOfRange {
        what: what.to_owned(),
        id,
        count: n as u64,
    })
}

/// `Y = relu(X W^T + bias)` for a group of inputs, compiled for AVX-512 or AVX2+FMA when the CPU
/// has them (chosen at run time), plain otherwise. Four weight rows at a time against each input:
/// the rows stay in L1 across the group, the input is loaded once per four dot products, and the
/// four accumulators are independent chains the CPU can overlap.
mod kernels {
    const LANES: usize = 16;

    #[inline(always)]
    fn madd<const FMA: bool>(w: f32, x: f32, acc: f32) -> f32 {
        if FMA {
            w.mul_add(x, acc)
        } else {
            acc + w * x
        }
    }

    /// Dot products of 4 rows (`rows`, each `x.len()` long, back to back) with `x`.
    #[inline(always)]
    fn dot4<const FMA: bool>(rows: &[f32], x: &[f32]) -> [f32; 4] {
        let n = x.len();
        let body = n / LANES * LANES;
        let mut acc = [[0f32; LANES]; 4];
        for k in (0..body).step_by(LANES) {
            let xv = &x[k..k + LANES];
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = &rows[r * n + k..r * n + k + LANES];
                for l in 0..LANES {
                    acc[l] = madd::<FMA>(wv[l], xv[l], acc[l]);
                }
            }
        }
        let mut out = [0f32; 4];
        for (r, o) in out.iter_mut().enumerate() {
            let tail: f32 = (body..n).map(|k| rows[r * n + k] * x[k]).sum();
            *o = sum_lanes(acc[r]) + tail;
        }
        out
    }

    /// A tree sum of the lanes (vector adds of halves), not a serial chain of 16 scalar adds.
    #[inline(always)]
    fn sum_lanes(mut v: [f32; LANES]) -> f32 {
        let mut half = LANES / 2;
        while half > 0 {
            for l in 0..half {
                v[l] += v[l + half];
            }
            half /= 2;
        }
        v[0]
    }

    #[inline(always)]
    fn relu_affine_body<const FMA: bool>(w: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
        let (outs, ins) = (bias.len(), w.len() / bias.len().max(1));
        let group = x.len() / ins.max(1);
        let mut r = 0;
        while r + 4 <= outs {
            let rows = &w[r * ins..(r + 4) * ins];
            for p in 0..group {
                let d = dot4::<FMA>(rows, &x[p * ins..(p + 1) * ins]);
                for (k, d) in d.iter().enumerate() {
                    y[p * outs + r + k] = (d + bias[r + k]).max(0.0);
                }
            }
            r += 4;
        }
        for r in r..outs {
            for p in 0..group {
                let d: f32 = w[r * ins..(r + 1) * ins].iter().zip(&x[p * ins..(p + 1) * ins]).map(|(a, b)| a * b).sum();
                y[p * outs + r] = (d + bias[r]).max(0.0);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        #[target_feature(enable = "avx512f,fma")]
        pub(super) fn relu_affine_avx512(w: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
            super::relu_affine_body::<true>(w, bias, x, y)
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) fn relu_affine_avx2(w: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
            super::relu_affine_body::<true>(w, bias, x, y)
        }
    }

    /// `y = relu(x W^T + bias)` for `x.len() / in` inputs back to back; `W` row-major `[out, in]`.
    pub(super) fn relu_affine(w: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX-512F and FMA (checked just above).
                return unsafe { x86::relu_affine_avx512(w, bias, x, y) };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { x86::relu_affine_avx2(w, bias, x, y) };
            }
        }
        relu_affine_body::<false>(w, bias, x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ncf_model::NeuMfConfig;

    #[test]
    fn scores_equal_libtorch_forward_up_to_rounding() {
        tch::manual_seed(3);
        let config = NeuMfConfig { users: 500, items: 300, mf_dim: 16, mlp_layers: vec![64, 32, 16, 8], dropout: 0.5 };
        let mut model = NeuMf::new(config, Device::Cpu).unwrap();
        // Embeddings 30x the init's (std 0.3), so that the scores vary with the pair.
        tch::no_grad(|| {
            for (name, mut t) in model.state_dict() {
                if name.contains("embed") {
                    let _ = t.f_mul_(&Tensor::from(30.0f32));
                }
            }
        });
        model.set_train(false);
        let users = Tensor::randint(500, [999], (Kind::Int64, Device::Cpu));
        let items = Tensor::randint(300, [999], (Kind::Int64, Device::Cpu));
        let want = Vec::<f32>::try_from(tch::no_grad(|| model.forward_sigmoid(&users, &items)).view([-1])).unwrap();
        let scorer = SmallBatchScorer::new(&model).unwrap();
        let (u, i) = (Vec::<i64>::try_from(&users).unwrap(), Vec::<i64>::try_from(&items).unwrap());
        let mut got = vec![0f32; 999]; // 124 groups of 8 and one of 7
        scorer.score(&u, &i, &mut got).unwrap();
        let spread = want.iter().fold((1f32, 0f32), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        assert!(spread.1 - spread.0 > 0.1, "the scores must vary for the comparison to mean something: {spread:?}");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-5, "pair {k}: {g} vs libtorch {w}");
        }
    }

    #[test]
    fn an_unknown_id_is_an_error_and_other_models_are_declined() {
        let config = NeuMfConfig { users: 5, items: 3, mf_dim: 4, mlp_layers: vec![8, 4], dropout: 0.0 };
        let mut model = NeuMf::new(config, Device::Cpu).unwrap();
        let scorer = SmallBatchScorer::new(&model).unwrap();
        let mut out = [0f32; 1];
        let err = scorer.score(&[0], &[3], &mut out).unwrap_err().to_string();
        assert!(err.contains("item id 3") && err.contains("3 items"), "{err}");
        assert!(scorer.score(&[-1], &[0], &mut out).is_err());
        model.set_kind(Kind::Half);
        assert!(SmallBatchScorer::new(&model).is_none(), "float16 models stay with libtorch");
    }
}

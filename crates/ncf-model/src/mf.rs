//! Dot-product matrix factorisation, the baseline of Rendle, Krichene, Zhang and Anderson ("Neural
//! Collaborative Filtering vs. Matrix Factorization Revisited", RecSys 2020).

use crate::model::{ItemSide, Model, UserTable};
use crate::ModelError;
use std::path::Path;
use tch::nn::{self, Init, Module};
use tch::{Device, Tensor};

/// The shape of an MF model.
#[derive(Debug, Clone, PartialEq)]
pub struct MfConfig {
    pub users: i64,
    pub items: i64,
    /// Embedding width (`-f`, `--factors`).
    pub factors: i64,
}

/// `logit = <p_u, q_i> + b_u + b_i + b`: user and item embeddings, a dot product, a bias per user,
/// per item, and a global one. Every item of a user is one row of a matrix product
/// ([`Model::all_item_logits`]), which is why it recommends orders of magnitude faster than NeuMF.
///
/// Parameters, as a PyTorch module of `nn.Embedding`s and an `nn.Parameter` names them:
/// `user_embed.weight [U, f]`, `item_embed.weight [I, f]`, `user_bias.weight [U, 1]`,
/// `item_bias.weight [I, 1]`, `global_bias [1]`. Embeddings start N(0, 0.01) (as NeuMF's),
/// biases 0.
#[derive(Debug)]
pub struct Mf {
    vs: nn::VarStore,
    config: MfConfig,
    user_embed: nn::Embedding,
    item_embed: nn::Embedding,
    user_bias: nn::Embedding,
    item_bias: nn::Embedding,
    global_bias: Tensor,
    train: bool,
}

const NAMES: [&str; 5] =
    ["user_embed.weight", "item_embed.weight", "user_bias.weight", "item_bias.weight", "global_bias"];

impl Mf {
    /// A freshly initialised model on `device` (seed with [`tch::manual_seed`]).
    pub fn new(config: MfConfig, device: Device) -> Result<Self, ModelError> {
        if config.users < 1 || config.items < 1 || config.factors < 1 {
            return Err(ModelError::Config(format!(
                "MF needs at least 1 user ({}), item ({}) and factor ({})",
                config.users, config.items, config.factors
            )));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let table = |name: &str, rows: i64, dim: i64, init: Init| {
            nn::embedding(&root / name, rows, dim, nn::EmbeddingConfig { ws_init: init, ..Default::default() })
        };
        let normal = Init::Randn { mean: 0.0, stdev: 0.01 };
        let user_embed = table("user_embed", config.users, config.factors, normal);
        let item_embed = table("item_embed", config.items, config.factors, normal);
        let user_bias = table("user_bias", config.users, 1, Init::Const(0.0));
        let item_bias = table("item_bias", config.items, 1, Init::Const(0.0));
        let global_bias = root.var("global_bias", &[1], Init::Const(0.0));
        Ok(Mf { vs, config, user_embed, item_embed, user_bias, item_bias, global_bias, train: true })
    }

    /// The model's shape.
    pub fn config(&self) -> &MfConfig {
        &self.config
    }

    /// The shape an MF state dict was saved with.
    pub fn shape_of(entries: &[(String, Tensor)]) -> Result<MfConfig, ModelError> {
        let find = |name: &str| {
            entries.iter().find(|(k, _)| k.strip_prefix("module.").unwrap_or(k) == name).map(|(_, t)| t.size())
        };
        match (find("user_embed.weight"), find("item_embed.weight")) {
            (Some(u), Some(i)) if u.len() == 2 && i.len() == 2 => {
                Ok(MfConfig { users: u[0], items: i[0], factors: u[1] })
            }
            (u, i) => Err(ModelError::StateDict {
                problems: vec![format!(
                    "an MF state dict needs two-dimensional `user_embed.weight` and `item_embed.weight`, found shapes {u:?} and {i:?}"
                )],
            }),
        }
    }

    /// An MF shaped as the checkpoint at `path` was saved, with its parameters.
    pub fn from_checkpoint(path: &Path, device: Device) -> Result<Self, ModelError> {
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        let config = Mf::shape_of(&entries).map_err(|e| e.in_file(path))?;
        let mut model = Mf::new(config, device)?;
        model.load_state_dict(entries).map_err(|e| e.in_file(path))?;
        Ok(model)
    }
}

impl Model for Mf {
    fn name(&self) -> &str {
        "mf"
    }

    fn users(&self) -> i64 {
        self.config.users
    }

    fn items(&self) -> i64 {
        self.config.items
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
        let dot = (self.user_embed.forward(users) * self.item_embed.forward(items)).sum_dim_intlist(1, true, None);
        dot + self.user_bias.forward(users) + self.item_bias.forward(items) + &self.global_bias
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        NAMES.iter().filter_map(|&n| vars.get(n).map(|t| (n.to_owned(), t.shallow_clone()))).collect()
    }

    fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    fn is_training(&self) -> bool {
        self.train
    }

    fn user_tables(&self) -> Vec<UserTable> {
        vec![
            UserTable { key: "user_embed.weight".into(), width: self.config.factors },
            UserTable { key: "user_bias.weight".into(), width: 1 },
        ]
    }

    fn user_rows(&self, users: &Tensor) -> Option<Vec<Tensor>> {
        tch::no_grad(|| Some(vec![self.user_embed.forward(users).detach(), self.user_bias.forward(users).detach()]))
    }

    fn logits_of_rows(&self, rows: &[Tensor], items: &Tensor, _side: &ItemSide) -> Option<Tensor> {
        let [embed, bias] = rows else { return None };
        let q = self.item_embed.ws.detach().index_select(0, items);
        let b_i = self.item_bias.ws.detach().index_select(0, items);
        Some((embed * q).sum_dim_intlist(1, true, None) + bias + b_i + self.global_bias.detach())
    }

    /// `Q^T` laid out as its own `[factors, items]` matrix.
    fn item_side(&self) -> ItemSide {
        ItemSide::new(ItemsByColumn(tch::no_grad(|| self.item_embed.ws.detach().tr().contiguous())))
    }

    fn all_item_logits_of_rows(&self, rows: &[Tensor], side: &ItemSide) -> Option<Tensor> {
        let [embed, bias] = rows else { return None };
        Some(tch::no_grad(|| self.logits_for(embed, bias, side)))
    }

    /// `P_users Q^T + b_users + b_items^T + b`, one matrix product for the block.
    fn all_item_logits(&self, users: &Tensor, side: &ItemSide) -> Tensor {
        tch::no_grad(|| self.logits_for(&self.user_embed.forward(users), &self.user_bias.forward(users), side))
    }
}

/// MF's item side: `Q^T` as a contiguous `[factors, items]` matrix. A product with a few users
/// then reads it row by row; with the transposed view of `Q` instead, MKL repacks all of `Q` on
/// every call, which made a product for 4-16 users 1.4-1.8x slower (ML-20m's 26,744 items,
/// Xeon, one thread): what a server scoring a few users per request pays on every request.
struct ItemsByColumn(Tensor);

impl Mf {
    /// Every item's logit for users given by their rows (`embed [U, f]`, `bias [U, 1]`): the
    /// product, then the biases added in place in `forward`'s order, so each logit rounds as
    /// `forward`'s sum does and no `[U, items]` temporary is made per term.
    fn logits_for(&self, embed: &Tensor, bias: &Tensor, side: &ItemSide) -> Tensor {
        let mut scores = match side.get::<ItemsByColumn>() {
            Some(ItemsByColumn(q_t)) => embed.matmul(q_t),
            None => embed.matmul(&self.item_embed.ws.tr()),
        };
        if !add_biases_in_one_pass(&scores, bias, &self.item_bias.ws, &self.global_bias) {
            let _ = scores.g_add_(bias);
            let _ = scores.g_add_(&self.item_bias.ws.view([1, -1]));
            let _ = scores.g_add_(&self.global_bias);
        }
        scores
    }
}

/// `scores[u][i] = ((scores[u][i] + user_bias[u]) + item_bias[i]) + global` in place, in one
/// pass over `scores` instead of libtorch's three (each a pass over `[users, items]`: 12% of a
/// server's CPU at MF's saturation). The same three float32 additions in the same order, so the
/// same bits as the three `add_`s. `false`, changing nothing, unless every tensor is float32,
/// contiguous and on the CPU with the expected shapes, and `scores` fits a cache-sized block or
/// libtorch runs on one thread (the caller then adds with libtorch).
fn add_biases_in_one_pass(scores: &Tensor, user_bias: &Tensor, item_bias: &Tensor, global: &Tensor) -> bool {
    let cpu_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == tch::Kind::Float && t.is_contiguous();
    let [users, items] = scores.size()[..] else { return false };
    if !(cpu_f32(scores) && cpu_f32(user_bias) && cpu_f32(item_bias) && cpu_f32(global))
        || user_bias.numel() != users as usize
        || item_bias.numel() != items as usize
        || global.numel() != 1
        || scores.requires_grad()
        // Past one cache-sized block with several threads, libtorch's adds run on all of them
        // (full-ranking evaluation's 2^26-float blocks) and this one pass would not.
        || (users * items > 1 << 20 && tch::get_num_threads() > 1)
    {
        return false;
    }
    if users * items == 0 {
        return true; // nothing to add (and an empty tensor's data pointer may be null)
    }
    // SAFETY: four contiguous float32 CPU tensors of the sizes checked above, alive for the
    // call; `scores` is the product just made here (no other reference to its memory), the
    // biases are only read.
    let (rows, ub, ib, g) = unsafe {
        (
            std::slice::from_raw_parts_mut(scores.data_ptr() as *mut f32, (users * items) as usize),
            std::slice::from_raw_parts(user_bias.data_ptr() as *const f32, users as usize),
            std::slice::from_raw_parts(item_bias.data_ptr() as *const f32, items as usize),
            *(global.data_ptr() as *const f32),
        )
    };
    for (row, &u) in rows.chunks_mut(items as usize).zip(ub) {
        add_row(row, u, ib, g);
    }
    true
}

/// One row of [`add_biases_in_one_pass`], with AVX-512 or AVX2 where the CPU has them (the
/// build's baseline is SSE2); plain additions, no fused multiply-add, so every build rounds alike.
fn add_row(row: &mut [f32], user: f32, items: &[f32], global: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { x86::add_row_avx512(row, user, items, global) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { x86::add_row_avx2(row, user, items, global) };
        }
    }
    add_row_body(row, user, items, global)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub(super) fn add_row_avx512(row: &mut [f32], user: f32, items: &[f32], global: f32) {
        super::add_row_body(row, user, items, global)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn add_row_avx2(row: &mut [f32], user: f32, items: &[f32], global: f32) {
        super::add_row_body(row, user, items, global)
    }
}

#[inline(always)]
fn add_row_body(row: &mut [f32], user: f32, items: &[f32], global: f32) {
    for (s, &b) in row.iter_mut().zip(items) {
        *s = ((*s + user) + b) + global;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(&t.contiguous().view([-1])).unwrap()
    }

    /// The one pass gives libtorch's three `add_`s bit for bit on ragged widths, with values
    /// whose sums round (another order of the additions gives other bits on this data: checked),
    /// and each build of the row loop this CPU can run agrees with the plain one.
    #[test]
    fn one_pass_adds_the_biases_as_libtorch_does_bit_for_bit() {
        tch::manual_seed(5);
        let f = (Kind::Float, Device::Cpu);
        for (users, items) in [(1i64, 1i64), (3, 17), (7, 26_744), (39, 1000), (2, 33)] {
            let scores = Tensor::randn([users, items], f) * 4.0;
            let ub = Tensor::randn([users, 1], f) * 3.3;
            let ib = Tensor::randn([items, 1], f) * 0.7;
            let g = Tensor::randn([1], f);
            let mut want = scores.copy();
            let _ = want.g_add_(&ub);
            let _ = want.g_add_(&ib.view([1, -1]));
            let _ = want.g_add_(&g);
            let got = scores.copy();
            assert!(add_biases_in_one_pass(&got, &ub, &ib, &g));
            let (w, o) = (floats(&want), floats(&got));
            let differ = w.iter().zip(&o).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{users} x {items}: {differ} of {} differ", w.len());
            if users * items >= 1000 {
                let other_order = floats(&(&scores + (&ub + ib.view([1, -1]) + &g)));
                assert!(w.iter().zip(&other_order).any(|(a, b)| a != b), "the data never rounds");
            }
            // Every row loop the CPU has, against the plain one.
            let (row, items_b) = (floats(&scores.get(0)), floats(&ib));
            let u = floats(&ub)[0];
            let gv = floats(&g)[0];
            let mut plain = row.clone();
            add_row_body(&mut plain, u, &items_b, gv);
            let mut dispatched = row.clone();
            add_row(&mut dispatched, u, &items_b, gv);
            assert_eq!(plain, dispatched);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut v = row.clone();
                unsafe { x86::add_row_avx2(&mut v, u, &items_b, gv) };
                assert_eq!(plain, v);
            }
        }
        // Empty: nothing to add, no read through an empty tensor's (null) data pointer.
        let empty_ib = Tensor::zeros([0, 1], f);
        assert!(add_biases_in_one_pass(
            &Tensor::zeros([2, 0], f),
            &Tensor::zeros([2, 1], f),
            &empty_ib,
            &Tensor::zeros([1], f)
        ));
        assert!(add_biases_in_one_pass(
            &Tensor::zeros([0, 3], f),
            &Tensor::zeros([0, 1], f),
            &Tensor::zeros([3, 1], f),
            &Tensor::zeros([1], f)
        ));
        // Not for it: another dtype, a non-contiguous view, a wrong shape.
        let (ub, ib, g) = (Tensor::zeros([2, 1], f), Tensor::zeros([3, 1], f), Tensor::zeros([1], f));
        assert!(!add_biases_in_one_pass(&Tensor::zeros([2, 3], (Kind::Double, Device::Cpu)), &ub, &ib, &g));
        assert!(!add_biases_in_one_pass(&Tensor::zeros([3, 2], f).tr(), &ub, &ib, &g));
        assert!(!add_biases_in_one_pass(&Tensor::zeros([2, 4], f), &ub, &ib, &g));
    }
}

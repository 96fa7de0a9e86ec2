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
        let _ = scores.g_add_(bias);
        let _ = scores.g_add_(&self.item_bias.ws.view([1, -1]));
        let _ = scores.g_add_(&self.global_bias);
        scores
    }
}

//! GMF and MLP, the NCF paper's two halves of NeuMF: NeuMF with one branch removed, keeping that
//! branch's parameter names (`mf_user_embed.weight`, `mlp.0.weight`, ...) and a final layer of
//! their own (`final.weight`, `final.bias`), so NeuMF's pre-training is a key copy
//! ([`NeuMf::from_pretrained`]).

use crate::model::{ItemSide, Model, PairTables, RowsGradient, UserTable};
use crate::neumf::{Branches, ItemHalf};
use crate::runtime::CpuMatmul;
use crate::{FirstLayerTables, ModelError, ModelKind, NeuMf, NeuMfConfig};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The shape of a GMF model.
#[derive(Debug, Clone, PartialEq)]
pub struct GmfConfig {
    pub users: i64,
    pub items: i64,
    /// Embedding width (`-f`, `--factors`).
    pub factors: i64,
}

/// The shape of an MLP model.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    pub users: i64,
    pub items: i64,
    /// `--layers`: the concatenated embedding width, then each Linear + ReLU + dropout.
    pub layers: Vec<i64>,
    /// Dropout probability after each layer in training mode.
    pub dropout: f64,
}

/// Generalized Matrix Factorization: `logit = final(p_u * q_i)` (He et al., eq. 9): an
/// element-wise product of the user and item embeddings, weighted by a linear layer.
/// Initialised as NeuMF's GMF branch (embeddings N(0, 0.01), the final layer LeCun-uniform).
#[derive(Debug)]
pub struct Gmf(NeuMf);

/// Multi-Layer Perceptron: `logit = final(mlp([p_u; q_i]))` (He et al., eq. 10): NeuMF's tower
/// alone, with its dropout, initialisation, and speed-ups (the first layer per distinct id).
#[derive(Debug)]
pub struct Mlp(NeuMf);

impl Gmf {
    /// A freshly initialised GMF on `device` (seed with [`tch::manual_seed`]).
    pub fn new(config: GmfConfig, device: Device) -> Result<Self, ModelError> {
        let c = NeuMfConfig {
            users: config.users,
            items: config.items,
            mf_dim: config.factors,
            mlp_layers: vec![],
            dropout: 0.0,
        };
        Ok(Gmf(NeuMf::with_branches(c, Branches::GMF, device)?))
    }

    /// The model's shape.
    pub fn config(&self) -> GmfConfig {
        let c = self.0.config();
        GmfConfig { users: c.users, items: c.items, factors: c.mf_dim }
    }

    /// A GMF shaped as the checkpoint at `path` was saved, with its parameters.
    pub fn from_checkpoint(path: &Path, device: Device) -> Result<Self, ModelError> {
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        if ModelKind::of_state_dict(&entries).ok() != Some(ModelKind::Gmf) {
            return Err(not_a(path, ModelKind::Gmf, &entries));
        }
        let (c, _) = NeuMfConfig::shape_of(&entries, 0.0).map_err(|e| e.in_file(path))?;
        let mut model = Gmf::new(GmfConfig { users: c.users, items: c.items, factors: c.mf_dim }, device)?;
        model.load_state_dict(entries).map_err(|e| e.in_file(path))?;
        Ok(model)
    }

    pub(crate) fn inner(&self) -> &NeuMf {
        &self.0
    }
}

impl Mlp {
    /// A freshly initialised MLP on `device` (seed with [`tch::manual_seed`]).
    pub fn new(config: MlpConfig, device: Device) -> Result<Self, ModelError> {
        let c = NeuMfConfig {
            users: config.users,
            items: config.items,
            mf_dim: 0,
            mlp_layers: config.layers,
            dropout: config.dropout,
        };
        Ok(Mlp(NeuMf::with_branches(c, Branches::MLP, device)?))
    }

    /// The model's shape.
    pub fn config(&self) -> MlpConfig {
        let c = self.0.config();
        MlpConfig { users: c.users, items: c.items, layers: c.mlp_layers.clone(), dropout: c.dropout }
    }

    /// An MLP shaped as the checkpoint at `path` was saved, with its parameters.
    pub fn from_checkpoint(path: &Path, dropout: f64, device: Device) -> Result<Self, ModelError> {
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        if ModelKind::of_state_dict(&entries).ok() != Some(ModelKind::Mlp) {
            return Err(not_a(path, ModelKind::Mlp, &entries));
        }
        let (c, _) = NeuMfConfig::shape_of(&entries, dropout).map_err(|e| e.in_file(path))?;
        let mut model = Mlp::new(MlpConfig { users: c.users, items: c.items, layers: c.mlp_layers, dropout }, device)?;
        model.load_state_dict(entries).map_err(|e| e.in_file(path))?;
        Ok(model)
    }

    pub(crate) fn inner(&self) -> &NeuMf {
        &self.0
    }

    /// The MLP's first layer for every user and item ([`NeuMf::first_layer_tables`]).
    pub fn first_layer_tables(&self) -> crate::FirstLayerTables {
        self.0.first_layer_tables()
    }
}

/// "a GMF checkpoint", "an MLP checkpoint".
fn checkpoint_of(kind: ModelKind) -> String {
    let article = if matches!(kind, ModelKind::Mlp | ModelKind::Mf) { "an" } else { "a" };
    format!("{article} {} checkpoint", kind.title())
}

fn not_a(path: &Path, wanted: ModelKind, entries: &[(String, Tensor)]) -> ModelError {
    let found = ModelKind::of_state_dict(entries)
        .map_or("is not a checkpoint of NeuMF, GMF, MLP or MF".to_owned(), |k| format!("is {}", checkpoint_of(k)));
    ModelError::WrongModel(format!("{} {found}, not {}", path.display(), checkpoint_of(wanted)))
}

/// NeuMF and its halves share one implementation.
trait Core {
    fn core(&self) -> &NeuMf;
    fn core_mut(&mut self) -> &mut NeuMf;
}

impl Core for NeuMf {
    fn core(&self) -> &NeuMf {
        self
    }
    fn core_mut(&mut self) -> &mut NeuMf {
        self
    }
}

impl Core for Gmf {
    fn core(&self) -> &NeuMf {
        &self.0
    }
    fn core_mut(&mut self) -> &mut NeuMf {
        &mut self.0
    }
}

impl Core for Mlp {
    fn core(&self) -> &NeuMf {
        &self.0
    }
    fn core_mut(&mut self) -> &mut NeuMf {
        &mut self.0
    }
}

/// `Model` for NeuMF and its halves: everything goes to the shared code; only the name differs.
macro_rules! delegate_to_neumf {
    ($ty:ty, $name:literal) => {
        impl Model for $ty {
            fn name(&self) -> &str {
                $name
            }
            fn users(&self) -> i64 {
                self.core().config().users
            }
            fn items(&self) -> i64 {
                self.core().config().items
            }
            fn device(&self) -> Device {
                self.core().device()
            }
            fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
                self.core().forward(users, items)
            }
            fn state_dict(&self) -> Vec<(String, Tensor)> {
                self.core().state_dict()
            }
            fn set_train(&mut self, train: bool) {
                self.core_mut().set_train(train)
            }
            fn is_training(&self) -> bool {
                self.core().is_training()
            }
            fn seed_dropout(&self, key: u64) {
                self.core().seed_dropout(key)
            }
            fn set_matmul_kind(&mut self, kind: Option<Kind>) {
                self.core_mut().set_matmul_kind(kind)
            }
            fn set_cpu_matmul(&mut self, choice: CpuMatmul) -> Result<(), ModelError> {
                self.core_mut().set_cpu_matmul(choice)
            }
            fn set_kind(&mut self, kind: Kind) {
                self.core_mut().set_kind(kind)
            }
            fn floats_per_scored_pair(&self) -> i64 {
                // The MLP's widest activation per pair (its first layer's output).
                self.core().config().mlp_layers.iter().skip(1).copied().max().unwrap_or(1)
            }
            fn item_side(&self) -> ItemSide {
                ItemSide::new(self.core().item_half())
            }
            fn bf16_item_side(&self) -> Result<ItemSide, ModelError> {
                Ok(ItemSide::new(self.core().bf16_item_half()?))
            }
            fn all_item_logits(&self, users: &Tensor, side: &ItemSide) -> Tensor {
                match side.get::<ItemHalf>() {
                    Some(half) => self.core().all_item_logits(users, half),
                    None => self.core().all_item_logits(users, &self.core().item_half()),
                }
            }
            fn user_tables(&self) -> Vec<UserTable> {
                self.core().user_tables()
            }
            fn pair_tables(&self) -> Option<PairTables> {
                // Without MLP layers (GMF) there is no first layer to tabulate.
                (self.core().config().mlp_layers.len() > 1).then(|| PairTables::new(self.core().first_layer_tables()))
            }
            fn forward_sigmoid_with(&self, users: &Tensor, items: &Tensor, tables: &PairTables) -> Tensor {
                match tables.get::<FirstLayerTables>() {
                    Some(t) if !self.core().is_training() => self.core().forward_with_tables(users, items, t).sigmoid(),
                    _ => self.core().forward_sigmoid(users, items),
                }
            }
            fn user_rows(&self, users: &Tensor) -> Option<Vec<Tensor>> {
                Some(self.core().user_rows(users))
            }
            fn logits_of_rows(&self, rows: &[Tensor], items: &Tensor, side: &ItemSide) -> Option<Tensor> {
                match side.get::<ItemHalf>() {
                    Some(half) => self.core().logits_of_rows(rows, items, half),
                    None => self.core().logits_of_rows(rows, items, &self.core().item_half()),
                }
            }
            fn all_item_logits_of_rows(&self, rows: &[Tensor], side: &ItemSide) -> Option<Tensor> {
                match side.get::<ItemHalf>() {
                    Some(half) => self.core().all_item_logits_of_rows(rows, half),
                    None => self.core().all_item_logits_of_rows(rows, &self.core().item_half()),
                }
            }
            fn rows_loss_gradient(
                &self,
                rows: &[Vec<f32>],
                items: &[i64],
                positives: usize,
                side: &ItemSide,
            ) -> Option<Result<RowsGradient, ModelError>> {
                self.core().rows_loss_gradient(rows, items, positives, side.get::<ItemHalf>()?)
            }
        }
    };
}

delegate_to_neumf!(NeuMf, "neumf");
delegate_to_neumf!(Gmf, "gmf");
delegate_to_neumf!(Mlp, "mlp");

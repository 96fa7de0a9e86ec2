//! The interface every model of the crate implements, and what a model written elsewhere implements
//! to be trained by `ncf-train` and served by `ncf-infer`'s library.

use crate::runtime::CpuMatmul;
use crate::ModelError;
use std::any::Any;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A collaborative-filtering model: logits for (user, item) pairs from named parameters.
///
/// Three verbs make a model, as in RecBole: [`Model::forward`] (pair logits, what training and the
/// sampled evaluation use), [`Model::state_dict`] (the parameters, named and ordered as PyTorch's
/// state dict, what the optimizer, checkpoints and data-parallel training use) and
/// [`Model::all_item_logits`] (every item for a block of users, what recommending and full-ranking
/// evaluation use; by default it calls `forward` on every pair). Loading, saving and counting
/// parameters come with the trait.
///
/// ```
/// use ncf_model::{Model, ModelError};
/// use tch::{nn, Device, Tensor};
///
/// /// A popularity-and-taste baseline: a bias per item plus a user-item dot product.
/// struct ItemBiasDot { vs: nn::VarStore, user: Tensor, item: Tensor, bias: Tensor, train: bool }
///
/// impl Model for ItemBiasDot {
///     fn name(&self) -> &str { "item-bias-dot" }
///     fn users(&self) -> i64 { self.user.size()[0] }
///     fn items(&self) -> i64 { self.item.size()[0] }
///     fn device(&self) -> Device { self.vs.device() }
///     fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
///         let dot = (self.user.index_select(0, users) * self.item.index_select(0, items)).sum_dim_intlist(1, true, None);
///         dot + self.bias.index_select(0, items)
///     }
///     fn state_dict(&self) -> Vec<(String, Tensor)> {
///         vec![("user".into(), self.user.shallow_clone()), ("item".into(), self.item.shallow_clone()), ("bias".into(), self.bias.shallow_clone())]
///     }
///     fn set_train(&mut self, train: bool) { self.train = train }
///     fn is_training(&self) -> bool { self.train }
/// }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let root = vs.root();
/// let init = nn::Init::Randn { mean: 0.0, stdev: 0.01 };
/// let (user, item) = (root.var("user", &[10, 4], init), root.var("item", &[20, 4], init));
/// let bias = root.var("bias", &[20, 1], nn::Init::Const(0.0));
/// let model = ItemBiasDot { vs, user, item, bias, train: true };
/// let scores = model.all_item_logits(&Tensor::from_slice(&[0i64, 3]), &model.item_side());
/// assert_eq!(scores.size(), [2, 20]);
/// assert_eq!(model.parameter_count(), 10 * 4 + 20 * 4 + 20);
/// ```
pub trait Model: Send {
    /// The model's name, as `ncf-train --model` spells it (`neumf`, `gmf`, `mlp`, `mf`); logged.
    fn name(&self) -> &str;

    /// Number of users (rows of the user side).
    fn users(&self) -> i64;

    /// Number of items.
    fn items(&self) -> i64;

    /// The device the parameters live on.
    fn device(&self) -> Device;

    /// Logits `[N, 1]` for int64 user and item ids `[N]` on the model's device; dropout (if the
    /// model has any) only in training mode.
    fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor;

    /// `(key, parameter)` in PyTorch's state-dict order, sharing memory with the model (the
    /// optimizer updates these tensors in place). Keys are what `torch.save(model.state_dict())`
    /// writes for the same model in PyTorch.
    fn state_dict(&self) -> Vec<(String, Tensor)>;

    /// Training mode (dropout on) or evaluation mode, like `module.train(bool)`.
    fn set_train(&mut self, train: bool);

    /// Whether the model is in training mode.
    fn is_training(&self) -> bool;

    /// Restarts the model's CPU dropout masks from `key` (the trainer calls it every epoch so runs
    /// are reproducible and resumable). Models without their own masks ignore it.
    fn seed_dropout(&self, _key: u64) {}

    /// Runs the model's large matrix products in `kind` (bfloat16 for `ncf-train --amp` on a CPU),
    /// parameters and gradients kept in their own kind; `None` turns it off. Models without large
    /// products ignore it.
    fn set_matmul_kind(&mut self, _kind: Option<Kind>) {}

    /// Which library runs the model's float32 CPU matrix products ([`CpuMatmul`]); an error for a
    /// choice this CPU cannot run (nothing changed). Models without large products ignore it.
    fn set_cpu_matmul(&mut self, _choice: CpuMatmul) -> Result<(), ModelError> {
        Ok(())
    }

    /// Casts every parameter to `kind` (e.g. `Kind::Half` or `Kind::BFloat16` for inference), in
    /// place, as `VarStore::set_kind` does.
    fn set_kind(&mut self, kind: Kind) {
        tch::no_grad(|| {
            for (_, mut t) in self.state_dict() {
                let cast = t.to_kind(kind);
                t.set_data(&cast);
            }
        });
    }

    /// Floats of intermediate results per (user, item) pair in [`Model::all_item_logits`], which
    /// sizes the blocks of users a recommender scores at once; by default 1 (a score per pair).
    fn floats_per_scored_pair(&self) -> i64 {
        1
    }

    /// The item-side work of [`Model::all_item_logits`], done once per model and reused for every
    /// block of users (stale once the parameters change). By default it holds nothing.
    fn item_side(&self) -> ItemSide {
        ItemSide::new(())
    }

    /// An item side whose all-item scoring ([`Model::all_item_logits`] and
    /// [`Model::all_item_logits_of_rows`]) runs in bfloat16 on the CPU: several times faster
    /// where the CPU has AMX, logits within ~1e-2 of float32's, for picking candidates a float32
    /// pass then ranks. Pair scoring through it ([`Model::logits_of_rows`]) stays float32. An
    /// error saying why where the model has no such path (the default: MF and GMF are one
    /// memory-bound product per user block, nothing to gain), off the CPU, or on a CPU without
    /// bfloat16 instructions.
    fn bf16_item_side(&self) -> Result<ItemSide, ModelError> {
        Err(ModelError::Unsupported(format!(
            "the {} model has no bfloat16 all-item scoring (only NeuMF and MLP, whose MLP layers it speeds up)",
            self.name()
        )))
    }

    /// Every item's logit for each of `users` (`[U]` int64): `[U, items]`, evaluation mode, no
    /// gradients; equal to `forward` on every pair up to float rounding. Logits, not
    /// probabilities: ranking needs them (float32's sigmoid rounds large logits to 1.0, making
    /// ties). The default scores the `U x items` pairs through `forward`; models override it with
    /// their own algebra (a dot-product model: one matrix product). The tensor returned is the
    /// caller's own (a new one, sharing no memory with the parameters): callers write into it
    /// (`inference` marks a user's seen items `-inf` in place).
    fn all_item_logits(&self, users: &Tensor, _side: &ItemSide) -> Tensor {
        tch::no_grad(|| {
            let (u, i) = (users.size()[0], self.items());
            let items = Tensor::arange(i, (Kind::Int64, self.device()));
            let pair_users = users.repeat_interleave_self_int(i, 0, None);
            let pair_items = items.repeat([u]);
            self.forward(&pair_users, &pair_items).view([u, i])
        })
    }

    /// The tables a user is a row of, in a fixed order: what a user outside the model (fold-in)
    /// is represented by. NeuMF: the GMF then the MLP user embedding; GMF and MLP: their one; MF:
    /// the embedding then the bias. Empty (the default) for a model that cannot score a user it
    /// was not trained on; then [`Model::user_rows`] and the two `*_of_rows` verbs are `None`.
    fn user_tables(&self) -> Vec<UserTable> {
        Vec::new()
    }

    /// The rows of `users` (`[U]` int64) in each of [`Model::user_tables`]: `[U, width]` each,
    /// copies detached from the parameters.
    fn user_rows(&self, _users: &Tensor) -> Option<Vec<Tensor>> {
        None
    }

    /// Logits `[N, 1]` for users given by their rows (one `[N, width]` tensor per user table, a
    /// row per pair) against `items` (`[N]` int64), evaluation mode, equal to `forward` for a
    /// trained user's own rows. Gradients flow to the rows and not to the parameters: what
    /// fitting a new user's rows with the parameters fixed needs. `side` is [`Model::item_side`].
    fn logits_of_rows(&self, _rows: &[Tensor], _items: &Tensor, _side: &ItemSide) -> Option<Tensor> {
        None
    }

    /// Every item's logit `[U, items]` for users given by their rows (`[U, width]` per user table),
    /// as [`Model::all_item_logits`] for a trained user's own rows; no gradients; a new tensor,
    /// as there.
    fn all_item_logits_of_rows(&self, _rows: &[Tensor], _side: &ItemSide) -> Option<Tensor> {
        None
    }

    /// The binary cross-entropy summed over `items` (dataset ids, the first `positives` labelled
    /// 1, the rest 0) for one person given as rows (one vector per user table, as wide as it),
    /// and its gradient with respect to each row, computed by the model itself where `side`
    /// offers a faster path than autograd over [`Model::logits_of_rows`] (NeuMF and MLP with a
    /// [`Model::bf16_item_side`] on a CPU with AMX: bfloat16 products, the gradient a few percent
    /// from float32's). `None` (the default) where it does not.
    fn rows_loss_gradient(
        &self,
        _rows: &[Vec<f32>],
        _items: &[i64],
        _positives: usize,
        _side: &ItemSide,
    ) -> Option<Result<RowsGradient, ModelError>> {
        None
    }

    /// What the model can compute once from its current parameters to score arbitrary pairs
    /// faster in evaluation mode ([`Model::forward_sigmoid_with`]); NeuMF and MLP: the first MLP
    /// layer per user and per item ([`crate::NeuMf::first_layer_tables`]; ML-20m: 170 MB). `None`
    /// (the default) when there is nothing to gain. Stale as soon as the parameters change.
    fn pair_tables(&self) -> Option<PairTables> {
        None
    }

    /// [`Model::forward_sigmoid`] in evaluation mode, reading `tables` made by
    /// [`Model::pair_tables`] from the current parameters: the same probabilities up to float
    /// rounding. The default ignores the tables.
    fn forward_sigmoid_with(&self, users: &Tensor, items: &Tensor, _tables: &PairTables) -> Tensor {
        self.forward_sigmoid(users, items)
    }

    /// Probabilities `[N, 1]`: `sigmoid(forward)`, what evaluation ranks by.
    fn forward_sigmoid(&self, users: &Tensor, items: &Tensor) -> Tensor {
        self.forward(users, items).sigmoid()
    }

    /// Number of parameters.
    fn parameter_count(&self) -> i64 {
        self.state_dict().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Copies a state dict into the model. Keys may carry DDP's `module.` prefix. Every key must be
    /// present with the model's shape, and no other key may appear; otherwise nothing is changed and
    /// the error lists each missing, unexpected and mis-shaped key. Values are cast to the model's
    /// kind and device.
    fn load_state_dict(&mut self, entries: Vec<(String, Tensor)>) -> Result<(), ModelError> {
        copy_state_dict(&self.state_dict(), entries)
    }

    /// Loads a `model.pth` state dict (PyTorch's or ours; any location tag) into the model.
    fn load(&mut self, path: &Path) -> Result<(), ModelError> {
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        self.load_state_dict(entries).map_err(|e| e.in_file(path))
    }

    /// Saves the state dict as PyTorch does (`torch.save(model.state_dict(), path)`), atomically;
    /// `torch.load(path, weights_only=True)` reads it.
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        Ok(tch_data::save_tch_map(path, &self.state_dict())?)
    }
}

/// One table of a model's user side ([`Model::user_tables`]): its state-dict key and its width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTable {
    /// The table's key in the state dict (`mf_user_embed.weight`, `user_bias.weight`).
    pub key: String,
    /// Floats per user.
    pub width: i64,
}

/// A model of any kind, chosen at run time (`--model`, or a checkpoint's keys).
pub type AnyModel = Box<dyn Model>;

/// What a model computes once for all items before scoring blocks of users
/// ([`Model::item_side`]); each model keeps its own type inside.
pub struct ItemSide(Box<dyn Any + Send>);

impl ItemSide {
    /// Wraps a model's own item-side data.
    pub fn new<T: Any + Send>(data: T) -> Self {
        ItemSide(Box::new(data))
    }

    /// The model's data, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

/// A loss and its gradient with respect to each of a person's rows
/// ([`Model::rows_loss_gradient`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RowsGradient {
    /// The binary cross-entropy summed over the pairs.
    pub loss: f64,
    /// One gradient per row, as long as it.
    pub rows: Vec<Vec<f32>>,
}

/// What a model computes once to score arbitrary pairs faster ([`Model::pair_tables`]); each
/// model keeps its own type inside.
pub struct PairTables(Box<dyn Any + Send>);

impl PairTables {
    /// Wraps a model's own tables.
    pub fn new<T: Any + Send>(data: T) -> Self {
        PairTables(Box::new(data))
    }

    /// The model's tables, if they are a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for PairTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairTables(..)")
    }
}

impl std::fmt::Debug for ItemSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemSide(..)")
    }
}

/// [`Model::load_state_dict`]'s rule: `entries` must name exactly the keys of `params`, each with
/// its shape; then each is copied into its parameter.
pub fn copy_state_dict(params: &[(String, Tensor)], entries: Vec<(String, Tensor)>) -> Result<(), ModelError> {
    let entries = torchfile::strip_module_prefix(entries);
    let mut problems = Vec::new();
    for (name, var) in params {
        match entries.iter().find(|(k, _)| k == name) {
            None => problems.push(format!("missing `{name}` (model shape {:?})", var.size())),
            Some((_, t)) if t.size() != var.size() => {
                problems.push(format!("`{name}`: checkpoint shape {:?}, model shape {:?}", t.size(), var.size()))
            }
            Some(_) => {}
        }
    }
    for (k, t) in &entries {
        if !params.iter().any(|(name, _)| name == k) {
            problems.push(format!("unexpected `{k}` (shape {:?})", t.size()));
        }
    }
    if !problems.is_empty() {
        return Err(ModelError::StateDict { problems });
    }
    tch::no_grad(|| {
        for (name, value) in &entries {
            if let Some((_, var)) = params.iter().find(|(k, _)| k == name) {
                let mut var = var.shallow_clone();
                var.copy_(&value.to_device(var.device()).to_kind(var.kind()));
            }
        }
    });
    Ok(())
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn users(&self) -> i64 {
        (**self).users()
    }
    fn items(&self) -> i64 {
        (**self).items()
    }
    fn device(&self) -> Device {
        (**self).device()
    }
    fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
        (**self).forward(users, items)
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        (**self).state_dict()
    }
    fn set_train(&mut self, train: bool) {
        (**self).set_train(train)
    }
    fn is_training(&self) -> bool {
        (**self).is_training()
    }
    fn seed_dropout(&self, key: u64) {
        (**self).seed_dropout(key)
    }
    fn set_matmul_kind(&mut self, kind: Option<Kind>) {
        (**self).set_matmul_kind(kind)
    }
    fn set_cpu_matmul(&mut self, choice: CpuMatmul) -> Result<(), ModelError> {
        (**self).set_cpu_matmul(choice)
    }
    fn set_kind(&mut self, kind: Kind) {
        (**self).set_kind(kind)
    }
    fn floats_per_scored_pair(&self) -> i64 {
        (**self).floats_per_scored_pair()
    }
    fn user_tables(&self) -> Vec<UserTable> {
        (**self).user_tables()
    }
    fn user_rows(&self, users: &Tensor) -> Option<Vec<Tensor>> {
        (**self).user_rows(users)
    }
    fn logits_of_rows(&self, rows: &[Tensor], items: &Tensor, side: &ItemSide) -> Option<Tensor> {
        (**self).logits_of_rows(rows, items, side)
    }
    fn all_item_logits_of_rows(&self, rows: &[Tensor], side: &ItemSide) -> Option<Tensor> {
        (**self).all_item_logits_of_rows(rows, side)
    }
    fn rows_loss_gradient(
        &self,
        rows: &[Vec<f32>],
        items: &[i64],
        positives: usize,
        side: &ItemSide,
    ) -> Option<Result<RowsGradient, ModelError>> {
        (**self).rows_loss_gradient(rows, items, positives, side)
    }
    fn item_side(&self) -> ItemSide {
        (**self).item_side()
    }
    fn bf16_item_side(&self) -> Result<ItemSide, ModelError> {
        (**self).bf16_item_side()
    }
    fn all_item_logits(&self, users: &Tensor, side: &ItemSide) -> Tensor {
        (**self).all_item_logits(users, side)
    }
    fn forward_sigmoid(&self, users: &Tensor, items: &Tensor) -> Tensor {
        (**self).forward_sigmoid(users, items)
    }
    fn pair_tables(&self) -> Option<PairTables> {
        (**self).pair_tables()
    }
    fn forward_sigmoid_with(&self, users: &Tensor, items: &Tensor, tables: &PairTables) -> Tensor {
        (**self).forward_sigmoid_with(users, items, tables)
    }
    fn parameter_count(&self) -> i64 {
        (**self).parameter_count()
    }
    fn load_state_dict(&mut self, entries: Vec<(String, Tensor)>) -> Result<(), ModelError> {
        (**self).load_state_dict(entries)
    }
    fn load(&mut self, path: &Path) -> Result<(), ModelError> {
        (**self).load(path)
    }
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        (**self).save(path)
    }
}

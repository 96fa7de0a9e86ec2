//! NeuMF: the model of the reference's `neumf.py`, parameter for parameter.

use crate::distinct::distinct_ids;
use crate::dropout::{fusable, MaskStream};
use crate::model::{RowsGradient, UserTable};
use crate::runtime::CpuMatmul;
use crate::ModelError;
use std::path::Path;
use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

/// The shape of a NeuMF model. Defaults are the reference's (`--factors 64 --layers 256 256 128 64
/// --dropout 0.5`); `users` and `items` are the dataset's cardinalities.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuMfConfig {
    /// Number of users (rows of the user embeddings).
    pub users: i64,
    /// Number of items (rows of the item embeddings).
    pub items: i64,
    /// Width of the MF embeddings (`--factors`).
    pub mf_dim: i64,
    /// MLP sizes (`--layers`): the first is the concatenated MLP embedding width (so each MLP
    /// embedding is half of it, and it must be even), each next one a Linear + ReLU + dropout.
    pub mlp_layers: Vec<i64>,
    /// Dropout probability after each MLP layer in training mode (`--dropout`).
    pub dropout: f64,
}

impl NeuMfConfig {
    /// The reference's defaults for a dataset of `users` x `items`.
    pub fn new(users: i64, items: i64) -> Self {
        NeuMfConfig { users, items, mf_dim: 64, mlp_layers: vec![256, 256, 128, 64], dropout: 0.5 }
    }

    /// Checks the rules the reference enforces (and a few it leaves to a crash).
    pub fn validate(&self) -> Result<(), ModelError> {
        self.validate_for(Branches::NEUMF)
    }

    /// [`NeuMfConfig::validate`] for the fields a model with `branches` uses.
    pub(crate) fn validate_for(&self, branches: Branches) -> Result<(), ModelError> {
        let bad = |message: String| Err(ModelError::Config(message));
        if self.users < 1 || self.items < 1 {
            return bad(format!("users ({}) and items ({}) must be at least 1", self.users, self.items));
        }
        if branches.gmf && self.mf_dim < 1 {
            return bad(format!("factors (MF width) must be at least 1, got {}", self.mf_dim));
        }
        if !branches.mlp {
            return Ok(());
        }
        match self.mlp_layers.first() {
            None => return bad("layers must name at least one size (the MLP embedding width)".into()),
            Some(&first) if first < 2 || first % 2 != 0 => {
                return bad(format!(
                "layers[0] = {first} must be even and at least 2: it is the user and item MLP embeddings side by side"
            ))
            }
            Some(_) => {}
        }
        if let Some(&size) = self.mlp_layers.iter().find(|&&s| s < 1) {
            return bad(format!("every layer size must be at least 1, got {size}"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// The shape a NeuMF state dict (e.g. a `model.pth`, `module.` prefix or not) was saved with;
    /// `dropout` is not stored in a state dict, so it is given.
    pub fn from_state_dict(entries: &[(String, Tensor)], dropout: f64) -> Result<Self, ModelError> {
        let (config, branches) = Self::shape_of(entries, dropout)?;
        match branches {
            Branches { gmf: true, mlp: true } => Ok(config),
            Branches { gmf: false, .. } => Err(missing("mf_user_embed.weight")),
            Branches { mlp: false, .. } => Err(missing("mlp_user_embed.weight")),
        }
    }

    /// The shape of a NeuMF, GMF or MLP state dict and which branches it holds; fields of a branch
    /// it lacks are 0 (`mf_dim`) or empty (`mlp_layers`).
    pub(crate) fn shape_of(entries: &[(String, Tensor)], dropout: f64) -> Result<(Self, Branches), ModelError> {
        let find = |name: &str| {
            entries.iter().find(|(k, _)| k.strip_prefix("module.").unwrap_or(k) == name).map(|(_, t)| t.size())
        };
        let two_d = |name: &str| match find(name) {
            None => Ok(None),
            Some(shape) if shape.len() == 2 => Ok(Some((shape[0], shape[1]))),
            Some(shape) => Err(ModelError::StateDict {
                problems: vec![format!("`{name}` has shape {shape:?}, not two-dimensional")],
            }),
        };
        let (mf_user, mf_item) = (two_d("mf_user_embed.weight")?, two_d("mf_item_embed.weight")?);
        let (mlp_user, mlp_item) = (two_d("mlp_user_embed.weight")?, two_d("mlp_item_embed.weight")?);
        let branches = Branches { gmf: mf_user.is_some(), mlp: mlp_user.is_some() };
        let Some((users, _)) = mf_user.or(mlp_user) else {
            return Err(missing("mf_user_embed.weight` or `mlp_user_embed.weight"));
        };
        let item_table =
            if branches.gmf { ("mf_item_embed.weight", mf_item) } else { ("mlp_item_embed.weight", mlp_item) };
        let Some((items, _)) = item_table.1 else { return Err(missing(item_table.0)) };
        let mf_dim = mf_user.map_or(0, |(_, d)| d);
        let mut mlp_layers = Vec::new();
        if let Some((_, half)) = mlp_user {
            mlp_layers.push(2 * half);
            for i in 0.. {
                match find(&format!("mlp.{i}.weight")) {
                    Some(shape) => mlp_layers.push(shape[0]),
                    None => break,
                }
            }
        }
        Ok((NeuMfConfig { users, items, mf_dim, mlp_layers, dropout }, branches))
    }

    /// Width of the final layer's input: the GMF product and the MLP's last layer side by side.
    pub(crate) fn final_fan_in(&self, branches: Branches) -> i64 {
        let mf = if branches.gmf { self.mf_dim } else { 0 };
        let mlp = if branches.mlp { self.mlp_layers.last().copied().unwrap_or(0) } else { 0 };
        mf + mlp
    }

    /// Number of trainable parameters (31,832,577 for ML-20m with the defaults).
    pub fn parameter_count(&self) -> i64 {
        let embeddings = (self.users + self.items) * (self.mf_dim + self.mlp_layers[0] / 2);
        let mlp: i64 = self.mlp_layers.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let last = *self.mlp_layers.last().unwrap_or(&0);
        embeddings + mlp + (last + self.mf_dim) + 1
    }
}

/// The item side of all-items scoring ([`NeuMf::item_half`]); a branch the model lacks (GMF's
/// MLP, MLP's GMF) is `None`.
#[derive(Debug)]
pub struct ItemHalf {
    mf: Option<Tensor>,
    /// `mf` transposed, contiguous `[mf_dim, items]`: the all-item product for a few users reads
    /// it row by row; with the transposed view of `mf` instead, MKL repacks the whole table on
    /// every call (GMF's product for 5 users of ML-20m's 26,744 items, one Xeon core, PyTorch:
    /// 551 us against 325 us). `mf` itself stays for gathering rows (fold-in's pairs).
    mf_by_column: Option<Tensor>,
    mlp: Option<Tensor>,
    final_mf: Tensor,
    final_mlp: Tensor,
    final_bias: Tensor,
    /// Set by [`NeuMf::bf16_item_half`]: the MLP branch's all-item scoring runs in bfloat16.
    bf16: Option<Bf16Mlp>,
}

/// The MLP branch in bfloat16 for all-item scoring on the CPU ([`NeuMf::bf16_item_half`]): the
/// first layer's item half (every item's embedding times the layer's item columns, plus its bias:
/// the float32 path's precomputed half, rounded once to bfloat16) and every later layer, cast
/// once. Against one user the first layer is then `relu(item_half + W_u e_u)`, one element-wise
/// pass (`torch_ops::bf16_add_relu`) instead of a product over the item embeddings (which had
/// cost as many multiply-adds as the second layer's); later layers are oneDNN products with the
/// bias and relu fused. Where the CPU has AMX tiles, `amx` holds the deeper layers packed for
/// `torch_ops::AmxMlp` instead: every layer and the final dot in one pass per block of 32
/// items (all-item scoring), and fold-in's forward and backward pass
/// ([`NeuMf::rows_loss_gradient`]).
#[derive(Debug)]
struct Bf16Mlp {
    first_half: Tensor,
    layers: Vec<(Tensor, Tensor)>,
    amx: Option<AmxTables>,
}

/// What the AMX path reads besides the bfloat16 item half: the deeper layers packed, and the
/// first layer's user columns `[h1, d]` (float32, contiguous) that fold-in's step multiplies by.
#[derive(Debug)]
struct AmxTables {
    mlp: torch_ops::AmxMlp,
    user_weight: Tensor,
}

impl Bf16Mlp {
    /// The last hidden layer's activations (bfloat16 `[n, h]`) for items `start..start + n`
    /// against one user, given as the first layer's user part (float32 `[h1]`, `W_u e_u`): the
    /// first layer's pass, then every later layer's fused product in turn.
    fn activations(&self, start: i64, n: i64, user_part: &Tensor) -> Result<Tensor, torch_ops::TorchOpError> {
        let mut x = torch_ops::bf16_add_relu(&self.first_half.narrow(0, start, n), user_part)?;
        for (w, b) in &self.layers {
            x = torch_ops::bf16_linear_relu(&x, w, b)?;
        }
        Ok(x)
    }
}

/// Which of NCF's two branches a model has: NeuMF both, GMF the first, MLP the second. GMF and MLP
/// are NeuMF with a branch removed (the paper's definition), so they share its code and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Branches {
    pub gmf: bool,
    pub mlp: bool,
}

impl Branches {
    pub(crate) const NEUMF: Branches = Branches { gmf: true, mlp: true };
    pub(crate) const GMF: Branches = Branches { gmf: true, mlp: false };
    pub(crate) const MLP: Branches = Branches { gmf: false, mlp: true };
}

/// A user and an item embedding table.
#[derive(Debug)]
struct Embeds {
    user: nn::Embedding,
    item: nn::Embedding,
}

/// The first MLP layer per user and per item ([`NeuMf::first_layer_tables`]).
#[derive(Debug)]
pub struct FirstLayerTables {
    user: Tensor,
    item: Tensor,
}

impl FirstLayerTables {
    /// Bytes held by both tables.
    pub fn bytes(&self) -> usize {
        [&self.user, &self.item].iter().map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum()
    }
}

/// NeuMF: `logit = final([mf_user(u) * mf_item(i), mlp([mlp_user(u), mlp_item(i)])])`.
///
/// The parameters live in the model's own [`nn::VarStore`], named exactly as PyTorch's state dict
/// keys (`mf_user_embed.weight`, `mlp.0.weight`, `final.bias`, ...), in the same order
/// ([`NeuMf::parameter_names`]).
#[derive(Debug)]
pub struct NeuMf {
    vs: nn::VarStore,
    config: NeuMfConfig,
    branches: Branches,
    /// `mf_user_embed`, `mf_item_embed` (the GMF branch).
    gmf: Option<Embeds>,
    /// `mlp_user_embed`, `mlp_item_embed` (the MLP branch, with `mlp`).
    mlp_embeds: Option<Embeds>,
    mlp: Vec<nn::Linear>,
    final_layer: nn::Linear,
    train: bool,
    masks: MaskStream,
    /// Kind the MLP's matrix products run in (`None`: the parameters' own).
    matmul_kind: Option<Kind>,
    /// Whether float32 CPU products run in oneDNN ([`NeuMf::set_cpu_matmul`]).
    onednn: bool,
}

impl NeuMf {
    /// A freshly initialised model on `device`, in training mode, initialised as the reference does:
    /// embeddings N(0, 0.01), MLP weights Glorot-uniform, the final weight LeCun-uniform, biases
    /// PyTorch's Linear default (uniform ±1/sqrt(fan_in)). Seed with [`tch::manual_seed`].
    pub fn new(config: NeuMfConfig, device: Device) -> Result<Self, ModelError> {
        Self::with_branches(config, Branches::NEUMF, device)
    }

    /// NeuMF with only the `branches` given (GMF, MLP): the same parameters, initialisation and
    /// keys for what is kept, created in the same order (so a seeded NeuMF is unchanged).
    pub(crate) fn with_branches(config: NeuMfConfig, branches: Branches, device: Device) -> Result<Self, ModelError> {
        config.validate_for(branches)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let embedding = |name: &str, rows: i64, dim: i64| {
            let init = Init::Randn { mean: 0.0, stdev: 0.01 };
            nn::embedding(&root / name, rows, dim, nn::EmbeddingConfig { ws_init: init, ..Default::default() })
        };
        let half = config.mlp_layers.first().map_or(0, |w| w / 2);
        let gmf = branches.gmf.then(|| Embeds {
            user: embedding("mf_user_embed", config.users, config.mf_dim),
            item: embedding("mf_item_embed", config.items, config.mf_dim),
        });
        let mlp_embeds = branches.mlp.then(|| Embeds {
            user: embedding("mlp_user_embed", config.users, half),
            item: embedding("mlp_item_embed", config.items, half),
        });
        let linear = |path: nn::Path, fan_in: i64, fan_out: i64, limit: f64| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let cfg = nn::LinearConfig {
                ws_init: Init::Uniform { lo: -limit, up: limit },
                bs_init: Some(Init::Uniform { lo: -bound, up: bound }),
                bias: true,
            };
            nn::linear(path, fan_in, fan_out, cfg)
        };
        let layers: &[i64] = if branches.mlp { &config.mlp_layers } else { &[] };
        let mlp = layers
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let glorot = (6.0 / (w[0] + w[1]) as f64).sqrt();
                linear(&root / "mlp" / i, w[0], w[1], glorot)
            })
            .collect();
        let fan_in = config.final_fan_in(branches);
        let final_layer = linear(&root / "final", fan_in, 1, (3.0 / fan_in as f64).sqrt());
        Ok(NeuMf {
            vs,
            config,
            branches,
            gmf,
            mlp_embeds,
            mlp,
            final_layer,
            train: true,
            masks: MaskStream::new(0),
            matmul_kind: None,
            onednn: CpuMatmul::default().resolve().unwrap_or(false),
        })
    }

    /// Logits `[N, 1]` for int64 user and item ids `[N]` (on the model's device).
    pub fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
        let Some(embeds) = &self.mlp_embeds else {
            let mf = self.gmf.as_ref().map(|e| e.user.forward(users) * e.item.forward(items));
            return self.final_layer.forward(&mf.unwrap_or_default());
        };
        let p = self.config.dropout;
        let mut mlp = Tensor::new();
        let dropout = p != 0.0 && self.train;
        for (k, layer) in self.mlp.iter().enumerate() {
            if let (Some(b), true) = (&layer.bs, k > 0 && dropout && self.bias_after_product(&mlp)) {
                // The bias added in dropout's pass, not written into the product's output first.
                let z = self.linear(&mlp, &layer.ws, None);
                mlp = self.masks.bias_relu_dropout(&z, b, p);
                continue;
            }
            let z =
                if k == 0 { self.first_layer(users, items) } else { self.linear(&mlp, &layer.ws, layer.bs.as_ref()) };
            mlp = match (dropout, z.device()) {
                (false, _) => z.relu(),
                (true, Device::Cpu) => self.masks.relu_dropout(&z, p),
                (true, _) => z.relu().dropout(p, true),
            };
        }
        if self.mlp.is_empty() {
            // `--layers` with one size: the MLP branch is the embeddings side by side.
            mlp = Tensor::cat(&[embeds.user.forward(users), embeds.item.forward(items)], 1);
        }
        match &self.gmf {
            Some(gmf) => self.head(gmf, users, items, &mlp),
            None => self.final_layer.forward(&mlp),
        }
    }

    /// The final layer over both branches, `final([mf_user(u) * mf_item(i), mlp])`. On the CPU in
    /// float32 it is one pass that reads the GMF rows straight from their tables
    /// ([`torch_ops::neumf_head`]): the gathered rows, their product and the concatenation are
    /// never written (nor their gradients, backward). Why: on a 2-core Xeon those `[batch, 64]` to
    /// `[batch, 128]` intermediates and their backward kernels took about 10% of the main thread's
    /// time in a training step, for 128 multiply-adds per sample. The same values up to float
    /// summation order (tested).
    fn head(&self, gmf: &Embeds, users: &Tensor, items: &Tensor, mlp: &Tensor) -> Tensor {
        let (p, q, w) = (&gmf.user.ws, &gmf.item.ws, &self.final_layer.ws);
        if let (Some(b), true) = (&self.final_layer.bs, [p, q, w, mlp].into_iter().all(fusable)) {
            // Its refusals (kinds, shapes, ids out of range) fall back to the plain expression, which
            // reports an id out of range in libtorch's own words.
            if let Ok(logits) = torch_ops::neumf_head(p, users, q, items, mlp, w, b) {
                return logits;
            }
        }
        let mf = gmf.user.forward(users) * gmf.item.forward(items);
        self.final_layer.forward(&Tensor::cat(&[mf, mlp.shallow_clone()], 1))
    }

    /// Whether a layer taking `x` adds its bias in the pass after its product (CPU dropout's,
    /// [`MaskStream::bias_relu_dropout`]; the first layer's gather, `torch_ops::gather_add_with_bias`)
    /// instead of inside the product: where the product runs in
    /// oneDNN in float32, which computes `acc + b` with the bias inside, so moving the sum changes no
    /// bit (tested in torch-ops), and saves writing the bias into a `[batch, width]` output before
    /// the product and the product reading it back.
    fn bias_after_product(&self, x: &Tensor) -> bool {
        self.onednn && self.matmul_kind.is_none() && x.device() == Device::Cpu && x.kind() == Kind::Float
    }

    /// `x W^T + b`, in [`NeuMf::set_matmul_kind`]'s kind when one is set (inputs, weight and bias
    /// cast to it, the result back to the parameters' kind), as autocast runs a linear layer; in
    /// float32 on the CPU through oneDNN when [`NeuMf::set_cpu_matmul`] chose it.
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        match self.matmul_kind {
            Some(kind) if kind != w.kind() => {
                let b = b.map(|b| b.to_kind(kind));
                x.to_kind(kind).linear(&w.to_kind(kind), b.as_ref()).to_kind(w.kind())
            }
            _ if self.onednn && x.device() == Device::Cpu && x.kind() == Kind::Float && w.kind() == Kind::Float => {
                // Its refusals (device, kind, shape, CPU) are ruled out here and in set_cpu_matmul.
                torch_ops::onednn_linear(x, w, b).unwrap_or_else(|_| x.linear(w, b))
            }
            _ => x.linear(w, b),
        }
    }

    /// `relu(x W^T + b)` in evaluation mode without gradients: [`NeuMf::linear`] and a relu in
    /// place, or, where the product runs in oneDNN in float32, the product and then the bias and
    /// relu in one pass (`torch_ops::onednn_linear_relu`: the same bits, one pass and one tensor
    /// fewer).
    fn linear_relu(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        if let (Some(b), true) = (b, self.bias_after_product(x) && w.kind() == Kind::Float) {
            if let Ok(y) = torch_ops::onednn_linear_relu(x, w, b) {
                return y;
            }
        }
        self.linear(x, w, b).relu_()
    }

    /// Runs the MLP's matrix products (every layer but the final one, which is a dot product per
    /// sample) in `kind`, with the parameters, their gradients and everything else kept in their
    /// own kind: what autocast does, without libtorch's autocast (whose CPU switch tch does not
    /// reach). `Some(Kind::BFloat16)` on a CPU with AVX512-BF16 or AMX runs those products several
    /// times faster; `None` turns it off. Applies in training and evaluation alike; the trainer
    /// sets it for training only, as the reference's `--amp` autocasts only its training steps.
    pub fn set_matmul_kind(&mut self, kind: Option<Kind>) {
        self.matmul_kind = kind;
    }

    /// Which library runs the MLP's float32 products on the CPU (default [`CpuMatmul::Auto`]:
    /// oneDNN where the CPU has AVX-512, 2-2.5x faster than MKL on an AMD EPYC; the same float32
    /// math in another summation order). [`CpuMatmul::OneDnn`] on a CPU without AVX-512 is
    /// refused and changes nothing.
    pub fn set_cpu_matmul(&mut self, choice: CpuMatmul) -> Result<(), ModelError> {
        self.onednn = choice.resolve().map_err(|e| ModelError::Config(e.to_string()))?;
        Ok(())
    }

    /// Whether float32 CPU products run in oneDNN (see [`NeuMf::set_cpu_matmul`]).
    pub fn uses_onednn(&self) -> bool {
        self.onednn
    }

    /// The kind set by [`NeuMf::set_matmul_kind`].
    pub fn matmul_kind(&self) -> Option<Kind> {
        self.matmul_kind
    }

    /// The first MLP layer before its activation, `W [e_u; e_i] + b`, computed as
    /// `W_u e_u + W_i e_i + b` once per distinct user and item of the batch, then gathered.
    ///
    /// Why: this layer holds about 60% of NeuMF's multiply-adds per sample, and a batch repeats its
    /// users and items many times (a 16,384 batch of ml-latest-small has at most 610 users; a 2^20
    /// batch of ML-20m at most 138,493 users and 26,744 items), so the products are done for far
    /// fewer rows; the backward pass sums the gathered rows' gradients back (`index_select`'s
    /// backward). The same sum as the plain layer up to float rounding (tested, values and
    /// gradients). A side whose ids a batch is unlikely to repeat much (fewer than 30% repeats
    /// expected if drawn uniformly: ML-20m's 138,493 users in a 16,384 batch of random pairs), and
    /// small batches, take the plain product: finding the distinct ids would cost more than it saves.
    fn first_layer(&self, users: &Tensor, items: &Tensor) -> Tensor {
        let first = &self.mlp[0];
        let batch = users.size()[0];
        let pays = |cardinality: i64| batch >= DISTINCT_IDS_FROM && expected_distinct_share(cardinality, batch) < 0.7;
        let (by_user, by_item) = (pays(self.config.users), pays(self.config.items));
        let Some(embeds) = &self.mlp_embeds else { unreachable!("first_layer is called for the MLP branch only") };
        if !by_user && !by_item {
            let x = Tensor::cat(&[embeds.user.forward(users), embeds.item.forward(items)], 1);
            return self.linear(&x, &first.ws, first.bs.as_ref());
        }
        let half = self.config.mlp_layers[0] / 2;
        // One side's product, with the bias folded into the item side's (fewer rows than the batch
        // when taken per distinct item).
        // A side's product, per distinct id (with where each row of the batch finds its id) or per row.
        let side = |ids: &Tensor, embed: &nn::Embedding, start: i64, distinct_only: bool, bias: Option<&Tensor>| {
            let w = first.ws.narrow(1, start, half);
            let (rows, at) = match distinct_only {
                true => {
                    let (distinct, at) = distinct_ids(ids, embed.ws.size()[0]).unwrap_or_else(|| {
                        let (distinct, at, _) = ids.internal_unique2(false, true, false);
                        (distinct, at.view([-1]))
                    });
                    (embed.forward(&distinct), Some(at))
                }
                false => (embed.forward(ids), None),
            };
            (self.linear(&rows, &w, bias), at)
        };
        let (z_user, at_user) = side(users, &embeds.user, 0, by_user, None);
        // Both sides per distinct id on the CPU: the bias is added in the gather pass below rather
        // than written into the item side's product first (the same bits, see bias_after_product).
        let bias_in_gather = by_user && by_item && self.bias_after_product(&z_user);
        let item_bias = if bias_in_gather { None } else { first.bs.as_ref() };
        let (z_item, at_item) = side(items, &embeds.item, half, by_item, item_bias);
        let gathered = |z: Tensor, at: Option<Tensor>| match at {
            Some(at) => z.index_select(0, &at),
            None => z,
        };
        if let (Some(au), Some(ai), Device::Cpu, Kind::Float) = (&at_user, &at_item, z_user.device(), z_user.kind()) {
            // Both gathers and their sum in one pass that writes the [batch, width] result once;
            // the same values and gradients bit for bit (torch_ops::gather_add).
            let z = match (bias_in_gather, &first.bs) {
                (true, Some(b)) => torch_ops::gather_add_with_bias(&z_user, au, &z_item, ai, b),
                _ => torch_ops::gather_add(&z_user, au, &z_item, ai),
            };
            if let Ok(z) = z {
                return z;
            }
        }
        // (Reached with bias_in_gather only if the gather refused, which its checks rule out for
        // float32 CPU tensors and in-range ids; add the bias back all the same.)
        let z_item = match (bias_in_gather, &first.bs) {
            (true, Some(b)) => z_item + b,
            _ => z_item,
        };
        let mut z = gathered(z_user, at_user);
        // In place: the sum is written into the user side's rows (index_select and matmul do not
        // need their outputs for the backward pass), not into a fresh [batch, width] buffer.
        let _ = z.g_add_(&gathered(z_item, at_item));
        z
    }

    /// Probabilities `[N, 1]`: `sigmoid(forward)`, what evaluation ranks by.
    pub fn forward_sigmoid(&self, users: &Tensor, items: &Tensor) -> Tensor {
        self.forward(users, items).sigmoid()
    }

    /// The first MLP layer's two halves for every user and every item, computed once for a
    /// trained model (no gradients): `user[u] = W_u e_u`, `item[i] = W_i e_i + b`, so that in
    /// evaluation mode the layer is two row gathers and an add ([`NeuMf::forward_with_tables`]).
    /// ML-20m with the defaults: (138,493 + 26,744) x 256 floats, 170 MB; about 60% of a pair's
    /// multiply-adds are then done once per user and item instead of once per pair. Stale as soon
    /// as the parameters change: make it anew after training or loading.
    pub fn first_layer_tables(&self) -> FirstLayerTables {
        tch::no_grad(|| {
            let (Some(first), Some(embeds)) = (self.mlp.first(), &self.mlp_embeds) else {
                // No MLP layer: nothing to tabulate (`forward_with_tables` falls back to `forward`).
                let empty = Tensor::zeros([0], (Kind::Float, self.device()));
                return FirstLayerTables { user: empty.shallow_clone(), item: empty };
            };
            let half = self.config.mlp_layers[0] / 2;
            let table = |embed: &nn::Embedding, rows: i64, start: i64| {
                let ids = Tensor::arange(rows, (Kind::Int64, self.device()));
                embed.forward(&ids).matmul(&first.ws.narrow(1, start, half).tr())
            };
            FirstLayerTables {
                user: table(&embeds.user, self.config.users, 0),
                item: table(&embeds.item, self.config.items, half) + bias_or_zero(first),
            }
        })
    }

    /// [`NeuMf::forward`] in evaluation mode with the first MLP layer read from `tables` (made by
    /// [`NeuMf::first_layer_tables`] from the current parameters): the same logits up to float
    /// rounding, without gradients. A model without MLP layers falls back to `forward`.
    pub fn forward_with_tables(&self, users: &Tensor, items: &Tensor, tables: &FirstLayerTables) -> Tensor {
        if self.mlp.is_empty() {
            return tch::no_grad(|| self.forward(users, items));
        }
        // On the CPU a large batch goes through in cache-sized pieces: the [pieces, 256] activations
        // stay in cache between layers instead of streaming through memory at every step (batch
        // 16,384 of ML-20m: 1.3M -> 1.45M pairs/s on our 2-core AMD EPYC VM, 2026-11-29).
        let n = users.size()[0];
        if self.device() == Device::Cpu && n > 2 * CPU_PIECE {
            let pieces: Vec<Tensor> = (0..n)
                .step_by(CPU_PIECE as usize)
                .map(|at| {
                    let len = CPU_PIECE.min(n - at);
                    self.forward_with_tables(&users.narrow(0, at, len), &items.narrow(0, at, len), tables)
                })
                .collect();
            return Tensor::cat(&pieces, 0);
        }
        tch::no_grad(|| {
            if let Some(logits) = self.tabled_in_one_fork(users, items, tables) {
                return logits;
            }
            // The first layer's output written once, in one pass over the batch's rows, where the
            // tables are contiguous float32 on the CPU (elsewhere no call is made, and no error
            // built per batch); its refusals, an id out of range among them, fall back to
            // libtorch's steps, which report it in libtorch's words.
            let fused = [&tables.user, &tables.item]
                .into_iter()
                .all(fusable)
                .then(|| torch_ops::gather_add_relu(&tables.user, users, &tables.item, items).ok())
                .flatten();
            let mut x = fused.unwrap_or_else(|| {
                let mut x = tables.user.index_select(0, users);
                let _ = x.g_add_(&tables.item.index_select(0, items));
                x.relu_()
            });
            for layer in &self.mlp[1..] {
                x = self.linear_relu(&x, &layer.ws, layer.bs.as_ref());
            }
            match &self.gmf {
                Some(gmf) => self.head(gmf, users, items, &x),
                None => self.final_layer.forward(&x),
            }
        })
    }

    /// [`NeuMf::forward_with_tables`]'s steps in one call that splits the batch into a run of rows
    /// per libtorch thread, each thread taking its rows through every layer
    /// (`torch_ops::neumf_tables_forward`): the thread pool forks once per batch instead of once
    /// per step. Where it applies: float32 on the CPU with the products in oneDNN (as the steps
    /// below run them there), every layer with a bias, contiguous tables. `None` elsewhere, and when
    /// it refuses (an id out of range among them: the step-by-step path then reports it in
    /// libtorch's words).
    fn tabled_in_one_fork(&self, users: &Tensor, items: &Tensor, tables: &FirstLayerTables) -> Option<Tensor> {
        if !(self.onednn && self.matmul_kind.is_none() && self.device() == Device::Cpu) {
            return None;
        }
        let layers: Option<Vec<_>> =
            self.mlp[1..].iter().map(|l| l.bs.as_ref().filter(|_| fusable(&l.ws)).map(|b| (&l.ws, b))).collect();
        let gmf = self.gmf.as_ref().map(|g| (&g.user.ws, &g.item.ws));
        let all_fusable = [&tables.user, &tables.item, &self.final_layer.ws]
            .into_iter()
            .chain(gmf.iter().flat_map(|(p, q)| [*p, *q]))
            .all(fusable);
        let mlp = torch_ops::TabledMlp {
            user_half: &tables.user,
            item_half: &tables.item,
            layers: layers?,
            gmf,
            last: (&self.final_layer.ws, self.final_layer.bs.as_ref()?),
        };
        all_fusable.then(|| torch_ops::neumf_tables_forward(&mlp, users, items, ROWS_PER_THREAD).ok()).flatten()
    }

    /// Restarts the CPU dropout masks from `key` (the trainer does this every epoch, so runs are
    /// reproducible and resumable); CUDA dropout follows `tch::manual_seed`.
    pub fn seed_dropout(&self, key: u64) {
        self.masks.reseed(key);
    }

    /// Every item's probability for each of `users` (`[U]` int64): `[U, items]`, evaluation mode
    /// (no dropout), no gradients. Equal to `forward_sigmoid` on every (user, item) pair up to
    /// float rounding, but computed the way a recommender needs it: the first MLP layer is split
    /// into its user and item halves (`W [eu; ei] = W_u eu + W_i ei`), the item half computed once
    /// for all items, and the MF branch is one matrix product, so a pair costs the deeper MLP
    /// layers only. `item_half` caches the item-side work across calls ([`NeuMf::item_half`]).
    pub fn score_all_items(&self, users: &Tensor, item_half: &ItemHalf) -> Tensor {
        self.all_item_logits(users, item_half).sigmoid()
    }

    /// [`NeuMf::score_all_items`] before the sigmoid: every item's logit for each of `users`.
    pub fn all_item_logits(&self, users: &Tensor, item_half: &ItemHalf) -> Tensor {
        tch::no_grad(|| {
            let mf_user = self.gmf.as_ref().map(|e| e.user.forward(users));
            let mlp_user = self.mlp_embeds.as_ref().map(|e| e.user.forward(users));
            self.all_item_logits_of(mf_user.as_ref(), mlp_user.as_ref(), item_half)
        })
    }

    /// Every item's logit for users given by their embedding rows rather than their ids: `mf_user`
    /// `[U, mf_dim]` (the GMF branch's user vectors; `None` without that branch) and `mlp_user`
    /// `[U, mlp_layers[0] / 2]` (the MLP branch's). What [`NeuMf::all_item_logits`] computes for
    /// trained users, and what scores a user fitted after training (fold-in) without adding a
    /// row to the model. `[U, items]`, no gradients.
    pub fn all_item_logits_of(
        &self,
        mf_user: Option<&Tensor>,
        mlp_user: Option<&Tensor>,
        item_half: &ItemHalf,
    ) -> Tensor {
        tch::no_grad(|| {
            let mut logits = item_half.final_bias.shallow_clone();
            if let (Some(mf_user), Some(mf_by_column)) = (mf_user, &item_half.mf_by_column) {
                // MF: final_w_mf . (mf_u * mf_i) = (mf_u * final_w_mf) . mf_i
                let mf_user = mf_user * &item_half.final_mf; // [U, f]
                                                             // Not `+=`: `logits` starts as the final bias itself, which must not change.
                logits = mf_user.matmul(mf_by_column) + &logits; // [U, I]
            }
            if let (Some(mlp_user), Some(bf16)) = (mlp_user, &item_half.bf16) {
                logits = self.mlp_logits_bf16(mlp_user, bf16, &item_half.final_mlp) + &logits;
            } else if let (Some(mlp_user), Some(mlp_items)) = (mlp_user, &item_half.mlp) {
                let mlp = if mlp_user.device() == Device::Cpu {
                    self.mlp_logits_in_blocks(mlp_user, mlp_items, &item_half.final_mlp)
                } else {
                    self.mlp_logits_at_once(mlp_user, mlp_items, &item_half.final_mlp)
                };
                logits = mlp + &logits;
            }
            logits
        })
    }

    /// The user tables of the branches this model has ([`crate::Model::user_tables`]).
    pub fn user_tables(&self) -> Vec<UserTable> {
        let mut tables = Vec::new();
        if self.gmf.is_some() {
            tables.push(UserTable { key: "mf_user_embed.weight".into(), width: self.config.mf_dim });
        }
        if self.mlp_embeds.is_some() {
            tables.push(UserTable { key: "mlp_user_embed.weight".into(), width: self.config.mlp_layers[0] / 2 });
        }
        tables
    }

    /// The rows of `users` in [`NeuMf::user_tables`], detached copies.
    pub fn user_rows(&self, users: &Tensor) -> Vec<Tensor> {
        tch::no_grad(|| {
            let gmf = self.gmf.as_ref().map(|e| e.user.forward(users).detach());
            let mlp = self.mlp_embeds.as_ref().map(|e| e.user.forward(users).detach());
            gmf.into_iter().chain(mlp).collect()
        })
    }

    /// Splits rows in [`NeuMf::user_tables`]' order into the GMF and MLP branch's; `None` when
    /// their count is not the tables'.
    fn branch_rows<'a>(&self, rows: &'a [Tensor]) -> Option<(Option<&'a Tensor>, Option<&'a Tensor>)> {
        match (self.gmf.is_some(), self.mlp_embeds.is_some(), rows) {
            (true, true, [g, m]) => Some((Some(g), Some(m))),
            (true, false, [g]) => Some((Some(g), None)),
            (false, true, [m]) => Some((None, Some(m))),
            _ => None,
        }
    }

    /// Pair logits `[N, 1]` for users given as rows against `items`, through the item half (the
    /// first layer's item side precomputed), evaluation mode; gradients reach the rows, not the
    /// parameters (they enter detached). `None` when the rows are not one per user table.
    pub fn logits_of_rows(&self, rows: &[Tensor], items: &Tensor, item_half: &ItemHalf) -> Option<Tensor> {
        let (mf_user, mlp_user) = self.branch_rows(rows)?;
        let n = items.size()[0];
        let mut logits = item_half.final_bias.detach().view([1, 1]).expand([n, 1], false);
        if let (Some(mf_user), Some(mf_items)) = (mf_user, &item_half.mf) {
            let weighted = mf_user * item_half.final_mf.detach();
            logits = (weighted * mf_items.index_select(0, items)).sum_dim_intlist(1, true, None) + logits;
        }
        if let (Some(mlp_user), Some(mlp_items)) = (mlp_user, &item_half.mlp) {
            let item_rows = mlp_items.index_select(0, items);
            let mut x = match self.mlp.first() {
                Some(first) => {
                    let half = self.config.mlp_layers[0] / 2;
                    let w_user = first.ws.detach().narrow(1, 0, half);
                    // One person's row repeated for every pair (fold-in expands it so): its part
                    // of the first layer once, broadcast, instead of once per pair (for 250
                    // pairs, as many multiply-adds as the second layer, forward and backward).
                    let user_part = if mlp_user.size()[0] > 1
                        && mlp_user.stride()[0] == 0
                        && mlp_user.size()[0] == item_rows.size()[0]
                    {
                        mlp_user.narrow(0, 0, 1).matmul(&w_user.tr())
                    } else {
                        mlp_user.matmul(&w_user.tr())
                    };
                    (user_part + item_rows).relu()
                }
                None => Tensor::cat(&[mlp_user.shallow_clone(), item_rows], 1),
            };
            for layer in self.mlp.iter().skip(1) {
                x = x.linear(&layer.ws.detach(), layer.bs.as_ref().map(Tensor::detach).as_ref()).relu();
            }
            logits = x.matmul(&item_half.final_mlp.detach().view([-1, 1])) + logits;
        }
        Some(logits)
    }

    /// Every item's logit for users given as rows ([`NeuMf::all_item_logits_of`]); `None` when
    /// the rows are not one per user table.
    pub fn all_item_logits_of_rows(&self, rows: &[Tensor], item_half: &ItemHalf) -> Option<Tensor> {
        let (mf_user, mlp_user) = self.branch_rows(rows)?;
        Some(self.all_item_logits_of(mf_user, mlp_user, item_half))
    }

    /// The user half of the MLP's first layer for user rows `[U, d]` (`W_u eu`), or the rows
    /// themselves when the MLP has no layer.
    fn mlp_user_part(&self, mlp_user: &Tensor) -> Tensor {
        match self.mlp.first() {
            Some(first) => {
                let half = self.config.mlp_layers[0] / 2;
                mlp_user.matmul(&first.ws.narrow(1, 0, half).tr()) // [U, h1]
            }
            None => mlp_user.shallow_clone(),
        }
    }

    /// The MLP branch's first-layer activations for one block of pairs: `user_part` `[n or 1, h]`
    /// against item rows `[n, h']`.
    fn mlp_first_activations(&self, user_part: &Tensor, items: &Tensor) -> Tensor {
        let n = items.size()[0];
        match self.mlp.first() {
            Some(_) => (user_part + items).relu_(),
            // No MLP layer: the branch is the two embeddings side by side.
            None => {
                let d = user_part.size()[1];
                Tensor::cat(&[user_part.expand([n, d], false), items.shallow_clone()], 1)
            }
        }
    }

    /// The MLP branch's logit contribution `[U, I]`, all pairs in one pass (CUDA: few large
    /// kernels keep the GPU busy).
    fn mlp_logits_at_once(&self, mlp_user: &Tensor, mlp_items: &Tensor, final_mlp: &Tensor) -> Tensor {
        let (u, i) = (mlp_user.size()[0], mlp_items.size()[0]);
        let user_part = self.mlp_user_part(mlp_user);
        let h = user_part.size()[1];
        let mut x = match self.mlp.first() {
            Some(_) => (user_part.unsqueeze(1) + mlp_items.unsqueeze(0)).relu().view([u * i, h]),
            None => Tensor::cat(
                &[user_part.unsqueeze(1).expand([u, i, h], false), mlp_items.unsqueeze(0).expand([u, i, h], false)],
                2,
            )
            .view([u * i, 2 * h]),
        };
        for layer in self.mlp.iter().skip(1) {
            x = self.linear(&x, &layer.ws, layer.bs.as_ref()).relu();
        }
        x.matmul(&final_mlp.view([-1, 1])).view([u, i])
    }

    /// The same on the CPU, one user at a time and its items in blocks of [`CPU_BLOCK_FLOATS`]
    /// activations: each layer's output then stays in the core's cache instead of a round trip
    /// through memory per layer (a whole user's 26,744 x 256 first layer is 27 MB). The same
    /// blocking in PyTorch eager takes one ML-20m user from 46 to 30 ms on one Xeon core; each
    /// pair's arithmetic is unchanged.
    fn mlp_logits_in_blocks(&self, mlp_user: &Tensor, mlp_items: &Tensor, final_mlp: &Tensor) -> Tensor {
        let (u, i) = (mlp_user.size()[0], mlp_items.size()[0]);
        let user_part = self.mlp_user_part(mlp_user);
        // The widest activation: a layer's output (the first layer's input is never held whole;
        // without hidden layers the side-by-side embeddings are).
        let widest = self.config.mlp_layers.iter().skip(1).copied().max().or(self.config.mlp_layers.first().copied());
        let widest = widest.unwrap_or(1).max(1);
        let block = (CPU_BLOCK_FLOATS / widest).max(1);
        let final_mlp = final_mlp.view([-1, 1]);
        let out = Tensor::empty([u, i], (mlp_user.kind(), mlp_user.device()));
        for r in 0..u {
            let up = user_part.narrow(0, r, 1);
            let row = out.get(r);
            let mut start = 0;
            while start < i {
                let n = block.min(i - start);
                let mut x = self.mlp_first_activations(&up, &mlp_items.narrow(0, start, n));
                for layer in self.mlp.iter().skip(1) {
                    x = self.linear_relu(&x, &layer.ws, layer.bs.as_ref());
                }
                row.narrow(0, start, n).copy_(&x.matmul(&final_mlp).view([n]));
                start += n;
            }
        }
        out
    }

    /// The MLP branch's logit contribution `[U, I]` through [`Bf16Mlp`]: per user and block of
    /// items, the first layer as an add to the bfloat16 item half (`torch_ops::bf16_add_relu`),
    /// the deeper layers as fused bfloat16 linear-relu products (`torch_ops::bf16_linear_relu`),
    /// then the final weights as a float32 dot per bfloat16 row (`torch_ops::bf16_rows_dot`).
    fn mlp_logits_bf16(&self, mlp_user: &Tensor, bf16: &Bf16Mlp, final_mlp: &Tensor) -> Tensor {
        let (u, i) = (mlp_user.size()[0], bf16.first_half.size()[0]);
        // The user's part of the first layer (its bias is in the item half), float32.
        let user_part = self.mlp_user_part(mlp_user).to_kind(Kind::Float).contiguous();
        if let Some(amx) = &bf16.amx {
            // Every user in one pass over the item rows. bf16_item_half probed this path; see
            // below for why a failure panics.
            return match amx.mlp.logits(&bf16.first_half, &user_part) {
                Ok(logits) => logits,
                Err(e) => panic!("bfloat16 scoring failed after its probe passed: {e}"),
            };
        }
        let widest = self.config.mlp_layers.iter().skip(1).copied().max().unwrap_or(1).max(1);
        // Bfloat16 activations take half a float's bytes: twice the items in the same cache.
        let block = (2 * CPU_BLOCK_FLOATS / widest).max(1);
        let final_mlp = final_mlp.to_kind(Kind::Float).contiguous().view([-1]);
        let out = Tensor::empty([u, i], (Kind::Float, mlp_user.device()));
        for r in 0..u {
            let part = user_part.get(r);
            let row = out.get(r);
            let mut start = 0;
            while start < i {
                let n = block.min(i - start);
                // bf16_item_half made these only after a probe through every layer passed: a
                // refusal here is a bug, and silently wrong (or no) scores would be worse than
                // the panic (a server's batcher answers it with a 500).
                let x = match bf16.activations(start, n, &part) {
                    Ok(x) => x,
                    Err(e) => panic!("bfloat16 scoring failed after its probe passed: {e}"),
                };
                let logits = match torch_ops::bf16_rows_dot(&x, &final_mlp) {
                    Ok(logits) => logits,
                    Err(e) => panic!("bfloat16 scoring failed after its probe passed: {e}"),
                };
                row.narrow(0, start, n).copy_(&logits);
                start += n;
            }
        }
        out
    }

    /// [`NeuMf::item_half`] whose all-item scoring ([`NeuMf::all_item_logits`],
    /// [`NeuMf::all_item_logits_of`]) runs the MLP branch in bfloat16 on the CPU: the first layer
    /// from the float32 item half stored in bfloat16 plus the user's part, the deeper layers as
    /// oneDNN products with the bias and relu fused (AMX where the CPU has it), float32
    /// accumulation, the final layer's MLP share a float32 dot per row; the GMF branch stays
    /// float32. The MLP ~4x faster than float32 on a CPU with AMX,
    /// with logits within ~1e-2 of float32's: for picking candidates that float32 then ranks
    /// (`inference::Recommender::set_bf16_candidates`), not for scores shown as they are. Pair
    /// scoring ([`NeuMf::logits_of_rows`]) through it stays float32. An error off the CPU, on a
    /// CPU without bfloat16 instructions (`torch_ops::bf16_available`), or without an MLP layer
    /// (GMF: nothing to speed up).
    pub fn bf16_item_half(&self) -> Result<ItemHalf, ModelError> {
        if self.device() != Device::Cpu {
            return Err(ModelError::Unsupported(format!(
                "bfloat16 all-item scoring runs on the CPU only; this model is on {:?}",
                self.device()
            )));
        }
        if !torch_ops::bf16_available() {
            return Err(ModelError::Unsupported(
                "bfloat16 all-item scoring needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); this one has none".into(),
            ));
        }
        let mut half = self.item_half();
        let (Some(first_half), Some(first)) = (half.mlp.as_ref(), self.mlp.first()) else {
            return Err(ModelError::Unsupported(
                "this model has no MLP layer: its all-item scoring has nothing to run in bfloat16".into(),
            ));
        };
        let tables = tch::no_grad(|| {
            let bf = |t: &Tensor| t.detach().to_kind(Kind::BFloat16).contiguous();
            let layers = self
                .mlp
                .iter()
                .skip(1)
                .map(|l| {
                    (
                        bf(&l.ws),
                        l.bs.as_ref()
                            .map_or_else(|| Tensor::zeros([l.ws.size()[0]], (Kind::BFloat16, Device::Cpu)), bf),
                    )
                })
                .collect();
            Bf16Mlp { first_half: bf(first_half), layers, amx: None }
        });
        // A probe through every layer (one item, a zero user part): a libtorch that lacks the
        // op, or one that refuses these shapes, is refused here, once, rather than at every
        // scoring pass.
        tch::no_grad(|| -> Result<(), ModelError> {
            let probe = |e: torch_ops::TorchOpError| {
                ModelError::Unsupported(format!("bfloat16 all-item scoring is not available here: {e}"))
            };
            let zero = Tensor::zeros([first.ws.size()[0]], (Kind::Float, Device::Cpu));
            let x = tables.activations(0, 1, &zero).map_err(probe)?;
            let final_mlp = half.final_mlp.to_kind(Kind::Float).contiguous();
            let _probe = torch_ops::bf16_rows_dot(&x, &final_mlp).map_err(probe)?;
            Ok(())
        })?;
        let mut tables = tables;
        tables.amx = self.amx_tables(&half);
        half.bf16 = Some(tables);
        Ok(half)
    }

    /// The deeper MLP layers packed for AMX (`torch_ops::AmxMlp`), probed on one item, and the
    /// first layer's user columns; `None` where the CPU has no AMX tiles, the model no deeper
    /// layer, a width is not a multiple of 32, or the probe fails (then the oneDNN bfloat16 path
    /// serves, the reason in the log).
    fn amx_tables(&self, half: &ItemHalf) -> Option<AmxTables> {
        let first = self.mlp.first()?;
        if !torch_ops::amx_available() || self.mlp.len() < 2 {
            return None;
        }
        let layers: Vec<(Tensor, Option<Tensor>)> =
            self.mlp.iter().skip(1).map(|l| (l.ws.shallow_clone(), l.bs.as_ref().map(Tensor::shallow_clone))).collect();
        let probe = || -> Result<torch_ops::AmxMlp, torch_ops::TorchOpError> {
            let amx = torch_ops::AmxMlp::new(&layers, &half.final_mlp)?;
            let first = Tensor::zeros([1, amx.first_width()], (Kind::BFloat16, Device::Cpu));
            let _probe = amx.logits(&first, &Tensor::zeros([amx.first_width()], (Kind::Float, Device::Cpu)))?;
            Ok(amx)
        };
        match tch::no_grad(probe) {
            Ok(mlp) => {
                let d = self.config.mlp_layers[0] / 2;
                let user_weight = tch::no_grad(|| first.ws.detach().narrow(1, 0, d).to_kind(Kind::Float).contiguous());
                Some(AmxTables { mlp, user_weight })
            }
            Err(e) => {
                tracing::debug!("AMX bfloat16 scoring not used: {e}");
                None
            }
        }
    }

    /// One fold-in step in bfloat16 on AMX tiles (`torch_ops::AmxMlp::fold_in_step`): the
    /// binary cross-entropy summed over `items` (the first `positives` labelled 1, the rest 0)
    /// for one person given as rows (one vector per user table, [`NeuMf::user_tables`]' order),
    /// and its gradient with respect to each row. `None` unless `item_half` came from
    /// [`NeuMf::bf16_item_half`] on a CPU with AMX (then [`NeuMf::logits_of_rows`] and autograd
    /// serve). Activations and gradients are rounded to bfloat16 as products' inputs: the
    /// gradient is a few percent from float32's (tested against autograd), not equal to it.
    pub fn rows_loss_gradient(
        &self,
        rows: &[Vec<f32>],
        items: &[i64],
        positives: usize,
        item_half: &ItemHalf,
    ) -> Option<Result<RowsGradient, ModelError>> {
        let bf16 = item_half.bf16.as_ref()?;
        let amx = bf16.amx.as_ref()?;
        let first_half = item_half.mlp.as_ref()?;
        // The kernels read float32 tables; a model cast to another kind fits by autograd.
        let float = |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu;
        if !float(first_half) || !float(&item_half.final_mf) || item_half.mf.as_ref().is_some_and(|q| !float(q)) {
            return None;
        }
        let (gmf_user, mlp_user): (&[f32], &[f32]) = match (self.gmf.is_some(), rows) {
            (true, [g, m]) => (g, m),
            (false, [m]) => (&[], m),
            _ => return None,
        };
        let gmf = match (&item_half.mf, self.gmf.is_some()) {
            (Some(q), true) => Some((q, &item_half.final_mf)),
            _ => None,
        };
        let side = torch_ops::FoldInSide {
            first: first_half,
            user_weight: &amx.user_weight,
            gmf,
            final_bias: item_half.final_bias.double_value(&[0]),
        };
        let (mut grad_gmf, mut grad_mlp) = (vec![0f32; gmf_user.len()], vec![0f32; mlp_user.len()]);
        let loss = amx.mlp.fold_in_step(&side, items, positives, (mlp_user, gmf_user), (&mut grad_mlp, &mut grad_gmf));
        Some(
            loss.map(|loss| RowsGradient {
                loss,
                rows: if gmf_user.is_empty() { vec![grad_mlp] } else { vec![grad_gmf, grad_mlp] },
            })
            .map_err(|e| ModelError::Unsupported(format!("bfloat16 fold-in step: {e}"))),
        )
    }

    /// The item-side work of [`NeuMf::score_all_items`], done once per model.
    pub fn item_half(&self) -> ItemHalf {
        tch::no_grad(|| {
            let items = Tensor::arange(self.config.items, (tch::Kind::Int64, self.device()));
            let mlp = self.mlp_embeds.as_ref().map(|e| {
                let rows = e.item.forward(&items);
                match self.mlp.first() {
                    Some(first) => {
                        let half = self.config.mlp_layers[0] / 2;
                        rows.matmul(&first.ws.narrow(1, half, half).tr()) + bias_or_zero(first)
                    }
                    None => rows,
                }
            });
            let final_w = self.final_layer.ws.view([-1]);
            let f = if self.branches.gmf { self.config.mf_dim } else { 0 };
            let mf = self.gmf.as_ref().map(|e| e.item.forward(&items));
            ItemHalf {
                mf_by_column: mf.as_ref().map(|m| m.tr().contiguous()),
                mf,
                mlp,
                final_mf: final_w.narrow(0, 0, f),
                final_mlp: final_w.narrow(0, f, final_w.size()[0] - f),
                final_bias: bias_or_zero(&self.final_layer),
                bf16: None,
            }
        })
    }

    /// Training mode (dropout on) or evaluation mode (off), like `module.train(bool)`.
    pub fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    /// Whether dropout is applied.
    pub fn is_training(&self) -> bool {
        self.train
    }

    pub fn config(&self) -> &NeuMfConfig {
        &self.config
    }

    /// The parameters, for an optimizer (e.g. `nn::Adam::default().build(model.var_store(), lr)`).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The state-dict keys, in PyTorch's order.
    pub fn parameter_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.branches.gmf {
            names.extend(["mf_user_embed.weight".to_owned(), "mf_item_embed.weight".to_owned()]);
        }
        if self.branches.mlp {
            names.extend(["mlp_user_embed.weight".to_owned(), "mlp_item_embed.weight".to_owned()]);
        }
        for i in 0..self.mlp.len() {
            names.push(format!("mlp.{i}.weight"));
            names.push(format!("mlp.{i}.bias"));
        }
        names.push("final.weight".into());
        names.push("final.bias".into());
        names
    }

    /// `(name, tensor)` in state-dict order; the tensors share memory with the model.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        self.parameter_names()
            .into_iter()
            .filter_map(|name| vars.get(&name).map(|t| (name, t.shallow_clone())))
            .collect()
    }

    /// Parameters actually held (equals [`NeuMfConfig::parameter_count`]).
    pub fn parameter_count(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Copies a state dict into the model. Keys may carry DDP's `module.` prefix. Every key must be
    /// present with the model's shape, and no other key may appear; otherwise nothing is changed and
    /// the error lists each missing, unexpected and mis-shaped key. Values are cast to the model's
    /// kind and device.
    pub fn load_state_dict(&mut self, entries: Vec<(String, Tensor)>) -> Result<(), ModelError> {
        crate::model::copy_state_dict(&self.state_dict(), entries)
    }

    /// Loads a `model.pth` state dict (PyTorch's or ours; any location tag) into the model.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        self.load_entries_from(path, entries)
    }

    /// A model shaped as the checkpoint at `path` was saved (its shape read from the file, see
    /// [`NeuMfConfig::from_state_dict`]), with its parameters, on `device`; the file is read once.
    pub fn from_checkpoint(path: impl AsRef<Path>, dropout: f64, device: Device) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let entries = tch_data::load_tch_map(path, Device::Cpu)?;
        let config = NeuMfConfig::from_state_dict(&entries, dropout)?;
        let mut model = NeuMf::new(config, device)?;
        model.load_entries_from(path, entries)?;
        Ok(model)
    }

    /// [`NeuMf::load_state_dict`] with a state-dict misfit reported against the file it came from.
    fn load_entries_from(&mut self, path: &Path, entries: Vec<(String, Tensor)>) -> Result<(), ModelError> {
        self.load_state_dict(entries).map_err(|e| e.in_file(path))
    }

    /// Saves the state dict as PyTorch does (`torch.save(model.state_dict(), path)`), atomically;
    /// `torch.load(path, weights_only=True)` and `NeuMF.load_state_dict` take it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        Ok(tch_data::save_tch_map(path, &self.state_dict())?)
    }

    /// Casts every parameter to `kind` (e.g. `Kind::Half` or `Kind::BFloat16` for inference).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }
}

/// Activations per block when [`NeuMf::all_item_logits`] scores a user's items on the CPU (4 MB:
/// 4,096 pairs of a 256-wide layer, about a core's L2 cache).
const CPU_BLOCK_FLOATS: i64 = 1 << 20;

/// Rows per piece when [`NeuMf::forward_with_tables`] splits a large CPU batch.
const CPU_PIECE: i64 = 2048;

/// The fewest rows [`NeuMf::forward_with_tables`] gives a thread of its own on the CPU (a small
/// batch stays on one). Not tuned finely: the reference NeuMF scored from Python on a 2-core Xeon
/// (model 167) took 0.18 ms at batch 256 split in two runs, 0.25 ms on one thread.
const ROWS_PER_THREAD: i64 = 128;

/// Batches from this size on compute the first MLP layer per distinct user and item
/// ([`NeuMf::first_layer`]).
const DISTINCT_IDS_FROM: i64 = 512;

/// The share of a batch's `batch` ids expected to be distinct if drawn uniformly from
/// `0..cardinality`: `n (1 - e^(-b/n)) / b`. Real batches repeat popular ids more, so this errs on
/// the side of the plain product.
fn expected_distinct_share(cardinality: i64, batch: i64) -> f64 {
    let (n, b) = (cardinality.max(1) as f64, batch.max(1) as f64);
    n * (1.0 - (-b / n).exp()) / b
}

fn missing(name: &str) -> ModelError {
    ModelError::StateDict { problems: vec![format!("missing `{name}`")] }
}

/// A linear layer's bias, or 0 for a layer without one.
fn bias_or_zero(layer: &nn::Linear) -> Tensor {
    layer.bs.as_ref().map_or_else(|| Tensor::from(0f32), |b| b.shallow_clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `forward_with_tables` falls back quietly when the one-fork pass refuses, so that the pass is
    /// taken where it should be is checked here: a float32 CPU NeuMF with oneDNN products, in
    /// evaluation mode under no_grad, on one thread and on two.
    #[test]
    fn the_one_fork_pass_applies_to_a_float32_onednn_model() {
        let c = NeuMfConfig { users: 50, items: 70, mf_dim: 8, mlp_layers: vec![16, 32, 8], dropout: 0.0 };
        let mut model = NeuMf::new(c, Device::Cpu).unwrap();
        if model.set_cpu_matmul(CpuMatmul::OneDnn).is_err() {
            eprintln!("skipped: this CPU lacks AVX-512, so products run in MKL and the pass does not apply");
            return;
        }
        model.set_train(false);
        let tables = model.first_layer_tables();
        let users = (Tensor::arange(300, (Kind::Int64, Device::Cpu)) * 7).remainder(50);
        let items = (Tensor::arange(300, (Kind::Int64, Device::Cpu)) * 11).remainder(70);
        let threads = tch::get_num_threads();
        for t in [1, 2] {
            tch::set_num_threads(t);
            let fork = tch::no_grad(|| model.tabled_in_one_fork(&users, &items, &tables));
            let plain = tch::no_grad(|| model.forward(&users, &items));
            let fork = fork.unwrap_or_else(|| panic!("{t} threads: the one-fork pass refused"));
            let gap = (&fork - &plain).abs().max().double_value(&[]);
            assert!(gap < 1e-5, "{t} threads: {gap}");
        }
        tch::set_num_threads(threads);
    }
}

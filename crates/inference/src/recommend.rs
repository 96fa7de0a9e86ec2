//! Top-k recommendations for users, in the raw ids of the ratings file the dataset came from.

use crate::{FoldIn, FoldInOptions, InferenceError, UserVectors};
use featurespec::ncf::NcfLayout;
use featurespec::FeatureSpec;
use ncf_model::runtime::CpuMatmul;
use ncf_model::{AnyModel, ItemSide, Model, ModelKind};
use spec_dataset::{IdIndex, IdMap, IdSide};
use std::cell::OnceCell;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// An id as the ratings file had it: an integer (MovieLens), or any other text (`u196`, a UUID).
/// Written as a number or a string in JSON, as is in CSV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RawId {
    Int(i64),
    Text(String),
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawId::Int(i) => write!(f, "{i}"),
            RawId::Text(s) => f.write_str(s),
        }
    }
}

impl RawId {
    /// As JSON: a number for an integer id, a string otherwise.
    pub fn json(&self) -> serde_json::Value {
        match self {
            RawId::Int(i) => (*i).into(),
            RawId::Text(s) => s.as_str().into(),
        }
    }

    /// Index `k`'s raw id under `map`, or `k` itself without one.
    fn of(map: Option<&IdMap>, k: i64) -> RawId {
        match map {
            Some(IdMap::Int(v)) => RawId::Int(v[k as usize]),
            Some(IdMap::Text(v)) => RawId::Text(v[k as usize].clone()),
            None => RawId::Int(k),
        }
    }
}

/// One user's list: the user and `(item, probability)` best first, in raw ids when the dataset has
/// id maps (else the dataset's 0-based ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub user: RawId,
    pub items: Vec<(RawId, f32)>,
}

/// What a served model needs to know of its dataset, model aside: the users and items, their raw
/// ids both ways, and each user's train items. Read once; a model reloaded for the same dataset
/// shares it ([`Recommender::with_catalog`]).
pub struct Catalog {
    users: i64,
    items: i64,
    /// Train items of user `u`: `seen_items[seen_start[u]..seen_start[u + 1]]`.
    seen_start: Vec<usize>,
    seen_items: Vec<i64>,
    user_raw: Option<IdMap>,
    item_raw: Option<IdMap>,
    raw_to_user: Option<IdIndex>,
    raw_to_item: Option<IdIndex>,
    dir: PathBuf,
}

impl Catalog {
    /// Reads the dataset in `data`: its feature spec, train mapping (for the items each user has)
    /// and id maps when it has them.
    pub fn open(data: &Path) -> Result<Catalog, InferenceError> {
        let spec = FeatureSpec::from_yaml_file(data.join("feature_spec.yaml"))?;
        let layout = NcfLayout::from_spec(&spec)?;
        let (users, items) = layout.cardinalities(&spec)?;

        // The items each user already has: train rows with a positive label.
        let train = tch_data::load_mapping(&spec, "train", Device::Cpu)?;
        let column = |name: &str, kind: Kind| {
            let t = train.features[name].to_kind(kind).view([-1]);
            (t.numel(), t)
        };
        let ((nu, u), (ni, i), (nl, l)) =
            (column(&layout.user, Kind::Int64), column(&layout.item, Kind::Int64), column(&layout.label, Kind::Float));
        if nu != ni || nu != nl {
            return Err(InferenceError::Train(format!(
                "the train mapping's columns differ in length: {nu} users, {ni} items, {nl} labels"
            )));
        }
        let u = Vec::<i64>::try_from(&u).map_err(|e| InferenceError::Train(e.to_string()))?;
        let i = Vec::<i64>::try_from(&i).map_err(|e| InferenceError::Train(e.to_string()))?;
        let l = Vec::<f32>::try_from(&l).map_err(|e| InferenceError::Train(e.to_string()))?;
        if let Some((&user, &item)) =
            u.iter().zip(&i).find(|(&u, &i)| !(0..users as i64).contains(&u) || !(0..items as i64).contains(&i))
        {
            return Err(InferenceError::Train(format!(
                "a train row holds user {user}, item {item}: outside the spec's {users} users and {items} items (ncf-prepare verify names the file)"
            )));
        }
        let mut seen_start = vec![0usize; users as usize + 1];
        for (&user, &label) in u.iter().zip(&l) {
            if label > 0.5 {
                seen_start[user as usize + 1] += 1;
            }
        }
        for k in 1..seen_start.len() {
            seen_start[k] += seen_start[k - 1];
        }
        let mut fill = seen_start.clone();
        let mut seen_items = vec![0i64; seen_start[users as usize]];
        for ((&user, &item), &label) in u.iter().zip(&i).zip(&l) {
            if label > 0.5 {
                seen_items[fill[user as usize]] = item;
                fill[user as usize] += 1;
            }
        }

        let user_raw = IdMap::find(&spec, IdSide::User, Some(users as usize))?;
        let item_raw = IdMap::find(&spec, IdSide::Item, Some(items as usize))?;
        let raw_to_user = user_raw.as_ref().map(IdMap::index);
        let raw_to_item = item_raw.as_ref().map(IdMap::index);
        Ok(Catalog {
            users: users as i64,
            items: items as i64,
            seen_start,
            seen_items,
            user_raw,
            item_raw,
            raw_to_user,
            raw_to_item,
            dir: data.to_owned(),
        })
    }

    /// Number of users (the dataset's cardinality).
    pub fn users(&self) -> i64 {
        self.users
    }

    /// Number of items.
    pub fn items(&self) -> i64 {
        self.items
    }

    /// The folder of the dataset.
    pub fn dataset_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether ids in and out are the ratings file's (the dataset has id maps).
    pub fn has_raw_ids(&self) -> bool {
        self.user_raw.is_some() && self.item_raw.is_some()
    }

    /// The dataset's user for a raw id as typed (`42`, `u196`); without id maps the dataset's own
    /// 0-based id. `None` for an id the dataset does not know.
    pub fn user(&self, raw: &str) -> Option<i64> {
        lookup(self.raw_to_user.as_ref(), raw, self.users)
    }

    /// The dataset's item for a raw id, as [`Catalog::user`].
    pub fn item(&self, raw: &str) -> Option<i64> {
        lookup(self.raw_to_item.as_ref(), raw, self.items)
    }

    /// The raw id of dataset user `u` (`u` itself without id maps).
    pub fn user_raw_id(&self, u: i64) -> RawId {
        RawId::of(self.user_raw.as_ref(), u)
    }

    /// The raw id of dataset item `i`.
    pub fn item_raw_id(&self, i: i64) -> RawId {
        RawId::of(self.item_raw.as_ref(), i)
    }

    /// The items user `u` has in train (dataset ids, in the train file's order); empty for a user
    /// outside the dataset.
    pub fn seen(&self, u: i64) -> &[i64] {
        if !(0..self.users).contains(&u) {
            return &[];
        }
        &self.seen_items[self.seen_start[u as usize]..self.seen_start[u as usize + 1]]
    }

    /// Bytes held (the seen lists and the id maps' entries, roughly): what a server adds per dataset.
    pub fn approx_bytes(&self) -> usize {
        let ids = |m: &Option<IdMap>| match m {
            Some(IdMap::Int(v)) => v.len() * 8 * 3,
            Some(IdMap::Text(v)) => v.iter().map(|s| 2 * s.len() + 64).sum(),
            None => 0,
        };
        self.seen_start.len() * 8 + self.seen_items.len() * 8 + ids(&self.user_raw) + ids(&self.item_raw)
    }
}

fn lookup(index: Option<&IdIndex>, raw: &str, count: i64) -> Option<i64> {
    match index {
        Some(index) => index.get(raw).map(|k| k as i64),
        None => raw.trim().parse::<i64>().ok().filter(|k| (0..count).contains(k)),
    }
}

/// Floats a scoring pass may hold per intermediate result on the CPU by default (2^26: 256 MB).
const CPU_PASS_FLOATS: i64 = 1 << 26;
/// The same on CUDA (2^30: a few GB; far fewer, larger passes keep the GPU busy).
const CUDA_PASS_FLOATS: i64 = 1 << 30;
/// On the CPU, an all-item pass also scores no more users than keep its `[users, items]` scores
/// near 4 MB (2^20 floats), so the steps after the product (biases, exclusions, top-k) read them
/// from the caches instead of streaming a 256 MB matrix from memory, once per step. MF on an
/// ML-20m-shaped dataset (26,744 items: 39 users per pass instead of 2,509): 2.1x users/s on one
/// core, 2.3x on two (Xeon model 167). NeuMF's passes are already smaller (its 256 activations
/// per pair bound them), so it is unchanged.
const CPU_SCORE_BLOCK_FLOATS: i64 = 1 << 20;

/// A trained model with the dataset it was trained on.
pub struct Recommender {
    model: AnyModel,
    kind: ModelKind,
    item_side: ItemSide,
    catalog: Arc<Catalog>,
    pass_floats: i64,
    /// Fold-in's prior (the users' mean rows), built on first use.
    fold_in: OnceCell<FoldIn>,
    /// The bfloat16 item side that picks candidates ([`Recommender::set_bf16_candidates`]).
    candidates: Option<ItemSide>,
}

/// Candidates the bfloat16 pass hands the float32 ranking for a top `k`: on the reference NeuMF
/// of ml-latest-small every float32 top-10 item lies in bfloat16's top 20, so 4k + 32 leaves a
/// wide margin at the cost of scoring a few dozen pairs.
fn candidate_count(k: usize) -> usize {
    k.saturating_mul(4).saturating_add(32)
}

impl Recommender {
    /// Loads `checkpoint` (any model of `ncf-model`: its kind and shape read from the file) for the
    /// dataset in `data` onto `device`.
    pub fn open(data: &Path, checkpoint: &Path, device: Device) -> Result<Self, InferenceError> {
        Recommender::with_catalog(Arc::new(Catalog::open(data)?), checkpoint, device)
    }

    /// Loads `checkpoint` for a dataset already read (e.g. a newer checkpoint of the model a
    /// server runs); its users and items must be the catalog's.
    pub fn with_catalog(catalog: Arc<Catalog>, checkpoint: &Path, device: Device) -> Result<Self, InferenceError> {
        let (kind, mut model) = ncf_model::load_any(checkpoint, 0.0, device)?;
        if model.users() != catalog.users {
            return Err(InferenceError::Shape { what: "users", model: model.users(), data: catalog.users as u64 });
        }
        if model.items() != catalog.items {
            return Err(InferenceError::Shape { what: "items", model: model.items(), data: catalog.items as u64 });
        }
        model.set_train(false);
        let item_side = model.item_side();
        let pass_floats = if device.is_cuda() { CUDA_PASS_FLOATS } else { CPU_PASS_FLOATS };
        Ok(Recommender { model, kind, item_side, catalog, pass_floats, fold_in: OnceCell::new(), candidates: None })
    }

    /// Two-stage ranking: all-item scoring in bfloat16 ([`Model::bf16_item_side`]: the MLP's
    /// deeper products on AMX tiles where the CPU has them, oneDNN's bfloat16 products elsewhere:
    /// NeuMF's recommendations 2-3x faster there) picks each user's best `4k + 32` candidates, and
    /// float32 pair scoring (what [`Recommender::score_pairs`] and PyTorch compute) ranks them:
    /// the scores returned are float32's, and the list is float32's unless one of its items falls
    /// outside bfloat16's candidates (on the reference NeuMF of ml-latest-small, none for any of
    /// its 610 users). Fold-in ([`Recommender::fold_in`], [`Recommender::refresh`]) then fits
    /// through the bfloat16 side too: on AMX its steps run in bfloat16 (the person's rows close
    /// to a float32 fit's, not equal), elsewhere in float32 as before. Refused, changing nothing,
    /// where the model has no bfloat16 scoring (MF, GMF), off the CPU, or on a CPU without
    /// bfloat16 instructions. `false` goes back to float32 all-item scoring and fitting.
    pub fn set_bf16_candidates(&mut self, on: bool) -> Result<(), InferenceError> {
        self.candidates = if on { Some(self.model.bf16_item_side()?) } else { None };
        Ok(())
    }

    /// Whether [`Recommender::set_bf16_candidates`] is on.
    pub fn bf16_candidates(&self) -> bool {
        self.candidates.is_some()
    }

    /// Which library scores in float32 on the CPU (oneDNN where the CPU has AVX-512, by default;
    /// [`CpuMatmul`]); a choice this CPU cannot run is refused, changing nothing.
    pub fn set_cpu_matmul(&mut self, choice: CpuMatmul) -> Result<(), InferenceError> {
        Ok(self.model.set_cpu_matmul(choice)?)
    }

    /// Caps the floats one scoring pass holds per intermediate result (its users times items
    /// times the model's activations per pair): lower bounds memory, higher (to a point) speeds
    /// up. At least one user is scored per pass whatever the cap.
    pub fn set_pass_floats(&mut self, floats: i64) {
        self.pass_floats = floats.max(1);
    }

    /// Which model the checkpoint holds.
    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// The model's parameter count.
    pub fn parameter_count(&self) -> i64 {
        self.model.parameter_count()
    }

    /// The dataset side: users, items, raw ids, train items.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Whether ids in and out are the ratings file's (the dataset has id maps).
    pub fn has_raw_ids(&self) -> bool {
        self.catalog.has_raw_ids()
    }

    /// The dataset's users for raw user ids as typed (`42`, `u196`); an unknown id is an error
    /// naming it. Without id maps the ids are taken as the dataset's own 0-based ids.
    pub fn users_by_raw_id<S: AsRef<str>>(&self, raw: &[S]) -> Result<Vec<i64>, InferenceError> {
        raw.iter()
            .map(|id| self.catalog.user(id.as_ref()).ok_or_else(|| InferenceError::UnknownUser(id.as_ref().to_owned())))
            .collect()
    }

    /// Every user of the dataset.
    pub fn all_users(&self) -> Vec<i64> {
        (0..self.model.users()).collect()
    }

    /// The folder of the dataset.
    pub fn dataset_dir(&self) -> &Path {
        self.catalog.dataset_dir()
    }

    /// Users scored per pass: as many as keep the pass's intermediate results under the pass cap
    /// ([`Recommender::set_pass_floats`]; by default near 2^26 floats on the CPU (NeuMF: 2^18
    /// pairs of 256 activations) and 2^30 on CUDA), and on the CPU their scores near 4 MB (MF,
    /// a score per pair: 39 users of ML-20m's 26,744 items) whatever a larger pass cap allows;
    /// at least one.
    pub fn users_per_batch(&self) -> usize {
        let items = self.model.items().max(1);
        let mut users = self.pass_floats / (items * self.model.floats_per_scored_pair().max(1));
        if !self.model.device().is_cuda() {
            users = users.min(CPU_SCORE_BLOCK_FLOATS / items);
        }
        users.max(1) as usize
    }

    /// The top `k` items for each of `users` (dataset ids), best first, leaving out each user's
    /// train items unless `include_seen`; users and items come back in raw ids where known.
    pub fn recommend(&self, users: &[i64], k: usize, include_seen: bool) -> Vec<Recommendation> {
        let mut out = Vec::with_capacity(users.len());
        for batch in users.chunks(self.users_per_batch()) {
            out.extend(self.recommend_batch(batch, k, include_seen));
        }
        out
    }

    /// `sigmoid(model(user, item))` for each pair of dataset ids, in evaluation mode: the
    /// probabilities `ncf-train --mode test` ranks and PyTorch computes for the same checkpoint,
    /// scored in passes under the pass cap. An id outside the model is an error naming it.
    pub fn score_pairs(&self, users: &[i64], items: &[i64]) -> Result<Vec<f32>, InferenceError> {
        if users.len() != items.len() {
            return Err(InferenceError::PairLengths { users: users.len(), items: items.len() });
        }
        for (what, ids, count) in [("user", users, self.catalog.users), ("item", items, self.catalog.items)] {
            if let Some(&id) = ids.iter().find(|&&id| !(0..count).contains(&id)) {
                return Err(InferenceError::IdOutOfRange { what: what.into(), id, count: count as u64 });
            }
        }
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.model.device();
        // As many pairs per pass as the pass cap allows (the same cap as recommend's).
        let per_pass = (self.pass_floats / self.model.floats_per_scored_pair().max(1)).max(1) as usize;
        let mut out = Vec::with_capacity(users.len());
        for (u, i) in users.chunks(per_pass).zip(items.chunks(per_pass)) {
            let p = tch::no_grad(|| {
                self.model
                    .forward_sigmoid(&Tensor::from_slice(u).to_device(device), &Tensor::from_slice(i).to_device(device))
            });
            let scores = Vec::<f32>::try_from(&p.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]))
                .map_err(|e| InferenceError::Readback(e.to_string()))?;
            out.extend(scores);
        }
        Ok(out)
    }

    fn recommend_batch(&self, users: &[i64], k: usize, include_seen: bool) -> Vec<Recommendation> {
        let device = self.model.device();
        let ids = Tensor::from_slice(users).to_device(device);
        let seen: Vec<&[i64]> =
            users.iter().map(|&u| if include_seen { &[][..] } else { self.catalog.seen(u) }).collect();
        let rows = match &self.candidates {
            None => {
                let logits = tch::no_grad(|| self.model.all_item_logits(&ids, &self.item_side));
                probabilities(self.top_k(&logits, &seen, k))
            }
            Some(side) => {
                let logits = tch::no_grad(|| self.model.all_item_logits(&ids, side));
                let picks = self.top_k(&logits, &seen, candidate_count(k));
                let pair_users: Vec<i64> =
                    picks.iter().zip(users).flat_map(|(p, &u)| std::iter::repeat_n(u, p.len())).collect();
                let ranked = rank_in_float32(picks, k, |pair_items| {
                    Ok(tch::no_grad(|| {
                        self.model.forward(
                            &Tensor::from_slice(&pair_users).to_device(device),
                            &Tensor::from_slice(pair_items).to_device(device),
                        )
                    }))
                });
                // The closure never fails.
                ranked.unwrap_or_default()
            }
        };
        rows.into_iter()
            .zip(users)
            .map(|(items, &u)| Recommendation { user: self.catalog.user_raw_id(u), items: self.raw_items(items) })
            .collect()
    }

    /// Items as raw ids.
    fn raw_items(&self, row: Vec<(i64, f32)>) -> Vec<(RawId, f32)> {
        row.into_iter().map(|(i, s)| (self.catalog.item_raw_id(i), s)).collect()
    }

    /// Each row's `k` best items of `scores` (`[U, items]`, logits), `exclude[row]` left out,
    /// best first, as dataset ids: what `torch.topk(scores, k)` returns (ties and NaNs in its
    /// order). Excluded items, and NaN scores, are not returned.
    ///
    /// Why logits and not probabilities: sigmoid is monotone, so the best logits are the best
    /// probabilities, and ranking the logits spares a pass of `exp` over every score (as many
    /// as the users times the items) and its copy; only the `k` picked are turned into
    /// probabilities ([`probabilities`]). Distinct logits whose probabilities round to the same
    /// float32 (near 0 or 1) keep their logits' order. A logit of -inf from the model itself
    /// (probability 0; float16 overflow on CUDA) is dropped like an excluded item.
    fn top_k(&self, scores: &Tensor, exclude: &[&[i64]], k: usize) -> Vec<Vec<(i64, f32)>> {
        let n_items = self.model.items();
        let mut flat = Vec::new();
        for (row, items) in exclude.iter().enumerate() {
            flat.extend(items.iter().map(|&i| row as i64 * n_items + i));
        }
        if !flat.is_empty() {
            let idx = Tensor::from_slice(&flat).to_device(scores.device());
            let _ = scores.view([-1]).index_fill_(0, &idx, f64::NEG_INFINITY);
        }
        // Not `k as i64`: a k past i64::MAX (usize::MAX from a caller meaning "all") would wrap.
        let k = k.min(n_items.max(0) as usize) as i64;
        // Each row's best (item, score) pairs: crate::top_k on float32 CPU rows, read where they
        // lie (torch's answer, without its copy of each row into pairs), else libtorch's topk.
        let scores = scores.contiguous();
        let fast =
            (n_items > 0 && scores.numel() > 0 && scores.device() == Device::Cpu && scores.kind() == Kind::Float)
                .then(|| {
                    // SAFETY: `scores` is a contiguous float32 CPU tensor of `numel` elements, alive
                    // and not written to while the slice is read (it lives to the end of this function).
                    let flat = unsafe { std::slice::from_raw_parts(scores.data_ptr() as *const f32, scores.numel()) };
                    flat.chunks(n_items as usize)
                        .map(|row| crate::top_k::top_k(row, k as usize))
                        .collect::<Option<Vec<_>>>()
                })
                .flatten();
        let rows = fast.unwrap_or_else(|| {
            let (top_scores, top_items) = scores.topk(k, 1, true, true);
            let top_scores = Vec::<f32>::try_from(&top_scores.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]))
                .unwrap_or_default();
            let top_items = Vec::<i64>::try_from(&top_items.to_device(Device::Cpu).view([-1])).unwrap_or_default();
            (0..exclude.len())
                .map(|row| {
                    let range = row * k as usize..(row + 1) * k as usize;
                    top_items[range.clone()].iter().copied().zip(top_scores[range].iter().copied()).collect()
                })
                .collect()
        });
        rows.into_iter()
            .map(|row| {
                // Excluded items (-inf) come last: a user who has seen almost every item runs out
                // of candidates. NaNs (a broken model) are dropped too.
                row.into_iter().filter(|&(_, s)| s != f32::NEG_INFINITY && !s.is_nan()).collect()
            })
            .collect()
    }

    /// The dataset's items for raw item ids (`"318"`, `"tt0111161"`): those it knows, in order,
    /// and the raw ids it does not (a history may name items newer than the model: reported, not
    /// fatal).
    pub fn items_by_raw_id<S: AsRef<str>>(&self, raw: &[S]) -> (Vec<i64>, Vec<String>) {
        let (mut known, mut unknown) = (Vec::with_capacity(raw.len()), Vec::new());
        for id in raw {
            match self.catalog.item(id.as_ref()) {
                Some(i) => known.push(i),
                None => unknown.push(id.as_ref().to_owned()),
            }
        }
        (known, unknown)
    }

    /// Fold-in for this model, prepared on first use (the users' mean rows).
    pub fn fold_in_prepared(&self) -> Result<&FoldIn, InferenceError> {
        if let Some(f) = self.fold_in.get() {
            return Ok(f);
        }
        let f = FoldIn::new(self.model.as_ref())?;
        Ok(self.fold_in.get_or_init(|| f))
    }

    /// A person's rows fitted to `history` (dataset item ids), the model fixed ([`FoldIn::fit`]);
    /// in bfloat16 where [`Recommender::set_bf16_candidates`] is on and the CPU has AMX.
    pub fn fold_in(&self, history: &[i64], options: &FoldInOptions) -> Result<UserVectors, InferenceError> {
        self.fold_in_prepared()?.fit(self.model.as_ref(), self.fit_side(), history, options)
    }

    /// The item side fold-in fits through: the bfloat16 one when candidates come from it (its
    /// steps run in bfloat16 on AMX, ~6x faster; elsewhere it fits in float32 as the float32 side
    /// does), else the float32 one.
    fn fit_side(&self) -> &ItemSide {
        self.candidates.as_ref().unwrap_or(&self.item_side)
    }

    /// A trained user's rows refitted to their train items and those of `new_items` (dataset item
    /// ids) they did not have, starting from their trained rows ([`FoldIn::refit`]): a known user
    /// after new events.
    pub fn refresh(
        &self,
        user: i64,
        new_items: &[i64],
        options: &FoldInOptions,
    ) -> Result<UserVectors, InferenceError> {
        if !(0..self.catalog.users).contains(&user) {
            return Err(InferenceError::IdOutOfRange {
                what: "user".into(),
                id: user,
                count: self.catalog.users as u64,
            });
        }
        let fold = self.fold_in_prepared()?;
        let device = self.model.device();
        let rows = tch::no_grad(|| self.model.user_rows(&Tensor::from_slice(&[user]).to_device(device)))
            .ok_or_else(|| InferenceError::FoldIn(format!("the {} model gives no user rows", self.model.name())))?;
        let own = UserVectors::from_rows(rows);
        // An item they had in train counts once, however often the events repeat it.
        let seen = self.catalog.seen(user);
        let had: std::collections::HashSet<i64> = seen.iter().copied().collect();
        let history: Vec<i64> = seen.iter().chain(new_items.iter().filter(|i| !had.contains(i))).copied().collect();
        fold.refit(self.model.as_ref(), self.fit_side(), &own, &history, options)
    }

    /// The top `k` for a person given by the items they touched (dataset ids): a trained `user`
    /// refreshed from their own rows ([`Recommender::refresh`]), anyone else folded in
    /// ([`Recommender::fold_in`]); their items, and a trained user's train items, left out unless
    /// `include_seen`. What `ncf-infer recommend --history` and `ncf-serve` answer for a history.
    pub fn recommend_for_history(
        &self,
        user: Option<i64>,
        items: &[i64],
        k: usize,
        include_seen: bool,
        options: &FoldInOptions,
    ) -> Result<Vec<(RawId, f32)>, InferenceError> {
        let (person, mut exclude) = match user {
            Some(u) => (self.refresh(u, items, options)?, self.catalog.seen(u).to_vec()),
            None => (self.fold_in(items, options)?, Vec::new()),
        };
        exclude.extend_from_slice(items);
        self.recommend_for(&person, k, if include_seen { &[] } else { &exclude })
    }

    /// The top `k` items for a person given as rows (a fold-in's, or a trained user's own),
    /// best first, `exclude` (dataset item ids, e.g. their history) left out, in raw ids.
    pub fn recommend_for(
        &self,
        user: &UserVectors,
        k: usize,
        exclude: &[i64],
    ) -> Result<Vec<(RawId, f32)>, InferenceError> {
        if let Some(&id) = exclude.iter().find(|&&i| !(0..self.catalog.items).contains(&i)) {
            return Err(InferenceError::IdOutOfRange { what: "item".into(), id, count: self.catalog.items as u64 });
        }
        let cannot = || {
            InferenceError::FoldIn(format!(
                "the {} model cannot score a user given as rows (its rows do not match its user tables)",
                self.model.name()
            ))
        };
        let side = self.candidates.as_ref().unwrap_or(&self.item_side);
        let logits = tch::no_grad(|| self.model.all_item_logits_of_rows(user.rows(), side)).ok_or_else(cannot)?;
        let row = if self.candidates.is_none() {
            probabilities(self.top_k(&logits, &[exclude], k)).pop().unwrap_or_default()
        } else {
            // The candidates ranked by float32 pair scores, the rows repeated per candidate.
            let picks = self.top_k(&logits, &[exclude], candidate_count(k));
            let device = self.model.device();
            rank_in_float32(picks, k, |items| {
                let n = items.len() as i64;
                let rows: Vec<Tensor> = user.rows().iter().map(|r| r.expand([n, r.size()[1]], false)).collect();
                let items = Tensor::from_slice(items).to_device(device);
                tch::no_grad(|| self.model.logits_of_rows(&rows, &items, &self.item_side)).ok_or_else(cannot)
            })?
            .pop()
            .unwrap_or_default()
        };
        Ok(self.raw_items(row))
    }

    /// The model itself (e.g. to fold in with [`FoldIn`] directly).
    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    /// The model's item side ([`Model::item_side`]), computed once at load.
    pub fn item_side(&self) -> &ItemSide {
        &self.item_side
    }
}

/// How recommendations are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `user,rank,item,score` with a header line; rank from 1; ids holding a comma or quote quoted.
    Csv,
    /// One JSON object per line: `{"user": .., "rank": .., "item": .., "score": ..}`.
    JsonLines,
}

impl OutputFormat {
    /// `.jsonl` / `.json` -> JSON lines, anything else CSV.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("json") => OutputFormat::JsonLines,
            _ => OutputFormat::Csv,
        }
    }

    /// Writes `recs` to `out`.
    pub fn write(self, out: &mut impl Write, recs: &[Recommendation]) -> std::io::Result<()> {
        if self == OutputFormat::Csv {
            writeln!(out, "user,rank,item,score")?;
        }
        for r in recs {
            for (rank, (item, score)) in r.items.iter().enumerate() {
                match self {
                    OutputFormat::Csv => {
                        writeln!(out, "{},{},{},{}", csv_field(&r.user), rank + 1, csv_field(item), score)?
                    }
                    OutputFormat::JsonLines => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"user": r.user.json(), "rank": rank + 1, "item": item.json(), "score": score})
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// Rows of `(item, logit)` as `(item, probability)`: libtorch's CPU sigmoid over the picked
/// logits alone (one small tensor for every row), as `score_pairs` applies it on the CPU (on
/// CUDA its sigmoid may differ in the last bit).
fn probabilities(rows: Vec<Vec<(i64, f32)>>) -> Vec<Vec<(i64, f32)>> {
    let logits: Vec<f32> = rows.iter().flatten().map(|&(_, s)| s).collect();
    if logits.is_empty() {
        return rows;
    }
    // A float32 CPU tensor always reads back.
    let p = Vec::<f32>::try_from(&Tensor::from_slice(&logits).sigmoid()).expect("float32 CPU tensor");
    let mut p = p.into_iter();
    rows.into_iter().map(|row| row.into_iter().zip(p.by_ref()).map(|((i, _), s)| (i, s)).collect()).collect()
}

/// Each row's candidates (`picks`: dataset ids) ranked by their float32 logits, best first, ties
/// by item id; the best `k` of each, with their probabilities. `logits_of` scores the
/// candidates' items, rows one after another; it is not called when there is none (every item
/// excluded).
fn rank_in_float32(
    picks: Vec<Vec<(i64, f32)>>,
    k: usize,
    logits_of: impl FnOnce(&[i64]) -> Result<Tensor, InferenceError>,
) -> Result<Vec<Vec<(i64, f32)>>, InferenceError> {
    let items: Vec<i64> = picks.iter().flatten().map(|&(i, _)| i).collect();
    if items.is_empty() {
        return Ok(picks);
    }
    let p = Vec::<f32>::try_from(&logits_of(&items)?.to_kind(Kind::Float).to_device(Device::Cpu).view([-1]))
        .unwrap_or_default();
    let mut start = 0;
    Ok(probabilities(
        picks
            .iter()
            .map(|row| {
                let mut ranked: Vec<(i64, f32)> = row
                    .iter()
                    .zip(p.get(start..start + row.len()).unwrap_or(&[]))
                    .map(|(&(i, _), &s)| (i, s))
                    .collect();
                start += row.len();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                ranked.truncate(k);
                ranked
            })
            .collect(),
    ))
}

/// An id as one CSV field: quoted (quotes doubled) when it holds a comma, a quote or a line break,
/// as RFC 4180 and pandas' `read_csv` expect; integer ids never are.
fn csv_field(id: &RawId) -> std::borrow::Cow<'_, str> {
    match id {
        RawId::Text(s) if s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")).into(),
        RawId::Text(s) => s.as_str().into(),
        RawId::Int(i) => i.to_string().into(),
    }
}

/// Writes recommendations to `path` (format from its extension) through a temporary file renamed
/// into place, so `path` is never half-written.
pub fn write_recommendations(path: &Path, recs: &[Recommendation]) -> Result<(), InferenceError> {
    let io = |source| InferenceError::Io { path: path.to_owned(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // A temporary file is private (0600) by default; the output gets the usual umask mode.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        OutputFormat::from_path(path).write(&mut w, recs).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

//! Fold-in: a representation for a person the model was not trained on (or a known user with new
//! events) from the items they touched, the trained item side and network held fixed.
//!
//! A trained model knows a user only as rows of its user tables ([`Model::user_tables`]: NeuMF's
//! GMF and MLP embeddings, MF's embedding and bias). Fold-in fits those rows alone to a history, as
//! a maximum a posteriori estimate: the likelihood is the training loss (binary cross-entropy
//! summed over the history's items as positives and items drawn uniformly from the rest as
//! negatives, fresh ones every step), the prior a Gaussian with the trained users' own mean and
//! spread per column. The rows are fitted in whitened coordinates (`row = mean + std * z`, the
//! prior `|z|^2 / 2`) by a few Adam steps, so one learning rate suits every model whatever the
//! scale its training left its user rows at: a short history moves a person a little from the
//! average user, a long one as far as the trained users lie. The work is bounded (`steps` x
//! `history x (1 + negatives)` pairs) and deterministic for a seed (the negatives come from a PCG
//! stream seeded by it).
//!
//! Each step's gradient comes from the model itself where the item side offers it
//! ([`Model::rows_loss_gradient`]: NeuMF's and MLP's bfloat16 side on a CPU with AMX, products in
//! bfloat16, the gradient a few percent from an unrounded one, the fit ~6x faster), otherwise from
//! autograd through [`Model::logits_of_rows`] in the side's precision (float32 for
//! [`Model::item_side`]).
//!
//! Not here: reading histories or raw ids (the [`crate::Recommender`] maps those), and keeping a
//! folded-in person anywhere (a caller stores [`UserVectors`] as it likes).

use crate::InferenceError;
use ncf_model::{ItemSide, Model, UserTable};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use tch::{Kind, Reduction, Tensor};

/// How a history is folded in. The defaults fit a NeuMF or MF of the reference's sizes in a few
/// milliseconds per history on one core.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldInOptions {
    /// Adam steps (each one pass over the history and its negatives).
    pub steps: usize,
    /// Negatives drawn per history item at every step (the reference trains with 4).
    pub negatives: usize,
    /// Adam's learning rate, in units of the trained users' spread (a step moves a column by at
    /// most about this many standard deviations).
    pub learning_rate: f64,
    /// Weight of the prior (1: the plain posterior; 0: no pull toward the average user).
    pub prior_weight: f64,
    /// Seed of the negatives.
    pub seed: u64,
}

impl Default for FoldInOptions {
    fn default() -> Self {
        FoldInOptions { steps: 30, negatives: 4, learning_rate: 0.1, prior_weight: 1.0, seed: 0 }
    }
}

/// A person as the model represents users: one `[1, width]` row per user table, in
/// [`Model::user_tables`]' order.
#[derive(Debug)]
pub struct UserVectors {
    rows: Vec<Tensor>,
}

impl UserVectors {
    /// The rows, one `[1, width]` float tensor per user table.
    pub fn rows(&self) -> &[Tensor] {
        &self.rows
    }

    /// The rows as plain vectors (to store, print or compare).
    pub fn to_vecs(&self) -> Vec<Vec<f32>> {
        self.rows.iter().map(|r| Vec::<f32>::try_from(&r.to_kind(Kind::Float).view([-1])).unwrap_or_default()).collect()
    }

    /// Rows as tensors, one `[1, width]` per user table (e.g. [`Model::user_rows`] of one user).
    pub fn from_rows(rows: Vec<Tensor>) -> Self {
        UserVectors { rows }
    }

    /// Rows given as plain vectors, one per user table of `model` with its width; an error naming
    /// the table whose width differs.
    pub fn from_vecs(model: &dyn Model, vecs: &[Vec<f32>]) -> Result<Self, InferenceError> {
        let tables = model.user_tables();
        if tables.len() != vecs.len() {
            return Err(InferenceError::FoldIn(format!(
                "{} rows given, the {} model has {} user tables",
                vecs.len(),
                model.name(),
                tables.len()
            )));
        }
        let mut rows = Vec::with_capacity(vecs.len());
        for (t, v) in tables.iter().zip(vecs) {
            if v.len() as i64 != t.width {
                return Err(InferenceError::FoldIn(format!("{} is {} wide, {} given", t.key, t.width, v.len())));
            }
            rows.push(Tensor::from_slice(v).view([1, -1]).to_device(model.device()));
        }
        Ok(UserVectors { rows })
    }
}

/// Fold-in prepared for one model: the trained users' mean and standard deviation per column of
/// each user table (the prior, and where a fit starts) and the model's sizes. Build once per
/// loaded model; [`FoldIn::fit`] is then cheap.
#[derive(Debug)]
pub struct FoldIn {
    mean: Vec<Tensor>,
    std: Vec<Tensor>,
    tables: Vec<UserTable>,
    items: i64,
}

/// The smallest standard deviation a column is given (a column every user shares exactly, e.g.
/// an untrained bias, would otherwise be frozen).
const MIN_STD: f64 = 1e-6;

/// Users read per chunk when averaging the user tables (bounds the copy to a few MB).
const MEAN_CHUNK_USERS: i64 = 16_384;

impl FoldIn {
    /// Prepares fold-in for `model`; an error when the model cannot score a user given as rows
    /// ([`Model::user_tables`] empty).
    pub fn new(model: &dyn Model) -> Result<Self, InferenceError> {
        let tables = model.user_tables();
        if tables.is_empty() {
            return Err(InferenceError::FoldIn(format!(
                "the {} model cannot score a user it was not trained on (it names no user tables)",
                model.name()
            )));
        }
        let device = model.device();
        let users = model.users();
        let zeros =
            || -> Vec<Tensor> { tables.iter().map(|t| Tensor::zeros([1, t.width], (Kind::Double, device))).collect() };
        let (mut sums, mut squares) = (zeros(), zeros());
        tch::no_grad(|| -> Result<(), InferenceError> {
            let mut start = 0;
            while start < users {
                let n = MEAN_CHUNK_USERS.min(users - start);
                let ids = Tensor::arange_start(start, start + n, (Kind::Int64, device));
                let rows = model.user_rows(&ids).ok_or_else(|| {
                    InferenceError::FoldIn(format!("the {} model names user tables but gives no rows", model.name()))
                })?;
                for ((sum, square), r) in sums.iter_mut().zip(squares.iter_mut()).zip(&rows) {
                    let r = r.to_kind(Kind::Double);
                    *sum = &*sum + r.sum_dim_intlist(0, true, None);
                    *square = &*square + r.square().sum_dim_intlist(0, true, None);
                }
                start += n;
            }
            Ok(())
        })?;
        let n = users.max(1) as f64;
        let mean: Vec<Tensor> = sums.iter().map(|s| s / n).collect();
        let std = squares
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n - m.square()).clamp_min(0.0).sqrt().clamp_min(MIN_STD).to_kind(Kind::Float))
            .collect();
        let mean = mean.iter().map(|m| m.to_kind(Kind::Float)).collect();
        Ok(FoldIn { mean, std, tables, items: model.items() })
    }

    /// The trained users' mean rows: where a fold-in starts, and what an empty history gives.
    pub fn prior(&self) -> UserVectors {
        UserVectors { rows: self.mean.iter().map(Tensor::copy).collect() }
    }

    /// The trained users' standard deviation per column of each user table (at least 1e-6).
    pub fn spread(&self) -> UserVectors {
        UserVectors { rows: self.std.iter().map(Tensor::copy).collect() }
    }

    /// The model's user tables.
    pub fn tables(&self) -> &[UserTable] {
        &self.tables
    }

    /// The negatives [`FoldIn::fit`] draws for `history`: one list per step, `negatives` items per
    /// history item, uniform over the items not in the history (any item once the history holds
    /// them all), from a PCG stream seeded by `options.seed`.
    pub fn negatives(&self, history: &[i64], options: &FoldInOptions) -> Vec<Vec<i64>> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(options.seed);
        let seen: HashSet<i64> = history.iter().copied().collect();
        let draws = history.len() * options.negatives;
        // A history covering most items would make drawing until an unseen one comes up slow:
        // then the unseen items are listed once and drawn from directly.
        let unseen: Option<Vec<i64>> =
            (seen.len() as i64 * 2 > self.items).then(|| (0..self.items).filter(|i| !seen.contains(i)).collect());
        (0..options.steps)
            .map(|_| match &unseen {
                Some(list) if list.is_empty() => (0..draws).map(|_| rng.random_range(0..self.items)).collect(),
                Some(list) => (0..draws).map(|_| list[rng.random_range(0..list.len())]).collect(),
                None => (0..draws)
                    .map(|_| loop {
                        let item = rng.random_range(0..self.items);
                        if !seen.contains(&item) {
                            break item;
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Refuses options a fit cannot use, and item ids outside the model.
    fn check(&self, history: &[i64], options: &FoldInOptions) -> Result<(), InferenceError> {
        if !(options.learning_rate.is_finite() && options.learning_rate > 0.0) {
            return Err(InferenceError::FoldIn(format!(
                "the learning rate must be a positive number, not {}",
                options.learning_rate
            )));
        }
        if !(options.prior_weight.is_finite() && options.prior_weight >= 0.0) {
            return Err(InferenceError::FoldIn(format!(
                "the prior weight must be 0 or more, not {}",
                options.prior_weight
            )));
        }
        if let Some(&i) = history.iter().find(|&&i| !(0..self.items).contains(&i)) {
            return Err(InferenceError::IdOutOfRange { what: "item".into(), id: i, count: self.items as u64 });
        }
        Ok(())
    }

    /// Fits a person's rows to `history` (the model's 0-based item ids, repeats allowed), from
    /// the trained users' mean rows, with the negatives of [`FoldIn::negatives`]
    /// ([`FoldIn::fit_with_negatives`]).
    pub fn fit(
        &self,
        model: &dyn Model,
        side: &ItemSide,
        history: &[i64],
        options: &FoldInOptions,
    ) -> Result<UserVectors, InferenceError> {
        self.refit(model, side, &self.prior(), history, options)
    }

    /// Refits a known person's rows (a trained user's own, [`Model::user_rows`], or an earlier
    /// fold-in) to `history` (what they had and what they did since), starting from those rows
    /// (the prior is still the trained users' mean and spread): new events without retraining.
    pub fn refit(
        &self,
        model: &dyn Model,
        side: &ItemSide,
        user: &UserVectors,
        history: &[i64],
        options: &FoldInOptions,
    ) -> Result<UserVectors, InferenceError> {
        self.check(history, options)?;
        let negatives = self.negatives(history, options);
        self.fit_with_negatives(model, side, user, history, &negatives, options)
    }

    /// Fits rows to `history` with the given negatives (one list per step; its length sets the
    /// steps), starting at `start`. In whitened coordinates `z = (row - mean) / std`, per step:
    /// the loss is the binary cross-entropy summed over the history's items (label 1) and that
    /// step's negatives (label 0), plus `prior_weight * |z|^2 / 2`; Adam (PyTorch's defaults but
    /// the learning rate) moves `z`. An empty history gives `start`. An item id outside the model
    /// is an error naming it.
    pub fn fit_with_negatives(
        &self,
        model: &dyn Model,
        side: &ItemSide,
        start: &UserVectors,
        history: &[i64],
        negatives: &[Vec<i64>],
        options: &FoldInOptions,
    ) -> Result<UserVectors, InferenceError> {
        if start.rows.len() != self.tables.len()
            || start.rows.iter().zip(&self.tables).any(|(r, t)| r.size() != [1, t.width])
        {
            return Err(InferenceError::FoldIn(format!(
                "rows to start from must be one [1, width] row per user table ({})",
                self.tables.iter().map(|t| format!("{} [1, {}]", t.key, t.width)).collect::<Vec<_>>().join(", ")
            )));
        }
        self.check(&[], options)?;
        let items = model.items();
        for &i in history.iter().chain(negatives.iter().flatten()) {
            if !(0..items).contains(&i) {
                return Err(InferenceError::IdOutOfRange { what: "item".into(), id: i, count: items as u64 });
            }
        }
        if history.is_empty() {
            return Ok(UserVectors { rows: start.rows.iter().map(Tensor::copy).collect() });
        }
        let device = model.device();
        // The rows are a few hundred floats: the whitening, the prior's gradient (`prior_weight *
        // z`) and Adam run here in plain float32, leaving libtorch only the model's forward and
        // backward (a step's cost was its operator overhead, not its arithmetic).
        let to_vec = |t: &Tensor| Vec::<f32>::try_from(&t.to_kind(Kind::Float).to_device(tch::Device::Cpu).view([-1]));
        let readback = |e: tch::TchError| InferenceError::Readback(e.to_string());
        let mean: Vec<Vec<f32>> = self.mean.iter().map(to_vec).collect::<Result<_, _>>().map_err(readback)?;
        let std: Vec<Vec<f32>> = self.std.iter().map(to_vec).collect::<Result<_, _>>().map_err(readback)?;
        let mut z: Vec<Vec<f32>> = Vec::with_capacity(mean.len());
        for ((r, m), sd) in start.rows.iter().zip(&mean).zip(&std) {
            let r = to_vec(r).map_err(readback)?;
            z.push(r.iter().zip(m).zip(sd).map(|((r, m), s)| (r - m) / s).collect());
        }
        let rows_of = |z: &[Vec<f32>]| -> Vec<Vec<f32>> {
            z.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((z, m), sd)| z.iter().zip(m).zip(sd).map(|((z, m), s)| m + s * z).collect())
                .collect()
        };
        let mut first: Vec<Vec<f32>> = z.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut second = first.clone();
        let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let (lr, prior) = (options.learning_rate as f32, options.prior_weight as f32);
        for (step, negs) in negatives.iter().enumerate() {
            let ids: Vec<i64> = history.iter().chain(negs).copied().collect();
            let rows = rows_of(&z);
            // The model's own step where the side offers one (NeuMF's bfloat16 side on a CPU with
            // AMX), else autograd through its pair logits.
            let grads = match model.rows_loss_gradient(&rows, &ids, history.len(), side) {
                Some(result) => result?.rows,
                None => {
                    let rows = rows.iter().map(|r| Tensor::from_slice(r).view([1, -1]).to_device(device)).collect();
                    let item_ids = Tensor::from_slice(&ids).to_device(device);
                    let grads = self.autograd_step(model, side, rows, &item_ids, history.len())?;
                    grads.iter().map(to_vec).collect::<Result<Vec<_>, _>>().map_err(readback)?
                }
            };
            if grads.len() != z.len() || grads.iter().zip(&z).any(|(g, z)| g.len() != z.len()) {
                return Err(InferenceError::FoldIn(format!(
                    "the {} model's gradient does not match its user tables",
                    model.name()
                )));
            }
            // Adam on z as torch.optim.Adam computes it (no weight decay, no amsgrad); the loss's
            // gradient reaches z through row = mean + std * z.
            let t = (step + 1) as i32;
            let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            for (k, g) in grads.iter().enumerate() {
                for j in 0..g.len() {
                    let grad = std[k][j] * g[j] + prior * z[k][j];
                    first[k][j] = beta1 * first[k][j] + (1.0 - beta1) * grad;
                    second[k][j] = beta2 * second[k][j] + (1.0 - beta2) * grad * grad;
                    let denom = second[k][j].sqrt() / c2.sqrt() + eps;
                    z[k][j] -= lr / c1 * first[k][j] / denom;
                }
            }
        }
        let rows = rows_of(&z).iter().map(|r| Tensor::from_slice(r).view([1, -1]).to_device(device)).collect();
        Ok(UserVectors { rows })
    }

    /// One step's gradient with respect to each row by autograd: the binary cross-entropy summed
    /// over `items` (the first `positives` labelled 1) through [`Model::logits_of_rows`], each
    /// row repeated for every pair.
    fn autograd_step(
        &self,
        model: &dyn Model,
        side: &ItemSide,
        rows: Vec<Tensor>,
        items: &Tensor,
        positives: usize,
    ) -> Result<Vec<Tensor>, InferenceError> {
        let n = items.size()[0];
        let mut labels = vec![1f32; positives];
        labels.resize(n as usize, 0.0);
        let labels = Tensor::from_slice(&labels).view([-1, 1]).to_device(items.device());
        let rows: Vec<Tensor> = rows.into_iter().map(|r| r.set_requires_grad(true)).collect();
        let expanded: Vec<Tensor> = rows.iter().map(|r| r.expand([n, r.size()[1]], false)).collect();
        let logits = model
            .logits_of_rows(&expanded, items, side)
            .ok_or_else(|| InferenceError::FoldIn(format!("the {} model cannot score rows", model.name())))?;
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, Reduction::Sum);
        Tensor::f_run_backward(&[loss], &rows, false, false).map_err(|e| {
            InferenceError::FoldIn(format!("the {} model's scores do not depend on its user rows: {e}", model.name()))
        })
    }
}

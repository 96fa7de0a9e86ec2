//! Ranking metrics for NCF evaluation: hit rate (HR@k) and NDCG@k over test lists of consecutive
//! rows, with the reference's duplicate mask, and the validation loss (reference-semantics.md §4).
//!
//! **What it is for.** A test mapping holds one list of `S` rows per user (the positive and its
//! sampled negatives). [`TestSeries`] sorts each list by `item - 0.5 * label` (equal items side by
//! side, the positive first) and marks every item equal to its left neighbour as a duplicate, once
//! per dataset; [`TestSeries::rank_sums`] then scores the model's probabilities: duplicates are set
//! to -1 (below any probability), the top `k` of each list are taken, a list is a hit when its
//! positive is among them, and NDCG adds `log(2) / log(rank + 2)` at the positive's 0-based rank.
//! [`RankSums`] holds the sums, so several ranks' parts add up ([`RankSums::combine`]); for the
//! same bits as one rank, stack the ranks' [`TestSeries::top_k_hits`] and add up once
//! ([`RankSums::from_hits`]).
//! [`rank_metrics`] does all of it in one call. Everything runs on the tensors' own device with the
//! same libtorch operations as the reference, so the numbers are PyTorch's to the last bit.
//!
//! **Full ranking** ([`positive_ranks`], [`FullRankSums`], [`SeenItems`]): each user's held-out
//! positive ranked against every item but the user's known ones, and HR@k (= recall@k), NDCG@k,
//! MRR@k, precision@k and MAP@k from those ranks; ties count against the positive.
//!
//! **What it is not:** a trainer or a data loader; it scores what it is given.
//!
//! ```
//! use tch::Tensor;
//! // Two lists of 3: user 0's positive is item 5, user 1's is item 9.
//! let users = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1]);
//! let items = Tensor::from_slice(&[5i64, 2, 7, 9, 9, 4]);
//! let labels = Tensor::from_slice(&[1f32, 0., 0., 1., 0., 0.]);
//! let series = metrics::TestSeries::new(&users, &items, &labels, 3)?;
//! // Scores in the series' (sorted) row order: items [2, 5, 7] and [4, 9, 9].
//! let scores = Tensor::from_slice(&[0.9f32, 0.5, 0.1, 0.2, 0.3, 0.8]);
//! let sums = series.rank_sums(&scores, 1)?;
//! assert_eq!((sums.hits, sums.lists), (1, 2)); // the duplicated 9 (0.8) is masked
//! assert_eq!(sums.hit_rate(), 0.5);
//! # Ok::<(), metrics::MetricsError>(())
//! ```

use tch::{Kind, Tensor};

mod full;
pub use full::{positive_ranks, FullRankSums, SeenItems};

/// What can go wrong scoring test lists.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    #[error("samples per series must be at least 1, got {0}")]
    SeriesLength(i64),
    #[error(
        "{rows} test rows are not a whole number of lists of {samples_per_series} (metadata.test_samples_per_series)"
    )]
    Ragged { rows: i64, samples_per_series: i64 },
    #[error("{what} has {got} elements, expected {expected}")]
    Length { what: &'static str, got: i64, expected: i64 },
    #[error("k must be at least 1, got {0}")]
    K(i64),
    #[error("{what} has shape {shape:?}, expected {expected}")]
    Shape { what: &'static str, shape: Vec<i64>, expected: String },
    #[error("ids out of range: users {users:?} of {user_count}, items {items:?} of {item_count}")]
    OutOfRange { users: (i64, i64), items: (i64, i64), user_count: i64, item_count: i64 },
}

/// Test lists, each sorted by `item - 0.5 * label`, with the duplicate mask.
#[derive(Debug)]
pub struct TestSeries {
    users: Tensor,
    items: Tensor,
    labels: Tensor,
    duplicates: Tensor,
    samples_per_series: i64,
}

impl TestSeries {
    /// Builds the series from flat `[L * S]` (or `[L * S, 1]`) user ids, item ids and labels on any
    /// device. The rows come back reordered within each list: score them in this order
    /// ([`TestSeries::users`], [`TestSeries::items`]).
    pub fn new(users: &Tensor, items: &Tensor, labels: &Tensor, samples_per_series: i64) -> Result<Self, MetricsError> {
        if samples_per_series < 1 {
            return Err(MetricsError::SeriesLength(samples_per_series));
        }
        let rows = items.numel() as i64;
        if rows % samples_per_series != 0 {
            return Err(MetricsError::Ragged { rows, samples_per_series });
        }
        for (what, t) in [("users", users), ("labels", labels)] {
            if t.numel() as i64 != rows {
                return Err(MetricsError::Length { what, got: t.numel() as i64, expected: rows });
            }
        }
        let grid = |t: &Tensor| t.reshape([-1, samples_per_series]);
        let (users, items, labels) = (grid(users), grid(items), grid(labels).to_kind(Kind::Float));
        // The reference sorts by `item - 0.5 * label` in float32, which merges ids above 2^24; in
        // float64 the order is the same below that and right above it.
        let key = items.to_kind(Kind::Double) - labels.to_kind(Kind::Double) * 0.5;
        let (_, order) = key.sort_stable(true, 1, false);
        let (users, items, labels) =
            (users.gather(1, &order, false), items.gather(1, &order, false), labels.gather(1, &order, false));
        let duplicates = items.zeros_like().to_kind(Kind::Bool);
        if samples_per_series > 1 {
            let same =
                items.narrow(1, 1, samples_per_series - 1).eq_tensor(&items.narrow(1, 0, samples_per_series - 1));
            duplicates.narrow(1, 1, samples_per_series - 1).copy_(&same);
        }
        Ok(TestSeries { users, items, labels, duplicates, samples_per_series })
    }

    /// Number of lists.
    pub fn lists(&self) -> i64 {
        self.items.size()[0]
    }

    /// Rows per list (`S`).
    pub fn samples_per_series(&self) -> i64 {
        self.samples_per_series
    }

    /// User ids `[L * S]` in scoring order.
    pub fn users(&self) -> Tensor {
        self.users.reshape([-1])
    }

    /// Item ids `[L * S]` in scoring order.
    pub fn items(&self) -> Tensor {
        self.items.reshape([-1])
    }

    /// Labels `[L * S]` (float32) in scoring order.
    pub fn labels(&self) -> Tensor {
        self.labels.reshape([-1])
    }

    /// The duplicate mask `[L, S]`: true where an item equals its left neighbour.
    pub fn duplicates(&self) -> &Tensor {
        &self.duplicates
    }

    /// This rank's share of the lists when `world` ranks evaluate: consecutive lists, the first
    /// `lists % world` ranks taking one more (the reference's split).
    pub fn shard(&self, rank: i64, world: i64) -> TestSeries {
        let (lists, world) = (self.lists(), world.max(1));
        let (base, extra) = (lists / world, lists % world);
        let start = rank * base + rank.min(extra);
        let len = base + i64::from(rank < extra);
        let part = |t: &Tensor| t.narrow(0, start, len);
        TestSeries {
            users: part(&self.users),
            items: part(&self.items),
            labels: part(&self.labels),
            duplicates: part(&self.duplicates),
            samples_per_series: self.samples_per_series,
        }
    }

    /// Hits and NDCG sums at `k` for probabilities `scores` (`[L * S]` or `[L * S, 1]`, in this
    /// series' row order). `k` larger than `S` counts as `S` (every list a hit).
    pub fn rank_sums(&self, scores: &Tensor, k: i64) -> Result<RankSums, MetricsError> {
        Ok(RankSums::from_hits(&self.top_k_hits(scores, k)?))
    }

    /// Which of each list's top `k` rows (best first) is its positive: a bool tensor
    /// `[L, min(k, S)]`, on the scores' device; [`RankSums::from_hits`] adds it up. Several ranks'
    /// matrices stacked in list order add up to the same bits as one rank's over all lists, which
    /// summed [`RankSums`] (float sums in another order) do not.
    pub fn top_k_hits(&self, scores: &Tensor, k: i64) -> Result<Tensor, MetricsError> {
        if k < 1 {
            return Err(MetricsError::K(k));
        }
        let expected = self.items.numel() as i64;
        if scores.numel() as i64 != expected {
            return Err(MetricsError::Length { what: "scores", got: scores.numel() as i64, expected });
        }
        let k = k.min(self.samples_per_series);
        if self.lists() == 0 {
            return Ok(Tensor::zeros([0, k], (Kind::Bool, scores.device())));
        }
        let ratings = scores.reshape([-1, self.samples_per_series]).masked_fill(&self.duplicates, -1.0);
        let (_, top) = ratings.topk(k, 1, true, true);
        Ok(self.labels.gather(1, &top, false).eq(1.0))
    }
}

/// What one rank's evaluation adds up: hits, the NDCG sum and the number of lists.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RankSums {
    pub hits: i64,
    pub ndcg: f64,
    pub lists: i64,
}

impl RankSums {
    /// The sums of a hit matrix `[L, k]` from [`TestSeries::top_k_hits`] (true where a list's
    /// positive sits at that 0-based rank).
    pub fn from_hits(hit: &Tensor) -> RankSums {
        let lists = hit.size().first().copied().unwrap_or(0);
        if lists == 0 {
            return RankSums { hits: 0, ndcg: 0.0, lists: 0 };
        }
        let hits = hit.sum(Kind::Int64).int64_value(&[]);
        // The reference's expression, op for op: log(2) / (rank + 2).log() in float32, summed.
        let ranks = hit.nonzero().select(1, 1).to_kind(Kind::Float);
        let ndcg = ((ranks + 2.0).log().reciprocal() * std::f64::consts::LN_2).sum(Kind::Float).double_value(&[]);
        RankSums { hits, ndcg, lists }
    }

    /// HR@k: hits / lists (0 for no lists).
    pub fn hit_rate(&self) -> f64 {
        if self.lists == 0 {
            0.0
        } else {
            self.hits as f64 / self.lists as f64
        }
    }

    /// NDCG@k: NDCG sum / lists (0 for no lists).
    pub fn ndcg(&self) -> f64 {
        if self.lists == 0 {
            0.0
        } else {
            self.ndcg / self.lists as f64
        }
    }

    /// The sums of two disjoint sets of lists (e.g. two ranks').
    pub fn combine(&self, other: &RankSums) -> RankSums {
        RankSums { hits: self.hits + other.hits, ndcg: self.ndcg + other.ndcg, lists: self.lists + other.lists }
    }
}

/// HR@k and NDCG@k sums in one call: flat scores, items and labels of lists of `S` consecutive rows,
/// in any order within a list (they are sorted here, scores along).
pub fn rank_metrics(
    scores: &Tensor,
    items: &Tensor,
    labels: &Tensor,
    samples_per_series: i64,
    k: i64,
) -> Result<RankSums, MetricsError> {
    // The scores ride along as the "users" so they are reordered with their rows.
    let series = TestSeries::new(&scores.reshape([-1]), items, labels, samples_per_series)?;
    series.rank_sums(&series.users(), k)
}

/// One evaluation batch's loss, as the reference computes it: the mean binary cross-entropy of the
/// probabilities (not logits) against the labels. A scalar tensor on the inputs' device.
pub fn batch_loss(probabilities: &Tensor, labels: &Tensor) -> Tensor {
    probabilities.reshape([-1]).binary_cross_entropy::<Tensor>(
        &labels.reshape([-1]).to_kind(probabilities.kind()),
        None,
        tch::Reduction::Mean,
    )
}

/// The validation loss: the mean over evaluation batches of each batch's mean loss (so a short last
/// batch weighs as much as a full one, as in the reference). `None` for no batches.
pub fn validation_loss(batch_losses: &[Tensor]) -> Option<f64> {
    if batch_losses.is_empty() {
        return None;
    }
    Some(Tensor::stack(batch_losses, 0).mean(Kind::Float).double_value(&[]))
}

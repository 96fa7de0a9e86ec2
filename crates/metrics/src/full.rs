//! Full-ranking metrics: each user's held-out positive ranked against every item (but those the
//! user is known to have), as Microsoft Recommenders and RecBole evaluate, instead of against 100
//! sampled negatives (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020).

use crate::MetricsError;
use tch::{Device, Kind, Tensor};

/// The 0-based rank of each user's positive among all items: the number of items, other than the
/// positive and the items `excluded` for that user, whose score is **at least** the positive's.
///
/// - `scores`: `[B, I]`, any real scores (logits are best: float32 sigmoids round large logits
///   to 1.0, making ties); `positives`: `[B]` int64 item ids; `excluded`: `None`, or a `[B, I]`
///   bool mask of items left out of the ranking (e.g. [`SeenItems::mask`]). The positive itself is
///   never excluded.
/// - **Ties count against the positive**: an item scoring exactly as the positive ranks above it,
///   so a model that scores everything alike ranks every positive last, not first. A NaN score
///   counts as -inf (a NaN positive ranks last).
///
/// Returns `[B]` int64 on the scores' device.
pub fn positive_ranks(scores: &Tensor, positives: &Tensor, excluded: Option<&Tensor>) -> Result<Tensor, MetricsError> {
    let size = scores.size();
    let [rows, items] = size[..] else {
        return Err(MetricsError::Shape { what: "scores", shape: size, expected: "[users, items]".into() });
    };
    let positives = positives.reshape([-1]).to_kind(Kind::Int64);
    if positives.size()[0] != rows {
        return Err(MetricsError::Length { what: "positives", got: positives.size()[0], expected: rows });
    }
    if let Some(mask) = excluded {
        if mask.size() != [rows, items] {
            return Err(MetricsError::Shape {
                what: "excluded",
                shape: mask.size(),
                expected: format!("[{rows}, {items}]"),
            });
        }
    }
    if rows == 0 {
        return Ok(Tensor::zeros([0], (Kind::Int64, scores.device())));
    }
    let at = positives.view([-1, 1]);
    let scores = scores.nan_to_num(f64::NEG_INFINITY, None::<f64>, None::<f64>);
    let own = scores.gather(1, &at, false); // [B, 1]
    let mut above = scores.ge_tensor(&own); // [B, I], the positive included
    if let Some(mask) = excluded {
        above = above.logical_and(&mask.logical_not());
        // The positive is never excluded: count it back if the mask had it, then take it out.
        let _ = above.scatter_value_(1, &at, 1);
    }
    Ok(above.sum_dim_intlist(1, false, Kind::Int64) - 1)
}

/// Full-ranking sums at a cutoff `k` over users with one held-out positive each: what
/// [`FullRankSums::from_ranks`] adds up from [`positive_ranks`], so blocks and ranks add up with
/// [`FullRankSums::combine`]. With one relevant item per user, for the positive's 0-based rank `r`:
///
/// | metric | per user | note |
/// |---|---|---|
/// | HR@k | `r < k` | = recall@k with one positive |
/// | NDCG@k | `1 / log2(r + 2)` if `r < k` | the ideal DCG is 1 |
/// | MRR@k | `1 / (r + 1)` if `r < k` | |
/// | precision@k | `(r < k) / k` | |
/// | MAP@k | `1 / (r + 1)` if `r < k` | average precision with one relevant item = MRR@k |
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FullRankSums {
    /// Users ranked.
    pub users: i64,
    pub hits: f64,
    pub ndcg: f64,
    pub mrr: f64,
    pub precision: f64,
    pub map: f64,
}

impl FullRankSums {
    /// The sums at `k` for 0-based ranks `ranks` (`[B]`, any integer kind, any device).
    pub fn from_ranks(ranks: &Tensor, k: i64) -> Result<FullRankSums, MetricsError> {
        if k < 1 {
            return Err(MetricsError::K(k));
        }
        let r = ranks.reshape([-1]).to_kind(Kind::Double);
        let users = r.size()[0];
        if users == 0 {
            return Ok(FullRankSums::default());
        }
        let hit = r.lt(k as f64).to_kind(Kind::Double);
        let sum = |t: Tensor| t.sum(Kind::Double).double_value(&[]);
        let reciprocal = (&r + 1.0).reciprocal() * &hit;
        let ndcg = (&r + 2.0).log2().reciprocal() * &hit;
        let mrr = sum(reciprocal);
        Ok(FullRankSums {
            users,
            hits: sum(hit.shallow_clone()),
            ndcg: sum(ndcg),
            mrr,
            precision: sum(hit) / k as f64,
            map: mrr,
        })
    }

    /// The sums of two disjoint sets of users.
    pub fn combine(&self, o: &FullRankSums) -> FullRankSums {
        FullRankSums {
            users: self.users + o.users,
            hits: self.hits + o.hits,
            ndcg: self.ndcg + o.ndcg,
            mrr: self.mrr + o.mrr,
            precision: self.precision + o.precision,
            map: self.map + o.map,
        }
    }

    fn mean(&self, sum: f64) -> f64 {
        if self.users == 0 {
            0.0
        } else {
            sum / self.users as f64
        }
    }

    /// HR@k (= recall@k): the share of users whose positive is in the top k.
    pub fn hit_rate(&self) -> f64 {
        self.mean(self.hits)
    }

    /// NDCG@k.
    pub fn ndcg(&self) -> f64 {
        self.mean(self.ndcg)
    }

    /// MRR@k.
    pub fn mrr(&self) -> f64 {
        self.mean(self.mrr)
    }

    /// Precision@k.
    pub fn precision(&self) -> f64 {
        self.mean(self.precision)
    }

    /// MAP@k.
    pub fn map(&self) -> f64 {
        self.mean(self.map)
    }
}

/// Each user's known items (e.g. their train positives), as compressed rows on a device, to leave
/// them out of a full ranking ([`SeenItems::mask`]).
#[derive(Debug)]
pub struct SeenItems {
    /// `offsets[u]..offsets[u + 1]` are user `u`'s entries of `items`.
    offsets: Tensor,
    items: Tensor,
    users: i64,
    item_count: i64,
}

impl SeenItems {
    /// From pairs `(users[j], items[j])` (`[N]` int64; duplicates allowed) for `users` users and
    /// `items` items, on `device`.
    pub fn new(
        users: &Tensor,
        items: &Tensor,
        user_count: i64,
        item_count: i64,
        device: Device,
    ) -> Result<Self, MetricsError> {
        let (u, i) = (users.reshape([-1]).to_kind(Kind::Int64), items.reshape([-1]).to_kind(Kind::Int64));
        if u.size() != i.size() {
            return Err(MetricsError::Length { what: "items", got: i.size()[0], expected: u.size()[0] });
        }
        let (u, i) = (u.to_device(device), i.to_device(device));
        if u.numel() > 0 {
            let (lo, hi) = (u.min().int64_value(&[]), u.max().int64_value(&[]));
            let (ilo, ihi) = (i.min().int64_value(&[]), i.max().int64_value(&[]));
            if lo < 0 || hi >= user_count || ilo < 0 || ihi >= item_count {
                return Err(MetricsError::OutOfRange { users: (lo, hi), items: (ilo, ihi), user_count, item_count });
            }
        }
        let order = u.argsort(0, false);
        let counts = u.bincount::<Tensor>(None, user_count);
        let offsets = Tensor::cat(&[Tensor::zeros([1], (Kind::Int64, device)), counts.cumsum(0, Kind::Int64)], 0);
        Ok(SeenItems { offsets, items: i.index_select(0, &order), users: user_count, item_count })
    }

    /// Number of users.
    pub fn users(&self) -> i64 {
        self.users
    }

    /// `[B, items]` bool on the rows' device: true where item `j` is one of user `users[b]`'s.
    pub fn mask(&self, users: &Tensor) -> Tensor {
        let device = self.items.device();
        let users = users.reshape([-1]).to_kind(Kind::Int64).to_device(device);
        let b = users.size()[0];
        let mask = Tensor::zeros([b, self.item_count], (Kind::Bool, device));
        let start = self.offsets.index_select(0, &users);
        let counts = self.offsets.index_select(0, &(&users + 1)) - &start;
        let total = counts.sum(Kind::Int64).int64_value(&[]);
        if total == 0 {
            return mask;
        }
        // Row b's entries are positions start[b] .. start[b] + counts[b] of `items`.
        let row = Tensor::arange(b, (Kind::Int64, device)).repeat_interleave_self_tensor(&counts, 0, Some(total));
        let before = (counts.cumsum(0, Kind::Int64) - &counts).index_select(0, &row);
        let at = Tensor::arange(total, (Kind::Int64, device)) - before + start.index_select(0, &row);
        let items = self.items.index_select(0, &at);
        let flat = row * self.item_count + items;
        let mut flat_mask = mask.view([-1]);
        let _ = flat_mask.index_fill_(0, &flat, 1);
        mask
    }
}

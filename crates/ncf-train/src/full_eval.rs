//! Full-ranking evaluation (`--eval full`): each list's positive ranked against every item the
//! user does not already have, in blocks of users, with the model's item side computed once per pass.

use crate::seeds::splitmix64;
use metrics::{positive_ranks, FullRankSums, SeenItems, TestSeries};
use ncf_model::Model;
use tch::{Kind, Tensor};

/// The users and positives of one mapping's lists, and what to leave out of their rankings.
pub(crate) struct FullRanking {
    users: Tensor,
    positives: Tensor,
    seen: SeenItems,
}

impl FullRanking {
    /// The lists of `series` (their positive: the row labelled 1; the first such row if several),
    /// optionally only `subset` of them (list indices), ranked against all items but `seen`.
    pub(crate) fn new(series: &TestSeries, subset: Option<&Tensor>, seen: SeenItems) -> FullRanking {
        let shape = [-1, series.samples_per_series()];
        let labels = series.labels().reshape(shape);
        let at = labels.argmax(1, true); // the first maximum: the positive
        let mut users = series.users().reshape(shape).gather(1, &at, false).view([-1]);
        let mut positives = series.items().reshape(shape).gather(1, &at, false).view([-1]);
        if let Some(subset) = subset {
            let subset = subset.to_device(users.device());
            users = users.index_select(0, &subset);
            positives = positives.index_select(0, &subset);
        }
        FullRanking { users, positives, seen }
    }

    /// Number of lists ranked.
    pub(crate) fn lists(&self) -> i64 {
        self.users.size()[0]
    }

    /// The sums at `k` for `model` (evaluation mode), scoring `block` users at a time.
    pub(crate) fn rank(&self, model: &dyn Model, k: i64, block: i64) -> Result<FullRankSums, metrics::MetricsError> {
        let side = model.item_side();
        let mut sums = FullRankSums::default();
        let n = self.lists();
        let mut at = 0;
        while at < n {
            let len = block.min(n - at);
            let users = self.users.narrow(0, at, len);
            let logits = tch::no_grad(|| model.all_item_logits(&users, &side)).to_kind(Kind::Float);
            let ranks = positive_ranks(&logits, &self.positives.narrow(0, at, len), Some(&self.seen.mask(&users)))?;
            sums = sums.combine(&FullRankSums::from_ranks(&ranks, k)?);
            at += len;
        }
        Ok(sums)
    }
}

/// Users per block: the model's intermediate results near 2^26 floats on the CPU, 2^30 on CUDA
/// (as `inference::Recommender` scores), at least one user.
pub(crate) fn block_users(model: &dyn Model) -> i64 {
    let floats: i64 = if model.device().is_cuda() { 1 << 30 } else { 1 << 26 };
    (floats / (model.items().max(1) * model.floats_per_scored_pair().max(1))).max(1)
}

impl FullRanking {
    /// This rank's share of the lists: consecutive, the first `lists % world` ranks one more.
    pub(crate) fn shard(self, rank: i64, world: i64) -> FullRanking {
        let (lists, world) = (self.lists(), world.max(1));
        let (base, extra) = (lists / world, lists % world);
        let start = rank * base + rank.min(extra);
        let len = base + i64::from(rank < extra);
        FullRanking {
            users: self.users.narrow(0, start, len),
            positives: self.positives.narrow(0, start, len),
            seen: self.seen,
        }
    }
}

/// `count` of `lists` list indices, the same for a given `seed` on every machine and rank: the
/// lists whose SplitMix64 hash of (seed, index) is smallest, in index order. Drawn without
/// libtorch's generator, so choosing them changes no other random number of the run.
pub(crate) fn fixed_subset(lists: i64, count: usize, seed: u64) -> Tensor {
    let mut keyed: Vec<(u64, i64)> = (0..lists).map(|i| (splitmix64(seed ^ splitmix64(i as u64)), i)).collect();
    keyed.sort_unstable();
    let mut chosen: Vec<i64> = keyed.into_iter().take(count).map(|(_, i)| i).collect();
    chosen.sort_unstable();
    Tensor::from_slice(&chosen)
}

impl FullRanking {
    /// The lists' users and positives (`[L]` each).
    pub(crate) fn users_and_positives(&self) -> (Tensor, Tensor) {
        (self.users.shallow_clone(), self.positives.shallow_clone())
    }
}

//! Each epoch's training samples, built on the device as the reference does: every train row
//! (a positive) plus `negative_samples` rows per positive whose item is drawn uniformly from all
//! items (approximate negatives: one may be a real positive), shuffled, cut into batches.

use tch::{Device, Kind, Tensor};

/// The train mapping on the device.
#[derive(Debug)]
pub struct TrainSet {
    pub users: Tensor,
    pub items: Tensor,
    pub labels: Tensor,
    /// Items are drawn from `0..item_cardinality`.
    pub item_cardinality: i64,
}

/// One epoch's samples, permuted; batch `i` is rows `[i * batch, (i + 1) * batch)`.
#[derive(Debug)]
pub struct Epoch {
    users: Tensor,
    items: Tensor,
    labels: Tensor,
    batch_size: i64,
    batches: i64,
    /// Samples the epoch was built from (the reference's epoch length, for throughput).
    pub samples: i64,
}

impl TrainSet {
    /// Rows of the train mapping (positives).
    pub fn rows(&self) -> i64 {
        self.users.size()[0]
    }

    /// Samples per epoch: positives x (negatives + 1).
    pub fn epoch_samples(&self, negative_samples: i64) -> i64 {
        self.rows() * (negative_samples + 1)
    }

    /// Batches an epoch yields: the reference splits the shuffled samples into batches and always
    /// drops the last one (even a full one).
    pub fn batches_per_epoch(&self, negative_samples: i64, batch_size: i64) -> i64 {
        self.rank_batches_per_epoch(negative_samples, batch_size, 1)
    }

    /// Batches each of `world` ranks runs per epoch (batches of `batch_size / world` samples, as
    /// many as the smallest rank's share allows, so all ranks run the same number of steps).
    pub fn rank_batches_per_epoch(&self, negative_samples: i64, batch_size: i64, world: i64) -> i64 {
        let local_batch = (batch_size / world).max(1);
        let smallest = self.epoch_samples(negative_samples) / world;
        ((smallest + local_batch - 1) / local_batch - 1).max(0)
    }

    /// Builds an epoch with the global torch generator (seed it first for a reproducible run).
    /// `rank`/`world` take the rank's contiguous share of the samples before shuffling, as the
    /// reference does; its batches hold `batch_size / world` samples.
    pub fn epoch(&self, negative_samples: i64, batch_size: i64, rank: i64, world: i64) -> Epoch {
        let device = self.users.device();
        let n = self.rows();
        let negatives = n * negative_samples;
        let users = Tensor::cat(&[self.users.shallow_clone(), self.users.repeat([negative_samples])], 0);
        let random_items = Tensor::randint(self.item_cardinality, [negatives], (Kind::Int64, device));
        let items = Tensor::cat(&[self.items.shallow_clone(), random_items], 0);
        let labels =
            Tensor::cat(&[self.labels.to_kind(Kind::Float), Tensor::zeros([negatives], (Kind::Float, device))], 0);
        let samples = n + negatives;
        let (start, end) = (samples * rank / world, samples * (rank + 1) / world);
        let order = Tensor::randperm(end - start, (Kind::Int64, device)) + start;
        let local_batch = (batch_size / world).max(1);
        // Every rank takes as many batches as the smallest share allows (shares differ by at most one
        // sample), so all ranks run the same number of steps and their collectives pair up.
        let batches = self.rank_batches_per_epoch(negative_samples, batch_size, world);
        Epoch {
            users: users.index_select(0, &order),
            items: items.index_select(0, &order),
            labels: labels.index_select(0, &order),
            batch_size: local_batch,
            batches,
            samples,
        }
    }
}

impl Epoch {
    /// Number of batches (the last, partial or not, already dropped).
    pub fn batches(&self) -> i64 {
        self.batches
    }

    /// Batch `i`: (users, items, labels `[B, 1]`).
    pub fn batch(&self, i: i64) -> (Tensor, Tensor, Tensor) {
        let rows = |t: &Tensor| t.narrow(0, i * self.batch_size, self.batch_size);
        (rows(&self.users), rows(&self.items), rows(&self.labels).view([-1, 1]))
    }

    pub fn device(&self) -> Device {
        self.users.device()
    }
}

//! Test negatives, drawn by the reference's rule.

use crate::pipeline::{LeaveLastOut, ValidationSplit};
use crate::PrepareError;
use rand::Rng;
use rand_pcg::Pcg64;
use rayon::prelude::*;

/// Draws each user's test negatives exactly as the reference does: `count` items uniformly from
/// `0..I` (I = largest train item + 1), rejecting an item the user has in its **train** rows;
/// with replacement, so a user's negatives may repeat and may include its own test positive (the
/// evaluation's duplicate mask handles both).
///
/// Every user gets its own random stream (PCG-64, stream = user index, state = seed), so the
/// result depends only on the seed, not on thread scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegativeSampler {
    pub count: usize,
    pub seed: u64,
}

impl NegativeSampler {
    /// `count` negatives per user, user after user: `n_users x count` item indices.
    pub fn sample(&self, data: &LeaveLastOut) -> Result<Vec<u32>, PrepareError> {
        let item_range = data.train_items.iter().max().map_or(0, |&m| m as usize + 1);
        let users: Vec<u32> = (0..data.n_users() as u32).collect();
        self.sample_lists(data, &users, |_| None, item_range, 0)
    }

    /// Test and validation negatives of a dataset with a validation split (`data` already without
    /// the validation positives): the test lists of every user and the validation lists of
    /// `split.users`, each rejecting the user's train items **and** its validation positive (known
    /// history at test time; never its own validation list's negative). The item range is the one
    /// of the train rows before the hold-out, and the test lists use the same per-user streams as
    /// [`NegativeSampler::sample`], so a user whose draws never hit its validation positive gets
    /// the test negatives it would get without a validation split; validation lists draw from
    /// streams of their own. Returns (test, validation) negatives.
    pub fn sample_with_validation(
        &self,
        data: &LeaveLastOut,
        split: &ValidationSplit,
    ) -> Result<(Vec<u32>, Vec<u32>), PrepareError> {
        let train_max = data.train_items.iter().chain(&split.items).max();
        let item_range = train_max.map_or(0, |&m| m as usize + 1);
        let users: Vec<u32> = (0..data.n_users() as u32).collect();
        let held = |u: usize| split.item_of(u);
        let test = self.sample_lists(data, &users, held, item_range, 0)?;
        let validation = self.sample_lists(data, &split.users, held, item_range, 1 << 64)?;
        Ok((test, validation))
    }

    /// `count` negatives for each of `users`: uniform over `0..item_range`, rejecting the user's
    /// train items and `extra(user)`; user `u` draws from PCG-64 stream `stream_base + u`.
    fn sample_lists(
        &self,
        data: &LeaveLastOut,
        users: &[u32],
        extra: impl Fn(usize) -> Option<u32> + Sync,
        item_range: usize,
        stream_base: u128,
    ) -> Result<Vec<u32>, PrepareError> {
        let n_users = users.len();
        if self.count > 0 && item_range == 0 {
            return Err(PrepareError::Data("no train ratings at all: no item to draw test negatives from".into()));
        }
        let mut out = vec![0u32; n_users * self.count];
        if self.count == 0 {
            return Ok(out);
        }
        out.par_chunks_mut(self.count).enumerate().try_for_each_init(
            || vec![false; item_range],
            |in_train, (k, negatives)| {
                let u = users[k] as usize;
                let train = data.train_of(u);
                let held = extra(u);
                let mut distinct = 0;
                for &i in train.iter().chain(held.iter()) {
                    distinct += usize::from(!in_train[i as usize]);
                    in_train[i as usize] = true;
                }
                let result = if distinct >= item_range {
                    Err(PrepareError::Data(format!(
                        "user {} (raw id) has rated every one of the {item_range} items: no test negative can be drawn",
                        data.user_ids.raw(u).unwrap_or_default()
                    )))
                } else {
                    let mut rng = Pcg64::new(self.seed as u128, stream_base + u as u128);
                    for slot in negatives.iter_mut() {
                        *slot = loop {
                            let item = rng.random_range(0..item_range as u32);
                            if !in_train[item as usize] {
                                break item;
                            }
                        };
                    }
                    Ok(())
                };
                for &i in train.iter().chain(held.iter()) {
                    in_train[i as usize] = false;
                }
                result
            },
        )?;
        Ok(out)
    }
}

//! Test negatives, drawn by the reference's rule.

use crate::pipeline::LeaveLastOut;
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
        let n_users = data.n_users();
        let item_range = data.train_items.iter().max().map_or(0, |&m| m as usize + 1);
        if self.count > 0 && item_range == 0 {
            return Err(PrepareError::Data("no train ratings at all: no item to draw test negatives from".into()));
        }
        let mut out = vec![0u32; n_users * self.count];
        if self.count == 0 {
            return Ok(out);
        }
        out.par_chunks_mut(self.count).enumerate().try_for_each_init(
            || vec![false; item_range],
            |in_train, (u, negatives)| {
                let train = data.train_of(u);
                let mut distinct = 0;
                for &i in train {
                    distinct += usize::from(!in_train[i as usize]);
                    in_train[i as usize] = true;
                }
                let result = if distinct >= item_range {
                    Err(PrepareError::Data(format!(
                        "user {} (raw id) has rated every one of the {item_range} items: no test negative can be drawn",
                        data.user_ids.raw(u).unwrap_or_default()
                    )))
                } else {
                    let mut rng = Pcg64::new(self.seed as u128, u as u128);
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
                for &i in train {
                    in_train[i as usize] = false;
                }
                result
            },
        )?;
        Ok(out)
    }
}

//! The seeds a run derives from its `--seed`: one per epoch for libtorch's generator and the
//! dropout masks, and the hash that picks `--eval-users`.

/// SplitMix64's output function: a bijection of `u64` with full avalanche.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of epoch `epoch` of a run seeded with `seed`: distinct for every epoch, the same on
/// every machine and rank, non-negative.
///
/// libtorch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so it is those bits that
/// must differ from epoch to epoch: they step by an odd constant, a bijection of the epoch modulo
/// 2^32. The high 31 bits (which CUDA's Philox generator also reads) are a hash of (seed, epoch).
/// Until 2026-12-02 this was `(seed * φ + epoch + 1) >> 1`, whose low 32 bits are equal for two
/// consecutive epochs: every epoch's negatives, sample order and dropout masks were drawn twice.
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    let run = splitmix64(seed);
    let low = (run as u32).wrapping_add((epoch as u32).wrapping_add(1).wrapping_mul(0x9E37_79B9));
    let high = splitmix64(run ^ epoch as u64) >> 33;
    ((high << 32) | low as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tch::{Kind, Tensor};

    #[test]
    fn epoch_seeds_differ_in_the_bits_torch_keeps() {
        for seed in [0, 1, 2, 3, 42, 1 << 32, u64::MAX] {
            let mut low = HashSet::new();
            for epoch in 0..100_000 {
                let s = epoch_seed(seed, epoch);
                assert!(s >= 0, "seed {seed} epoch {epoch}: {s} is negative");
                assert!(low.insert(s as u32), "seed {seed}: epoch {epoch} repeats an earlier epoch's low 32 bits");
            }
        }
        assert_ne!(epoch_seed(1, 0), epoch_seed(2, 0), "different runs, different epoch seeds");
    }

    #[test]
    fn consecutive_epochs_draw_different_negatives_from_libtorch() {
        // What the epoch seed is for: the trainer seeds libtorch with it, then draws the epoch's
        // negatives (randint) and order (randperm). Each epoch's draws must be new.
        for seed in 1..=20 {
            let mut seen = HashSet::new();
            for epoch in 0..20 {
                tch::manual_seed(epoch_seed(seed, epoch));
                let items = Vec::<i64>::try_from(Tensor::randint(9_724, [8], (Kind::Int64, tch::Device::Cpu))).unwrap();
                let order = Vec::<i64>::try_from(Tensor::randperm(1_000, (Kind::Int64, tch::Device::Cpu))).unwrap();
                assert!(
                    seen.insert((items, order[..8].to_vec())),
                    "seed {seed}: epoch {epoch} repeats an earlier epoch's draws"
                );
            }
        }
    }
}

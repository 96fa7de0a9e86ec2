//! The distinct ids of a batch and where each row finds its id, for the first MLP layer's
//! per-distinct-id products ([`crate::NeuMf`]).
//!
//! Why not `torch.unique(sorted=True, return_inverse=True)`: on the CPU it sorts the batch (2.9% of
//! a training step on ml-latest-small, 2-core Xeon), while ids are bounded by the table's
//! cardinality, so one pass that marks them and one over the marks give the same answer in
//! O(batch + cardinality). And the distinct list is padded to a multiple of [`ROWS_STEP`] rows
//! because oneDNN builds (JIT-compiles) a new kernel for every new row count of a product, and the
//! count of distinct items changes with every batch: padded, a few counts recur and their kernels
//! are cached (the kernel builds were ~3% of a step).

use tch::{Kind, Tensor};

/// Distinct-id lists are padded to a multiple of this many rows.
pub(crate) const ROWS_STEP: i64 = 256;

/// The distinct ids of `ids` (int64 `[B]` on the CPU, each in `0..cardinality`) in increasing order,
/// padded to a multiple of [`ROWS_STEP`] by repeating the smallest, and for each row of `ids` the
/// position of its id in that list (`[B]`). The padding rows are never pointed at, so products over
/// them receive no gradient. `None` (the caller falls back to libtorch) for any other tensor or an
/// id out of range.
pub(crate) fn distinct_ids(ids: &Tensor, cardinality: i64) -> Option<(Tensor, Tensor)> {
    if ids.kind() != Kind::Int64 || ids.device() != tch::Device::Cpu || ids.dim() != 1 || cardinality < 1 {
        return None;
    }
    let ids = ids.contiguous();
    let n = ids.numel();
    if n == 0 {
        return Some((ids.shallow_clone(), ids));
    }
    // SAFETY: a contiguous int64 CPU tensor of n elements, alive (and not written) for this borrow.
    let values = unsafe { std::slice::from_raw_parts(ids.data_ptr() as *const i64, n) };
    let cardinality = usize::try_from(cardinality).ok()?;
    // slot[id]: u32::MAX for an absent id; 0 marks a present one until the second pass numbers it
    // with its position in the distinct list (that pass looks at each slot once, so a position 0
    // it has given is never taken for the mark).
    let mut slot = vec![u32::MAX; cardinality];
    for &id in values {
        *slot.get_mut(usize::try_from(id).ok()?)? = 0;
    }
    let mut distinct = Vec::new();
    for (id, s) in slot.iter_mut().enumerate() {
        if *s == 0 {
            *s = distinct.len() as u32;
            distinct.push(id as i64);
        }
    }
    let at: Vec<i64> = values.iter().map(|&id| slot[id as usize] as i64).collect();
    if let Some(&first) = distinct.first() {
        let padded = (distinct.len() as i64 + ROWS_STEP - 1) / ROWS_STEP * ROWS_STEP;
        distinct.resize(padded as usize, first);
    }
    Some((Tensor::from_slice(&distinct), Tensor::from_slice(&at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sorted_distinct_ids_and_inverse_of_torch_unique_padded() {
        // Arithmetic ids (tests share libtorch's generator): repeats and gaps (even ids only).
        let ids = (Tensor::arange(5_000, (Kind::Int64, tch::Device::Cpu)) * 37).remainder(1_999) * 2;
        let (distinct, at) = distinct_ids(&ids, 4_000).unwrap();
        let (unique, inverse, _) = ids.internal_unique2(true, true, false);
        let k = unique.size()[0];
        assert!(k < 4_000 && k > ROWS_STEP, "a case with gaps and more than one step: {k}");
        assert_eq!(distinct.size()[0], (k + ROWS_STEP - 1) / ROWS_STEP * ROWS_STEP);
        assert!(distinct.narrow(0, 0, k).equal(&unique));
        assert!(at.equal(&inverse.view([-1])));
        let pad = distinct.narrow(0, k, distinct.size()[0] - k);
        assert!(pad.eq(unique.int64_value(&[0])).all().int64_value(&[]) == 1, "padding repeats the smallest id");
        // Every row finds its own id.
        assert!(distinct.index_select(0, &at).equal(&ids));
    }

    #[test]
    fn declines_what_it_cannot_handle() {
        let cpu = tch::Device::Cpu;
        assert!(distinct_ids(&Tensor::from_slice(&[0i64, 5]), 5).is_none(), "id out of range");
        assert!(distinct_ids(&Tensor::from_slice(&[0i64, -1]), 5).is_none(), "negative id");
        assert!(distinct_ids(&Tensor::from_slice(&[0i32, 1]), 5).is_none(), "int32 ids");
        assert!(distinct_ids(&Tensor::zeros([2, 2], (Kind::Int64, cpu)), 5).is_none(), "a matrix");
        let (d, at) = distinct_ids(&Tensor::zeros([0], (Kind::Int64, cpu)), 5).unwrap();
        assert_eq!((d.numel(), at.numel()), (0, 0), "an empty batch");
    }
}

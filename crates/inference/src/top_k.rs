//! A row's `k` best scores as `torch.topk(row, k, largest=True, sorted=True)` returns them on the
//! CPU: the same items in the same order, ties and NaNs included.
//!
//! Why not call `topk`: libtorch copies the whole row into a vector of (score, index) pairs and
//! heap-selects over it, 55 us for a row of ML-20m's 26,744 items, a third of MF's cost per user
//! recommended. This runs the same algorithm (libstdc++'s `partial_sort`, which libtorch calls
//! when `k * 64 <= n`: `__heap_select`, then `__sort_heap`, with torch's comparator, "NaN first,
//! then larger") step for step on a heap of `k` pairs, and scans the row 32 scores at a time
//! against the heap's worst score (vector compares where the CPU has AVX2 or AVX-512), touching
//! the heap only for the few that beat it. Step for step matters: which of several equal scores
//! comes first depends on the heap's moves, not only on the set of scores.

/// A score and its position in the row.
type Entry = (f32, i64);

/// torch's comparator for `largest=True`: `x` ranks before `y` (NaN first, then larger).
fn before(x: f32, y: f32) -> bool {
    (x.is_nan() && !y.is_nan()) || x > y
}

/// The `k` best of `row`, best first, as `(index, score)`; `None` where libtorch would take its
/// other path (`k * 64 > row.len()`: `nth_element`, whose ties this does not reproduce), so the
/// caller asks libtorch instead.
pub(crate) fn top_k(row: &[f32], k: usize) -> Option<Vec<(i64, f32)>> {
    if k.checked_mul(64).is_none_or(|m| m > row.len()) {
        return None;
    }
    if k == 0 {
        return Some(Vec::new());
    }
    let mut heap: Vec<Entry> = row[..k].iter().enumerate().map(|(i, &s)| (s, i as i64)).collect();
    make_heap(&mut heap);
    // __heap_select: every later score that ranks before the heap's top (its worst) replaces it.
    let mut at = k;
    while at < row.len() {
        let worst = heap[0].0;
        if worst.is_nan() {
            break; // nothing ranks before a NaN
        }
        // Skip the blocks where no score ranks before `worst`: the heap is untouched there.
        at = next_block(row, at, worst);
        let end = (at + BLOCK).min(row.len());
        for (i, &x) in row.iter().enumerate().take(end).skip(at) {
            if before(x, heap[0].0) {
                adjust_heap(&mut heap, 0, (x, i as i64));
            }
        }
        at = end;
    }
    // __sort_heap: the worst goes last, over and over.
    let mut len = heap.len();
    while len > 1 {
        len -= 1;
        let value = heap[len];
        heap[len] = heap[0];
        adjust_heap(&mut heap[..len], 0, value);
    }
    Some(heap.into_iter().map(|(s, i)| (i, s)).collect())
}

/// Scores scanned per block against the heap's worst.
const BLOCK: usize = 32;

/// The start of the first block of `BLOCK` scores from `from` (blocks at `from`, `from + BLOCK`,
/// ...) holding one that ranks before `worst` (is NaN or larger), or of the last, shorter block
/// (the caller checks its scores one by one); `row.len()` when there is none. With AVX-512 or
/// AVX2 where the CPU has them: one or two vector compares per block (this scan over every
/// score is most of top-k's time, and the build's baseline is SSE2).
fn next_block(row: &[f32], from: usize, worst: f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { x86::next_block_avx512(row, from, worst) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { x86::next_block_avx2(row, from, worst) };
        }
    }
    next_block_body(row, from, worst)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub(super) fn next_block_avx512(row: &[f32], from: usize, worst: f32) -> usize {
        super::next_block_body(row, from, worst)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn next_block_avx2(row: &[f32], from: usize, worst: f32) -> usize {
        super::next_block_body(row, from, worst)
    }
}

#[inline(always)]
fn next_block_body(row: &[f32], from: usize, worst: f32) -> usize {
    let mut at = from;
    for block in row[from.min(row.len())..].chunks_exact(BLOCK) {
        // Larger, or NaN. A fold without early exit compiles to vector compares.
        if block.iter().fold(false, |any, &x| any | (x > worst) | x.is_nan()) {
            return at;
        }
        at += BLOCK;
    }
    at.min(row.len())
}

/// libstdc++'s `__make_heap` with `before` as "less": the top is the entry every other ranks before.
fn make_heap(heap: &mut [Entry]) {
    let len = heap.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = heap[parent];
        adjust_heap(heap, parent, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// libstdc++'s `__adjust_heap`: sift the hole at `hole` down to a leaf, then `value` up from there.
fn adjust_heap(heap: &mut [Entry], mut hole: usize, value: Entry) {
    let len = heap.len();
    let top = hole;
    let mut child = hole;
    while len >= 2 && child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if before(heap[child].0, heap[child - 1].0) {
            child -= 1;
        }
        heap[hole] = heap[child];
        hole = child;
    }
    if len >= 2 && len % 2 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        heap[hole] = heap[child - 1];
        hole = child - 1;
    }
    // __push_heap
    while hole > top {
        let parent = (hole - 1) / 2;
        if !before(heap[parent].0, value.0) {
            break;
        }
        heap[hole] = heap[parent];
        hole = parent;
    }
    heap[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use tch::Tensor;

    /// libtorch's own answer for the row.
    fn torch(row: &[f32], k: usize) -> Vec<(i64, f32)> {
        let (values, indices) = Tensor::from_slice(row).topk(k as i64, 0, true, true);
        let values = Vec::<f32>::try_from(&values).unwrap();
        let indices = Vec::<i64>::try_from(&indices).unwrap();
        indices.into_iter().zip(values).collect()
    }

    fn same(a: &[(i64, f32)], b: &[(i64, f32)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn equals_torch_topk_item_for_item_ties_and_nans_included() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let mut checked = 0;
        for case in 0..600 {
            let n = [64, 65, 127, 640, 1000, 3001, 26_744][case % 7];
            // Rows with no ties, rows of a few distinct values (ties everywhere), rows with NaNs,
            // infinities and the -inf that marks a user's seen items.
            let distinct = [0, 2, 3, 17][(case / 7) % 4];
            let mut row: Vec<f32> = (0..n)
                .map(|_| match distinct {
                    0 => rng.random::<f32>(),
                    d => rng.random_range(0..d) as f32 / d as f32,
                })
                .collect();
            match (case / 28) % 5 {
                1 => row.iter_mut().filter(|_| rng.random_bool(0.01)).for_each(|x| *x = f32::NAN),
                2 => row.iter_mut().filter(|_| rng.random_bool(0.3)).for_each(|x| *x = f32::NEG_INFINITY),
                3 => row.iter_mut().filter(|_| rng.random_bool(0.02)).for_each(|x| *x = f32::INFINITY),
                4 => row.iter_mut().for_each(|x| *x = 1.0),
                _ => {}
            }
            for k in [1, 2, 3, 10, 11, n / 64].into_iter().filter(|&k| k * 64 <= n) {
                let ours = top_k(&row, k).expect("k * 64 <= n");
                let want = torch(&row, k);
                assert!(same(&ours, &want), "n {n} k {k} case {case}:\nours  {ours:?}\ntorch {want:?}");
                checked += 1;
            }
        }
        assert!(checked >= 2000, "{checked}");
    }

    /// Every build of the block scan (AVX-512, AVX2, the baseline) finds what a plain scan does.
    #[test]
    fn every_block_scan_finds_the_first_block_with_a_better_score() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        type Scan = fn(&[f32], usize, f32) -> usize;
        let mut scans: Vec<(&str, Scan)> = vec![("baseline", next_block_body)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                scans.push(("avx512", |r, f, w| unsafe { x86::next_block_avx512(r, f, w) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                scans.push(("avx2", |r, f, w| unsafe { x86::next_block_avx2(r, f, w) }));
            }
        }
        for case in 0..3000 {
            let n = rng.random_range(0..200);
            let mut row: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
            if case % 5 == 0 && n > 0 {
                let at = rng.random_range(0..n);
                row[at] = f32::NAN;
            }
            let from = rng.random_range(0..=n);
            let worst = [0.5, 0.99, 0.999, 2.0, f32::NEG_INFINITY][case % 5];
            // The first block from `from` with a score that is NaN or above `worst`; the last,
            // shorter block is the caller's to check.
            let plain = (from..n)
                .step_by(BLOCK)
                .find(|&b| b + BLOCK > n || row[b..b + BLOCK].iter().any(|&x| x.is_nan() || x > worst))
                .unwrap_or(n);
            for (name, scan) in &scans {
                assert_eq!(scan(&row, from, worst), plain, "{name}: n {n} from {from} worst {worst}");
            }
        }
    }

    #[test]
    fn leaves_torch_s_other_path_to_torch() {
        let row = vec![0.5f32; 100];
        assert!(top_k(&row, 2).is_none(), "2 * 64 > 100: libtorch's nth_element path");
        assert_eq!(top_k(&row, 1).unwrap(), torch(&row, 1));
        assert_eq!(top_k(&row, 0).unwrap(), vec![]);
    }
}

//! The preprocessing core on an ML-20m-shaped input held in memory (no file I/O): renumbering,
//! per-user time order, dedupe and split, then the test negatives.
//!
//! `cargo bench -p preprocess --bench pipeline` (full size: 19.9M ratings, 138,493 users, 26,744
//! items). The end-to-end program, file reading and writing included, is timed by
//! `scripts/bench-prepare.sh`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use preprocess::{LeaveLastOut, NegativeSampler, RawRatings};

/// ML-20m-like shape: users with 20+ ratings, sparse movie ids with skewed popularity, random
/// timestamps. Full size under `cargo bench`; a hundredth when `cargo test --benches` runs it once.
fn ratings() -> RawRatings {
    let full = std::env::args().any(|a| a == "--bench");
    let (users, rows) = if full { (138_493usize, 19_930_863usize) } else { (1_385, 199_308) };
    let mut state = 20u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let per_user = rows / users;
    let mut raw = RawRatings::default();
    for u in 0..users {
        for _ in 0..per_user {
            // Popular items more often: the square of a uniform draw skews towards small ranks.
            let r = next() % 26_744;
            let rank = r * r / 26_744;
            raw.users.push(u as i64 + 1);
            raw.items.push((rank * 4 + 1) as i64);
            raw.timestamps.push(789_652_009 + (next() % 638_131_993) as i64);
        }
    }
    raw
}

fn bench(c: &mut Criterion) {
    let raw = ratings();
    let mut group = c.benchmark_group("prepare_core");
    group.sample_size(10).throughput(Throughput::Elements(raw.len() as u64));
    // The input is consumed (to free memory early), so each run gets a fresh copy, untimed.
    group.bench_function("leave_last_out", |b| {
        b.iter_batched(|| raw.clone(), LeaveLastOut::from_raw, BatchSize::LargeInput)
    });
    let split = LeaveLastOut::from_raw(raw.clone());
    group.bench_function("test_negatives_100", |b| {
        b.iter(|| NegativeSampler { count: 100, seed: 1 }.sample(&split).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

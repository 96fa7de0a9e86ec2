//! The inference benchmark: timed forward passes (with sigmoid) on random ids, as `inference.py`.

use crate::{SmallBatchScorer, SMALL_BATCH_BELOW};
use ncf_model::{FirstLayerTables, Model, NeuMf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What computed the timed forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The model's libtorch forward pass (`NeuMf::forward_sigmoid`).
    Libtorch,
    /// libtorch with the first MLP layer read from per-user and per-item tables made once per
    /// model (`NeuMf::forward_with_tables`).
    Tables,
    /// [`SmallBatchScorer`]: float32 CPU batches under [`SMALL_BATCH_BELOW`] pairs.
    SmallBatch,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Libtorch => "libtorch",
            Engine::Tables => "tables",
            Engine::SmallBatch => "small-batch",
        })
    }
}

/// Latency figures of one batch size, in seconds, and the mean throughput in samples/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub batch_size: i64,
    pub engine: Engine,
    pub mean_throughput: f64,
    pub mean_latency: f64,
    pub p90_latency: f64,
    pub p95_latency: f64,
    pub p99_latency: f64,
}

/// Waits for the device's queued work, so a timer brackets the computation and not its launch.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Below this batch size a CPU forward pass runs on one thread: the work is a few microseconds, and
/// waking the other threads costs more than it saves and makes latency jitter (p99 at batch 1 went
/// from ~2x the mean to ~1.4x on this machine).
pub const SINGLE_THREAD_BELOW: i64 = 512;

/// How the benchmark may score, beside the model's own forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Engines<'a> {
    /// Float32 CPU batches under [`SMALL_BATCH_BELOW`] pairs through [`SmallBatchScorer`].
    pub small_batch: bool,
    /// Every other batch through these first-layer tables ([`NeuMf::first_layer_tables`]).
    pub tables: Option<&'a FirstLayerTables>,
}

/// Times `num_batches` forward passes of `batch_size` random (user, item) pairs after `warmup`
/// untimed ones; ids are drawn once per batch size, on the model's device. With
/// `engines.small_batch`, a float32 CPU model in evaluation mode is timed through
/// [`SmallBatchScorer`] below [`SMALL_BATCH_BELOW`] pairs (what a server scoring single requests
/// would use); with `engines.tables`, other batches read the first MLP layer from them.
pub fn time_batches(
    model: &NeuMf,
    batch_size: i64,
    num_batches: usize,
    warmup: usize,
    engines: Engines<'_>,
) -> LatencyStats {
    let small_batch = engines.small_batch;
    let device = model.device();
    if small_batch && batch_size < SMALL_BATCH_BELOW && !model.is_training() {
        if let Some(scorer) = SmallBatchScorer::new(model) {
            return time_small_batches(&scorer, model, batch_size, num_batches, warmup);
        }
    }
    let threads = tch::get_num_threads();
    if device == Device::Cpu && batch_size < SINGLE_THREAD_BELOW {
        tch::set_num_threads(1);
    }
    let stats = time_batches_as_is(model, batch_size, num_batches, warmup, engines.tables);
    tch::set_num_threads(threads);
    stats
}

fn time_batches_as_is(
    model: &NeuMf,
    batch_size: i64,
    num_batches: usize,
    warmup: usize,
    tables: Option<&FirstLayerTables>,
) -> LatencyStats {
    let c = model.config();
    let engine = if tables.is_some() { Engine::Tables } else { Engine::Libtorch };
    let score = |users: &Tensor, items: &Tensor| match tables {
        Some(t) => model.forward_with_tables(users, items, t).sigmoid(),
        None => model.forward_sigmoid(users, items),
    };
    time_scoring((c.users, c.items), model.device(), batch_size, num_batches, warmup, engine, score)
}

/// [`time_batches`] for any model: its own forward pass (with sigmoid), on one thread below
/// [`SINGLE_THREAD_BELOW`] pairs on the CPU.
pub fn time_model_batches(model: &dyn Model, batch_size: i64, num_batches: usize, warmup: usize) -> LatencyStats {
    let device = model.device();
    let threads = tch::get_num_threads();
    if device == Device::Cpu && batch_size < SINGLE_THREAD_BELOW {
        tch::set_num_threads(1);
    }
    let score = |users: &Tensor, items: &Tensor| model.forward_sigmoid(users, items);
    let stats =
        time_scoring((model.users(), model.items()), device, batch_size, num_batches, warmup, Engine::Libtorch, score);
    tch::set_num_threads(threads);
    stats
}

/// Times `score` on `batch_size` random pairs drawn once within `(users, items)`.
fn time_scoring(
    (n_users, n_items): (i64, i64),
    device: Device,
    batch_size: i64,
    num_batches: usize,
    warmup: usize,
    engine: Engine,
    score: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> LatencyStats {
    let users = Tensor::randint(n_users, [batch_size], (Kind::Int64, device));
    let items = Tensor::randint(n_items, [batch_size], (Kind::Int64, device));
    let mut latencies = Vec::with_capacity(num_batches);
    tch::no_grad(|| {
        for i in 0..warmup + num_batches {
            synchronize(device);
            let start = Instant::now();
            let out = score(&users, &items);
            synchronize(device);
            let elapsed = start.elapsed().as_secs_f64();
            drop(out);
            if i >= warmup {
                latencies.push(elapsed);
            }
        }
    });
    summarize(batch_size, engine, &latencies)
}

fn time_small_batches(
    scorer: &SmallBatchScorer,
    model: &NeuMf,
    batch_size: i64,
    num_batches: usize,
    warmup: usize,
) -> LatencyStats {
    let c = model.config();
    let draw = |n: i64| Vec::<i64>::try_from(Tensor::randint(n, [batch_size], (Kind::Int64, Device::Cpu)));
    let (Ok(users), Ok(items)) = (draw(c.users), draw(c.items)) else {
        return summarize(batch_size, Engine::SmallBatch, &[]);
    };
    let mut out = vec![0f32; batch_size as usize];
    let mut latencies = Vec::with_capacity(num_batches);
    for i in 0..warmup + num_batches {
        let start = Instant::now();
        // The ids were drawn within the model's tables.
        let scored = scorer.score(&users, &items, &mut out);
        let elapsed = start.elapsed().as_secs_f64();
        std::hint::black_box(&out);
        if scored.is_ok() && i >= warmup {
            latencies.push(elapsed);
        }
    }
    summarize(batch_size, Engine::SmallBatch, &latencies)
}

fn summarize(batch_size: i64, engine: Engine, latencies: &[f64]) -> LatencyStats {
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    LatencyStats {
        batch_size,
        engine,
        mean_throughput: batch_size as f64 / mean,
        mean_latency: mean,
        p90_latency: percentile(latencies, 90.0),
        p95_latency: percentile(latencies, 95.0),
        p99_latency: percentile(latencies, 99.0),
    }
}

/// numpy's default percentile (linear interpolation between closest ranks).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy() {
        // numpy.percentile([1, 2, 3, 4, 10], [90, 95, 99]) = [7.6, 8.8, 9.76]
        let v = [4.0, 1.0, 10.0, 3.0, 2.0];
        for (q, want) in [(90.0, 7.6), (95.0, 8.8), (99.0, 9.76), (50.0, 3.0)] {
            assert!((percentile(&v, q) - want).abs() < 1e-12, "{q}");
        }
    }
}

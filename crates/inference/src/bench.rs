//! The inference benchmark: timed forward passes (with sigmoid) on random ids, as `inference.py`.

use ncf_model::NeuMf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Latency figures of one batch size, in seconds, and the mean throughput in samples/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub batch_size: i64,
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

/// Times `num_batches` forward passes of `batch_size` random (user, item) pairs after `warmup`
/// untimed ones; ids are drawn once per batch size, on the model's device.
pub fn time_batches(model: &NeuMf, batch_size: i64, num_batches: usize, warmup: usize) -> LatencyStats {
    let device = model.device();
    let threads = tch::get_num_threads();
    if device == Device::Cpu && batch_size < SINGLE_THREAD_BELOW {
        tch::set_num_threads(1);
    }
    let stats = time_batches_as_is(model, batch_size, num_batches, warmup);
    tch::set_num_threads(threads);
    stats
}

fn time_batches_as_is(model: &NeuMf, batch_size: i64, num_batches: usize, warmup: usize) -> LatencyStats {
    let device = model.device();
    let c = model.config();
    let users = Tensor::randint(c.users, [batch_size], (Kind::Int64, device));
    let items = Tensor::randint(c.items, [batch_size], (Kind::Int64, device));
    let mut latencies = Vec::with_capacity(num_batches);
    tch::no_grad(|| {
        for i in 0..warmup + num_batches {
            synchronize(device);
            let start = Instant::now();
            let out = model.forward_sigmoid(&users, &items);
            synchronize(device);
            let elapsed = start.elapsed().as_secs_f64();
            drop(out);
            if i >= warmup {
                latencies.push(elapsed);
            }
        }
    });
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    LatencyStats {
        batch_size,
        mean_throughput: batch_size as f64 / mean,
        mean_latency: mean,
        p90_latency: percentile(&latencies, 90.0),
        p95_latency: percentile(&latencies, 95.0),
        p99_latency: percentile(&latencies, 99.0),
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

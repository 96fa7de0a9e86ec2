//! The service's Prometheus metrics (text format at `GET /metrics`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the service exports, in one registry.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route (the matched pattern, e.g. `/v1/users/{user}/recommendations`)
    /// and status code.
    pub requests: IntCounterVec,
    /// Seconds from a request's arrival to its answer, by route.
    pub latency: HistogramVec,
    /// Users scored together in one batch.
    pub batch_users: Histogram,
    /// Seconds one batch took to score.
    pub batch_seconds: Histogram,
    /// Requests waiting for the scorer.
    pub queue_depth: IntGauge,
    /// The serving model's version (1 at start-up, +1 per successful reload).
    pub model_version: IntGauge,
    /// 1 for the serving model, labelled with its kind and checkpoint SHA-256.
    pub model_info: IntGaugeVec,
    /// Reloads, by result (`ok`, `refused`).
    pub reloads: IntCounterVec,
    /// Requests dropped unscored, or not scored further, because their client went away.
    pub abandoned: IntCounter,
}

impl Metrics {
    /// A fresh registry with every metric registered under the `ncf_serve_` prefix.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("ncf_serve".into()), None).unwrap_or_default();
        // Registration only fails for a duplicate or malformed name, fixed below: a bug, not input.
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by route and HTTP status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "Seconds from a request's arrival to its answer, by route")
                .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),
            &["route"],
        )
        .expect("valid metric");
        let batch_users = Histogram::with_opts(
            HistogramOpts::new("batch_users", "Users scored together in one batch")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
        )
        .expect("valid metric");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("batch_seconds", "Seconds one batch took to score")
                .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("queue_depth", "Requests waiting for the scorer").expect("valid metric");
        let model_version =
            IntGauge::new("model_version", "The serving model's version (1 at start-up, +1 per reload)")
                .expect("valid metric");
        let model_info = IntGaugeVec::new(
            Opts::new("model_info", "1 for the serving model, with its kind and checkpoint SHA-256"),
            &["kind", "sha256"],
        )
        .expect("valid metric");
        let reloads =
            IntCounterVec::new(Opts::new("reloads_total", "Model reloads, by result (ok, refused)"), &["result"])
                .expect("valid metric");
        let abandoned = IntCounter::new(
            "requests_abandoned_total",
            "Requests dropped unscored, or not scored further, because their client went away",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_users.clone()),
            Box::new(batch_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(model_version.clone()),
            Box::new(model_info.clone()),
            Box::new(reloads.clone()),
            Box::new(abandoned.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            batch_users,
            batch_seconds,
            queue_depth,
            model_version,
            model_info,
            reloads,
            abandoned,
        }
    }

    /// Marks `version` (kind, sha256) as the serving model.
    pub fn serving(&self, version: u64, kind: &str, sha256: &str) {
        self.model_version.set(version as i64);
        self.model_info.reset();
        self.model_info.with_label_values(&[kind, sha256]).set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format's own metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

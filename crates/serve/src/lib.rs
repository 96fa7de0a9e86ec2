//! Recommendations online: the HTTP service behind `ncf-serve`, as a library (routes, request and
//! response types, the dynamic batcher, hot reload, Prometheus metrics, the page at `/`).
//!
//! **What it is for.** [`Service::start`] loads a dataset ([`inference::Catalog`]: users, items,
//! raw ids, each user's train items), a checkpoint of any `ncf-model` model (its kind and shapes
//! read from the file, checked against the dataset and probed) and optional item titles, and
//! starts the scoring thread; [`Service::router`] is an axum `Router` to serve with any listener.
//! Scoring goes through [`inference::Recommender`], so answers equal `ncf-infer recommend`'s.
//!
//! Routes (JSON in and out; errors are `{"error": "...", "status": N}`):
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/users/{user}/recommendations?k=10&exclude_seen=true` | top-k items for a raw user id |
//! | `POST /v1/recommendations` `{"users": [..], "k": 10}` | many users in one call |
//! | `POST /v1/scores` `{"pairs": [{"user": 1, "item": 31}]}` | probabilities of (user, item) pairs |
//! | `GET /v1/users?offset=0&limit=50`, `GET /v1/users/{user}` | users, and one user's train items |
//! | `GET /v1/model` | kind, sizes, checkpoint path and SHA-256, load time, version |
//! | `POST /v1/admin/reload` (bearer token) | load a checkpoint beside the serving one, check it, swap |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | liveness, readiness, Prometheus text |
//! | `GET /` | a page to look at users and their recommendations |
//!
//! **What it is not:** a command line (signals, flags and the listener are `ncf-serve`'s), or a
//! trainer: a model is loaded, never changed.

mod batcher;
mod error;
pub mod journal;
mod metrics;
mod model;
mod names;
mod routes;

pub use batcher::BatchConfig;
pub use error::{ApiError, ServeError};
pub use metrics::Metrics;
pub use model::{LoadedModel, ModelInfo, ModelOptions};
pub use names::ItemNames;

use batcher::Batcher;
use inference::Catalog;
use journal::Journal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What a request may ask for at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Users in one `POST /v1/recommendations`.
    pub max_users_per_request: usize,
    /// Pairs in one `POST /v1/scores`.
    pub max_pairs_per_request: usize,
    /// Largest `k` (at most the number of items).
    pub max_k: usize,
    /// Request bodies larger than this are refused (413).
    pub max_body_bytes: usize,
    /// A request not answered within this is answered 503 (it waited too long in the queue) or
    /// 504 (its scoring took too long).
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_users_per_request: 1000,
            max_pairs_per_request: 10_000,
            max_k: 1000,
            max_body_bytes: 1 << 20,
            request_deadline: Duration::from_secs(5),
        }
    }
}

/// Everything [`Service::start`] needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The dataset folder the model was trained on (feature_spec.yaml, train mapping, id maps).
    pub data: PathBuf,
    /// The checkpoint to serve.
    pub checkpoint: PathBuf,
    /// Item titles (MovieLens `movies.csv`), shown with recommendations.
    pub item_names: Option<PathBuf>,
    pub model: ModelOptions,
    pub batching: BatchConfig,
    pub limits: Limits,
    /// The bearer token the admin routes require; `None` turns them off (404).
    pub admin_token: Option<String>,
    /// The interaction journal's folder; `None` turns `POST /v1/users/{user}/interactions` off.
    pub journal: Option<PathBuf>,
}

/// What the journal held at start ([`Service::replayed`]).
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// Events replayed into the running state.
    pub events: usize,
    /// People with journal events.
    pub people: usize,
    /// Events of items the dataset does not have (kept in the journal, not in the state).
    pub unknown_items: usize,
    /// Torn last lines cut off, one message each.
    pub warnings: Vec<String>,
}

/// What every request handler shares.
pub(crate) struct State {
    catalog: Arc<Catalog>,
    names: Option<ItemNames>,
    current: RwLock<Arc<LoadedModel>>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    limits: Limits,
    admin_token: Option<String>,
    options: ModelOptions,
    /// The checkpoint a reload without a path re-reads: the last one loaded.
    checkpoint: Mutex<PathBuf>,
    reloading: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    journal: Option<Journal>,
    /// Each person with journal events (raw id) and their items (dataset ids), oldest first.
    people: Mutex<HashMap<String, Vec<i64>>>,
    replayed: Replayed,
}

impl State {
    /// The items the journal holds for a person (raw id), if any.
    fn journal_items(&self, raw: &str) -> Option<Vec<i64>> {
        self.people.lock().unwrap_or_else(|e| e.into_inner()).get(raw).cloned()
    }

    /// The serving model (requests hold on to it until they are answered).
    fn model(&self) -> Arc<LoadedModel> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running service: the loaded dataset and model, the scoring thread, the metrics. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    state: Arc<State>,
}

impl Service {
    /// Loads everything and starts the scoring thread (blocking: call it before serving, or on a
    /// blocking thread).
    pub fn start(config: ServeConfig) -> Result<Service, ServeError> {
        if config.batching.max_batch_users == 0 || config.batching.queue_capacity == 0 {
            return Err(ServeError::Config("--max-batch-users and --max-queue must be at least 1".into()));
        }
        let catalog = Arc::new(Catalog::open(&config.data)?);
        let names = config.item_names.as_deref().map(ItemNames::read).transpose()?;
        let model = LoadedModel::load(catalog.clone(), &config.checkpoint, &config.model, 1)?;
        let metrics = Arc::new(Metrics::new());
        metrics.serving(1, &model.info.kind, &model.info.sha256);
        let batcher = Batcher::start(config.batching, metrics.clone())
            .map_err(|source| ServeError::Io { path: "(the scoring thread)".into(), source })?;
        let mut limits = config.limits;
        limits.max_k = limits.max_k.min(catalog.items().max(1) as usize);
        let (journal, people, replayed) = match &config.journal {
            None => (None, HashMap::new(), Replayed::default()),
            Some(dir) => {
                let (journal, replay) = Journal::open(dir)?;
                let mut people: HashMap<String, Vec<i64>> = HashMap::new();
                let mut unknown_items = 0;
                for e in &replay.events {
                    match catalog.item(&e.item) {
                        Some(i) => people.entry(e.user.clone()).or_default().push(i),
                        None => unknown_items += 1,
                    }
                }
                let replayed = Replayed {
                    events: replay.events.len(),
                    people: people.len(),
                    unknown_items,
                    warnings: replay.warnings,
                };
                (Some(journal), people, replayed)
            }
        };
        Ok(Service {
            state: Arc::new(State {
                catalog,
                names,
                current: RwLock::new(Arc::new(model)),
                batcher,
                metrics,
                limits,
                admin_token: config.admin_token.filter(|t| !t.is_empty()),
                options: config.model,
                checkpoint: Mutex::new(config.checkpoint),
                reloading: tokio::sync::Mutex::new(()),
                ready: AtomicBool::new(true),
                journal,
                people: Mutex::new(people),
                replayed,
            }),
        })
    }

    /// What the journal held at start (nothing without one).
    pub fn replayed(&self) -> &Replayed {
        &self.state.replayed
    }

    /// The routes, ready for `axum::serve`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// What is serving now.
    pub fn model(&self) -> ModelInfo {
        self.state.model().info.clone()
    }

    /// The dataset side.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.state.catalog
    }

    /// The metrics (also at `GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Whether `/readyz` says ready; set false when shutting down, so load balancers stop sending.
    pub fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::SeqCst);
    }

    /// Loads `checkpoint` (the last one loaded when `None`) beside the serving model, checks it
    /// ([`LoadedModel::load`]) and swaps it in; requests already queued finish on the model they
    /// started with. A checkpoint that fails is refused with the reason, and the old model keeps
    /// serving. One reload at a time ([`ServeError::ReloadBusy`]).
    pub async fn reload(&self, checkpoint: Option<PathBuf>) -> Result<ModelInfo, ServeError> {
        self.reload_from(checkpoint).await.map(|(_, info)| info)
    }

    /// [`Service::reload`], also returning what served before. The reload runs on a task of its
    /// own, so it finishes (and swaps, and is counted) even if the caller is dropped, e.g. an HTTP
    /// client that disconnects mid-reload.
    pub async fn reload_from(&self, checkpoint: Option<PathBuf>) -> Result<(ModelInfo, ModelInfo), ServeError> {
        let service = self.clone();
        tokio::spawn(async move { service.reload_now(checkpoint).await })
            .await
            .unwrap_or_else(|e| Err(ServeError::Config(format!("the reload's task failed: {e}"))))
    }

    async fn reload_now(&self, checkpoint: Option<PathBuf>) -> Result<(ModelInfo, ModelInfo), ServeError> {
        let state = &self.state;
        let _one_at_a_time = state.reloading.try_lock().map_err(|_| ServeError::ReloadBusy)?;
        let path = match checkpoint {
            Some(p) => p,
            None => state.checkpoint.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let previous = state.model().info.clone();
        let version = previous.version + 1;
        let (catalog, options, p) = (state.catalog.clone(), state.options.clone(), path.clone());
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(catalog, &p, &options, version))
            .await
            .unwrap_or_else(|e| Err(ServeError::Config(format!("the reload's thread failed: {e}"))));
        match loaded {
            Ok(model) => {
                let info = model.info.clone();
                *state.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
                *state.checkpoint.lock().unwrap_or_else(|e| e.into_inner()) = path;
                state.metrics.serving(info.version, &info.kind, &info.sha256);
                state.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!("serving version {} ({} from {})", info.version, info.kind, info.checkpoint.display());
                Ok((previous, info))
            }
            Err(e) => {
                state.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::warn!("reload of {} refused: {e}", path.display());
                Err(e)
            }
        }
    }
}

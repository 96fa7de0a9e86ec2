//! Dynamic batching, as Triton's dynamic batcher: requests wait in a bounded queue; one scoring
//! thread takes the first, then every other that arrives within `max_queue_delay` (up to
//! `max_batch_users` users), and scores them together, so concurrent single-user requests share
//! one pass over the model's weights.
//!
//! Why one thread: libtorch already spreads one pass over every core (intra-op threads); two
//! passes at once would only compete for them. Why a bounded queue: a server that queues without
//! limit answers every request late under overload; this one answers 503 at once instead.

use crate::metrics::Metrics;
use crate::model::LoadedModel;
use crate::ApiError;
use axum::http::StatusCode;
use inference::{FoldInOptions, RawId, Recommendation};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How requests are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Users scored together at most (a request with more is scored alone).
    pub max_batch_users: usize,
    /// How long the first request of a batch waits for others.
    pub max_queue_delay: Duration,
    /// Requests that may wait; one more is answered 503.
    pub queue_capacity: usize,
}

/// What a request asks the scorer for.
pub(crate) enum Work {
    /// The top `k` for each user (dataset ids).
    Recommend {
        users: Vec<i64>,
        k: usize,
        include_seen: bool,
        reply: oneshot::Sender<Result<Vec<Recommendation>, ApiError>>,
    },
    /// Probabilities of (user, item) pairs (dataset ids).
    Score { users: Vec<i64>, items: Vec<i64>, reply: oneshot::Sender<Result<Vec<f32>, ApiError>> },
    /// The top `k` for a person given by their items (dataset ids): a trained `user` refreshed
    /// from their own rows, anyone else (`None`) folded in.
    History {
        user: Option<i64>,
        items: Vec<i64>,
        k: usize,
        exclude_seen: bool,
        reply: oneshot::Sender<Result<Vec<(RawId, f32)>, ApiError>>,
    },
}

/// A request in the queue, with the model it started on (a reload while it waits does not change
/// which model answers it) and its deadline.
pub(crate) struct Job {
    pub work: Work,
    pub model: Arc<LoadedModel>,
    pub deadline: Instant,
    /// Set when the scorer takes the job: a request past its deadline is then 504 (scoring took
    /// too long), else 503 (it waited in the queue).
    pub started: Arc<AtomicBool>,
}

impl Job {
    fn users(&self) -> usize {
        match &self.work {
            Work::Recommend { users, .. } => users.len(),
            // Pairs cost about 1/items of a user each; counted as at least one user.
            Work::Score { users, .. } => users.len().div_ceil(1024).max(1),
            // One user's scores and a fit of 30 passes over the history and its negatives.
            Work::History { items, .. } => 1 + items.len() / 256,
        }
    }

    fn abandoned(&self) -> bool {
        match &self.work {
            Work::Recommend { reply, .. } => reply.is_closed(),
            Work::Score { reply, .. } => reply.is_closed(),
            Work::History { reply, .. } => reply.is_closed(),
        }
    }

    fn fail(self, e: ApiError) {
        match self.work {
            Work::Recommend { reply, .. } => drop(reply.send(Err(e))),
            Work::Score { reply, .. } => drop(reply.send(Err(e))),
            Work::History { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// The queue's sending end; the scoring thread runs until every handle is dropped.
pub(crate) struct Batcher {
    sender: SyncSender<Job>,
    metrics: Arc<Metrics>,
    alive: Arc<AtomicBool>,
}

impl Batcher {
    /// Starts the scoring thread.
    pub fn start(config: BatchConfig, metrics: Arc<Metrics>) -> std::io::Result<Batcher> {
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let (m, a) = (metrics.clone(), alive.clone());
        std::thread::Builder::new().name("ncf-serve-scorer".into()).spawn(move || {
            run(receiver, config, &m);
            a.store(false, Ordering::SeqCst);
        })?;
        Ok(Batcher { sender, metrics, alive })
    }

    /// Whether the scoring thread still runs (for `/readyz`).
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues a job; a full queue is a 503 with `Retry-After: 1`.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.metrics.queue_depth.inc();
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.dec();
                let message = match e {
                    TrySendError::Full(_) => "the scoring queue is full; retry after the Retry-After seconds",
                    TrySendError::Disconnected(_) => "the scorer has stopped; the server needs a restart",
                };
                Err(ApiError { retry_after: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message) })
            }
        }
    }
}

fn run(receiver: Receiver<Job>, config: BatchConfig, metrics: &Metrics) {
    let take = |job: Job| {
        metrics.queue_depth.dec();
        job
    };
    // A job that would overflow the batch it arrived in waits for the next one.
    let mut carried: Option<Job> = None;
    loop {
        // `recv` fails once every sender is gone: the service was dropped.
        let first = match carried.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => take(job),
                Err(_) => return,
            },
        };
        let opened = Instant::now();
        let mut users = first.users();
        let mut batch = vec![first];
        while users < config.max_batch_users {
            let left = config.max_queue_delay.saturating_sub(opened.elapsed());
            // A timeout, or every sender gone, ends the batch.
            let next = match left.is_zero() {
                true => receiver.try_recv().map_err(|_| ()),
                false => receiver.recv_timeout(left).map_err(|_| ()),
            };
            let Ok(job) = next else { break };
            let job = take(job);
            if users + job.users() > config.max_batch_users {
                carried = Some(job);
                break;
            }
            users += job.users();
            batch.push(job);
        }
        // A panic anywhere in scoring fails this batch's requests (their replies are dropped:
        // 500), not the thread.
        if catch_unwind(AssertUnwindSafe(|| score_batch(batch, metrics))).is_err() {
            tracing::error!("scoring a batch panicked; its requests were answered 500");
        }
    }
}

/// Scores a batch: recommendation requests grouped by model and `include_seen` into one pass each
/// (with the largest `k`, each answer cut to its own), score requests by model.
fn score_batch(batch: Vec<Job>, metrics: &Metrics) {
    let now = Instant::now();
    let mut live = Vec::with_capacity(batch.len());
    for job in batch {
        job.started.store(true, Ordering::SeqCst);
        if job.abandoned() {
            metrics.abandoned.inc();
            continue;
        }
        if now > job.deadline {
            job.fail(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request's deadline passed while it waited for the scorer (the server is overloaded)",
            ));
            continue;
        }
        live.push(job);
    }
    if live.is_empty() {
        return;
    }
    let start = Instant::now();
    let users: usize = live.iter().map(Job::users).sum();
    while !live.is_empty() {
        // The first job's kind of group, and every job that belongs to it.
        let head = &live[0];
        let model = head.model.clone();
        let key = Group::of(&head.work);
        let (group, rest): (Vec<Job>, Vec<Job>) =
            live.into_iter().partition(|j| Arc::ptr_eq(&j.model, &model) && Group::of(&j.work) == key);
        live = rest;
        match key {
            Group::Recommend { include_seen } => recommend_group(group, &model, include_seen, metrics),
            Group::Score => score_group(group, &model),
            Group::History => history_group(group, &model),
        }
    }
    metrics.batch_users.observe(users as f64);
    metrics.batch_seconds.observe(start.elapsed().as_secs_f64());
}

/// Which jobs of a batch are scored together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Recommend { include_seen: bool },
    Score,
    History,
}

impl Group {
    fn of(work: &Work) -> Group {
        match work {
            Work::Recommend { include_seen, .. } => Group::Recommend { include_seen: *include_seen },
            Work::Score { .. } => Group::Score,
            Work::History { .. } => Group::History,
        }
    }
}

/// Folds each person in (or refreshes a trained user), with the default options (the same
/// history, the same answer), and answers with their top k.
fn history_group(group: Vec<Job>, model: &LoadedModel) {
    let scorer = model.scorer();
    for job in group {
        let Work::History { user, items, k, exclude_seen, reply } = job.work else { continue };
        let result = catch_unwind(AssertUnwindSafe(|| {
            scorer.recommend_for_history(user, &items, k, !exclude_seen, &FoldInOptions::default())
        }));
        let answer = match result {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(ApiError::bad_request(e.to_string())),
            Err(_) => {
                tracing::error!("folding in a history of {} items panicked", items.len());
                Err(internal("the model panicked"))
            }
        };
        let _ = reply.send(answer);
    }
}

fn internal(what: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {what}; the server logs say more"))
}

fn recommend_group(group: Vec<Job>, model: &LoadedModel, include_seen: bool, metrics: &Metrics) {
    let k_max = group.iter().map(|j| if let Work::Recommend { k, .. } = &j.work { *k } else { 0 }).max().unwrap_or(0);
    let scorer = model.scorer();
    let per_pass = scorer.users_per_batch().max(1);
    let mut jobs: VecDeque<Job> = group.into();
    // The front job's users scored so far: a pass takes jobs' users in order, so only the front
    // job can be partly scored.
    let mut front: Vec<Recommendation> = Vec::new();
    loop {
        // A request whose client has gone is not scored further: after a burst of timed-out
        // requests the scorer would otherwise spend whole batches on answers nobody reads.
        // Each job is asked once: a client may leave between two checks, and the front job's
        // scored lists must go with it, never to the next job.
        let mut kept = VecDeque::with_capacity(jobs.len());
        for (n, job) in jobs.drain(..).enumerate() {
            if job.abandoned() {
                metrics.abandoned.inc();
                if n == 0 {
                    front.clear();
                }
            } else {
                kept.push_back(job);
            }
        }
        jobs = kept;
        answer_complete(&mut jobs, &mut front);
        if jobs.is_empty() {
            return;
        }
        // Pass by pass, answering each request as soon as its users are scored: with one user
        // per pass (NeuMF at ML-20m's size), the first request of a batch of 8 waits one pass, not 8.
        let mut pass = Vec::with_capacity(per_pass);
        for (n, job) in jobs.iter().enumerate() {
            let users = &recommend_users(job)[if n == 0 { front.len() } else { 0 }..];
            pass.extend_from_slice(&users[..users.len().min(per_pass - pass.len())]);
            if pass.len() == per_pass {
                break;
            }
        }
        match catch_unwind(AssertUnwindSafe(|| scorer.recommend(&pass, k_max, include_seen))) {
            Ok(lists) if lists.len() != pass.len() => {
                tracing::error!("recommending for {} users returned {} lists", pass.len(), lists.len());
                for job in jobs {
                    job.fail(internal("the model returned fewer lists than users"));
                }
                return;
            }
            Ok(lists) => {
                for list in lists {
                    front.push(list);
                    answer_complete(&mut jobs, &mut front);
                }
            }
            Err(panic) => {
                tracing::error!("recommending for {} users panicked: {:?}", pass.len(), panic.downcast_ref::<String>());
                for job in jobs {
                    job.fail(internal("the model panicked"));
                }
                return;
            }
        }
    }
}

/// A recommendation job's users (none for another kind of job).
fn recommend_users(job: &Job) -> &[i64] {
    match &job.work {
        Work::Recommend { users, .. } => users,
        _ => &[],
    }
}

/// Answers the front jobs whose users are all scored (`front` holds the front job's lists), each
/// list cut to the job's own `k`.
fn answer_complete(jobs: &mut VecDeque<Job>, front: &mut Vec<Recommendation>) {
    while jobs.front().is_some_and(|j| recommend_users(j).len() == front.len()) {
        if let Some(Job { work: Work::Recommend { k, reply, .. }, .. }) = jobs.pop_front() {
            let mine = std::mem::take(front)
                .into_iter()
                .map(|mut r| {
                    r.items.truncate(k);
                    r
                })
                .collect();
            let _ = reply.send(Ok(mine));
        }
    }
}

fn score_group(group: Vec<Job>, model: &LoadedModel) {
    let (mut all_users, mut all_items) = (Vec::new(), Vec::new());
    for job in &group {
        if let Work::Score { users, items, .. } = &job.work {
            all_users.extend_from_slice(users);
            all_items.extend_from_slice(items);
        }
    }
    let result = catch_unwind(AssertUnwindSafe(|| model.scorer().score_pairs(&all_users, &all_items)));
    let scores = match result {
        Ok(Ok(scores)) => scores,
        Ok(Err(e)) => {
            for job in group {
                job.fail(ApiError::bad_request(e.to_string()));
            }
            return;
        }
        Err(_) => {
            tracing::error!("scoring {} pairs panicked", all_users.len());
            for job in group {
                job.fail(internal("the model panicked"));
            }
            return;
        }
    };
    let mut at = 0;
    for job in group {
        if let Work::Score { users, reply, .. } = job.work {
            let mine = scores.get(at..at + users.len()).map(<[f32]>::to_vec);
            let _ = reply.send(mine.ok_or_else(|| internal("the model returned fewer scores than pairs")));
            at += users.len();
        }
    }
}

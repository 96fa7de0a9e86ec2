//! The HTTP routes: parsing and checking what a request asks, queueing it for the scorer, and
//! writing the answer. Every failure is an [`ApiError`] (JSON, a 4xx that says what to fix).

use crate::batcher::{Job, Work};
use crate::{journal, ApiError, Service, State};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State as Shared};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use inference::{RawId, Recommendation};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

/// The page at `/`: one static file, no build step.
const PAGE: &str = include_str!("page.html");

pub(crate) fn router(state: Arc<State>) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model_info))
        .route("/v1/users", get(list_users))
        .route("/v1/users/{user}", get(user_history))
        .route("/v1/users/{user}/recommendations", get(recommend_one))
        .route("/v1/users/{user}/interactions", post(record_interactions))
        .route("/v1/recommendations", post(recommend_many))
        .route("/v1/recommendations/for-history", post(recommend_for_history))
        .route("/v1/scores", post(scores))
        .route("/v1/admin/reload", post(reload))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        // Gzip only bodies over 1 KiB: a top-10 answer (~370 bytes) would shrink by ~190 bytes, less
        // than its headers, for ~8 us of deflate (3.5% of the CPU at MF's saturation).
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))))
        .with_state(state)
}

/// Counts every answer by route and status, and times it.
async fn record(Shared(s): Shared<Arc<State>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    s.metrics.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    s.metrics.latency.with_label_values(&[route.as_str()]).observe(start.elapsed().as_secs_f64());
    response
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(Shared(s): Shared<Arc<State>>) -> Result<Json<Value>, ApiError> {
    if !s.batcher.alive() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the scorer has stopped; the server needs a restart",
        ));
    }
    match s.ready.load(Ordering::SeqCst) {
        true => Ok(Json(serde_json::json!({"ready": true, "model_version": s.model().info.version}))),
        false => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down: finishing the requests in flight")),
    }
}

async fn metrics(Shared(s): Shared<Arc<State>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn model_info(Shared(s): Shared<Arc<State>>) -> Json<crate::ModelInfo> {
    Json(s.model().info.clone())
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; the routes are GET /v1/users/{{user}}/recommendations, POST /v1/recommendations, POST /v1/recommendations/for-history, POST /v1/users/{{user}}/interactions, POST /v1/scores, GET /v1/users, GET /v1/users/{{user}}, GET /v1/model, GET /healthz, GET /readyz, GET /metrics and GET / (a page)",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

// ---------------------------------------------------------------------------------------------
// Reading requests

/// An id as JSON gives it (a number or a string), as the text a raw-id lookup takes.
fn id_text(v: &Value, what: &str) -> Result<String, ApiError> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(ApiError::bad_request(format!("{what} must be a number or a string, not {other}"))),
    }
}

fn user_of(s: &State, raw: &str) -> Result<i64, ApiError> {
    s.catalog.user(raw).ok_or_else(|| unknown_user(raw))
}

fn unknown_user(raw: &str) -> ApiError {
    ApiError::not_found(format!(
        "user {raw} is not in the dataset (it had no ratings when the dataset was prepared) and has no recorded interactions; POST /v1/recommendations/for-history recommends from a list of items"
    ))
}

fn item_of(s: &State, raw: &str) -> Result<i64, ApiError> {
    s.catalog.item(raw).ok_or_else(|| ApiError::not_found(format!("item {raw} is not in the dataset")))
}

fn body_json(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Value, ApiError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (ncf-serve --max-body-bytes); send fewer users or pairs per request"),
        ),
        status => ApiError::new(status, format!("the request body could not be read: {}", r.body_text())),
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn no_unknown_keys<'a>(given: impl Iterator<Item = &'a String>, known: &[&str], what: &str) -> Result<(), ApiError> {
    for key in given {
        if !known.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("unknown {what} `{key}`; known: {}", known.join(", "))));
        }
    }
    Ok(())
}

fn parse_k(v: Option<&Value>, s: &State) -> Result<usize, ApiError> {
    let max = s.limits.max_k;
    match v {
        None => Ok(10.min(max)),
        Some(v) => {
            let k = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(t) => t.trim().parse::<u64>().ok(),
                _ => None,
            };
            k.filter(|&k| (1..=max as u64).contains(&k))
                .map(|k| k as usize)
                .ok_or_else(|| ApiError::bad_request(format!("k must be an integer from 1 to {max}; got {v}")))
        }
    }
}

fn parse_bool(v: Option<&Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match v {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(t)) if matches!(t.as_str(), "true" | "1") => Ok(true),
        Some(Value::String(t)) if matches!(t.as_str(), "false" | "0") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("{name} must be true or false; got {other}"))),
    }
}

fn query(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, Value>, ApiError> {
    let Query(q) = q.map_err(|r| ApiError::bad_request(format!("the query string: {}", r.body_text())))?;
    Ok(q.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(p)| p).map_err(|r| ApiError::bad_request(format!("the path: {}", r.body_text())))
}

// ---------------------------------------------------------------------------------------------
// Answers

/// An item in an answer: its raw id, and its title and genres when the service has names.
#[derive(Serialize)]
struct ItemOut<'a> {
    item: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    genres: Option<&'a str>,
}

fn item_out<'a>(s: &'a State, item: &RawId, score: Option<f32>) -> ItemOut<'a> {
    let raw = item.to_string();
    let names = s.names.as_ref();
    ItemOut {
        item: item.json(),
        score,
        title: names.and_then(|n| n.title(&raw)),
        genres: names.and_then(|n| n.genres(&raw)).filter(|g| !g.is_empty()),
    }
}

#[derive(Serialize)]
struct UserRecommendations<'a> {
    user: Value,
    items: Vec<ItemOut<'a>>,
}

fn recommendations_out<'a>(s: &'a State, r: &Recommendation) -> UserRecommendations<'a> {
    UserRecommendations {
        user: r.user.json(),
        items: r.items.iter().map(|(item, score)| item_out(s, item, Some(*score))).collect(),
    }
}

/// Queues a job and waits for its answer, within the request's deadline.
async fn ask<T>(
    s: &State,
    work: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> Work,
) -> Result<(T, u64), ApiError> {
    let model = s.model();
    let version = model.info.version;
    let (reply, answer) = oneshot::channel();
    let deadline = Instant::now() + s.limits.request_deadline;
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    s.batcher.submit(Job { work: work(reply), model, deadline, started: started.clone() })?;
    match tokio::time::timeout(s.limits.request_deadline, answer).await {
        Ok(Ok(result)) => result.map(|r| (r, version)),
        Ok(Err(_)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the scorer dropped the request")),
        Err(_) if !started.load(Ordering::SeqCst) => Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "waited in the queue past the request deadline of {:?} (the server is overloaded)",
                    s.limits.request_deadline
                ),
            )
        }),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("not scored within the request deadline of {:?}", s.limits.request_deadline),
        )),
    }
}

async fn recommend_one(
    Shared(s): Shared<Arc<State>>,
    user: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = path(user)?;
    let q = query(q)?;
    no_unknown_keys(q.keys(), &["k", "exclude_seen"], "query parameter")?;
    let k = parse_k(q.get("k"), &s)?;
    let exclude_seen = parse_bool(q.get("exclude_seen"), "exclude_seen", true)?;
    // A person with journal events: folded in (new) or refreshed (known) from them.
    if let Some(events) = s.journal_items(&raw) {
        let (items, version) = ask_person(&s, &raw, events, k, exclude_seen).await?;
        return Ok(person_answer(&s, &raw, version, &items));
    }
    let user = user_of(&s, &raw)?;
    let (lists, version) =
        ask(&s, |reply| Work::Recommend { users: vec![user], k, include_seen: !exclude_seen, reply }).await?;
    let list = lists.first().ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no answer"))?;
    #[derive(Serialize)]
    struct Out<'a> {
        model_version: u64,
        #[serde(flatten)]
        list: UserRecommendations<'a>,
    }
    Ok(Json(Out { model_version: version, list: recommendations_out(&s, list) }).into_response())
}

/// The top `k` for a person with journal `events`: a known user refreshed, a new one folded in.
async fn ask_person(
    s: &State,
    raw: &str,
    events: Vec<i64>,
    k: usize,
    exclude_seen: bool,
) -> Result<(Vec<(RawId, f32)>, u64), ApiError> {
    let user = s.catalog.user(raw);
    ask(s, |reply| Work::History { user, items: events, k, exclude_seen, reply }).await
}

/// A person's id in an answer: a trained user's as the dataset writes it, anyone else's as sent.
fn person_json(s: &State, raw: &str) -> Value {
    s.catalog.user(raw).map_or_else(|| Value::String(raw.to_owned()), |u| s.catalog.user_raw_id(u).json())
}

fn person_answer(s: &State, raw: &str, version: u64, items: &[(RawId, f32)]) -> Response {
    #[derive(Serialize)]
    struct Out<'a> {
        model_version: u64,
        user: Value,
        items: Vec<ItemOut<'a>>,
    }
    let user = person_json(s, raw);
    let items = items.iter().map(|(item, score)| item_out(s, item, Some(*score))).collect();
    Json(Out { model_version: version, user, items }).into_response()
}

/// `POST /v1/users/{user}/interactions {"items": [...]}`: records what a person (known or new)
/// just did in the journal, flushed to the disk before the answer, then answers with their
/// refreshed top k. A journal that cannot be written is a 503 and nothing is recorded.
async fn record_interactions(
    Shared(s): Shared<Arc<State>>,
    user: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = path(user)?;
    let q = query(q)?;
    no_unknown_keys(q.keys(), &["k", "exclude_seen"], "query parameter")?;
    let k = parse_k(q.get("k"), &s)?;
    let exclude_seen = parse_bool(q.get("exclude_seen"), "exclude_seen", true)?;
    if s.journal.is_none() {
        return Err(ApiError::not_found(
            "interactions are off: start ncf-serve with --journal DIR, where every acknowledged event is kept",
        ));
    }
    let body = body_json(body, s.limits.max_body_bytes)?;
    let example = "{\"items\": [31, 1029]}";
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object: {example}")));
    };
    no_unknown_keys(body.keys(), &["items"], "key")?;
    let Some(Value::Array(raw_items)) = body.get("items") else {
        return Err(ApiError::bad_request(format!("`items` must be a list of item ids: {example}")));
    };
    if raw_items.is_empty() || raw_items.len() > s.limits.max_pairs_per_request {
        return Err(ApiError::bad_request(format!(
            "`items` holds {} ids; send 1 to {} per request (ncf-serve --max-pairs-per-request)",
            raw_items.len(),
            s.limits.max_pairs_per_request
        )));
    }
    let ids: Vec<String> =
        raw_items.iter().enumerate().map(|(n, v)| id_text(v, &format!("items[{n}]"))).collect::<Result<_, _>>()?;
    if raw.is_empty() || raw.contains(['\n', '\r']) {
        return Err(ApiError::bad_request("a user id must be non-empty text on one line"));
    }
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let events: Vec<journal::Event> =
        ids.iter().map(|item| journal::Event { user: raw.clone(), item: item.clone(), timestamp }).collect();
    // Written and flushed before anything is acknowledged; the state changes only after.
    let write = {
        let events = events.clone();
        let state = s.clone();
        tokio::task::spawn_blocking(move || match state.journal.as_ref() {
            Some(j) => j.append(&events),
            None => Ok(()),
        })
    };
    match write.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!("the journal cannot be written: {e}");
            return Err(ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the journal cannot be written ({e}): nothing was recorded; reads keep working"),
                )
            });
        }
        Err(_) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "writing the journal failed")),
    }
    let (known, unknown): (Vec<&String>, Vec<&String>) = ids.iter().partition(|i| s.catalog.item(i).is_some());
    let all = {
        let mut people = s.people.lock().unwrap_or_else(|e| e.into_inner());
        let list = people.entry(raw.clone()).or_default();
        list.extend(known.iter().filter_map(|i| s.catalog.item(i)));
        list.clone()
    };
    let (items, version) = ask_person(&s, &raw, all, k, exclude_seen).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        model_version: u64,
        user: Value,
        recorded: usize,
        unknown_items: Vec<&'a String>,
        items: Vec<ItemOut<'a>>,
    }
    let user = person_json(&s, &raw);
    let items = items.iter().map(|(item, score)| item_out(&s, item, Some(*score))).collect();
    Ok(Json(Out { model_version: version, user, recorded: events.len(), unknown_items: unknown, items })
        .into_response())
}

async fn recommend_many(
    Shared(s): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_json(body, s.limits.max_body_bytes)?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object: {\"users\": [1, 2], \"k\": 10}"));
    };
    no_unknown_keys(body.keys(), &["users", "k", "exclude_seen"], "key")?;
    let Some(Value::Array(raw)) = body.get("users") else {
        return Err(ApiError::bad_request("`users` must be a list of user ids: {\"users\": [1, 2], \"k\": 10}"));
    };
    if raw.is_empty() || raw.len() > s.limits.max_users_per_request {
        return Err(ApiError::bad_request(format!(
            "`users` holds {} ids; send 1 to {} per request (ncf-serve --max-users-per-request)",
            raw.len(),
            s.limits.max_users_per_request
        )));
    }
    let k = parse_k(body.get("k"), &s)?;
    let exclude_seen = parse_bool(body.get("exclude_seen"), "exclude_seen", true)?;
    let users = raw.iter().map(|v| user_of(&s, &id_text(v, "a user id")?)).collect::<Result<Vec<_>, _>>()?;
    let (lists, version) = ask(&s, |reply| Work::Recommend { users, k, include_seen: !exclude_seen, reply }).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        model_version: u64,
        results: Vec<UserRecommendations<'a>>,
    }
    let results = lists.iter().map(|r| recommendations_out(&s, r)).collect();
    Ok(Json(Out { model_version: version, results }).into_response())
}

/// `POST /v1/recommendations/for-history {"items": [...], "k": 10}`: the top k for a person the
/// model may never have met, given by the items they touched (folded in); items the dataset does
/// not have are listed back, not fatal.
async fn recommend_for_history(
    Shared(s): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_json(body, s.limits.max_body_bytes)?;
    let example = "{\"items\": [1, 31, 1029], \"k\": 10}";
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object: {example}")));
    };
    no_unknown_keys(body.keys(), &["items", "k", "exclude_seen"], "key")?;
    let Some(Value::Array(raw)) = body.get("items") else {
        return Err(ApiError::bad_request(format!("`items` must be a list of item ids (may be empty): {example}")));
    };
    if raw.len() > s.limits.max_pairs_per_request {
        return Err(ApiError::bad_request(format!(
            "`items` holds {} ids; send at most {} per request (ncf-serve --max-pairs-per-request)",
            raw.len(),
            s.limits.max_pairs_per_request
        )));
    }
    let k = parse_k(body.get("k"), &s)?;
    let exclude_seen = parse_bool(body.get("exclude_seen"), "exclude_seen", true)?;
    let (mut items, mut unknown) = (Vec::with_capacity(raw.len()), Vec::new());
    for (n, v) in raw.iter().enumerate() {
        let id = id_text(v, &format!("items[{n}]"))?;
        match s.catalog.item(&id) {
            Some(i) => items.push(i),
            None => unknown.push(v.clone()),
        }
    }
    let known = items.len();
    let (list, version) = ask(&s, |reply| Work::History { user: None, items, k, exclude_seen, reply }).await?;
    #[derive(Serialize)]
    struct Out<'a> {
        model_version: u64,
        items: Vec<ItemOut<'a>>,
        history_items_used: usize,
        unknown_items: Vec<Value>,
    }
    let items = list.iter().map(|(item, score)| item_out(&s, item, Some(*score))).collect();
    Ok(Json(Out { model_version: version, items, history_items_used: known, unknown_items: unknown }).into_response())
}

async fn scores(Shared(s): Shared<Arc<State>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body_json(body, s.limits.max_body_bytes)?;
    let example = "{\"pairs\": [{\"user\": 1, \"item\": 31}]}";
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object: {example}")));
    };
    no_unknown_keys(body.keys(), &["pairs"], "key")?;
    let Some(Value::Array(pairs)) = body.get("pairs") else {
        return Err(ApiError::bad_request(format!("`pairs` must be a list of {{user, item}} objects: {example}")));
    };
    if pairs.is_empty() || pairs.len() > s.limits.max_pairs_per_request {
        return Err(ApiError::bad_request(format!(
            "`pairs` holds {} pairs; send 1 to {} per request (ncf-serve --max-pairs-per-request)",
            pairs.len(),
            s.limits.max_pairs_per_request
        )));
    }
    let (mut users, mut items) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
    for (n, pair) in pairs.iter().enumerate() {
        let (Some(u), Some(i)) = (pair.get("user"), pair.get("item")) else {
            return Err(ApiError::bad_request(format!("pairs[{n}] needs a user and an item: {example}")));
        };
        users.push(user_of(&s, &id_text(u, &format!("pairs[{n}].user"))?)?);
        items.push(item_of(&s, &id_text(i, &format!("pairs[{n}].item"))?)?);
    }
    let (probabilities, version) =
        ask(&s, |reply| Work::Score { users: users.clone(), items: items.clone(), reply }).await?;
    #[derive(Serialize)]
    struct Pair {
        user: Value,
        item: Value,
        score: f32,
    }
    #[derive(Serialize)]
    struct Out {
        model_version: u64,
        scores: Vec<Pair>,
    }
    let scores = users
        .iter()
        .zip(&items)
        .zip(probabilities)
        .map(|((&u, &i), score)| Pair {
            user: s.catalog.user_raw_id(u).json(),
            item: s.catalog.item_raw_id(i).json(),
            score,
        })
        .collect();
    Ok(Json(Out { model_version: version, scores }).into_response())
}

async fn list_users(
    Shared(s): Shared<Arc<State>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    no_unknown_keys(q.keys(), &["offset", "limit"], "query parameter")?;
    let number =
        |name: &str, default: u64, max: u64| -> Result<u64, ApiError> {
            match q.get(name).and_then(Value::as_str) {
                None => Ok(default),
                Some(t) => t.trim().parse::<u64>().ok().filter(|&n| n <= max).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be an integer from 0 to {max}; got `{t}`"))
                }),
            }
        };
    let total = s.catalog.users().max(0) as u64;
    let offset = number("offset", 0, total)?;
    let limit = number("limit", 50, 1000)?;
    #[derive(Serialize)]
    struct UserOut {
        user: Value,
        seen: usize,
    }
    let users: Vec<UserOut> = (offset..(offset + limit).min(total))
        .map(|u| UserOut { user: s.catalog.user_raw_id(u as i64).json(), seen: s.catalog.seen(u as i64).len() })
        .collect();
    Ok(Json(serde_json::json!({"total": total, "offset": offset, "users": users})).into_response())
}

async fn user_history(
    Shared(s): Shared<Arc<State>>,
    user: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = path(user)?;
    // Train items, then what the journal recorded since (a new person has only the latter).
    let events = s.journal_items(&raw);
    let (user_json, train) = match (s.catalog.user(&raw), &events) {
        (Some(u), _) => (s.catalog.user_raw_id(u).json(), s.catalog.seen(u).to_vec()),
        (None, Some(_)) => (Value::String(raw.clone()), Vec::new()),
        (None, None) => return Err(unknown_user(&raw)),
    };
    let recorded = events.unwrap_or_default();
    let seen: Vec<ItemOut> =
        train.iter().chain(&recorded).map(|&i| item_out(&s, &s.catalog.item_raw_id(i), None)).collect();
    #[derive(Serialize)]
    struct Out<'a> {
        user: Value,
        seen_count: usize,
        recorded_count: usize,
        seen: Vec<ItemOut<'a>>,
    }
    Ok(Json(Out { user: user_json, seen_count: seen.len(), recorded_count: recorded.len(), seen }).into_response())
}

// ---------------------------------------------------------------------------------------------
// Admin

/// Whether `headers` carry the admin token (compared in time independent of where they differ).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn reload(
    Shared(s): Shared<Arc<State>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(token) = s.admin_token.as_deref() else {
        return Err(ApiError::not_found(
            "the admin routes are off: start ncf-serve with --admin-token-file FILE or NCF_SERVE_ADMIN_TOKEN set",
        ));
    };
    if !authorized(&headers, token) {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "a wrong or missing admin token (Authorization: Bearer TOKEN)")
                .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return Ok(response);
    }
    let body = match &body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Value::Object(Default::default()),
        _ => body_json(body, s.limits.max_body_bytes)?,
    };
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("the body must be empty or {\"checkpoint\": \"path/to/model.pth\"}"));
    };
    no_unknown_keys(body.keys(), &["checkpoint"], "key")?;
    let checkpoint = match body.get("checkpoint") {
        None => None,
        Some(Value::String(p)) => Some(std::path::PathBuf::from(p)),
        Some(other) => return Err(ApiError::bad_request(format!("checkpoint must be a path (a string); got {other}"))),
    };
    let serving = s.model().info.clone();
    match (Service { state: s.clone() }).reload_from(checkpoint).await {
        Ok((previous, info)) => {
            Ok(Json(serde_json::json!({"reloaded": true, "previous_version": previous.version, "model": info}))
                .into_response())
        }
        Err(crate::ServeError::ReloadBusy) => {
            Err(ApiError::new(StatusCode::CONFLICT, "another reload is under way; try again when it ends"))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "reload refused: {e}; still serving version {} ({} from {}, sha256 {})",
                serving.version,
                serving.kind,
                serving.checkpoint.display(),
                serving.sha256
            ),
        )),
    }
}

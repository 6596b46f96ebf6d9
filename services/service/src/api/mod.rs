//! The HTTP API: router, shared state, handlers, error answers.
//!
//! TODO(6): your API routes. Every route is listed in [`router`] and in `openapi.json`.

mod auth;
mod debug;
mod devices;
mod error;
mod ingest;
mod limits;
mod reads;

use auth::*;
use devices::*;
pub use error::ApiError;
use error::*;
use ingest::*;
use limits::*;
pub use limits::{
    MAX_HEADER_BYTES, MAX_HEADERS, MAX_INGEST_ENTRIES, MAX_URI_BYTES, UnauthenticatedLimit,
};
use reads::*;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{
    DeviceBatch, DeviceOutcome, IngestBatch, IngestOutcome, MultiIngest, MultiIngestOutcome,
    NewReading, ReadingQuery, RegisterRequest, StoredReading, now_millis, query_int,
};
use crate::store::{DynStore, NewDevice, StoreError, token_hash};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest as _, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The content type of a body of concatenated protocol frames.
pub const FRAMES_CONTENT_TYPE: &str = "application/x-beacon-frames";

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The storage backend, chosen at run time (dynamic dispatch, see `store::DynStore`).
    pub store: Arc<dyn DynStore>,
    /// Device id -> ingest token hash (`store::token_hash`) and when it was read, loaded at
    /// start-up and kept in step with registrations, so authorising an ingest never touches a
    /// store this process owns alone. With a shared store (PostgreSQL, several replicas) it is
    /// a cache: a device it does not know is read from the database at once; an entry is
    /// dropped when the store says that device's token changed anywhere
    /// ([`crate::store::Store::attach_tokens`]: NOTIFY, milliseconds), and trusted for at
    /// most `--token-cache-secs` in any case.
    tokens: Arc<RwLock<TokenCache>>,
    /// The configuration.
    pub config: Config,
    /// Metrics.
    pub metrics: Metrics,
    /// Newly stored readings, one message per ingest, for the SSE stream.
    events: broadcast::Sender<Arc<[StoredReading]>>,
    /// Cancelled when shutdown begins: ends the open SSE streams so the server can drain.
    pub shutdown: CancellationToken,
    /// Requests without a valid token in flight, per peer address.
    unauthenticated: UnauthenticatedLimit,
    /// The same for the multi-device ingest (tokens in the body), counted apart.
    unauthenticated_ingest: UnauthenticatedLimit,
}

impl std::fmt::Debug for dyn DynStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn DynStore")
    }
}

/// The token map and its generation, bumped by every invalidation: a token read from the
/// database while an invalidation came in is used once, not cached (it may be the old one).
#[derive(Debug, Default)]
struct TokenCache {
    map: HashMap<u32, (Arc<str>, Instant)>,
    generation: u64,
}

impl AppState {
    /// Builds the state, loading the registered devices from the store.
    pub async fn new(config: Config, store: Arc<dyn DynStore>) -> Result<Arc<Self>, StoreError> {
        let devices = store.devices().await?;
        let now = Instant::now();
        let map = devices
            .into_iter()
            .map(|d| (d.device.id, (Arc::from(d.token), now)))
            .collect();
        let tokens = Arc::new(RwLock::new(TokenCache { map, generation: 0 }));
        // A shared store says which device's token changed on any replica (or `None`: it
        // may have missed some, e.g. its listener reconnected).
        let cache = Arc::clone(&tokens);
        store.attach_tokens(Arc::new(move |id: Option<u32>| {
            if let Ok(mut c) = cache.write() {
                c.generation += 1;
                match id {
                    Some(id) => {
                        c.map.remove(&id);
                    }
                    None => c.map.clear(),
                }
            }
        }));
        // Bounded: a slow SSE client holds at most this many batches, then gets `lagged`.
        let (events, _) = broadcast::channel(64);
        // A shared store publishes here what the other replicas commit.
        store.attach_stream(events.clone());
        Ok(Arc::new(Self {
            store,
            tokens,
            config,
            metrics: Metrics::default(),
            events,
            shutdown: CancellationToken::new(),
            unauthenticated: UnauthenticatedLimit::default(),
            unauthenticated_ingest: UnauthenticatedLimit::default(),
        }))
    }

    /// The cached entry and the cache's generation.
    fn cached_token(&self, id: u32) -> (Option<(Arc<str>, Instant)>, u64) {
        // Send across .await: this std RwLock guard lives only inside this non-async function,
        // so it can never be held across an .await (which would make the handler's future
        // !Send and fail to compile under axum; see ASYNC.md and tests/ui/).
        self.tokens
            .read()
            .map(|t| (t.map.get(&id).cloned(), t.generation))
            .unwrap_or_default()
    }

    /// The device's token hash: from the map, or (shared store, entry missing, invalidated or
    /// older than `--token-cache-secs`) from the store.
    async fn token_of(&self, id: u32) -> Result<Option<Arc<str>>, StoreError> {
        let (cached, generation) = self.cached_token(id);
        if !self.store.shared() {
            return Ok(cached.map(|(t, _)| t));
        }
        if let Some((t, at)) = cached
            && at.elapsed().as_secs() < self.config.token_cache_secs
        {
            return Ok(Some(t));
        }
        let read = self.store.device_token(id).await?;
        if let Ok(mut c) = self.tokens.write() {
            // An invalidation since the read began: the answer may predate it; use it for
            // this request only.
            if c.generation == generation {
                match &read {
                    Some(t) => {
                        c.map.insert(id, (Arc::from(t.as_str()), Instant::now()));
                    }
                    None => {
                        c.map.remove(&id);
                    }
                }
            }
        }
        Ok(read.map(Arc::from))
    }

    fn remember(&self, id: u32, token_hash: &str) {
        if let Ok(mut t) = self.tokens.write() {
            t.map.insert(id, (Arc::from(token_hash), Instant::now()));
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such path: {}; the API is described at /openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} is not allowed on {}; see /openapi.json for its methods",
            uri.path()
        ),
    )
}

/// Request ids: a process-wide counter (cheaper than a UUID, unique per process run).
#[derive(Debug, Clone, Default)]
struct CounterId(Arc<AtomicU64>);

impl MakeRequestId for CounterId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Relaxed) + 1;
        Some(RequestId::new(HeaderValue::from(n)))
    }
}

/// The application: every route and layer. Tests drive it in-process with `oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout();
    let api = Router::new()
        .route("/api/v1/devices", post(register).get(list_devices))
        .route(
            "/api/v1/devices/{id}/readings",
            post(ingest).get(query_readings),
        )
        .route("/api/v1/readings", post(ingest_many))
        .route("/api/v1/latest", get(latest))
        .route("/api/v1/stream", get(stream))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .merge(debug::routes(&state.config))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies beyond the limit get 413 from the `Bytes` extractor, or at once when their
        // Content-Length says so.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_body, refuse_oversized))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            limit_unauthenticated,
        ))
        .layer(middleware::from_fn(limit_head))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state);
    let x_request_id = header::HeaderName::from_static("x-request-id");
    api.layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                CounterId::default(),
            ))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", id, method = %req.method(), uri = %req.uri())
                }),
            )
            .layer(PropagateRequestIdLayer::new(x_request_id))
            // The timeout's own 408 has an empty body: give it the JSON error shape.
            .layer(middleware::map_response_with_state(
                timeout.as_secs(),
                json_timeout,
            ))
            // Times the response head only: an open SSE stream is not cut off.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                timeout,
            ))
            // Queries and the dashboard compress well; SSE and small bodies are skipped.
            .layer(CompressionLayer::new()),
    )
}

/// The timeout layer's own 408 has an empty body: give it the JSON error shape.
async fn json_timeout<B>(State(secs): State<u64>, r: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if r.status() == StatusCode::REQUEST_TIMEOUT && !r.headers().contains_key(header::CONTENT_TYPE)
    {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request not answered within {secs}s (--request-timeout-secs); retry it (ingest is idempotent)"
            ),
        )
        .into_response();
    }
    r.map(axum::body::Body::new)
}

/// Counts requests by route and status.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    state.metrics.request(
        route.as_deref().unwrap_or("unmatched"),
        method.as_str(),
        response.status().as_u16(),
    );
    response
}
/// `GET /readyz`: 200 when the store takes writes and shutdown has not begun.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        ));
    }
    state.store.ready().await?;
    Ok("ready\n")
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("../dashboard.html"))
}

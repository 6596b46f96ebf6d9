//! The HTTP API: router, shared state, handlers, error answers.
//!
//! TODO(6): your API routes. Every route is listed in [`router`] and in `openapi.json`.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{
    IngestBatch, IngestOutcome, NewReading, ReadingQuery, RegisterRequest, StoredReading,
    now_millis, query_int,
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

/// With a shared store (several replicas), how long a token check may use the token read
/// from the database before: a device registered on another replica is accepted at once (a
/// miss reads the database), and a token changed or deleted in the database stops working
/// on every replica within this bound. TODO(7): shorten it, or add LISTEN/NOTIFY invalidation.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The storage backend, chosen at run time (dynamic dispatch, see `store::DynStore`).
    pub store: Arc<dyn DynStore>,
    /// Device id -> ingest token hash (`store::token_hash`) and when it was read, loaded at
    /// start-up and kept in step with registrations, so authorising an ingest never touches a
    /// store this process owns alone. With a shared store (PostgreSQL, several replicas) an
    /// entry is trusted for [`TOKEN_CACHE_TTL`], then read again.
    tokens: RwLock<HashMap<u32, (Arc<str>, Instant)>>,
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
}

impl std::fmt::Debug for dyn DynStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn DynStore")
    }
}

impl AppState {
    /// Builds the state, loading the registered devices from the store.
    pub async fn new(config: Config, store: Arc<dyn DynStore>) -> Result<Arc<Self>, StoreError> {
        let devices = store.devices().await?;
        let now = Instant::now();
        let tokens = devices
            .into_iter()
            .map(|d| (d.device.id, (Arc::from(d.token), now)))
            .collect();
        // Bounded: a slow SSE client holds at most this many batches, then gets `lagged`.
        let (events, _) = broadcast::channel(64);
        // A shared store publishes here what the other replicas commit.
        store.attach_stream(events.clone());
        Ok(Arc::new(Self {
            store,
            tokens: RwLock::new(tokens),
            config,
            metrics: Metrics::default(),
            events,
            shutdown: CancellationToken::new(),
            unauthenticated: UnauthenticatedLimit::default(),
        }))
    }

    fn cached_token(&self, id: u32) -> Option<(Arc<str>, Instant)> {
        // Send across .await: this std RwLock guard lives only inside this non-async function,
        // so it can never be held across an .await (which would make the handler's future
        // !Send and fail to compile under axum; see ASYNC.md and tests/ui/).
        self.tokens.read().ok().and_then(|t| t.get(&id).cloned())
    }

    /// The device's token hash: from the map, or (shared store, entry missing or older than
    /// [`TOKEN_CACHE_TTL`]) from the store.
    async fn token_of(&self, id: u32) -> Result<Option<Arc<str>>, StoreError> {
        let cached = self.cached_token(id);
        if !self.store.shared() {
            return Ok(cached.map(|(t, _)| t));
        }
        if let Some((t, at)) = cached
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(t));
        }
        match self.store.device_token(id).await? {
            Some(t) => {
                self.remember(id, &t);
                Ok(Some(Arc::from(t)))
            }
            None => {
                if let Ok(mut t) = self.tokens.write() {
                    t.remove(&id);
                }
                Ok(None)
            }
        }
    }

    fn remember(&self, id: u32, token_hash: &str) {
        if let Ok(mut t) = self.tokens.write() {
            t.insert(id, (Arc::from(token_hash), Instant::now()));
        }
    }
}

/// An error answer: a status and a JSON body `{"error": "...", "field"?: "...", "offset"?: n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short, lowercase, says what to do next.
    pub message: String,
    /// The JSON path of the offending field, when there is one.
    pub field: Option<String>,
    /// The byte offset of the offending frame, for frame bodies.
    pub offset: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            offset: None,
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The contract's error shape (`beacon_api::ErrorBody`, `Error` in openapi.json).
        let body = crate::model::ErrorBody {
            error: self.message,
            field: self.field,
            offset: self.offset,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            StoreError::Internal(m) => {
                tracing::error!("{m}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal store error; see the service log",
                )
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(format!(
            "bad path: {}; device ids are integers 0..=4294967295",
            e.body_text()
        ))
        .field("id")
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large (--max-body-bytes); split the batch".to_owned()
        } else {
            format!("cannot read the request body: {}", e.body_text())
        };
        Self::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        let text = e.body_text();
        let err = Self::bad_request(format!("bad query string: {text}"));
        match query_field(&text) {
            Some(field) => err.field(field),
            None => err,
        }
    }
}

/// The parameter a query-string error is about: axum reports `<field>: <problem>`, or
/// ``unknown field `x`, expected ...``.
fn query_field(text: &str) -> Option<String> {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    if let Some(rest) = detail.strip_prefix("unknown field `") {
        return rest.split_once('`').map(|(f, _)| f.to_owned());
    }
    let (field, _) = detail.split_once(": ")?;
    (!field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then(|| field.to_owned())
}

/// The bare media type of a request (`application/json`), lowercase; empty when absent.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Answers 413 at once when `Content-Length` alone says the body is too large, instead of
/// waiting for a body that may never come (and ending in a 408).
async fn refuse_oversized(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > u64::try_from(max).unwrap_or(u64::MAX) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: Content-Length {n} is over the limit of {max} bytes (--max-body-bytes); split the batch"
            ),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Longest request target (path and query) answered; longer ones get 414 with the JSON error.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values together; more get 431 with the JSON error.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields; more get 431 with the JSON error.
pub const MAX_HEADERS: usize = 100;

/// 414 and 431 with the JSON error shape. hyper itself answers these (with an empty body) only
/// past its own, higher limits (`server::HYPER_MAX_HEADERS`, `server::HYPER_MAX_BUF`), which
/// are set so that these checks see every request head a client could reasonably send.
async fn limit_head(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "request target of {uri} bytes is over the limit of {MAX_URI_BYTES}; send fewer or shorter query parameters"
            ),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} header fields of {bytes} bytes; the limits are {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes: send fewer or smaller headers",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Requests in flight without a valid token, per peer address (issue 14): open registration,
/// open reads and everything refused with 401/404 cost the service work that no credential
/// paid for, so one address may have at most `--max-unauthenticated-per-ip` of them at once;
/// beyond it, 429 with `Retry-After`. Requests with a valid token (provisioning, read, or the
/// device's own for its ingest) and the probes (`/healthz`, `/readyz`) are not counted.
#[derive(Debug, Default)]
pub struct UnauthenticatedLimit {
    in_flight: std::sync::Mutex<HashMap<Option<std::net::IpAddr>, usize>>,
}

struct UnauthenticatedSlot<'a> {
    limit: &'a UnauthenticatedLimit,
    peer: Option<std::net::IpAddr>,
}

impl UnauthenticatedLimit {
    fn try_take(
        &self,
        peer: Option<std::net::IpAddr>,
        max: usize,
    ) -> Option<UnauthenticatedSlot<'_>> {
        let mut map = self.in_flight.lock().ok()?;
        let n = map.entry(peer).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(UnauthenticatedSlot { limit: self, peer })
    }
}

impl Drop for UnauthenticatedSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limit.in_flight.lock()
            && let Some(n) = map.get_mut(&self.peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Whether the request carries a token the service accepts for it, from its headers alone.
fn carries_valid_token(state: &AppState, req: &Request) -> bool {
    let Some(presented) = bearer(req.headers()) else {
        return false;
    };
    let config_tokens = [
        state.config.provisioning_token.as_deref(),
        state.config.read_token.as_deref(),
    ];
    let known = config_tokens
        .iter()
        .flatten()
        .fold(false, |ok, t| ok | same_token(presented, t));
    if known {
        return true;
    }
    // A device's own token, on its ingest URL.
    let device = req
        .uri()
        .path()
        .strip_prefix("/api/v1/devices/")
        .and_then(|rest| rest.strip_suffix("/readings"))
        .and_then(|id| id.parse::<u32>().ok());
    // The in-memory map only (no store read per request): with a shared store a token not yet
    // cached counts as unauthenticated work once, then the handler's check caches it.
    device
        .and_then(|id| state.cached_token(id))
        .is_some_and(|(expected, _)| same_token(&token_hash(presented), &expected))
}

async fn limit_unauthenticated(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" || carries_valid_token(&state, &req) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let max = state.config.max_unauthenticated_per_ip.max(1);
    let Some(_slot) = state.unauthenticated.try_take(peer, max) else {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests without a valid token in flight from {} (limit {max}, --max-unauthenticated-per-ip); wait for them to finish, or send a token",
                peer.map_or_else(|| "this client".to_owned(), |p| p.to_string())
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    };
    next.run(req).await
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
        .route("/api/v1/latest", get(latest))
        .route("/api/v1/stream", get(stream))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .merge(crate::debug::routes(&state.config))
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without an early exit, so response timing does not leak the token's prefix.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn new_token() -> Result<String, ApiError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32]; // 256 bits: a hash of it is as good as a slow password hash
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot generate a token: {e}"),
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let err = ApiError::bad_request(format!("invalid json: {}", e.inner()));
        if path == "." { err } else { err.field(path) }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid json: {e}")))?;
    Ok(value)
}

fn validate_token(token: &str) -> Result<(), ApiError> {
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "token must be 1..=256 printable ascii characters, no spaces",
        )
        .field("token"));
    }
    Ok(())
}

/// `POST /api/v1/devices`: register a device (idempotent with an explicit id and token).
async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.provisioning_token
        && !bearer(&headers).is_some_and(|t| same_token(t, expected))
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "registration needs the provisioning token: send `Authorization: Bearer <BEACON_PROVISIONING_TOKEN>`",
        ));
    }
    // Like ingest: a body must say it is JSON. Only a request without a body (the service
    // picks the id and the token) may leave the content type out.
    let media = media_type(&headers);
    let unsupported = |media: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {media:?}; send `Content-Type: application/json` with a body (or no body at all)"
            ),
        )
    };
    if !media.is_empty() && media != "application/json" {
        return Err(unsupported(&media));
    }
    // Read only now, after the provisioning token was checked from the headers.
    let body = Bytes::from_request(request, &state).await?;
    let req: RegisterRequest = if body.is_empty() {
        RegisterRequest::default()
    } else if media.is_empty() {
        return Err(unsupported(""));
    } else {
        parse_json(&body)?
    };
    let (token, generated) = match req.token {
        Some(t) => {
            validate_token(&t)?;
            (t, false)
        }
        None => (new_token()?, true),
    };
    let hash = token_hash(&token);
    let mut registered = state
        .store
        .register(NewDevice {
            id: req.id,
            token: hash.clone(),
            name: req.name,
        })
        .await?;
    state.remember(registered.device.id, &hash);
    // The only time a token leaves the service: one it generated, in the answer that created
    // it (it keeps the hash only). A token the client chose is never echoed.
    if generated {
        registered.token = Some(token);
    }
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registered)).into_response())
}

/// `GET /api/v1/devices`.
async fn list_devices(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let started = Instant::now();
    let devices = state.store.devices().await?;
    state.metrics.store_read_latency(started.elapsed());
    let devices: Vec<_> = devices.into_iter().map(|d| d.device).collect();
    Ok(Json(serde_json::json!({ "devices": devices })).into_response())
}

/// What [`authorize`] found: a known device with the right token, or (under
/// `--auto-register`) an unknown one to register once its request turned out valid.
enum Authorized {
    Known,
    Register(String),
}

/// Checks the bearer token of an ingest, from the headers alone (before any body is read).
/// Under `--auto-register` an unknown device is not registered here: the caller registers it
/// only after the whole request was found valid, so a rejected request claims nothing.
async fn authorize(state: &AppState, id: u32, headers: &HeaderMap) -> Result<Authorized, ApiError> {
    let Some(presented) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer <device token>`",
        ));
    };
    match state.token_of(id).await? {
        Some(expected) if same_token(&token_hash(presented), &expected) => Ok(Authorized::Known),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("wrong token for device {id}"),
        )),
        // Never together with a provisioning token (refused at start-up by `Config::check`;
        // checked here too for states built without it): trust on first use would let anyone
        // claim an id the operator means to provision.
        None if state.config.auto_register && state.config.provisioning_token.is_none() => {
            validate_token(presented)?;
            Ok(Authorized::Register(presented.to_owned()))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown device {id}; register it first with POST /api/v1/devices"),
        )),
    }
}

/// Registers a device under `--auto-register` with the token it presented.
async fn auto_register(state: &AppState, id: u32, token: String) -> Result<(), ApiError> {
    let hash = token_hash(&token);
    let device = NewDevice {
        id: Some(id),
        token: hash.clone(),
        name: None,
    };
    state.store.register(device).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("wrong token for device {id}"),
        ),
        e => e.into(),
    })?;
    state.remember(id, &hash);
    Ok(())
}

/// Reads (device list, readings, latest, stream) are open unless the service runs with
/// `--provisioning-token` or `--read-token`; then they need one of the two as a bearer token.
fn authorize_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let accepted = [
        state.config.read_token.as_deref(),
        state.config.provisioning_token.as_deref(),
    ];
    if accepted.iter().all(Option::is_none) {
        return Ok(());
    }
    let presented = bearer(headers);
    // Both compared, always: timing says nothing about which one (if any) matched.
    let ok = accepted.iter().fold(false, |ok, expected| {
        let hit = matches!((presented, expected), (Some(p), Some(e)) if same_token(p, e));
        ok | hit
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reads need a token: send `Authorization: Bearer <BEACON_READ_TOKEN or BEACON_PROVISIONING_TOKEN>`",
        ))
    }
}

/// Decodes a body of concatenated wire frames.
fn decode_frames(id: u32, body: &[u8]) -> Result<Vec<NewReading>, ApiError> {
    let mut decoder = beacon_protocol::Decoder::new();
    let mut out = Vec::with_capacity(body.len() / 24);
    let mut frame_start = 0u64;
    for &byte in body {
        match decoder.push(byte) {
            None => {
                // Leading delimiters (empty frames) are skipped by the decoder; track the start.
                if byte == 0 && decoder.pending() == 0 {
                    frame_start = decoder.position();
                }
            }
            Some(Ok(frame)) => {
                if frame.device_id != id {
                    return Err(ApiError {
                        offset: Some(frame_start),
                        ..ApiError::bad_request(format!(
                            "frame at byte {frame_start} is from device {}, not device {id}; post each device's frames to its own url",
                            frame.device_id
                        ))
                    });
                }
                out.push(NewReading::from_frame(&frame));
                frame_start = decoder.position();
            }
            Some(Err(e)) => {
                return Err(ApiError {
                    offset: Some(e.offset),
                    ..ApiError::bad_request(format!("{e}; nothing in this request was stored"))
                });
            }
        }
    }
    if decoder.pending() > 0 {
        return Err(ApiError {
            offset: Some(frame_start),
            ..ApiError::bad_request(format!(
                "truncated frame at byte {frame_start}: the body must end with a 0x00 delimiter"
            ))
        });
    }
    Ok(out)
}

fn unsupported_ingest_type(media: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "unsupported content type {media:?}; send application/json or {FRAMES_CONTENT_TYPE}"
        ),
    )
}

/// `POST /api/v1/devices/{id}/readings`: JSON batch or concatenated frames. Answers after the
/// readings are durable.
async fn ingest(
    State(state): State<Arc<AppState>>,
    id: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<IngestOutcome>, ApiError> {
    let Path(id) = id?;
    // The token is checked from the headers before a byte of the body is read: a tokenless
    // 4 MiB request costs the service its headers only.
    let authorized = authorize(&state, id, &headers).await?;
    let content_type = media_type(&headers);
    if content_type != "application/json" && content_type != FRAMES_CONTENT_TYPE {
        return Err(unsupported_ingest_type(&content_type));
    }
    let body = Bytes::from_request(request, &state).await?;
    let readings = match content_type.as_str() {
        "application/json" => {
            let batch: IngestBatch = parse_json(&body)?;
            for (i, r) in batch.readings.iter().enumerate() {
                if r.device_id.is_some_and(|d| d != id) {
                    return Err(ApiError::bad_request(format!(
                        "reading is for device {}, not device {id}; post each device's readings to its own url",
                        r.device_id.unwrap_or_default()
                    ))
                    .field(format!("readings[{i}].device_id")));
                }
            }
            batch.readings
        }
        FRAMES_CONTENT_TYPE => decode_frames(id, &body)?,
        other => return Err(unsupported_ingest_type(other)),
    };
    if readings.len() > state.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} readings in one request, the limit is {}; split the batch",
                readings.len(),
                state.config.max_batch
            ),
        ));
    }
    if let Authorized::Register(token) = authorized {
        auto_register(&state, id, token).await?;
    }
    let received_at_ms = now_millis();
    let readings: Vec<StoredReading> = readings
        .into_iter()
        .map(|r| StoredReading {
            device_id: id,
            boot: r.boot,
            seq: r.seq,
            uptime_ms: r.uptime_ms,
            sampled_at_ms: r.sampled_at_ms.unwrap_or(received_at_ms),
            received_at_ms,
            values: r.values,
        })
        .collect();
    let started = Instant::now();
    let result = state.store.ingest(readings).await;
    state.metrics.store_ingest_latency(started.elapsed());
    let ingested = result.inspect_err(|e| {
        if matches!(e, StoreError::Unavailable(_)) {
            state.metrics.store_unavailable();
        }
    })?;
    let outcome = IngestOutcome {
        accepted: ingested.accepted.len(),
        duplicates: ingested.duplicates,
    };
    state.metrics.ingested(outcome.accepted, outcome.duplicates);
    if outcome.accepted > 0 && state.events.receiver_count() > 0 {
        // No receiver, no copy: the common case under load pays nothing for the stream.
        let _ = state.events.send(Arc::from(ingested.accepted));
    }
    Ok(Json(outcome))
}

/// Query parameters of `GET /api/v1/devices/{id}/readings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingsParams {
    #[serde(default, deserialize_with = "query_int")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "query_int")]
    to: Option<i64>,
    #[serde(default, deserialize_with = "query_int")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "query_int")]
    after_boot: Option<u32>,
    #[serde(default, deserialize_with = "query_int")]
    after_seq: Option<u32>,
}

const MAX_PAGE: u32 = 10_000;

/// `GET /api/v1/devices/{id}/readings?from=&to=&limit=&after_boot=&after_seq=`, in `(boot,
/// seq)` order; the next page starts after the `next_after_boot`/`next_after_seq` cursor.
async fn query_readings(
    State(state): State<Arc<AppState>>,
    id: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
    params: Result<Query<ReadingsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Path(id) = id?;
    let Query(p) = params?;
    if state.token_of(id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown device {id}; list devices with GET /api/v1/devices"),
        ));
    }
    let limit = p.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")).field("limit"));
    }
    let query = ReadingQuery {
        device_id: id,
        from_ms: p.from.unwrap_or(i64::MIN),
        to_ms: p.to.unwrap_or(i64::MAX),
        after_boot: p.after_boot,
        after_seq: p.after_seq,
        limit,
    };
    let started = Instant::now();
    let readings = state.store.query(query).await?;
    state.metrics.store_read_latency(started.elapsed());
    let next = if readings.len() == limit as usize {
        readings.last().map(|r| (r.boot, r.seq))
    } else {
        None
    };
    Ok(Json(crate::model::ReadingsPage {
        readings,
        next_after_boot: next.map(|(boot, _)| boot),
        next_after_seq: next.map(|(_, seq)| seq),
    })
    .into_response())
}

/// `GET /api/v1/latest`: the most recent reading of each device.
/// Query parameters of `GET /api/v1/latest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestParams {
    limit: Option<u32>,
    after_device: Option<u32>,
}

/// `GET /api/v1/latest?limit=&after_device=`: the newest reading of each device, in device id
/// order. Without `limit`, every device (as before); with it, one page, and
/// `next_after_device` names the cursor of the next one (absent on the last page). A fleet
/// of 10,000 devices is 10,000 readings: a dashboard should page.
async fn latest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<LatestParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Query(p) = params?;
    if p.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")).field("limit"));
    }
    let started = Instant::now();
    let mut readings = state.store.latest().await?;
    state.metrics.store_read_latency(started.elapsed());
    readings.sort_unstable_by_key(|r| r.device_id);
    if let Some(after) = p.after_device {
        readings.retain(|r| r.device_id > after);
    }
    let next = match p.limit {
        Some(limit) if readings.len() > limit as usize => {
            readings.truncate(limit as usize);
            readings.last().map(|r| r.device_id)
        }
        _ => None,
    };
    let mut body = serde_json::json!({ "readings": readings });
    if let Some(next) = next {
        body["next_after_device"] = next.into();
    }
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    #[serde(default, deserialize_with = "query_int")]
    device_id: Option<u32>,
}

/// Decrements the SSE gauge when the stream is dropped (client gone or shutdown).
struct SseGuard(Arc<AppState>);
impl Drop for SseGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients(-1);
    }
}

/// `GET /api/v1/stream`: newly stored readings as server-sent events (`event: readings`, data a
/// JSON array). A client too slow to keep up gets `event: lagged` with the number of skipped
/// batches, and the stream carries on.
async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Query(p) = params?;
    state.metrics.sse_clients(1);
    let guard = SseGuard(Arc::clone(&state));
    let rx = state.events.subscribe();
    // Cancellation on shutdown: the stream ends when the shutdown token fires, so graceful
    // shutdown does not wait forever on open streams.
    let events = tokio_stream::wrappers::BroadcastStream::new(rx)
        .take_until(state.shutdown.clone().cancelled_owned())
        .filter_map(move |msg| {
            let _keep = &guard;
            let event = match msg {
                Ok(batch) => {
                    let selected: Vec<&StoredReading> = batch
                        .iter()
                        .filter(|r| p.device_id.is_none_or(|d| d == r.device_id))
                        .collect();
                    if selected.is_empty() {
                        None
                    } else {
                        Event::default().event("readings").json_data(&selected).ok()
                    }
                }
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"skipped\":{n}}}")),
                ),
            };
            std::future::ready(event.map(Ok::<_, std::convert::Infallible>))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
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
        include_str!("openapi.json"),
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

//! Limits applied before a handler runs: body size, the request head (414/431 with the JSON
//! error), and unauthenticated work per peer address (429).

use super::*;

/// Answers 413 at once when `Content-Length` alone says the body is too large, instead of
/// waiting for a body that may never come (and ending in a 408).
pub(super) async fn refuse_oversized(
    State(max): State<usize>,
    req: Request,
    next: Next,
) -> Response {
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

/// Most device entries in one multi-device ingest (`POST /api/v1/readings`); more get 413.
/// Its readings together are bounded by `--max-batch`, its body by `--max-body-bytes`.
pub const MAX_INGEST_ENTRIES: usize = 1_000;

/// The multi-device ingest's path, as routed in `router` (its requests have their own
/// unauthenticated pool).
pub(super) const MULTI_INGEST_PATH: &str = "/api/v1/readings";

/// Longest request target (path and query) answered; longer ones get 414 with the JSON error.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values together; more get 431 with the JSON error.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields; more get 431 with the JSON error.
pub const MAX_HEADERS: usize = 100;

/// 414 and 431 with the JSON error shape. hyper itself answers these (with an empty body) only
/// past its own, higher limits (`server::HYPER_MAX_HEADERS`, `server::HYPER_MAX_BUF`), which
/// are set so that these checks see every request head a client could reasonably send.
pub(super) async fn limit_head(req: Request, next: Next) -> Response {
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
    pub(super) in_flight: std::sync::Mutex<HashMap<Option<std::net::IpAddr>, usize>>,
}

pub(super) struct UnauthenticatedSlot<'a> {
    pub(super) limit: &'a UnauthenticatedLimit,
    pub(super) peer: Option<std::net::IpAddr>,
}

impl UnauthenticatedLimit {
    pub(super) fn try_take(
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
pub(super) fn carries_valid_token(state: &AppState, req: &Request) -> bool {
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
        .and_then(|id| state.cached_token(id).0)
        .is_some_and(|(expected, _)| same_token(&token_hash(presented), &expected))
}

pub(super) async fn limit_unauthenticated(
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
    // The multi-device ingest carries its tokens in the body (checked once it is read), so it
    // is unauthenticated work too, but counted apart: a gateway's ingest requests and the
    // open reads or registrations from the same address (its registrations, a dashboard, a
    // simulator's stream) do not crowd each other out into 429s.
    let pool = if path == MULTI_INGEST_PATH {
        &state.unauthenticated_ingest
    } else {
        &state.unauthenticated
    };
    let Some(_slot) = pool.try_take(peer, max) else {
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

//! `GET /debug/tasks`: the HTTP side of the task dumps in [`crate::debug`] (opt-in with
//! `--debug-endpoints`, loopback peers only, one dump at a time). Here, not in `debug`, so that
//! `debug` (named tasks, the peer wrapper, the dump itself) imports nothing of the API.

use super::ApiError;
use crate::debug::{DUMPING, dump_text};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The service's JSON error shape.
fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        field: None,
        offset: None,
    }
}

/// The diagnostics routes: `/debug/tasks` with `--debug-endpoints`, nothing without.
pub fn routes(config: &crate::Config) -> axum::Router<std::sync::Arc<crate::AppState>> {
    let router = axum::Router::new();
    if config.debug_endpoints {
        router.route("/debug/tasks", axum::routing::get(tasks))
    } else {
        router
    }
}

/// `GET /debug/tasks` (mounted only with `--debug-endpoints`): every task, its name when it
/// has one, and the backtrace of where it waits, as plain text.
pub async fn tasks(req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match peer {
        Some(p) if p.ip().is_loopback() => {}
        Some(p) => {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "/debug/tasks is served to loopback clients only (this request came from {}): \
                     it shows the runtime's internals; run it on the service's host or tunnel with ssh -L",
                    p.ip()
                ),
            )
            .into_response();
        }
        None => {
            return error(
                StatusCode::FORBIDDEN,
                "/debug/tasks is served to loopback clients only, and this request's peer \
                 address is unknown (not through the service's accept loop)",
            )
            .into_response();
        }
    }
    let Ok(_one) = DUMPING.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "a task dump is already being taken; retry when it is done",
        )
        .into_response();
    };
    match dump_text().await {
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from(text),
        )
            .into_response(),
        Err((status, msg)) => error(status, msg).into_response(),
    }
}

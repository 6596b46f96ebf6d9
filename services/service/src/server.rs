//! The connection layer: a hand-written accept loop on hyper (instead of `axum::serve`) so the
//! service can bound what a hostile client holds.
//!
//! - **Header-read timeout** (`--header-read-timeout-secs`): a connection that does not send a
//!   complete request head in time is closed (slowloris). hyper restarts the same timer while
//!   a keep-alive connection waits for its next request, so it is the idle timeout too.
//! - **Connection cap** (`--max-connections`): the loop takes a permit before it accepts;
//!   beyond the cap, new connections wait in the kernel's backlog instead of costing a file
//!   descriptor each. The cap is lowered to fit the process's open-file limit (minus a reserve
//!   for SQLite), so the service does not run out of descriptors in the first place.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`...): logged, then the loop backs off
//!   (10 ms doubling to 1 s) and carries on; connections already open keep being served.
//! - **Graceful shutdown**: on the token, stop accepting, let every connection finish the
//!   request it is on (idle ones close at once), then return.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// File descriptors kept free for everything that is not a client connection: SQLite's
/// database, WAL and shared-memory files for the writer and each reader, the listener, logs.
pub const FD_RESERVE: u64 = 64;

/// hyper's own limit on header fields: above `api::MAX_HEADERS`, so the application answers
/// 431 with the JSON error; only a request past this gets hyper's bare 431.
pub const HYPER_MAX_HEADERS: usize = 1000;
/// hyper's read buffer, which bounds a request head: well above `api::MAX_HEADER_BYTES` and
/// `api::MAX_URI_BYTES` for the same reason (hyper's default is ~400 KiB).
pub const HYPER_MAX_BUF: usize = 256 * 1024;

/// Limits on what clients can hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a complete request head, and the longest a keep-alive connection may sit
    /// idle between requests.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// The soft open-file limit of this process (`/proc/self/limits`), where there is one.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `wanted`, lowered so the connections and [`FD_RESERVE`] fit in `fd_limit`.
pub fn fit_connections(wanted: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return wanted.max(1);
    };
    let room = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

/// Accepts and serves connections on `listener` until `shutdown` is cancelled, then drains.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF);
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                (stream, peer)
            }
            // The peer gave up before we accepted: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(
                    "accept failed: {e}; retrying in {backoff:?} ({} connections open; lower \
                     --max-connections or raise the open-file limit)",
                    limits
                        .max_connections
                        .saturating_sub(permits.available_permits() + 1)
                );
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The peer address goes into each request (`ConnectInfo`): the per-address limit on unauthenticated work (`api`) and /debug/tasks (loopback-only) read it.
        let service = TowerToHyperService::new(crate::debug::WithPeer::new(app.clone(), peer));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        crate::debug::spawn_named("http-connection", async move {
            if let Err(e) = conn.await {
                // Header timeouts, resets, malformed requests: the client's problem.
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

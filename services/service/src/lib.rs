//! The beacon telemetry service: ingests the frames devices produce (through the gateway),
//! stores them durably in SQLite, and serves them back: queries, a live stream, metrics and a
//! dashboard. Built on tokio, axum and hyper; instrumented for tokio-console (feature
//! `console`).
//!
//! # Shape
//! - [`run`] takes the listener and a shutdown future as arguments (the mini-redis shape): the
//!   binary (`src/main.rs`) passes `--listen` and Ctrl-C/SIGTERM, tests pass `127.0.0.1:0`
//!   and a oneshot. [`serve`] does the same with any store.
//! - [`router`] builds the whole HTTP application from an [`AppState`]; tests drive it
//!   in-process with `tower::ServiceExt::oneshot`.
//! - [`store`]: the [`store::Store`] trait (native `async fn` in traits), its object-safe twin
//!   [`store::DynStore`] for `Arc<dyn ...>`, and the SQLite backend ([`store::sqlite`]).
//! - [`config::Config`]: clap, every flag with a `BEACON_*` environment fallback; binds
//!   `127.0.0.1:8080` by default.
//!
//! # Data model
//! A **reading** is one device frame, identified by `(device_id, boot, seq)`:
//!
//! ```json
//! {
//!   "device_id": 7,            // optional in requests: the URL names the device
//!   "boot": 2654435769,        // which boot of the device (protocol v2); optional, 0 if absent
//!   "seq": 1042,               // the frame's sequence number, from 0 at each boot
//!   "uptime_ms": 360000,       // device time since boot when it sampled
//!   "sampled_at_ms": 1795780000123,  // wall clock (Unix ms), assigned by the gateway;
//!                                    // the service's receive time when absent
//!   "values": [
//!     {"kind": "temperature_c", "value": 21.5},
//!     {"kind": "humidity_pct", "value": 45.25},
//!     {"kind": "counter", "value": 17},
//!     {"kind": "status", "value": 1},
//!     {"kind": "boot", "firmware": "1.2.3", "board": 1},
//!     {"kind": "unknown", "code": 200, "len": 3}
//!   ]
//! }
//! ```
//!
//! Stored readings also carry `received_at_ms`, when the service received the request:
//! `received_at_ms - sampled_at_ms` is the device-to-service latency. Values follow the wire
//! format's reading kinds ([`model::Value`]): temperature and humidity are converted from
//! hundredths to plain numbers, a boot firmware version becomes `"major.minor.patch"`.
//!
//! **Durability and idempotency.** An ingest is answered after its readings are committed
//! (`PRAGMA synchronous=FULL` by default: fsynced). A `(device_id, boot, seq)` already stored
//! is counted as a duplicate and not written again, so a client may retry any batch safely; a
//! device that rebooted sends the same seqs with a new `boot`, and those are new readings.
//! Version 1 frames and clients that send no `boot` get boot 0. The database migrates itself
//! (schema version 1 to 2: old rows keep their data and get boot 0) when the service opens it.
//! Readings may arrive in any order. The answer is `{"accepted": n, "duplicates": m}`.
//!
//! # Backends
//! `--db` (`BEACON_DB`) is a SQLite file (the default, `beacon.db`) or a `postgres://` URL
//! ([`store::postgres`]): the same contract (answered after commit, one row per `(device_id,
//! boot, seq)`, group commit, bounded queue with 503, versioned migrations at start-up), and
//! with PostgreSQL any number of replicas may share the database: a token changed or deleted
//! there stops working on every replica when its NOTIFY arrives (at most `--token-cache-secs`,
//! 2 s, if a replica's listener is down), and each replica's live stream also carries what the
//! others commit (LISTEN/NOTIFY). The startup log names the backend. docs/scale-out.md says
//! when to move and what it costs.
//!
//! # HTTP API
//! The full contract is `src/openapi.json`, served at `/openapi.json`.
//!
//! | method, path | what |
//! | --- | --- |
//! | `POST /api/v1/devices` | register `{"id"?, "token"?, "name"?}`; 201 new, 200 same id and token again, 409 other token; a generated token is in the 201 answer only |
//! | `GET /api/v1/devices` | list devices (never their tokens) |
//! | `POST /api/v1/devices/{id}/readings` | ingest, `Authorization: Bearer <token>`; `application/json` `{"readings": [...]}` or `application/x-beacon-frames` (concatenated wire frames) |
//! | `GET /api/v1/devices/{id}/readings?from=&to=&limit=&after_boot=&after_seq=` | readings with `from <= sampled_at_ms < to`, in `(boot, seq)` order; page on with `after_boot=<next_after_boot>&after_seq=<next_after_seq>` |
//! | `GET /api/v1/latest?limit=&after_device=` | newest reading of each device, in id order; with `limit`, one page and `next_after_device` |
//! | `GET /api/v1/stream?device_id=` | SSE: `event: readings` (JSON array), `event: lagged` |
//! | `GET /healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/` | liveness, readiness, Prometheus, the API document, the dashboard |
//! | `GET /debug/tasks` | with `--debug-endpoints` only, loopback clients only (403 otherwise): a dump of every task and the `file:line` where it waits ([`debug`], docs/async.md "When it hangs") |
//!
//! Errors are JSON `{"error": "...", "field"?: "readings[3].seq", "offset"?: 120}`: 400 names
//! the JSON field (or query parameter) or the byte offset of the bad frame (and stores nothing
//! from that request); 401 bad or missing token; 404 unknown device or path; 405 method; 408
//! timeout; 409 token conflict; 413 body or batch too large (at once when `Content-Length`
//! says so); 414 request target over 8 KiB; 415 other content types (registration too: a body
//! needs `Content-Type: application/json`); 429 with `Retry-After` when one address has more
//! than `--max-unauthenticated-per-ip` requests without a valid token in flight; 431 over 100
//! header fields or 32 KiB of headers; 503 with `Retry-After` when the store cannot take the
//! write (queue full, disk or size cap full, database file removed, shutting down). Only a
//! request head past hyper's own, higher limits (1000 fields, 256 KiB) gets hyper's bare 431.
//! Optional fields are omitted, never `null`; integers round-trip exactly (`uptime_ms` up to
//! 2^64-1) and are read as JSON Schema reads them: `338.0` is the integer 338 (in bodies and
//! query strings), `338.5` is refused, and so is an integral float above 2^53; a struct is a
//! JSON object, never an array of its fields. The contract is checked by `cargo xtask test`
//! (`cargo xtask contract`): a bounded schemathesis run, every check, 0 failures
//! (docs/hostile-network.md).
//!
//! # Access
//! - Ingest needs the device's token; it is checked from the headers (with the content type)
//!   before a byte of the body is read. Tokens are stored as SHA-256 hashes (a database from
//!   before is converted in place at open) and compared in constant time; no endpoint returns
//!   a stored token.
//! - Registration needs `--provisioning-token` when set, checked before the body is read.
//! - Unauthenticated work is bounded per peer address: at most `--max-unauthenticated-per-ip`
//!   (64) requests without a valid token (open registration and reads, and the ones refused
//!   with 401/404) in flight at once, counted until the answer's head; beyond it 429 with
//!   `Retry-After`. Requests with a valid token and `/healthz`, `/readyz` are not counted.
//! - Reads (device list, readings, latest, stream) are open unless `--provisioning-token` or
//!   `--read-token` is set; then they need one of the two. The startup log says which mode.
//! - `--auto-register` (trust on first use) registers a device only once its request proved
//!   valid, and is refused at start-up together with `--provisioning-token` (it would let
//!   anyone claim a device id without it).
//!
//! # For the gateway (and any other client)
//! 1. `POST /api/v1/devices` with `{"id": <device_id>, "token": "<token>"}`, idempotent: call it
//!    whenever a device is first seen (with `Authorization: Bearer <provisioning token>` when
//!    the service runs with `--provisioning-token`). Or run the service with
//!    `--auto-register` (and no provisioning token), which registers an unknown device with
//!    the first token it presents in a valid request.
//! 2. Post batches to `/api/v1/devices/<id>/readings` with the device's token, either the raw
//!    frames (`application/x-beacon-frames`: the service decodes them and uses its receive
//!    time as `sampled_at_ms`) or JSON with the gateway's `sampled_at_ms`.
//! 3. On 503 wait `Retry-After` seconds and resend the same batch; on a network error resend
//!    too: duplicates are harmless. Do not resend on 400/401/404/413: fix the request.
//!
//! # Operations
//! - Graceful shutdown on Ctrl-C and SIGTERM: stop accepting, drain in-flight requests (at
//!   most `--shutdown-grace-secs`), end SSE streams, let the store commit everything queued,
//!   checkpoint the WAL. Nothing answered "accepted" is lost.
//! - Connections ([`server`]): a client has `--header-read-timeout-secs` (10) to send a
//!   request head, and a keep-alive connection may idle that long; at most
//!   `--max-connections` (1024, lowered to the open-file limit minus 64) are open, the rest
//!   wait in the kernel's queue; accept errors such as `EMFILE` back off and the loop carries
//!   on.
//! - Durability honesty: the store checks after every commit (and on `/readyz`) that its
//!   database file and WAL are still the ones it opened (device and inode). When one was
//!   removed or replaced, that commit and every later write answer 503, `/readyz` answers
//!   503, and the service shuts down and exits non-zero saying why: it cannot recover the data
//!   written into a deleted file. `/readyz` is also 503 while the store is full.
//! - `--max-db-mb` counts the database file, its WAL and its `-shm` together: after a commit
//!   that leaves them over the cap, the writer checkpoints and truncates the WAL before it
//!   answers (during one commit the WAL holds that commit on top).
//! - SIGTERM on a full disk is a clean shutdown (exit 0): the final WAL checkpoint may fail
//!   for lack of space, but every commit answered "accepted" is in the synced WAL, which
//!   SQLite folds in at the next start; the log says so.
//! - Open files: at start-up the binary raises its soft open-file limit to the hard one
//!   ([`fdlimit`]) and logs it; `--max-connections` is then fitted into what there is.
//! - Logs: tracing with an EnvFilter (`RUST_LOG`, or `--log`); every request has a span with
//!   its `x-request-id` (generated, and echoed in the response).
//! - Layers: request id, trace, timeout (`--request-timeout-secs`, 408), gzip compression
//!   (JSON answers and the dashboard; never the SSE stream), body limit (`--max-body-bytes`,
//!   413).
//! - tokio-console: build with `--features console`, run with `--console`; it serves on
//!   `127.0.0.1:6669` (loopback only: it exposes the runtime's internals) and forgets finished
//!   tasks as soon as they were published (`--console-retention-ms`, default 0;
//!   `--console-publish-ms`, default 500): each finished task costs ~50 KB until dropped, and
//!   every HTTP connection is a task, so memory is about connections/s x (retention + publish
//!   interval) x 50 KB. The real bound, though, is the queue of runtime events waiting for the
//!   console's aggregator (`--console-event-buffer`, default 8192 instead of 102 400): each
//!   queued spawn event holds its task's ~50 KB of statistics, and an aggregator short of CPU
//!   lets the queue fill. Measured with `cargo xtask bench-service` (60 s of connection
//!   churn): ~420 MB with the default queue, ~64 MB with 8192; when the queue is full the
//!   console drops events (and says so) rather than growing.
//!
//! # Performance
//! `cargo xtask bench-service` (load generator `beacon-load` on the same machine, loopback,
//! 16 concurrent requests of 1000 readings as binary frames, fsync on every group commit).
//! Measured on a 2-core machine that other builds kept at a load average of ~9-11, so the
//! service got well under one core: ~100-145k durable readings/s, p50 ~90-150 ms, p99
//! ~240-390 ms; console on/off 0.97-1.04 (within noise); ~3.2-3.5 us of service CPU per
//! durable reading (~310k readings per CPU-second); JSON bodies cost about twice the CPU of
//! frames. Peak RSS after 60 s of connection churn (~1000 new connections/s) with the console
//! on: ~64 MB. The single SQLite writer is the ceiling on an idle machine; the
//! `readings_by_time` index costs about a third of it (see TODO(7) in
//! `store/sqlite/migrations.rs`).
//!
//! # Async patterns
//! See [`async_patterns`]: where this code handles `Send` across `.await`, `async fn` in
//! traits, dynamic dispatch, blocking work and cancellation.
#![warn(missing_docs)]

// Dev builds after `cargo xtask setup`: take the heavy dependencies from one shared library
// (services/devdeps, docs/compile-times.md). Without `--cfg beacon_dylib` this is nothing,
// and in release builds too (no debug assertions): what is installed or shipped stays static.
#[cfg(all(beacon_dylib, debug_assertions))]
extern crate beacon_devdeps as _;

pub mod api;
pub mod config;
pub mod debug;
/// The open-file limit (shared with the other binaries: `beacon-os`).
pub use beacon_os::fdlimit;
pub mod metrics;
/// The HTTP contract's types live in their own crate (`beacon-api`), shared with the gateway
/// and the demo; `model` keeps the service's paths short.
pub use beacon_api as model;
pub mod server;
pub mod store;
pub mod telemetry;

#[doc = include_str!("../ASYNC.md")]
pub mod async_patterns {}

pub use api::{AppState, router};
pub use config::Config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::{DynStore, StoreError};
use tokio::net::TcpListener;

/// Why the service stopped with an error.
#[derive(Debug)]
pub enum Error {
    /// The store could not be opened or closed cleanly.
    Store(StoreError),
    /// The listener failed.
    Io(std::io::Error),
    /// The configuration is unsafe or inconsistent (the message says why and what to do).
    Config(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "server error: {e}"),
            Self::Config(m) => write!(f, "refusing to start: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Opens the SQLite store the config names.
pub async fn open_store(config: &Config) -> Result<SqliteStore, StoreError> {
    let mut sqlite = SqliteConfig::new(&config.db);
    sqlite.write_queue = config.write_queue;
    sqlite.max_db_bytes = config.max_db_mb.map(|mb| mb * 1024 * 1024);
    sqlite.sync_full = config.sync == "full";
    SqliteStore::open(sqlite).await
}

/// Opens the store `--db` names: PostgreSQL for a `postgres://` URL, else the SQLite file.
/// Logs which backend it opened.
pub async fn open_any_store(config: &Config) -> Result<Arc<dyn DynStore>, StoreError> {
    #[cfg(not(feature = "postgres"))]
    if config.postgres_url().is_some() {
        return Err(StoreError::Internal(
            "--db (BEACON_DB) is a postgres:// URL, but this beacon-service was built without \
             the `postgres` feature: rebuild with it (`cargo build -p beacon-service --features \
             postgres`; `cargo xtask demo --db postgres` does), or pass a SQLite file"
                .into(),
        ));
    }
    #[cfg(feature = "postgres")]
    if let Some(url) = config.postgres_url() {
        let mut pg = store::postgres::PgConfig::new(url);
        pg.write_queue = config.write_queue;
        pg.pool_size = config.db_pool;
        pg.writers = config.db_writers;
        pg.synchronous_commit = config.sync == "full";
        if config.max_db_mb.is_some() {
            tracing::warn!(
                "--max-db-mb applies to SQLite only; with PostgreSQL cap the size on the server (a full disk answers 503 either way)"
            );
        }
        let store = store::postgres::PgStore::open(pg).await?;
        tracing::info!(
            "store: PostgreSQL at {} (schema version {}; sslmode {}; shared: replicas may run against it)",
            config.db_display(),
            store::postgres::SCHEMA_VERSION,
            store.tls_mode.name()
        );
        return Ok(Arc::new(store));
    }
    let store = open_store(config).await?;
    tracing::info!(
        "store: SQLite at {} (schema version {})",
        config.db.display(),
        store::sqlite::SCHEMA_VERSION
    );
    Ok(Arc::new(store))
}

/// Runs the service on `listener` with the store from `config` until `shutdown`
/// completes; then drains in-flight requests and flushes the store.
///
/// The caller owns the listener and the shutdown signal (the mini-redis shape): the binary
/// passes Ctrl-C/SIGTERM and a socket on `--listen`, a test passes `127.0.0.1:0` and a oneshot.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.check().map_err(Error::Config)?;
    let store = open_any_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// [`run`] with any store (tests use failing stand-ins).
pub async fn serve(
    config: Config,
    store: Arc<dyn DynStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.check().map_err(Error::Config)?;
    if config.debug_endpoints {
        tracing::info!(
            "debug endpoints on: GET /debug/tasks (loopback clients only; task dumps {})",
            if debug::TASK_DUMPS_SUPPORTED {
                "supported in this build"
            } else {
                "not supported in this build: the endpoint answers 501"
            }
        );
    }
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let fd_limit = server::open_file_limit();
    let limits = server::Limits {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
        max_connections: server::fit_connections(config.max_connections, fd_limit),
    };
    if limits.max_connections < config.max_connections {
        tracing::warn!(
            "--max-connections {} lowered to {} to fit the open-file limit of {} (raise it with \
             `ulimit -n` or LimitNOFILE=)",
            config.max_connections,
            limits.max_connections,
            fd_limit.unwrap_or_default()
        );
    }
    match (&config.provisioning_token, &config.read_token) {
        (None, None) => tracing::info!(
            "access: registration and reads are open (no --provisioning-token, no --read-token): fine on loopback, not on a shared network"
        ),
        (Some(_), None) => tracing::info!(
            "access: registration and reads need the provisioning token; ingest needs each device's token"
        ),
        (None, Some(_)) => tracing::info!(
            "access: registration is open (no --provisioning-token); reads need the read token; ingest needs each device's token"
        ),
        (Some(_), Some(_)) => tracing::info!(
            "access: registration needs the provisioning token; reads the read or provisioning token; ingest each device's token"
        ),
    }
    let state = AppState::new(config, Arc::clone(&store)).await?;
    let app = router(Arc::clone(&state));
    let token = state.shutdown.clone();
    let signal = {
        let token = token.clone();
        let store = Arc::clone(&store);
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown: draining in-flight requests"),
                e = store.failed() => tracing::error!("shutdown: the store failed for good: {e}"),
            }
            // Ends SSE streams, which would otherwise keep the drain waiting forever; stops
            // the accept loop.
            token.cancel();
        }
    };
    let signal = debug::spawn_named("shutdown-signal", signal);
    let server = server::accept_loop(listener, app, limits, token.clone());
    // Cancellation on shutdown: the drain is bounded by the grace period. If it runs out,
    // dropping `server` cancels the remaining connections; an ingest already handed to the
    // store still commits (the writer owns it), and the client's retry is a duplicate.
    tokio::select! {
        () = server => {}
        () = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown: grace period of {grace:?} over, closing remaining connections");
        }
    }
    signal.abort();
    tracing::info!("shutdown: flushing the store");
    store.close().await?;
    tracing::info!("shutdown: done");
    Ok(())
}

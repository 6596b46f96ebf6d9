//! The beacon telemetry service.
//!
//! DOCS PLACEHOLDER
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod metrics;
pub mod model;
pub mod store;
pub mod telemetry;

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
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "server error: {e}"),
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

/// Runs the service on `listener` with the SQLite store from `config` until `shutdown`
/// completes; then drains in-flight requests and flushes the store.
///
/// The caller owns the listener and the shutdown signal (the mini-redis shape): the binary
/// passes Ctrl-C/SIGTERM and a socket on `--listen`, a test passes `127.0.0.1:0` and a oneshot.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let store = open_store(&config).await?;
    serve(config, Arc::new(store), listener, shutdown).await
}

/// [`run`] with any store (tests use failing stand-ins).
pub async fn serve(
    config: Config,
    store: Arc<dyn DynStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let state = AppState::new(config, Arc::clone(&store)).await?;
    let app = router(Arc::clone(&state));
    let token = state.shutdown.clone();
    let signal = {
        let token = token.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown: draining in-flight requests");
            // Ends SSE streams, which would otherwise keep the drain waiting forever.
            token.cancel();
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    // Cancellation on shutdown: the drain is bounded by the grace period. If it runs out,
    // dropping `server` cancels the remaining connections; an ingest already handed to the
    // store still commits (the writer owns it), and the client's retry is a duplicate.
    tokio::select! {
        result = server => result.map_err(Error::Io)?,
        () = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown: grace period of {grace:?} over, closing remaining connections");
        }
    }
    tracing::info!("shutdown: flushing the store");
    store.close().await?;
    tracing::info!("shutdown: done");
    Ok(())
}

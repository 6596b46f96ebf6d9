//! The embedded SQLite backend (WAL mode) with a single writer and group commit.
//!
//! # Keeping blocking work off the async workers
//! rusqlite is a blocking API: a query or a commit (an `fsync`) can take milliseconds, and a
//! tokio worker thread that blocks that long stalls every other task scheduled on it. So:
//! - **Writes** go to one dedicated *writer* (`writer_loop`) that runs on tokio's blocking
//!   pool (`spawn_blocking`), named `sqlite-writer` in tokio-console. Handlers send it a
//!   command over a bounded channel and `.await` a oneshot answer; the worker thread is free
//!   meanwhile.
//! - **Group commit**: the writer takes every command waiting in the channel (up to
//!   `max_group_rows` readings) and commits them in ONE transaction, so one `fsync` serves many
//!   concurrent requests. Each request is answered after that commit: "accepted" is durable.
//! - **Reads** run on the blocking pool too (`sqlite-read` tasks), each on a pooled read-only
//!   connection; WAL lets them proceed while the writer commits.
//! - **Schema migrations** run once, at open, on the writer connection: [`MIGRATIONS`] is an
//!   ordered list of steps keyed by `PRAGMA user_version` (step `n` takes version `n - 1` to
//!   `n`), each in its own transaction with the version bump, so a crash mid-way leaves the
//!   database at the last completed version and the next start carries on.
//! - **Back-pressure**: the channel is bounded. When it is full the store answers
//!   [`StoreError::Unavailable`] at once (HTTP 503 + `Retry-After`) instead of queueing without
//!   limit.
//!
//! # Files
//! - this file: [`SqliteConfig`], the size cap's arithmetic, [`SqliteStore`] (open, the write
//!   queue) and its [`Store`] implementation, the error mapping;
//! - `migrations.rs`: [`MIGRATIONS`], [`migrate`], and the token-hashing step;
//! - `writer.rs`: opening the writer connection, `writer_loop` and the group commit;
//! - `reads.rs`: the pool of read-only connections and the queries;
//! - `health.rs`: noticing that the database files were removed or replaced, and keeping them
//!   within `--max-db-mb`.

mod health;
mod migrations;
mod reads;
mod writer;

pub use super::migration::Migration;
pub use migrations::{MIGRATIONS, SCHEMA_VERSION, migrate};

use super::rows::values_json;
use super::{DeviceWithToken, Ingested, NewDevice, Store, StoreError, enqueue};
use crate::model::{ReadingQuery, Registered, StoredReading};
use health::Health;
use reads::Readers;
use rusqlite::ErrorCode;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How the SQLite store is set up.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file; created when missing (with its `-wal` and `-shm` companions).
    pub path: PathBuf,
    /// Ingest requests that may wait for the writer before new ones get 503.
    pub write_queue: usize,
    /// Most readings committed in one transaction.
    pub max_group_rows: usize,
    /// Upper bound on the database's size on disk: the file, its WAL and its shared-memory
    /// file together. Writes beyond it fail with 503 (SQLite "full"); see [`SHM_RESERVE`].
    pub max_db_bytes: Option<u64>,
    /// `PRAGMA synchronous=FULL` (fsync on every commit: durable across power loss). When
    /// `false`, `NORMAL`: durable across a process crash, not a power cut.
    pub sync_full: bool,
}

impl SqliteConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write_queue: 1024,
            max_group_rows: 50_000,
            max_db_bytes: None,
            sync_full: true,
        }
    }
}

/// Bytes of `max_db_bytes` kept for the `-shm` file (32 KiB at rest) and the WAL's header:
/// the main file may grow to the cap minus this. After a commit that leaves the three files
/// over the cap, the writer checkpoints the WAL back into the main file and truncates it, so at
/// rest they fit; during one commit the WAL holds that commit's pages on top (at most one
/// group, `max_group_rows`).
pub const SHM_RESERVE: u64 = 64 * 1024;

/// The database file, its `-wal` and its `-shm` together, in bytes (missing ones count 0).
pub fn bytes_on_disk(db: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len())
        })
        .sum()
}

enum Cmd {
    Ingest {
        readings: Vec<StoredReading>,
        /// Each reading's values as JSON, serialised by the caller so the single writer
        /// thread spends its time on SQLite only.
        vals: Vec<String>,
        reply: oneshot::Sender<Result<Ingested, StoreError>>,
    },
    Register {
        device: NewDevice,
        reply: oneshot::Sender<Result<Registered, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Cmd {
    fn rows(&self) -> usize {
        match self {
            Cmd::Ingest { readings, .. } => readings.len(),
            _ => 1,
        }
    }
}

/// The SQLite store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    tx: mpsc::Sender<Cmd>,
    readers: Arc<Readers>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Ingest { .. } => "Ingest",
            Cmd::Register { .. } => "Register",
            Cmd::Close { .. } => "Close",
        })
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Unavailable(
            "the store is full (disk or --max-db-mb limit); free space or raise the limit, then retry".into(),
        ),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable("the store is busy; retry".into())
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::ReadOnly) => {
            StoreError::Unavailable(format!("the store cannot write ({e}); check the disk, then retry"))
        }
        _ => StoreError::Internal(format!("store error: {e}")),
    }
}

/// Runs blocking work on tokio's blocking pool, named for tokio-console when it is compiled in.
fn spawn_blocking_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    // task::Builder exists with `--cfg tokio_unstable` and tokio's `tracing` feature (which the
    // `console` feature turns on).
    #[cfg(all(tokio_unstable, feature = "console"))]
    {
        match tokio::task::Builder::new().name(name).spawn_blocking(f) {
            Ok(handle) => handle,
            // Builder only fails when the runtime is shutting down; so would spawn_blocking.
            Err(e) => panic!("cannot spawn {name}: {e}"),
        }
    }
    #[cfg(not(all(tokio_unstable, feature = "console")))]
    {
        let _ = name;
        tokio::task::spawn_blocking(f)
    }
}

impl SqliteStore {
    /// Opens (or creates) the database and starts the writer. The file work runs on the
    /// blocking pool.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        let cfg = config.clone();
        let conn = tokio::task::spawn_blocking(move || writer::open_writer(&cfg))
            .await
            .map_err(|e| StoreError::Internal(format!("open task failed: {e}")))??;
        let path = config.path.clone();
        let max_bytes = config.max_db_bytes;
        let health = tokio::task::spawn_blocking(move || Health::new(path, max_bytes))
            .await
            .map_err(|e| StoreError::Internal(format!("open task failed: {e}")))??;
        let health = Arc::new(health);
        let (tx, rx) = mpsc::channel(config.write_queue.max(1));
        let max_rows = config.max_group_rows.max(1);
        // A long-lived blocking task rather than a std::thread so tokio-console shows it, with
        // its busy time: the reason writes never block a worker is visible there.
        let writer_health = Arc::clone(&health);
        drop(spawn_blocking_named("sqlite-writer", move || {
            writer::writer_loop(conn, rx, max_rows, &writer_health)
        }));
        let readers = Arc::new(Readers::new(config.path));
        Ok(Self {
            tx,
            readers,
            health,
        })
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Cmd,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        enqueue(&self.tx, make(reply))?;
        // If this future is dropped here (client gone, request timed out), the command still
        // runs to completion: a reading the writer took is stored even if nobody hears "ok".
        // That is safe because ingest is idempotent: the client's retry counts it as duplicate.
        answer.await.map_err(|_| StoreError::closed())?
    }
}

impl Store for SqliteStore {
    async fn register(&self, device: NewDevice) -> Result<Registered, StoreError> {
        self.send(|reply| Cmd::Register { device, reply }).await
    }

    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        self.readers.devices().await
    }

    async fn ingest(&self, readings: Vec<StoredReading>) -> Result<Ingested, StoreError> {
        if readings.is_empty() {
            return Ok(Ingested::default());
        }
        // CPU work on the async worker, about a microsecond per reading: small enough not to
        // count as blocking, and it runs on every core instead of the single writer.
        let vals = readings.iter().map(|r| values_json(&r.values)).collect();
        self.send(|reply| Cmd::Ingest {
            readings,
            vals,
            reply,
        })
        .await
    }

    async fn query(&self, q: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        self.readers.query(q).await
    }

    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        self.readers.latest().await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(StoreError::closed());
        }
        if self.health.full.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Health::full_error());
        }
        // Notices a removed database even when no write came since.
        let health = Arc::clone(&self.health);
        spawn_blocking_named("sqlite-check", move || health.check_files())
            .await
            .map_err(|e| StoreError::Internal(format!("check task failed: {e}")))?
    }

    async fn failed(&self) -> StoreError {
        let mut lost = self.health.lost.subscribe();
        // The guard `wait_for` returns is dropped at once: it must not live across an .await.
        let why = lost
            .wait_for(Option::is_some)
            .await
            .map(|why| why.clone().unwrap_or_default());
        match why {
            Ok(why) => StoreError::Unavailable(why),
            // The sender lives in `self`: it cannot be dropped while this borrow lasts.
            Err(_) => std::future::pending().await,
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        // Waits for queue space: close must not be refused because the queue is busy.
        if self.tx.send(Cmd::Close { reply }).await.is_err() {
            return Ok(()); // already closed
        }
        answer.await.unwrap_or(Ok(()))
    }
}

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

use super::{DeviceWithToken, Ingested, NewDevice, Store, StoreError};
use crate::model::{Device, ReadingQuery, Registered, StoredReading, Value, now_millis};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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

/// One schema migration: the SQL that takes the database from `version - 1` to `version`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The `PRAGMA user_version` after this step.
    pub version: u32,
    /// What it does, for the log.
    pub what: &'static str,
    /// The statements (run in one transaction with the version bump).
    pub sql: &'static str,
}

/// Every schema migration, in order; `MIGRATIONS[i].version == i + 1`. A new database runs all
/// of them; an existing one the steps after its `user_version`. To change the schema, append
/// a step (never edit a released one: databases in the field already ran it).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "devices and readings, deduplicated on (device_id, seq)",
        // Exactly the schema of the first release (`IF NOT EXISTS` as it had).
        sql: "
CREATE TABLE IF NOT EXISTS devices (
    id               INTEGER PRIMARY KEY,
    token            TEXT    NOT NULL,
    name             TEXT,
    registered_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    device_id      INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    uptime_ms      INTEGER NOT NULL,
    sampled_at_ms  INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    vals           TEXT    NOT NULL,   -- JSON array of values, as served
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (device_id, sampled_at_ms);
",
    },
    Migration {
        version: 2,
        what: "readings get the protocol v2 boot id; dedup on (device_id, boot, seq); existing rows get boot 0",
        // SQLite cannot change a primary key in place: build the new table, copy every row
        // (boot 0: what a version 1 frame decodes to), swap. The row count is checked before
        // the commit (`migrate`).
        sql: "
-- One row per device frame. The primary key is the dedup rule: (device_id, boot, seq) is
-- stored once; a rebooted device (seq from 0 again, another boot) is new data.
CREATE TABLE readings_v2 (
    device_id      INTEGER NOT NULL,
    boot           INTEGER NOT NULL,   -- protocol v2 boot id; 0 = none (v1 frames, old rows)
    seq            INTEGER NOT NULL,
    uptime_ms      INTEGER NOT NULL,
    sampled_at_ms  INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    vals           TEXT    NOT NULL,   -- JSON array of values, as served
    PRIMARY KEY (device_id, boot, seq)
) WITHOUT ROWID;
INSERT INTO readings_v2 (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals)
    SELECT device_id, 0, seq, uptime_ms, sampled_at_ms, received_at_ms, vals FROM readings;
DROP TABLE readings;
ALTER TABLE readings_v2 RENAME TO readings;
-- Time-range queries and 'latest per device'. TODO(7): this index costs about a third of the
-- ingest rate (measured: ~190k vs ~140k readings/s); drop it if you never query by time.
CREATE INDEX readings_by_time ON readings (device_id, sampled_at_ms);
",
    },
];

/// The schema version this build writes: the last migration's.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`], one step per transaction. Refuses a database
/// from a newer build (it could not read it correctly, and must not write it).
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "the database has schema version {current}, newer than this service's {SCHEMA_VERSION}; run the newer service, or restore a backup made for this one"
        )));
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |e: rusqlite::Error| {
            StoreError::Internal(format!(
                "schema migration to version {} ({}) failed and was rolled back: {e}",
                step.version, step.what
            ))
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(map_err)?;
        let rows_before = count_readings(&tx).map_err(failed)?;
        tx.execute_batch(step.sql).map_err(failed)?;
        let rows_after = count_readings(&tx).map_err(failed)?;
        if rows_before.is_some_and(|before| Some(before) != rows_after) {
            // Dropping `tx` rolls the step back: nothing is lost.
            return Err(StoreError::Internal(format!(
                "schema migration to version {} would change the number of readings ({rows_before:?} -> {rows_after:?}); rolled back, the database is unchanged",
                step.version
            )));
        }
        tx.pragma_update(None, "user_version", step.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            "database schema migrated to version {}: {} ({} readings kept)",
            step.version,
            step.what,
            rows_after.unwrap_or(0)
        );
    }
    Ok(())
}

/// Rows in `readings`, `None` when the table does not exist yet.
fn count_readings(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'readings'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .map(Some)
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

// ---- Durability honesty (issue 14): the store notices that its files are gone -------------
//
// SQLite keeps writing to a database file that was deleted (or replaced by a rename) while it
// is open: every commit "succeeds" into an inode nobody can reach, and the data is gone at
// exit. So the writer records the identity (device, inode) of the database file and of its
// WAL, and checks them after every commit, before it answers: a changed or missing file marks
// the store lost for good. Every later write, and the commit that found it, get 503; `ready()`
// fails; `failed()` completes, so the server shuts down and exits non-zero.

/// Where a file lives: equal ids mean the same file, even across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &std::path::Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
    #[cfg(not(unix))]
    {
        // No inode to compare: only a missing file is noticed.
        let _ = meta;
        Ok(FileId { dev: 0, ino: 0 })
    }
}

fn wal_path(db: &std::path::Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The identities the writer opened, and what it found since.
#[derive(Debug)]
struct Health {
    path: PathBuf,
    db: FileId,
    /// Recorded at the first check that finds the WAL (SQLite creates it at the first write).
    wal: Mutex<Option<FileId>>,
    /// `Some(why)` once the files are gone or replaced: permanent.
    lost: tokio::sync::watch::Sender<Option<String>>,
    /// The last commit failed for lack of space (disk or `--max-db-mb`); the next good commit
    /// clears it.
    full: std::sync::atomic::AtomicBool,
    /// `SqliteConfig::max_db_bytes`: the cap on the three files together.
    max_bytes: Option<u64>,
}

impl Health {
    fn new(path: PathBuf, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        let db = file_id(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot stat the database {}: {e}", path.display()))
        })?;
        Ok(Self {
            path,
            db,
            wal: Mutex::new(None),
            lost: tokio::sync::watch::channel(None).0,
            full: std::sync::atomic::AtomicBool::new(false),
            max_bytes,
        })
    }

    fn lost(&self) -> Option<StoreError> {
        self.lost.borrow().clone().map(StoreError::Unavailable)
    }

    /// Blocking (two `stat`s): call from the writer or the blocking pool. `Err` when the
    /// store is lost (now or before).
    fn check_files(&self) -> Result<(), StoreError> {
        if let Some(e) = self.lost() {
            return Err(e);
        }
        let problem = match file_id(&self.path) {
            Ok(id) if id == self.db => self.check_wal(),
            Ok(_) => Some("was replaced by another file"),
            Err(_) => Some("was removed"),
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        let why = format!(
            "the database file {} (or its -wal) {problem} while the service ran: writes since \
             then cannot be kept, so none are accepted; restore the file (or point --db at a \
             new one) and restart the service",
            self.path.display()
        );
        tracing::error!("{why}");
        self.lost.send_replace(Some(why.clone()));
        Err(StoreError::Unavailable(why))
    }

    fn check_wal(&self) -> Option<&'static str> {
        let found = file_id(&wal_path(&self.path)).ok();
        let Ok(mut known) = self.wal.lock() else {
            return None;
        };
        match (*known, found) {
            (None, Some(id)) => {
                *known = Some(id);
                None
            }
            (None, None) => None,
            (Some(k), Some(id)) if k == id => None,
            (Some(_), Some(_)) => Some("was replaced by another file"),
            (Some(_), None) => Some("was removed"),
        }
    }

    fn full_error() -> StoreError {
        StoreError::Unavailable(
            "the store is full (disk or --max-db-mb limit): writes are refused; free space or raise the limit, then retry".into(),
        )
    }
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

fn closed() -> StoreError {
    StoreError::Unavailable(
        "the store is shutting down; retry against the restarted service".into(),
    )
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
        let conn = tokio::task::spawn_blocking(move || open_writer(&cfg))
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
            writer_loop(conn, rx, max_rows, &writer_health)
        }));
        let readers = Arc::new(Readers {
            path: config.path,
            idle: Mutex::new(Vec::new()),
        });
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
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable(
                    "the store's write queue is full; retry shortly (or raise --write-queue)"
                        .into(),
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
        }
        // If this future is dropped here (client gone, request timed out), the command still
        // runs to completion: a reading the writer took is stored even if nobody hears "ok".
        // That is safe because ingest is idempotent: the client's retry counts it as duplicate.
        answer.await.map_err(|_| closed())?
    }
}

fn open_writer(cfg: &SqliteConfig) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(&cfg.path).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open the database {}: {e}",
            cfg.path.display()
        ))
    })?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_err)?;
    conn.pragma_update(
        None,
        "synchronous",
        if cfg.sync_full { "FULL" } else { "NORMAL" },
    )
    .map_err(map_err)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(map_err)?;
    conn.pragma_update(None, "cache_size", -16_384)
        .map_err(map_err)?; // 16 MiB
    migrate(&mut conn)?;
    hash_plaintext_tokens(&mut conn).map_err(map_err)?;
    if let Some(max) = cfg.max_db_bytes {
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(map_err)?;
        let room = max.saturating_sub(SHM_RESERVE).max(max / 2);
        let pages = i64::try_from(room).unwrap_or(i64::MAX) / page.max(1);
        let pages = pages.max(1);
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(map_err)?;
    }
    Ok(conn)
}

// ---- Migration step: device tokens hashed at rest (issue 14) -------------------------------
//
// Its own step, independent of `PRAGMA user_version` (it is idempotent: a stored hash is
// recognised by its shape), so it runs after whatever numbered schema migrations there are.
// Databases written before it keep plaintext tokens in `devices.token`; this replaces each with
// `super::token_hash` of it, in one transaction, so devices keep their tokens.

fn hash_plaintext_tokens(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let plain: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, token FROM devices")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        rows.filter(|r| !r.as_ref().is_ok_and(|(_, t)| super::is_token_hash(t)))
            .collect::<rusqlite::Result<_>>()?
    };
    for (id, token) in &plain {
        tx.execute(
            "UPDATE devices SET token = ?1 WHERE id = ?2",
            params![super::token_hash(token), id],
        )?;
    }
    tx.commit()?;
    if !plain.is_empty() {
        tracing::info!("hashed {} plaintext device tokens in place", plain.len());
    }
    Ok(())
}

/// The writer: one connection, group commit. Runs until a `Close` or until every sender is gone.
fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Cmd>,
    max_group_rows: usize,
    health: &Health,
) {
    let mut group: Vec<Cmd> = Vec::new();
    let mut close_reply = None;
    while let Some(first) = rx.blocking_recv() {
        let mut rows = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Close { reply } => close_reply = Some(reply),
                cmd => {
                    rows += cmd.rows();
                    group.push(cmd);
                }
            }
            if rows < max_group_rows && close_reply.is_none() {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            let span = tracing::debug_span!("commit", commands = group.len(), rows);
            let _enter = span.enter();
            commit_group(&mut conn, &mut group, health);
        }
        if close_reply.is_some() {
            break;
        }
    }
    // Refuse what is still queued: its senders get "shutting down" (never "accepted").
    rx.close();
    // Fold the WAL back into the database file so the next start is quick. When that fails
    // (typically a full disk: the main file cannot grow), nothing is lost: every commit
    // answered "accepted" is in the WAL, synced, and SQLite replays it at the next open. So
    // the shutdown is still clean (exit 0); the log says why the WAL stayed.
    if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(
            "wal checkpoint on close failed ({}); the committed data stays in {} and is \
             folded in at the next start once there is space",
            map_err(e),
            wal_path(&health.path).display()
        );
    }
    let result = Ok(());
    drop(conn);
    // A lost store closes with its reason, so the process exits non-zero.
    let result = match health.lost() {
        Some(e) => Err(e),
        None => result,
    };
    if let Some(reply) = close_reply {
        drop(reply.send(result));
    }
    tracing::debug!("sqlite writer stopped");
}

enum Answer {
    Ingest(
        oneshot::Sender<Result<Ingested, StoreError>>,
        Option<Ingested>,
    ),
    Register(
        oneshot::Sender<Result<Registered, StoreError>>,
        Option<Result<Registered, StoreError>>,
    ),
}

/// Runs a group of commands in one transaction and answers each, after the commit.
fn commit_group(conn: &mut Connection, group: &mut Vec<Cmd>, health: &Health) {
    if let Some(lost) = health.lost() {
        for cmd in group.drain(..) {
            match cmd {
                Cmd::Ingest { reply, .. } => drop(reply.send(Err(lost.clone()))),
                Cmd::Register { reply, .. } => drop(reply.send(Err(lost.clone()))),
                Cmd::Close { reply } => drop(reply.send(Ok(()))),
            }
        }
        return;
    }
    let mut answers = Vec::with_capacity(group.len());
    let mut error = None;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| error = Some(e))
        .ok();
    for cmd in group.drain(..) {
        // Once a statement failed, the rest of the group is not run: it all rolls back.
        let tx = tx.as_ref().filter(|_| error.is_none());
        match cmd {
            Cmd::Ingest {
                readings,
                vals,
                reply,
            } => {
                let outcome = tx.and_then(|tx| {
                    insert_readings(tx, readings, vals)
                        .map_err(|e| error = Some(e))
                        .ok()
                });
                answers.push(Answer::Ingest(reply, outcome));
            }
            Cmd::Register { device, reply } => {
                let outcome =
                    tx.and_then(|tx| register(tx, device).map_err(|e| error = Some(e)).ok());
                answers.push(Answer::Register(reply, outcome));
            }
            // Taken out of the group by the writer loop.
            Cmd::Close { reply } => drop(reply.send(Ok(()))),
        }
    }
    // Consumed on every path, so its borrow of `conn` ends here (see `fit_the_cap` below).
    let ended = tx.map(|tx| {
        if error.is_none() {
            tx.commit()
        } else {
            tx.rollback()
        }
    });
    if let Some(Err(e)) = ended {
        error.get_or_insert(e);
    }
    // The answers go out only now, after the commit: "accepted" means durable. And only if
    // the files committed to are still the ones on disk (see `Health`).
    let full = error
        .as_ref()
        .is_some_and(|e| e.sqlite_error_code() == Some(ErrorCode::DiskFull));
    health
        .full
        .store(full, std::sync::atomic::Ordering::Relaxed);
    let failed = match error.map(map_err) {
        None => health.check_files().err(),
        e => e,
    };
    if let Some(e) = &failed {
        tracing::warn!("group commit failed, nothing in it was stored: {e}");
    }
    // Before the answers: whoever hears back sees the files within --max-db-mb.
    if health.lost().is_none() {
        fit_the_cap(conn, health);
    }
    for answer in answers {
        // A send fails only when the caller went away; its data is committed regardless.
        match (answer, &failed) {
            (Answer::Ingest(reply, Some(r)), None) => drop(reply.send(Ok(r))),
            (Answer::Register(reply, Some(r)), None) => drop(reply.send(r)),
            (Answer::Ingest(reply, _), e) => {
                drop(reply.send(Err(e.clone().unwrap_or_else(internal))))
            }
            (Answer::Register(reply, _), e) => {
                drop(reply.send(Err(e.clone().unwrap_or_else(internal))))
            }
        }
    }
}

/// `--max-db-mb` counts the WAL and `-shm` too: when a commit left the three files over the
/// cap, fold the WAL back into the main file (bounded by `max_page_count`) and truncate it.
fn fit_the_cap(conn: &Connection, health: &Health) {
    let Some(max) = health.max_bytes else {
        return;
    };
    if bytes_on_disk(&health.path) <= max {
        return;
    }
    // (busy, wal frames, checkpointed frames): busy when a reader holds an old snapshot; the
    // next commit tries again.
    let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    match done {
        Ok(0) => {}
        Ok(_) => tracing::debug!("wal checkpoint for --max-db-mb deferred: a reader is busy"),
        Err(e) => tracing::warn!("wal checkpoint for --max-db-mb failed: {e}"),
    }
}

fn internal() -> StoreError {
    StoreError::Internal("store command produced no result".into())
}

fn insert_readings(
    tx: &rusqlite::Transaction<'_>,
    readings: Vec<StoredReading>,
    vals: Vec<String>,
) -> rusqlite::Result<Ingested> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO readings (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut out = Ingested {
        accepted: Vec::with_capacity(readings.len()),
        duplicates: 0,
    };
    for (r, vals) in readings.into_iter().zip(vals) {
        // SQLite integers are i64: store the u64's bits, read them back the same way
        // (`row_to_reading`), so every value round-trips, 2^64-1 included. Rows written before
        // this were clamped to i64::MAX, which reads back unchanged.
        let uptime = i64::from_ne_bytes(r.uptime_ms.to_ne_bytes());
        let n = insert.execute(params![
            r.device_id,
            r.boot,
            r.seq,
            uptime,
            r.sampled_at_ms,
            r.received_at_ms,
            vals
        ])?;
        if n == 1 {
            out.accepted.push(r);
        } else {
            out.duplicates += 1;
        }
    }
    Ok(out)
}

fn values_json(values: &[Value]) -> String {
    // Serialising plain data to a String cannot fail.
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

fn register(
    tx: &rusqlite::Transaction<'_>,
    device: NewDevice,
) -> rusqlite::Result<Result<Registered, StoreError>> {
    let id = match device.id {
        Some(id) => {
            let existing = tx
                .query_row(
                    "SELECT token, name, registered_at_ms FROM devices WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            if let Some((token_hash, name, registered_at_ms)) = existing {
                // Both are hashes (`super::token_hash`); neither is a secret.
                if token_hash != device.token {
                    return Ok(Err(StoreError::Conflict(format!(
                        "device {id} is already registered with another token; use that token or register another id"
                    ))));
                }
                return Ok(Ok(Registered {
                    device: Device {
                        id,
                        name,
                        registered_at_ms,
                    },
                    token: None,
                    created: false,
                }));
            }
            id
        }
        None => {
            // max+1 while it fits; once id 4294967295 is taken (one explicit registration is
            // enough), the smallest free id from 1 up: either 1, or the smallest id whose
            // successor is free (one index scan). No single request can use up the ids.
            let free: Option<i64> = tx.query_row(
                "SELECT CASE
                     WHEN (SELECT max(id) FROM devices) IS NULL THEN 1
                     WHEN (SELECT max(id) FROM devices) < 4294967295
                         THEN (SELECT max(id) FROM devices) + 1
                     WHEN NOT EXISTS (SELECT 1 FROM devices WHERE id = 1) THEN 1
                     ELSE (SELECT min(d.id) + 1 FROM devices d WHERE d.id >= 1 AND d.id < 4294967295
                           AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.id = d.id + 1))
                 END",
                [],
                |r| r.get(0),
            )?;
            match free.map(u32::try_from) {
                Some(Ok(id)) => id,
                _ => {
                    return Ok(Err(StoreError::Conflict(
                        "no free device id left; give an explicit id".into(),
                    )));
                }
            }
        }
    };
    let registered_at_ms = now_millis();
    tx.execute(
        "INSERT INTO devices (id, token, name, registered_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![id, device.token, device.name, registered_at_ms],
    )?;
    Ok(Ok(Registered {
        device: Device {
            id,
            name: device.name,
            registered_at_ms,
        },
        token: None,
        created: true,
    }))
}

/// Pooled read-only connections, used from the blocking pool only.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE_READERS: usize = 4;

impl Readers {
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = Arc::clone(self);
        spawn_blocking_named("sqlite-read", move || {
            // A std Mutex is right here: it is held for a Vec push/pop, never across an .await.
            let pooled = this.idle.lock().ok().and_then(|mut idle| idle.pop());
            let conn = match pooled {
                Some(c) => c,
                None => Connection::open_with_flags(
                    &this.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(map_err)?,
            };
            let result = f(&conn).map_err(map_err);
            if let Ok(mut idle) = this.idle.lock()
                && idle.len() < MAX_IDLE_READERS
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

fn row_to_reading(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredReading> {
    let vals: String = r.get(6)?;
    let values = serde_json::from_str(&vals).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredReading {
        device_id: r.get(0)?,
        boot: r.get(1)?,
        seq: r.get(2)?,
        uptime_ms: u64::from_ne_bytes(r.get::<_, i64>(3)?.to_ne_bytes()),
        sampled_at_ms: r.get(4)?,
        received_at_ms: r.get(5)?,
        values,
    })
}

const COLUMNS: &str = "device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals";

impl Store for SqliteStore {
    async fn register(&self, device: NewDevice) -> Result<Registered, StoreError> {
        self.send(|reply| Cmd::Register { device, reply }).await
    }

    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        self.readers
            .run(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, token, name, registered_at_ms FROM devices ORDER BY id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(DeviceWithToken {
                        device: Device {
                            id: r.get(0)?,
                            name: r.get(2)?,
                            registered_at_ms: r.get(3)?,
                        },
                        token: r.get(1)?,
                    })
                })?;
                rows.collect()
            })
            .await
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
        self.readers
            .run(move |conn| {
                // Paged in (boot, seq) order, the primary key's: the cursor is the last row's
                // (boot, seq), so every reading of every boot is returned exactly once.
                let sql = format!(
                    "SELECT {COLUMNS} FROM readings
                     WHERE device_id = ?1 AND (boot, seq) > (?2, ?3)
                       AND sampled_at_ms >= ?4 AND sampled_at_ms < ?5
                     ORDER BY boot, seq LIMIT ?6"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let after_boot = i64::from(q.after_boot.unwrap_or(0));
                let after_seq = q.after_seq.map_or(-1, i64::from);
                let rows = stmt.query_map(
                    params![
                        q.device_id,
                        after_boot,
                        after_seq,
                        q.from_ms,
                        q.to_ms,
                        q.limit
                    ],
                    row_to_reading,
                )?;
                rows.collect()
            })
            .await
    }

    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        self.readers
            .run(|conn| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM devices d JOIN readings r ON r.device_id = d.id AND (r.boot, r.seq) = (
                         SELECT boot, seq FROM readings WHERE device_id = d.id
                         ORDER BY sampled_at_ms DESC, seq DESC LIMIT 1)
                     ORDER BY d.id"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map([], row_to_reading)?;
                rows.collect()
            })
            .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(closed());
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

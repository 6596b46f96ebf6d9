//! The PostgreSQL backend: the same [`Store`] contract as SQLite, over the network, shared by
//! any number of service replicas.
//!
//! # Crates: tokio-postgres and deadpool-postgres (not sqlx)
//! tokio-postgres is the async driver underneath most of the ecosystem: pure Rust (no libpq),
//! on tokio, with `LISTEN`/`NOTIFY` as a stream of messages on the connection (what the live
//! stream needs) and array parameters (what the one-statement bulk insert needs).
//! deadpool-postgres is a small pool over it. sqlx would add compile-time checked queries, but
//! its macros need a database (or an offline cache) at build time, it brings its own pool and
//! runtime layer, and its `LISTEN` support is a separate connection type; the service has a
//! dozen fixed statements and must build with no PostgreSQL around.
//!
//! # Shape (mirrors `sqlite/`)
//! - **Writes** go to writer tasks (`writers`, 2 by default: PostgreSQL runs one statement on
//!   one core), each with its own connection, taking turns at the queue. One takes every ingest waiting
//!   in a bounded queue (up to `max_group_rows` readings) and stores them in ONE transaction
//!   with ONE statement: first a plain `INSERT ... SELECT FROM unnest($1::int8[], ...)` in a
//!   savepoint (every reading new: the usual case; measured about 4x less database CPU than
//!   the next one); on a unique violation (some readings are retries) it rolls back to the
//!   savepoint and runs `INSERT ... ON CONFLICT DO NOTHING RETURNING ...`, whose answer says
//!   which rows were new. Each ingest is answered after the commit (`synchronous_commit = on`
//!   by default: in PostgreSQL's fsynced WAL).
//! - **Back-pressure**: the queue is bounded; full means [`StoreError::Unavailable`] at once
//!   (503 + `Retry-After`). A lost connection answers the group in flight with 503 (nothing
//!   acknowledged; when the commit did reach the server, the client's retry is a duplicate)
//!   and the writer reconnects at the next group.
//! - **Reads** (queries, latest, devices, token checks) use a deadpool-postgres pool.
//! - **Registrations** run in their own transaction, under a table lock, so two replicas
//!   picking "the next free id" at once cannot both take it.
//! - **Migrations**: [`MIGRATIONS`] (ordered, append-only) recorded in `beacon_schema`,
//!   applied at open in one transaction under an advisory lock: replicas starting together
//!   migrate once.
//! - **Live stream across replicas**: after each commit (and after its ingests are answered)
//!   the writer sends `pg_notify('beacon_readings', '<replica>:<first pos>:<last pos>:<xmin>')`
//!   in a small transaction of its own, with `synchronous_commit = off`. Not inside the data
//!   transaction: PostgreSQL serializes the commits of every transaction that notified (a
//!   database-wide lock held through the commit, WAL flush included), so there it made the
//!   writers of every replica commit one at a time. A crash between the two commits loses that
//!   group's live-stream event only (the readings are stored and queryable). Every replica
//!   listens; for a commit by another replica, and only while someone watches the stream, it
//!   reads those rows (`pos` range and the committing transaction's `xmin`, through a BRIN
//!   index that costs next to nothing on insert) and publishes them.
//!
//! # Files
//! - this file: [`PgConfig`], [`PgStore`] (open, connections) and its [`Store`]
//!   implementation, the error mapping, [`redact`];
//! - `migrations.rs`: [`MIGRATIONS`] and [`migrate`];
//! - `ingest.rs`: the write queue's commands, the writer tasks and the group commit;
//! - `queries.rs`: registrations and the reads on the pool;
//! - `notify.rs`: LISTEN/NOTIFY: telling the other replicas of a commit, and following theirs
//!   (live stream, token cache invalidation).

mod ingest;
mod migrations;
mod notify;
mod queries;

pub use migrations::{MIGRATIONS, SCHEMA_VERSION, migrate};

use super::rows::values_json;
use super::{DeviceWithToken, Events, Ingested, NewDevice, Store, StoreError, enqueue};
use crate::model::{ReadingQuery, Registered, StoredReading, now_millis};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ingest::{Cmd, open_writer, writer_loop};
use notify::{Listeners, listen_loop};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_postgres::Client;

/// Where and how to connect: the driver's configuration and the TLS connector
/// ([`super::pg_tls`]: `sslmode` / `sslrootcert` from the URL).
#[derive(Clone)]
struct Target {
    pg: tokio_postgres::Config,
    tls: super::pg_tls::Tls,
}

/// How the PostgreSQL store is set up.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database` (or any libpq-style string).
    pub url: String,
    /// Ingest requests that may wait for the writer before new ones get 503.
    pub write_queue: usize,
    /// Most readings committed in one transaction.
    pub max_group_rows: usize,
    /// Connections in the read pool (queries, latest, token checks).
    pub pool_size: usize,
    /// Writer tasks, each with its own connection, taking turns at the queue: one PostgreSQL
    /// backend process runs one statement on one core, so two keep a second core busy while
    /// the first commits.
    pub writers: usize,
    /// `synchronous_commit = on` (the commit is in the server's fsynced WAL before the answer)
    /// or `off` (the server may lose the last few hundred ms of commits if *it* crashes; a
    /// crash of this service loses nothing either way).
    pub synchronous_commit: bool,
}

impl PgConfig {
    /// Defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            write_queue: 1024,
            max_group_rows: 50_000,
            pool_size: 8,
            writers: 2,
            synchronous_commit: true,
        }
    }
}

/// The full text of a driver error (its `Display` alone is often just "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}: {})", e, db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Connection trouble, a full disk, an administrator's shutdown: retryable (503). Anything else
/// the server refused is a bug here (500).
fn map_err(e: tokio_postgres::Error) -> StoreError {
    let retryable = e.as_db_error().is_none_or(|db| {
        let class = &db.code().code()[..2];
        matches!(class, "08" | "53" | "57" | "40" | "55")
    });
    if retryable {
        StoreError::Unavailable(format!(
            "PostgreSQL is unavailable ({}); nothing was written; retry shortly",
            describe(&e)
        ))
    } else {
        StoreError::Internal(format!("PostgreSQL error: {}", describe(&e)))
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        e => StoreError::Unavailable(format!(
            "no PostgreSQL connection available ({e}); retry shortly"
        )),
    }
}

/// The password in a URL, replaced by `***` (for logs).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (auth, host),
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    tx: tokio::sync::mpsc::Sender<Cmd>,
    pool: Pool,
    target: Target,
    /// The `sslmode` the URL asked for.
    pub tls_mode: super::pg_tls::Mode,
    /// Identifies this process's commits in notifications (its own it publishes directly).
    replica: String,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The token cache's invalidation ([`Store::attach_tokens`]), for the listener.
    invalidate: Arc<Mutex<Option<super::TokenInvalidate>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

async fn connect(to: &Target, what: &'static str) -> Result<Client, StoreError> {
    let (client, conn) = to.pg.connect(to.tls.clone()).await.map_err(|e| {
        let why = describe(&e);
        let hint = if why.contains("TLS") || why.contains("certificate") {
            "check sslmode and sslrootcert in --db (docs/scale-out.md, \"What a managed PostgreSQL needs\")"
        } else {
            "check --db / BEACON_DB and that the server runs"
        };
        StoreError::Unavailable(format!("cannot connect to PostgreSQL ({why}); {hint}"))
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("PostgreSQL {what} connection ended: {}", describe(&e));
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects, migrates the schema and starts the writer.
    pub async fn open(config: PgConfig) -> Result<Self, StoreError> {
        let super::pg_tls::Parsed {
            config: mut pg,
            tls,
            mode: tls_mode,
        } = super::pg_tls::parse(&config.url, &redact(&config.url))?;
        pg.application_name("beacon-service")
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        let target = Target { pg, tls };
        let mut client = connect(&target, "migration").await?;
        migrate(&mut client).await?;
        drop(client);
        let mut conns = Vec::new();
        for _ in 0..config.writers.max(1) {
            conns.push(open_writer(&target, config.synchronous_commit).await?);
        }
        let manager = Manager::from_config(
            target.pg.clone(),
            target.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(config.write_queue.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let replica = format!("{:x}-{:x}", std::process::id(), now_millis());
        let writers = conns
            .into_iter()
            .map(|conn| {
                tokio::spawn(writer_loop(
                    Some(conn),
                    target.clone(),
                    config.synchronous_commit,
                    Arc::clone(&rx),
                    config.max_group_rows.max(1),
                    replica.clone(),
                ))
            })
            .collect();
        Ok(Self {
            tx,
            pool,
            target,
            tls_mode,
            replica,
            listener: Mutex::new(None),
            writers: Mutex::new(writers),
            invalidate: Arc::new(Mutex::new(None)),
        })
    }
}

/// A `bigint` column that holds a `u32` (ids, boots, seqs).
fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Store for PgStore {
    async fn register(&self, device: NewDevice) -> Result<Registered, StoreError> {
        queries::register(&self.pool, device).await
    }

    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        queries::devices(&self.pool).await
    }

    async fn ingest(&self, readings: Vec<StoredReading>) -> Result<Ingested, StoreError> {
        if readings.is_empty() {
            return Ok(Ingested::default());
        }
        let vals = readings.iter().map(|r| values_json(&r.values)).collect();
        let (reply, answer) = oneshot::channel();
        enqueue(
            &self.tx,
            Cmd::Ingest {
                readings,
                vals,
                reply,
            },
        )?;
        // Dropped here (client gone)? The writer still commits; the retry is a duplicate.
        answer.await.map_err(|_| StoreError::closed())?
    }

    async fn query(&self, q: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        queries::query(&self.pool, q).await
    }

    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        queries::latest(&self.pool).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(StoreError::closed());
        }
        let check = async {
            let c = self.pool.get().await.map_err(pool_err)?;
            c.simple_query("SELECT 1").await.map_err(map_err)?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "PostgreSQL did not answer within 2 s; check the server and the network".into(),
                ));
            }
        }
        // The server answers: a writer that lost its connection reconnects at its next group.
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        if let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) {
            listener.abort();
        }
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Cmd::Close { reply }).await.is_err() {
            return Ok(());
        }
        let result = answer.await.unwrap_or(Ok(()));
        // Every writer finishes the group it holds (queued before the close) and stops.
        let writers = self
            .writers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in writers {
            let _ = w.await;
        }
        result
    }

    fn shared(&self) -> bool {
        true
    }

    async fn device_token(&self, id: u32) -> Result<Option<String>, StoreError> {
        queries::device_token(&self.pool, id).await
    }

    fn attach_stream(&self, events: Events) {
        let task = tokio::spawn(listen_loop(
            self.target.clone(),
            self.pool.clone(),
            Listeners {
                me: self.replica.clone(),
                events,
                invalidate: Arc::clone(&self.invalidate),
            },
        ));
        if let Ok(mut l) = self.listener.lock()
            && let Some(old) = l.replace(task)
        {
            old.abort();
        }
    }

    fn attach_tokens(&self, invalidate: super::TokenInvalidate) {
        if let Ok(mut f) = self.invalidate.lock() {
            *f = Some(invalidate);
        }
    }
}

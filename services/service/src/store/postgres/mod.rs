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
//! # Shape (mirrors `sqlite.rs`)
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

use super::sqlite::Migration;
use super::{DeviceWithToken, Events, Ingested, NewDevice, Store, StoreError};
use crate::model::{Device, ReadingQuery, Registered, StoredReading, Value, now_millis};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt as _;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, Statement};

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

/// Every schema migration, in order (`MIGRATIONS[i].version == i + 1`), recorded in
/// `beacon_schema`. Append steps; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "devices and readings, deduplicated on (device_id, boot, seq)",
        sql: "
CREATE TABLE devices (
    id               bigint PRIMARY KEY,   -- u32
    token            text   NOT NULL,      -- sha256:<hex> of the device token
    name             text,
    registered_at_ms bigint NOT NULL
);
-- One row per device frame; the primary key is the dedup rule. u32/u64 values are stored in
-- bigint (u64 as its bits, as in SQLite). TODO(7): partition by sampled_at_ms for retention
-- (docs/scale-out.md).
CREATE TABLE readings (
    device_id      bigint NOT NULL,
    boot           bigint NOT NULL,
    seq            bigint NOT NULL,
    uptime_ms      bigint NOT NULL,
    sampled_at_ms  bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    vals           text   NOT NULL,   -- JSON array of values, as served
    -- Commit position, for the live stream across replicas (see the module docs).
    pos            bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),
    PRIMARY KEY (device_id, boot, seq)
);
CREATE INDEX readings_by_time ON readings (device_id, sampled_at_ms);
CREATE INDEX readings_by_pos ON readings USING brin (pos);
",
    },
    Migration {
        version: 2,
        what: "notify beacon_devices when a device row changes or goes (token cache invalidation)",
        // A trigger, not the service: a token changed by hand (UPDATE devices SET token = ...)
        // or a device deleted reaches every replica the same way. Delivered on commit only.
        sql: "
CREATE FUNCTION beacon_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('beacon_devices', OLD.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_changed AFTER UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION beacon_device_changed();
",
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A fixed key for `pg_advisory_xact_lock`: replicas migrating at once take turns.
const MIGRATION_LOCK: i64 = 0x6265_6163_6f6e; // "beacon"

const COLUMNS: &str = "device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals";

const INSERT: &str = "INSERT INTO readings (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::text[])
     ON CONFLICT DO NOTHING
     RETURNING device_id, boot, seq, pos, xmin::text";

/// The fast path, for a group with no duplicates (the usual case): a plain INSERT (no
/// speculative insertion per row, no row per reading sent back), inside a savepoint; a unique
/// violation rolls back to the savepoint and the group goes through [`INSERT`] instead.
const INSERT_ALL_NEW: &str = "WITH ins AS (
         INSERT INTO readings (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::text[])
         RETURNING pos, xmin)
     SELECT count(*), min(pos), max(pos), min(xmin::text) FROM ins";

/// The channel the writers notify on.
const CHANNEL: &str = "beacon_readings";

/// The channel migration 2's trigger notifies on, with the device id, when a device row is
/// updated or deleted.
const DEVICES_CHANNEL: &str = "beacon_devices";

/// Brings the database to [`SCHEMA_VERSION`] in one transaction (PostgreSQL DDL is
/// transactional: a failure leaves it unchanged). Refuses a database from a newer build.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE TABLE IF NOT EXISTS beacon_schema (
             version    integer PRIMARY KEY,
             what       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(map_err)?;
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM beacon_schema", &[])
        .await
        .map_err(map_err)?
        .get(0);
    let current = u32::try_from(current.unwrap_or(0)).unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "the database has schema version {current}, newer than this service's {SCHEMA_VERSION}; run the newer service, or restore a backup made for this one"
        )));
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |e: tokio_postgres::Error| {
            StoreError::Internal(format!(
                "schema migration to version {} ({}) failed and was rolled back: {}",
                step.version,
                step.what,
                describe(&e)
            ))
        };
        tx.batch_execute(step.sql).await.map_err(failed)?;
        let version = i32::try_from(step.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO beacon_schema (version, what) VALUES ($1, $2)",
            &[&version, &step.what],
        )
        .await
        .map_err(failed)?;
        tracing::info!(
            "database schema migrated to version {}: {}",
            step.version,
            step.what
        );
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
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

fn closed() -> StoreError {
    StoreError::Unavailable(
        "the store is shutting down; retry against the restarted service".into(),
    )
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

enum Cmd {
    Ingest {
        readings: Vec<StoredReading>,
        vals: Vec<String>,
        reply: oneshot::Sender<Result<Ingested, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    tx: mpsc::Sender<Cmd>,
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

struct Writer {
    client: Client,
    insert: Statement,
    insert_all_new: Statement,
}

async fn open_writer(to: &Target, sync: bool) -> Result<Writer, StoreError> {
    let client = connect(to, "writer").await?;
    if !sync {
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(map_err)?;
    }
    let insert = client.prepare(INSERT).await.map_err(map_err)?;
    let insert_all_new = client.prepare(INSERT_ALL_NEW).await.map_err(map_err)?;
    Ok(Writer {
        client,
        insert,
        insert_all_new,
    })
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
        let (tx, rx) = mpsc::channel(config.write_queue.max(1));
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

/// A writer: one connection, group commit, until `Close` or every sender is gone. Several take
/// turns at the queue: one holds the lock while it gathers a group (never while it commits).
/// The one that receives `Close` refuses what is queued after it and closes the queue; the
/// others finish the group they hold and stop; [`PgStore::close`] waits for all of them.
async fn writer_loop(
    mut conn: Option<Writer>,
    to: Target,
    sync: bool,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Cmd>>>,
    max_group_rows: usize,
    replica: String,
) {
    let mut group = Vec::new();
    let mut close_reply = None;
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let mut rows = 0;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Close { reply } => close_reply = Some(reply),
                    Cmd::Ingest {
                        readings,
                        vals,
                        reply,
                    } => {
                        rows += readings.len();
                        group.push((readings, vals, reply));
                    }
                }
                if rows < max_group_rows && close_reply.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            if close_reply.is_some() {
                // Refuse what is still queued: its senders get "shutting down" (never
                // "accepted"); the other writers then find the queue closed and empty.
                rx.close();
                while rx.try_recv().is_ok() {}
            }
        }
        if !group.is_empty() {
            if conn.as_ref().is_none_or(|w| w.client.is_closed()) {
                conn = match open_writer(&to, sync).await {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!("PostgreSQL writer cannot reconnect: {e}");
                        None
                    }
                };
            }
            let result = match &conn {
                Some(w) => commit_group(w, &group, &replica).await,
                None => Err(StoreError::Unavailable(
                    "PostgreSQL is unreachable; nothing was written; retry shortly".into(),
                )),
            };
            let event = result.as_ref().ok().and_then(|(_, e)| e.clone());
            answer(&mut group, result.map(|(new, _)| new));
            if let (Some(w), Some(payload)) = (&conn, event) {
                notify(w, &payload).await;
            }
        }
        if close_reply.is_some() {
            break;
        }
    }
    drop(conn);
    if let Some(reply) = close_reply {
        drop(reply.send(Ok(())));
    }
    tracing::debug!("postgres writer stopped");
}

type Group = Vec<(
    Vec<StoredReading>,
    Vec<String>,
    oneshot::Sender<Result<Ingested, StoreError>>,
)>;

/// Which readings of a committed group were new.
enum New {
    /// Every one (the fast path succeeded).
    All,
    /// These keys; the others were stored before.
    These(HashSet<(u32, u32, u32)>),
}

/// Tells the other replicas' listeners about a committed group: its own transaction, which
/// need not wait for the WAL flush (see the module docs for why not the data transaction).
async fn notify(w: &Writer, payload: &str) {
    let sql = format!(
        "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('{CHANNEL}', '{}'); COMMIT",
        payload.replace('\'', "''")
    );
    if let Err(e) = w.client.batch_execute(&sql).await {
        tracing::warn!(
            "live stream: the other replicas were not told of a commit: {}",
            describe(&e)
        );
        if !w.client.is_closed() {
            let _ = w.client.batch_execute("ROLLBACK").await;
        }
    }
}

/// Inserts the whole group in one transaction; `Ok` says which readings were new, and the
/// notification payload for the other replicas (`None`: nothing new).
///
/// The payload names the rows' `xmin`, the (sub)transaction that wrote them: the inserts run
/// in a savepoint, so that is not `pg_current_xact_id()`.
async fn commit_group(
    w: &Writer,
    group: &Group,
    replica: &str,
) -> Result<(New, Option<String>), StoreError> {
    let n: usize = group.iter().map(|g| g.0.len()).sum();
    let mut device = Vec::with_capacity(n);
    let mut boot = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut uptime = Vec::with_capacity(n);
    let mut sampled = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut vals: Vec<&str> = Vec::with_capacity(n);
    // In key order: writers inserting overlapping groups at once then take the key locks in
    // the same order, so they wait for each other (then see the duplicates) instead of
    // deadlocking.
    let mut rows: Vec<(&StoredReading, &String)> = group
        .iter()
        .flat_map(|(readings, v, _)| readings.iter().zip(v))
        .collect();
    rows.sort_unstable_by_key(|(r, _)| (r.device_id, r.boot, r.seq));
    for (r, v) in rows {
        device.push(i64::from(r.device_id));
        boot.push(i64::from(r.boot));
        seq.push(i64::from(r.seq));
        uptime.push(i64::from_ne_bytes(r.uptime_ms.to_ne_bytes()));
        sampled.push(r.sampled_at_ms);
        received.push(r.received_at_ms);
        vals.push(v);
    }
    tracing::debug!(commands = group.len(), rows = n, "commit");
    // `Client::transaction` needs `&mut`; the writer is the connection's only user, so the
    // statements are sent by hand.
    w.client
        .batch_execute("BEGIN; SAVEPOINT all_new")
        .await
        .map_err(map_err)?;
    let outcome = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&device, &boot, &seq, &uptime, &sampled, &received, &vals];
        let (new, lo, hi, xid) = match w.client.query_one(&w.insert_all_new, &params).await {
            Ok(row) => {
                let lo: Option<i64> = row.get(1);
                let hi: Option<i64> = row.get(2);
                let xid: Option<String> = row.get(3);
                (
                    New::All,
                    lo.unwrap_or(0),
                    hi.unwrap_or(-1),
                    xid.unwrap_or_default(),
                )
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                // Some are stored already (retries): per-row dedup, and which rows were new.
                w.client
                    .batch_execute("ROLLBACK TO SAVEPOINT all_new")
                    .await?;
                let rows = w.client.query(&w.insert, &params).await?;
                let mut new = HashSet::with_capacity(rows.len());
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                let mut xid = String::new();
                for row in &rows {
                    let key = (
                        to_u32(row.get::<_, i64>(0)),
                        to_u32(row.get::<_, i64>(1)),
                        to_u32(row.get::<_, i64>(2)),
                    );
                    let pos: i64 = row.get(3);
                    lo = lo.min(pos);
                    hi = hi.max(pos);
                    if xid.is_empty() {
                        xid = row.get(4);
                    }
                    new.insert(key);
                }
                (New::These(new), lo, hi, xid)
            }
            Err(e) => return Err(e),
        };
        w.client.batch_execute("COMMIT").await?;
        let event = (lo <= hi).then(|| format!("{replica}:{lo}:{hi}:{xid}"));
        Ok::<_, tokio_postgres::Error>((new, event))
    }
    .await;
    match outcome {
        Ok(new) => Ok(new),
        Err(e) => {
            if !w.client.is_closed() {
                let _ = w.client.batch_execute("ROLLBACK").await;
            }
            let e = map_err(e);
            tracing::warn!("group commit failed, nothing in it was acknowledged: {e}");
            Err(e)
        }
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Answers each ingest of the group after the commit. A reading sent twice in one group is
/// new in the first ingest that carries it and a duplicate in the others.
fn answer(group: &mut Group, result: Result<New, StoreError>) {
    match result {
        Ok(New::All) => {
            for (readings, _, reply) in group.drain(..) {
                drop(reply.send(Ok(Ingested {
                    accepted: readings,
                    duplicates: 0,
                })));
            }
        }
        Ok(New::These(mut new)) => {
            for (readings, _, reply) in group.drain(..) {
                let mut out = Ingested {
                    accepted: Vec::with_capacity(readings.len()),
                    duplicates: 0,
                };
                for r in readings {
                    if new.remove(&(r.device_id, r.boot, r.seq)) {
                        out.accepted.push(r);
                    } else {
                        out.duplicates += 1;
                    }
                }
                drop(reply.send(Ok(out)));
            }
        }
        Err(e) => {
            for (_, _, reply) in group.drain(..) {
                drop(reply.send(Err(e.clone())));
            }
        }
    }
}

fn row_to_reading(r: &tokio_postgres::Row) -> Result<StoredReading, StoreError> {
    let vals: &str = r.get(6);
    let values: Vec<Value> = serde_json::from_str(vals)
        .map_err(|e| StoreError::Internal(format!("stored values are not valid JSON: {e}")))?;
    Ok(StoredReading {
        device_id: to_u32(r.get(0)),
        boot: to_u32(r.get(1)),
        seq: to_u32(r.get(2)),
        uptime_ms: u64::from_ne_bytes(r.get::<_, i64>(3).to_ne_bytes()),
        sampled_at_ms: r.get(4),
        received_at_ms: r.get(5),
        values,
    })
}

fn values_json(values: &[Value]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// What the listener serves: the live stream and the token cache.
struct Listeners {
    me: String,
    events: Events,
    invalidate: Arc<Mutex<Option<super::TokenInvalidate>>>,
}

impl Listeners {
    fn invalidate(&self, id: Option<u32>) {
        let f = self.invalidate.lock().ok().and_then(|f| f.clone());
        if let Some(f) = f {
            f(id);
        }
    }
}

/// Follows the other replicas' commits (see the module docs) and publishes their readings on
/// `events` while anyone is subscribed, and the device changes (migration 2's trigger) into
/// the token cache. Reconnects after a second when the connection drops (commits notified in
/// the gap are not streamed: the stream is live, not a log; the token cache is emptied at
/// every (re)connect, since changes in the gap were missed).
async fn listen_loop(target: Target, pool: Pool, to: Listeners) {
    let select = format!(
        "SELECT {COLUMNS} FROM readings WHERE pos BETWEEN $1 AND $2 AND xmin = $3::text::xid ORDER BY pos"
    );
    loop {
        match target.pg.connect(target.tls.clone()).await {
            Ok((client, mut conn)) => {
                let (ntx, mut nrx) = mpsc::channel::<(bool, String)>(1024);
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(|cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                // Full: the readers fell behind; drop (the stream says lagged
                                // to nobody, but it never blocks the connection).
                                let device = n.channel() == DEVICES_CHANNEL;
                                let _ = ntx.try_send((device, n.payload().to_owned()));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("PostgreSQL listener: {}", describe(&e));
                                break;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN {CHANNEL}; LISTEN {DEVICES_CHANNEL}");
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        to.invalidate(None);
                        while let Some((device, payload)) = nrx.recv().await {
                            if device {
                                // An unreadable id: drop everything rather than guess.
                                to.invalidate(payload.parse().ok());
                                continue;
                            }
                            let mut parts = payload.split(':');
                            let (Some(who), Some(lo), Some(hi), Some(xid)) =
                                (parts.next(), parts.next(), parts.next(), parts.next())
                            else {
                                continue;
                            };
                            if who == to.me || to.events.receiver_count() == 0 {
                                continue;
                            }
                            let (Ok(lo), Ok(hi)) = (lo.parse::<i64>(), hi.parse::<i64>()) else {
                                continue;
                            };
                            let rows = match pool.get().await {
                                Ok(c) => c.query(&select, &[&lo, &hi, &xid]).await.map_err(map_err),
                                Err(e) => Err(pool_err(e)),
                            };
                            match rows.and_then(|rows| {
                                rows.iter()
                                    .map(row_to_reading)
                                    .collect::<Result<Vec<_>, _>>()
                            }) {
                                Ok(batch) if !batch.is_empty() => {
                                    let _ = to.events.send(Arc::from(batch));
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(
                                    "live stream: cannot read a commit of another replica: {e}"
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::warn!("PostgreSQL LISTEN failed: {}", describe(&e)),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(
                "PostgreSQL listener cannot connect ({}); retrying in 1 s",
                describe(&e)
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Store for PgStore {
    async fn register(&self, device: NewDevice) -> Result<Registered, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // Registrations are rare: one at a time across every replica.
        tx.batch_execute("LOCK TABLE devices IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(map_err)?;
        let id = match device.id {
            Some(id) => {
                let existing = tx
                    .query_opt(
                        "SELECT token, name, registered_at_ms FROM devices WHERE id = $1",
                        &[&i64::from(id)],
                    )
                    .await
                    .map_err(map_err)?;
                if let Some(row) = existing {
                    let token: String = row.get(0);
                    if token != device.token {
                        return Err(StoreError::Conflict(format!(
                            "device {id} is already registered with another token; use that token or register another id"
                        )));
                    }
                    return Ok(Registered {
                        device: Device {
                            id,
                            name: row.get(1),
                            registered_at_ms: row.get(2),
                        },
                        token: None,
                        created: false,
                    });
                }
                id
            }
            None => {
                // As in SQLite: max+1 while it fits, then the smallest free id.
                let free: Option<i64> = tx
                    .query_one(
                        "SELECT CASE
                             WHEN (SELECT max(id) FROM devices) IS NULL THEN 1
                             WHEN (SELECT max(id) FROM devices) < 4294967295
                                 THEN (SELECT max(id) FROM devices) + 1
                             WHEN NOT EXISTS (SELECT 1 FROM devices WHERE id = 1) THEN 1
                             ELSE (SELECT min(d.id) + 1 FROM devices d WHERE d.id >= 1 AND d.id < 4294967295
                                   AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.id = d.id + 1))
                         END",
                        &[],
                    )
                    .await
                    .map_err(map_err)?
                    .get(0);
                match free.map(u32::try_from) {
                    Some(Ok(id)) => id,
                    _ => {
                        return Err(StoreError::Conflict(
                            "no free device id left; give an explicit id".into(),
                        ));
                    }
                }
            }
        };
        let registered_at_ms = now_millis();
        tx.execute(
            "INSERT INTO devices (id, token, name, registered_at_ms) VALUES ($1, $2, $3, $4)",
            &[
                &i64::from(id),
                &device.token,
                &device.name,
                &registered_at_ms,
            ],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Registered {
            device: Device {
                id,
                name: device.name,
                registered_at_ms,
            },
            token: None,
            created: true,
        })
    }

    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT id, token, name, registered_at_ms FROM devices ORDER BY id",
                &[],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| DeviceWithToken {
                device: Device {
                    id: to_u32(r.get(0)),
                    name: r.get(2),
                    registered_at_ms: r.get(3),
                },
                token: r.get(1),
            })
            .collect())
    }

    async fn ingest(&self, readings: Vec<StoredReading>) -> Result<Ingested, StoreError> {
        if readings.is_empty() {
            return Ok(Ingested::default());
        }
        let vals = readings.iter().map(|r| values_json(&r.values)).collect();
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Cmd::Ingest {
            readings,
            vals,
            reply,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable(
                    "the store's write queue is full; retry shortly (or raise --write-queue)"
                        .into(),
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
        }
        // Dropped here (client gone)? The writer still commits; the retry is a duplicate.
        answer.await.map_err(|_| closed())?
    }

    async fn query(&self, q: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM readings
             WHERE device_id = $1 AND (boot, seq) > ($2, $3)
               AND sampled_at_ms >= $4 AND sampled_at_ms < $5
             ORDER BY boot, seq LIMIT $6"
        );
        let stmt = c.prepare_cached(&sql).await.map_err(map_err)?;
        let after_boot = i64::from(q.after_boot.unwrap_or(0));
        let after_seq = q.after_seq.map_or(-1, i64::from);
        let rows = c
            .query(
                &stmt,
                &[
                    &i64::from(q.device_id),
                    &after_boot,
                    &after_seq,
                    &q.from_ms,
                    &q.to_ms,
                    &i64::from(q.limit),
                ],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(row_to_reading).collect()
    }

    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let sql = format!(
            "SELECT r.* FROM devices d CROSS JOIN LATERAL (
                 SELECT {COLUMNS} FROM readings WHERE device_id = d.id
                 ORDER BY sampled_at_ms DESC, seq DESC LIMIT 1) r
             ORDER BY d.id"
        );
        let rows = c.query(&sql, &[]).await.map_err(map_err)?;
        rows.iter().map(row_to_reading).collect()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(closed());
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
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt("SELECT token FROM devices WHERE id = $1", &[&i64::from(id)])
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| r.get(0)))
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

//! PostgreSQL's ingest: the write queue's commands, the writer tasks (each with its own
//! connection, taking turns at the queue) and the group commit: every queued ingest in ONE
//! transaction with ONE `unnest` statement, the all-new fast path in a savepoint first, then
//! `ON CONFLICT DO NOTHING RETURNING` when some readings are retries; each ingest is answered
//! after the commit, and the other replicas are told ([`super::notify`]).

use super::notify::notify;
use super::{Target, connect, map_err, to_u32};
use crate::model::StoredReading;
use crate::store::rows::uptime_to_sql;
use crate::store::{Ingested, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement};

/// Per-row dedup, and which rows were new: the path for a group with duplicates.
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

/// What the store sends its writers.
pub(super) enum Cmd {
    Ingest {
        readings: Vec<StoredReading>,
        vals: Vec<String>,
        reply: oneshot::Sender<Result<Ingested, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A writer's connection and its two prepared inserts.
pub(super) struct Writer {
    pub(super) client: Client,
    insert: Statement,
    insert_all_new: Statement,
}

/// Connects a writer (with `synchronous_commit = off` when `sync` is false) and prepares its
/// inserts.
pub(super) async fn open_writer(to: &Target, sync: bool) -> Result<Writer, StoreError> {
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

/// A writer: one connection, group commit, until `Close` or every sender is gone. Several take
/// turns at the queue: one holds the lock while it gathers a group (never while it commits).
/// The one that receives `Close` refuses what is queued after it and closes the queue; the
/// others finish the group they hold and stop; `PgStore::close` waits for all of them.
pub(super) async fn writer_loop(
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
        uptime.push(uptime_to_sql(r.uptime_ms));
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

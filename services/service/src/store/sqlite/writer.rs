//! The SQLite writer: its connection (opened, tuned and migrated at start), [`writer_loop`]
//! taking every queued command into one group, and the group commit that runs them in ONE
//! transaction and answers each after it (registrations and ingests share the one writer).

use super::health::{Health, fit_the_cap, wal_path};
use super::migrations::{hash_plaintext_tokens, migrate};
use super::{Cmd, SHM_RESERVE, SqliteConfig, map_err};
use crate::model::{Registered, StoredReading, now_millis};
use crate::store::rows::{self, uptime_to_sql};
use crate::store::{Ingested, NewDevice, StoreError};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

/// Opens the database for writing: WAL, the durability the config asks for, the schema
/// migrations, and the page cap for `--max-db-mb`.
pub(super) fn open_writer(cfg: &SqliteConfig) -> Result<Connection, StoreError> {
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
    // Fold the WAL into the database every WAL_AUTOCHECKPOINT pages instead of SQLite's 1,000:
    // a checkpoint writes each page once however often the WAL holds it, and with many devices
    // each commit dirties pages all over the tree (see the constant for the figures).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
        .map_err(map_err)?;
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

/// WAL pages between automatic checkpoints (4 KiB each: about 40 MiB of WAL at most before
/// one; `--max-db-mb` still checkpoints as soon as the files pass the cap). Measured with
/// `cargo xtask bench-fleet --devices 10000` (two pairs, one run each): SQLite's default
/// 1,000 spent 26 % of the service's CPU in checkpoints; 10,000 took the service from 57-58
/// to 51-52 us per reading (steady) and p99 from 578-1,257 ms to 265-316 ms.
const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// The writer: one connection, group commit. Runs until a `Close` or until every sender is gone.
pub(super) fn writer_loop(
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
        // SQLite integers are i64: the u64's bits (`rows::uptime_to_sql`).
        let uptime = uptime_to_sql(r.uptime_ms);
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
                return Ok(rows::already_registered(
                    id,
                    &device.token,
                    &token_hash,
                    name,
                    registered_at_ms,
                ));
            }
            id
        }
        None => {
            // The next free id (`rows::FREE_ID` says which).
            let free: Option<i64> = tx.query_row(rows::FREE_ID, [], |r| r.get(0))?;
            match rows::free_id(free) {
                Ok(id) => id,
                Err(e) => return Ok(Err(e)),
            }
        }
    };
    let registered_at_ms = now_millis();
    tx.execute(
        "INSERT INTO devices (id, token, name, registered_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![id, device.token, device.name, registered_at_ms],
    )?;
    Ok(Ok(rows::created(id, device.name, registered_at_ms)))
}

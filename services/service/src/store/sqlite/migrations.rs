//! SQLite's schema migrations: [`MIGRATIONS`], ordered steps keyed by `PRAGMA user_version`,
//! each run by [`migrate`] in its own transaction with the version bump; and the separate,
//! idempotent step that hashes plaintext device tokens at rest.

use super::map_err;
use crate::store::StoreError;
use crate::store::migration::{Migration, newer_schema, step_failed};
use rusqlite::{Connection, params};

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
        return Err(newer_schema(current, SCHEMA_VERSION));
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |e: rusqlite::Error| step_failed(step, e);
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

// ---- Migration step: device tokens hashed at rest (issue 14) -------------------------------
//
// Its own step, independent of `PRAGMA user_version` (it is idempotent: a stored hash is
// recognised by its shape), so it runs after whatever numbered schema migrations there are.
// Databases written before it keep plaintext tokens in `devices.token`; this replaces each with
// `crate::store::token_hash` of it, in one transaction, so devices keep their tokens.

pub(super) fn hash_plaintext_tokens(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let plain: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, token FROM devices")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        rows.filter(|r| {
            !r.as_ref()
                .is_ok_and(|(_, t)| crate::store::is_token_hash(t))
        })
        .collect::<rusqlite::Result<_>>()?
    };
    for (id, token) in &plain {
        tx.execute(
            "UPDATE devices SET token = ?1 WHERE id = ?2",
            params![crate::store::token_hash(token), id],
        )?;
    }
    tx.commit()?;
    if !plain.is_empty() {
        tracing::info!("hashed {} plaintext device tokens in place", plain.len());
    }
    Ok(())
}

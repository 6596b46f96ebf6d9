//! PostgreSQL's schema migrations: [`MIGRATIONS`] (ordered, append-only) recorded in
//! `beacon_schema`, applied by [`migrate`] at open in one transaction under an advisory lock,
//! so replicas starting together migrate once.

use super::{describe, map_err};
use crate::store::StoreError;
use crate::store::migration::{Migration, newer_schema, step_failed};
use tokio_postgres::Client;

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
        return Err(newer_schema(current, SCHEMA_VERSION));
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |e: tokio_postgres::Error| step_failed(step, describe(&e));
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

//! SQLite's reads: a small pool of read-only connections used from tokio's blocking pool
//! (`sqlite-read` tasks; WAL lets them run while the writer commits), and the queries the
//! [`Store`](crate::store::Store) methods run on it: devices, a device's readings, the latest
//! reading of each device.

use super::{map_err, spawn_blocking_named};
use crate::model::{Device, ReadingQuery, StoredReading};
use crate::store::rows::{COLUMNS, after, uptime_from_sql};
use crate::store::{DeviceWithToken, StoreError};
use rusqlite::{Connection, OpenFlags, params};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Pooled read-only connections, used from the blocking pool only.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE_READERS: usize = 4;

impl Readers {
    /// No connection yet: each is opened on first use and kept (up to [`MAX_IDLE_READERS`]).
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

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

    /// Every registered device, with its token hash, by id.
    pub(super) async fn devices(self: &Arc<Self>) -> Result<Vec<DeviceWithToken>, StoreError> {
        self.run(|conn| {
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

    /// One device's readings in a time range, in `(boot, seq)` order, one page.
    pub(super) async fn query(
        self: &Arc<Self>,
        q: ReadingQuery,
    ) -> Result<Vec<StoredReading>, StoreError> {
        self.run(move |conn| {
            // Paged in (boot, seq) order (`rows::after`). PostgreSQL runs the same query but for
            // the placeholders (`?N` here, `$N` there).
            let sql = format!(
                "SELECT {COLUMNS} FROM readings
                     WHERE device_id = ?1 AND (boot, seq) > (?2, ?3)
                       AND sampled_at_ms >= ?4 AND sampled_at_ms < ?5
                     ORDER BY boot, seq LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let (after_boot, after_seq) = after(&q);
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

    /// The most recently sampled reading of every device that has one, by device id.
    pub(super) async fn latest(self: &Arc<Self>) -> Result<Vec<StoredReading>, StoreError> {
        self
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
}

/// A `readings` row, its columns in [`COLUMNS`] order. (PostgreSQL's twin reads the same
/// columns; the drivers' row APIs differ: rusqlite checks each conversion.)
fn row_to_reading(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredReading> {
    let vals: String = r.get(6)?;
    let values = serde_json::from_str(&vals).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredReading {
        device_id: r.get(0)?,
        boot: r.get(1)?,
        seq: r.get(2)?,
        uptime_ms: uptime_from_sql(r.get(3)?),
        sampled_at_ms: r.get(4)?,
        received_at_ms: r.get(5)?,
        values,
    })
}

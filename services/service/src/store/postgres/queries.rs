//! PostgreSQL's reads and registrations, on the pool: registering a device (its own
//! transaction under a table lock, so replicas never hand out one id twice), the device list
//! and one device's token, a device's readings, the latest reading of each device, and
//! reading a `readings` row.

use super::{map_err, pool_err, to_u32};
use crate::model::{Device, ReadingQuery, Registered, StoredReading, Value, now_millis};
use crate::store::rows::{self, COLUMNS, after, uptime_from_sql};
use crate::store::{DeviceWithToken, NewDevice, StoreError};
use deadpool_postgres::Pool;

/// Registers a device: see [`Store::register`](crate::store::Store::register).
pub(super) async fn register(pool: &Pool, device: NewDevice) -> Result<Registered, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
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
                return rows::already_registered(id, &device.token, &token, row.get(1), row.get(2));
            }
            id
        }
        None => {
            // As in SQLite (`rows::FREE_ID`): max+1 while it fits, then the smallest free id.
            let free: Option<i64> = tx
                .query_one(rows::FREE_ID, &[])
                .await
                .map_err(map_err)?
                .get(0);
            rows::free_id(free)?
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
    Ok(rows::created(id, device.name, registered_at_ms))
}

/// Every registered device, with its token hash, by id.
pub(super) async fn devices(pool: &Pool) -> Result<Vec<DeviceWithToken>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    let found = c
        .query(
            "SELECT id, token, name, registered_at_ms FROM devices ORDER BY id",
            &[],
        )
        .await
        .map_err(map_err)?;
    Ok(found
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

/// One device's token hash, `None` for an unknown device.
pub(super) async fn device_token(pool: &Pool, id: u32) -> Result<Option<String>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    let row = c
        .query_opt("SELECT token FROM devices WHERE id = $1", &[&i64::from(id)])
        .await
        .map_err(map_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// One device's readings in a time range, in `(boot, seq)` order, one page.
pub(super) async fn query(pool: &Pool, q: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    // SQLite's query but for the placeholders (`$N` here, `?N` there); paged as `rows::after`.
    let sql = format!(
        "SELECT {COLUMNS} FROM readings
         WHERE device_id = $1 AND (boot, seq) > ($2, $3)
           AND sampled_at_ms >= $4 AND sampled_at_ms < $5
         ORDER BY boot, seq LIMIT $6"
    );
    let stmt = c.prepare_cached(&sql).await.map_err(map_err)?;
    let (after_boot, after_seq) = after(&q);
    let found = c
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
    found.iter().map(row_to_reading).collect()
}

/// The most recently sampled reading of every device that has one, by device id.
pub(super) async fn latest(pool: &Pool) -> Result<Vec<StoredReading>, StoreError> {
    let c = pool.get().await.map_err(pool_err)?;
    let sql = format!(
        "SELECT r.* FROM devices d CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM readings WHERE device_id = d.id
             ORDER BY sampled_at_ms DESC, seq DESC LIMIT 1) r
         ORDER BY d.id"
    );
    // The dialects differ here: a LATERAL join (SQLite's twin uses a correlated subquery).
    let found = c.query(&sql, &[]).await.map_err(map_err)?;
    found.iter().map(row_to_reading).collect()
}

/// A `readings` row, its columns in [`COLUMNS`] order (see SQLite's twin for why there are two).
pub(super) fn row_to_reading(r: &tokio_postgres::Row) -> Result<StoredReading, StoreError> {
    let vals: &str = r.get(6);
    let values: Vec<Value> = serde_json::from_str(vals)
        .map_err(|e| StoreError::Internal(format!("stored values are not valid JSON: {e}")))?;
    Ok(StoredReading {
        device_id: to_u32(r.get(0)),
        boot: to_u32(r.get(1)),
        seq: to_u32(r.get(2)),
        uptime_ms: uptime_from_sql(r.get(3)),
        sampled_at_ms: r.get(4),
        received_at_ms: r.get(5),
        values,
    })
}

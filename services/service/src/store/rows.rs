//! What the two backends ([`super::sqlite`], [`super::postgres`]) do the same way with rows:
//! the `readings` columns they select, how a reading's values and its `u64` uptime are stored,
//! the paging cursor, and the registration rules (the answer for an id already taken, the next
//! free id).
//!
//! The rest of the SQL stays in each backend, where the dialects really differ: placeholders
//! (`?1` in SQLite, `$1` in PostgreSQL), the bulk insert (one `INSERT OR IGNORE` per row vs one
//! `unnest` statement), the "latest per device" query (a correlated subquery vs `LATERAL`),
//! and reading a row (rusqlite's checked `get` vs tokio-postgres' `i64` columns).

use super::StoreError;
use crate::model::{Device, ReadingQuery, Registered, Value};

/// The `readings` columns every reading query selects, in the order the backends'
/// `row_to_reading` reads them.
pub(super) const COLUMNS: &str =
    "device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals";

/// The id a registration without one gets (no parameters; the same text in both dialects):
/// max+1 while it fits; once id 4294967295 is taken (one explicit registration is enough), the
/// smallest free id from 1 up: either 1, or the smallest id whose successor is free (one index
/// scan). No single request can use up the ids. `NULL` when every id is taken ([`free_id`]).
pub(super) const FREE_ID: &str = "SELECT CASE
                     WHEN (SELECT max(id) FROM devices) IS NULL THEN 1
                     WHEN (SELECT max(id) FROM devices) < 4294967295
                         THEN (SELECT max(id) FROM devices) + 1
                     WHEN NOT EXISTS (SELECT 1 FROM devices WHERE id = 1) THEN 1
                     ELSE (SELECT min(d.id) + 1 FROM devices d WHERE d.id >= 1 AND d.id < 4294967295
                           AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.id = d.id + 1))
                 END";

/// A reading's values as stored in `vals`: the JSON array the API serves.
pub(super) fn values_json(values: &[Value]) -> String {
    // Serialising plain data to a String cannot fail.
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// `uptime_ms` as stored. Both databases' integers are i64: store the u64's bits, read them
/// back the same way ([`uptime_from_sql`]), so every value round-trips, 2^64-1 included.
/// (SQLite rows written before this were clamped to i64::MAX, which reads back unchanged.)
pub(super) fn uptime_to_sql(uptime_ms: u64) -> i64 {
    i64::from_ne_bytes(uptime_ms.to_ne_bytes())
}

/// `uptime_ms` as read back: the inverse of [`uptime_to_sql`].
pub(super) fn uptime_from_sql(stored: i64) -> u64 {
    u64::from_ne_bytes(stored.to_ne_bytes())
}

/// The paging cursor of a reading query, `(boot, seq)`: rows strictly after it, in `(boot,
/// seq)` order (the primary key's), so every reading of every boot is returned exactly once.
/// No cursor starts before `(0, 0)`.
pub(super) fn after(q: &ReadingQuery) -> (i64, i64) {
    (
        i64::from(q.after_boot.unwrap_or(0)),
        q.after_seq.map_or(-1, i64::from),
    )
}

/// The answer to registering an id that is already stored with `stored_token`: the stored
/// device (`created: false`) when the tokens match, a conflict when they do not. Both are
/// hashes ([`super::token_hash`]); neither is a secret.
pub(super) fn already_registered(
    id: u32,
    token: &str,
    stored_token: &str,
    name: Option<String>,
    registered_at_ms: i64,
) -> Result<Registered, StoreError> {
    if stored_token != token {
        return Err(StoreError::Conflict(format!(
            "device {id} is already registered with another token; use that token or register another id"
        )));
    }
    Ok(Registered {
        device: Device {
            id,
            name,
            registered_at_ms,
        },
        token: None,
        created: false,
    })
}

/// The id [`FREE_ID`] found, or the conflict when none is left.
pub(super) fn free_id(found: Option<i64>) -> Result<u32, StoreError> {
    match found.map(u32::try_from) {
        Some(Ok(id)) => Ok(id),
        _ => Err(StoreError::Conflict(
            "no free device id left; give an explicit id".into(),
        )),
    }
}

/// The answer to a registration that stored a new device.
pub(super) fn created(id: u32, name: Option<String>, registered_at_ms: i64) -> Registered {
    Registered {
        device: Device {
            id,
            name,
            registered_at_ms,
        },
        token: None,
        created: true,
    }
}

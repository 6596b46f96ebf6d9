//! What both backends' schema migrations share: the [`Migration`] step and the errors a
//! migration answers with. Each backend keeps its own ordered list (`sqlite::MIGRATIONS`,
//! `postgres::MIGRATIONS`) and its own way of recording the version (SQLite's
//! `PRAGMA user_version`, one transaction per step; PostgreSQL's `beacon_schema` table, every
//! step in one transaction under an advisory lock).

use super::StoreError;

/// One schema migration: the SQL that takes the database from `version - 1` to `version`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The schema version after this step (SQLite: the `PRAGMA user_version`; PostgreSQL: the
    /// row it adds to `beacon_schema`).
    pub version: u32,
    /// What it does, for the log.
    pub what: &'static str,
    /// The statements (run in one transaction with the version bump).
    pub sql: &'static str,
}

/// The refusal to open a database from a newer build (it could not read it correctly, and
/// must not write it).
pub(super) fn newer_schema(current: u32, ours: u32) -> StoreError {
    StoreError::Internal(format!(
        "the database has schema version {current}, newer than this service's {ours}; run the newer service, or restore a backup made for this one"
    ))
}

/// A step that failed (and was rolled back), with the driver's reason.
pub(super) fn step_failed(step: &Migration, why: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!(
        "schema migration to version {} ({}) failed and was rolled back: {why}",
        step.version, step.what
    ))
}

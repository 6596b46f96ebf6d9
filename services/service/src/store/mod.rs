//! Storage: the [`Store`] trait, its object-safe twin [`DynStore`], and the backends.
//!
//! TODO(7): your storage backend. Two implement the trait: [`sqlite`] (embedded, the default)
//! and `postgres` (networked, shared by several service replicas; docs/scale-out.md; the
//! `postgres` cargo feature, on by default).
//! `--db` picks one: a file path or a `postgres://` URL; for a managed PostgreSQL put TLS in
//! the URL (`?sslmode=verify-full&sslrootcert=/path/to/provider-ca.pem`, or `sslmode=require`
//! to encrypt without checking the certificate: `pg_tls`).
//!
//! # Layout
//! - this file: the trait, its types, and the write queue's errors both backends answer with;
//! - `sqlite/` and `postgres/`: one folder per backend (each `mod.rs` says what its files hold);
//! - `rows.rs`: what both backends do the same way with rows (columns, stored value formats,
//!   the paging cursor, the registration rules); `migration.rs`: the shared migration step
//!   type and its errors; `pg_tls.rs`: PostgreSQL's TLS.

mod migration;
#[cfg(feature = "postgres")]
pub mod pg_tls;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
pub mod sqlite;

use crate::model::{Device, ReadingQuery, Registered, StoredReading};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What the live stream carries: one message per commit (or per ingest), its new readings.
pub type Events = broadcast::Sender<Arc<[StoredReading]>>;

/// Why the store could not do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Temporarily cannot take the request (queue full, disk full, shutting down). The HTTP
    /// layer answers 503 with `Retry-After`; nothing was written.
    Unavailable(String),
    /// The request conflicts with stored state (e.g. a device id registered with another token).
    Conflict(String),
    /// A bug or corruption; nothing was written.
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) | Self::Conflict(m) | Self::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The answer once the store was closed (or its writer is gone).
    pub(crate) fn closed() -> Self {
        Self::Unavailable("the store is shutting down; retry against the restarted service".into())
    }
}

/// Queues a write for a backend's writer without waiting: a full queue is
/// [`StoreError::Unavailable`] at once (503 + `Retry-After`, back-pressure instead of an
/// unbounded queue), a closed one [`StoreError::closed`].
pub(crate) fn enqueue<T>(queue: &tokio::sync::mpsc::Sender<T>, cmd: T) -> Result<(), StoreError> {
    use tokio::sync::mpsc::error::TrySendError;
    match queue.try_send(cmd) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(StoreError::Unavailable(
            "the store's write queue is full; retry shortly (or raise --write-queue)".into(),
        )),
        Err(TrySendError::Closed(_)) => Err(StoreError::closed()),
    }
}

/// What the store keeps instead of a device token: `sha256:` and the lowercase hex SHA-256 of
/// the token. Tokens are never stored or returned in plaintext; a check hashes the presented
/// token and compares hashes in constant time.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `s` has the shape of a [`token_hash`] (how the migration tells old plaintext
/// tokens from hashes).
pub fn is_token_hash(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A device registration as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// The id; `None` lets the store pick the next free one.
    pub id: Option<u32>,
    /// The ingest token's [`token_hash`] (never the token itself).
    pub token: String,
    /// Free-form label.
    pub name: Option<String>,
}

/// A device with its token hash (for the service's in-memory token check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWithToken {
    /// The device.
    pub device: Device,
    /// Its ingest token's [`token_hash`].
    pub token: String,
}

/// What [`Store::ingest`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ingested {
    /// The readings this call stored (handed back so the caller can publish them, no copy).
    pub accepted: Vec<StoredReading>,
    /// How many were already stored (retries).
    pub duplicates: usize,
}

/// The storage interface.
///
/// # async fn in traits
/// Each method is an `async fn` in the implementations (see `sqlite/mod.rs`): Rust 1.75+ supports
/// that natively. The trait spells the return type as `impl Future<Output = ...> + Send`
/// (what `async fn` desugars to, plus `Send`): a plain `async fn` in a public trait cannot
/// promise that its future is `Send`, and the server runs handlers on a multi-threaded
/// runtime, where every future held across an `.await` must be `Send`. Implementations still
/// just write `async fn`.
///
/// # Contract
/// - [`Store::ingest`] returns only after the readings are durable (committed and synced):
///   the HTTP answer "accepted" means the data survives a crash or a SIGTERM.
/// - A reading whose `(device_id, boot, seq)` is already stored is a duplicate: counted, not
///   written. The same `(device_id, seq)` with another `boot` is a different reading (the
///   device rebooted and started `seq` again at 0).
/// - [`Store::close`] finishes every ingest queued before it, then flushes.
pub trait Store: Send + Sync + 'static {
    /// Registers a device, idempotently: the same id with the same token (hash) returns the
    /// stored device with `created: false`; the same id with another token is a
    /// [`StoreError::Conflict`]. The answer's `token` is `None`: the store has no plaintext.
    fn register(
        &self,
        device: NewDevice,
    ) -> impl Future<Output = Result<Registered, StoreError>> + Send;
    /// Every registered device, with its token, by id.
    fn devices(&self) -> impl Future<Output = Result<Vec<DeviceWithToken>, StoreError>> + Send;
    /// Stores readings durably; see the contract above.
    fn ingest(
        &self,
        readings: Vec<StoredReading>,
    ) -> impl Future<Output = Result<Ingested, StoreError>> + Send;
    /// One device's readings in a time range, in `(boot, seq)` order, paged.
    fn query(
        &self,
        query: ReadingQuery,
    ) -> impl Future<Output = Result<Vec<StoredReading>, StoreError>> + Send;
    /// The most recently sampled reading of every device that has one.
    fn latest(&self) -> impl Future<Output = Result<Vec<StoredReading>, StoreError>> + Send;
    /// `Ok` when the store can take writes (for `/readyz`).
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Finishes queued writes and flushes; later writes fail with [`StoreError::Unavailable`].
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Completes when the store has failed for good (its database file was removed or
    /// replaced while it ran), with the reason; the server then shuts down and exits non-zero.
    /// Never completes for a store that cannot fail that way (the default).
    fn failed(&self) -> impl Future<Output = StoreError> + Send {
        std::future::pending()
    }
    /// Whether other service processes may write this store too (PostgreSQL). Then the
    /// service's in-memory token map is only a cache: entries [`Store::attach_tokens`]
    /// invalidates, or older than `--token-cache-secs`, are read again with
    /// [`Store::device_token`]. `false` (the default): this process is the only writer, and
    /// the map it keeps in step with registrations is exact.
    fn shared(&self) -> bool {
        false
    }
    /// One device's token hash, `None` for an unknown device (the default scans
    /// [`Store::devices`]; a shared store reads the one row).
    fn device_token(
        &self,
        id: u32,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        async move {
            Ok(self
                .devices()
                .await?
                .into_iter()
                .find(|d| d.device.id == id)
                .map(|d| d.token))
        }
    }
    /// Hands the store the live stream's sender, so a shared store can publish the readings
    /// *other* replicas commit (this process publishes its own). The default does nothing.
    fn attach_stream(&self, events: Events) {
        let _ = events;
    }
    /// Hands a shared store the token cache's invalidation: it calls it with a device id
    /// whose token changed or was deleted by anyone, or `None` when it may have missed such
    /// changes (its listener reconnected). Called before [`Store::attach_stream`]. The default
    /// does nothing (a store this process owns alone changes only through it).
    fn attach_tokens(&self, invalidate: TokenInvalidate) {
        let _ = invalidate;
    }
}

/// See [`Store::attach_tokens`].
pub type TokenInvalidate = Arc<dyn Fn(Option<u32>) + Send + Sync>;

/// A boxed, `Send` future: what [`DynStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Store`], made object-safe so the app can hold an `Arc<dyn DynStore>` and pick the backend
/// at run time (SQLite in production, a failing stand-in in tests).
///
/// # Why not `Arc<dyn Store>`, and why not the `async-trait` crate
/// A trait with `async fn` (or `-> impl Future`) is not dyn-compatible: every implementation
/// returns a different, unnamed future type, so there is no single vtable signature. The
/// `async-trait` crate solves that by boxing *every* call of *every* implementation, even
/// under static dispatch, and hides the signatures behind a macro. Here the boxing happens in
/// one place, only at the dynamic-dispatch boundary: this trait returns [`BoxFuture`], and
/// the blanket impl below wraps any [`Store`] (the same pattern the `dynosaur` crate
/// generates, written out by hand so there is nothing to learn). Code generic over `S: Store`
/// pays no allocation.
pub trait DynStore: Send + Sync + 'static {
    /// See [`Store::register`].
    fn register(&self, device: NewDevice) -> BoxFuture<'_, Result<Registered, StoreError>>;
    /// See [`Store::devices`].
    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceWithToken>, StoreError>>;
    /// See [`Store::ingest`].
    fn ingest(&self, readings: Vec<StoredReading>) -> BoxFuture<'_, Result<Ingested, StoreError>>;
    /// See [`Store::query`].
    fn query(&self, query: ReadingQuery) -> BoxFuture<'_, Result<Vec<StoredReading>, StoreError>>;
    /// See [`Store::latest`].
    fn latest(&self) -> BoxFuture<'_, Result<Vec<StoredReading>, StoreError>>;
    /// See [`Store::ready`].
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`Store::close`].
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`Store::failed`].
    fn failed(&self) -> BoxFuture<'_, StoreError>;
    /// See [`Store::shared`].
    fn shared(&self) -> bool;
    /// See [`Store::device_token`].
    fn device_token(&self, id: u32) -> BoxFuture<'_, Result<Option<String>, StoreError>>;
    /// See [`Store::attach_stream`].
    fn attach_stream(&self, events: Events);
    /// See [`Store::attach_tokens`].
    fn attach_tokens(&self, invalidate: TokenInvalidate);
}

impl<S: Store> DynStore for S {
    fn register(&self, device: NewDevice) -> BoxFuture<'_, Result<Registered, StoreError>> {
        Box::pin(Store::register(self, device))
    }
    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceWithToken>, StoreError>> {
        Box::pin(Store::devices(self))
    }
    fn ingest(&self, readings: Vec<StoredReading>) -> BoxFuture<'_, Result<Ingested, StoreError>> {
        Box::pin(Store::ingest(self, readings))
    }
    fn query(&self, query: ReadingQuery) -> BoxFuture<'_, Result<Vec<StoredReading>, StoreError>> {
        Box::pin(Store::query(self, query))
    }
    fn latest(&self) -> BoxFuture<'_, Result<Vec<StoredReading>, StoreError>> {
        Box::pin(Store::latest(self))
    }
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::ready(self))
    }
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::close(self))
    }
    fn failed(&self) -> BoxFuture<'_, StoreError> {
        Box::pin(Store::failed(self))
    }
    fn shared(&self) -> bool {
        Store::shared(self)
    }
    fn device_token(&self, id: u32) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(Store::device_token(self, id))
    }
    fn attach_stream(&self, events: Events) {
        Store::attach_stream(self, events);
    }
    fn attach_tokens(&self, invalidate: TokenInvalidate) {
        Store::attach_tokens(self, invalidate);
    }
}

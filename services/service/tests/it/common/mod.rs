//! Stand-ins shared by the integration tests (`mod common;` in each test file).

use beacon_service::model::{ReadingQuery, Registered, StoredReading};
use beacon_service::store::{DeviceWithToken, Ingested, NewDevice, Store, StoreError};
use std::time::Duration;

/// Wraps the real SQLite store and delays every ingest: a stand-in for a slow disk, so that
/// requests are still in flight when shutdown begins.
pub struct Slow<S>(pub S, pub Duration);

impl<S: Store> Store for Slow<S> {
    async fn register(&self, d: NewDevice) -> Result<Registered, StoreError> {
        self.0.register(d).await
    }
    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        self.0.devices().await
    }
    async fn ingest(&self, r: Vec<StoredReading>) -> Result<Ingested, StoreError> {
        tokio::time::sleep(self.1).await;
        self.0.ingest(r).await
    }
    async fn query(&self, q: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        self.0.query(q).await
    }
    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        self.0.latest().await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.0.ready().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.0.close().await
    }
    async fn failed(&self) -> StoreError {
        self.0.failed().await
    }
    fn shared(&self) -> bool {
        self.0.shared()
    }
    async fn device_token(&self, id: u32) -> Result<Option<String>, StoreError> {
        self.0.device_token(id).await
    }
    fn attach_stream(&self, events: beacon_service::store::Events) {
        self.0.attach_stream(events);
    }
    fn attach_tokens(&self, invalidate: beacon_service::store::TokenInvalidate) {
        self.0.attach_tokens(invalidate);
    }
}

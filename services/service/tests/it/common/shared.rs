//! Helpers more than one test module needs, declared once in `main.rs` (`crate::shared`): the
//! query for all of a device's readings, the library's server on `127.0.0.1:0` in-process, and
//! the `reqwest` calls of the tests that talk to a service over a real socket (in-process or
//! the binary of `crate::spawn`).

use beacon_service::model::ReadingQuery;
use beacon_service::store::DynStore;
use beacon_service::{Config, serve};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Every reading of `device_id` (any time, from the first, up to 10,000).
pub fn all_readings(device_id: u32) -> ReadingQuery {
    ReadingQuery {
        device_id,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        after_boot: None,
        after_seq: None,
        limit: 10_000,
    }
}

/// The library's server on `127.0.0.1:0`, in this process.
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Send (or drop) to begin the graceful shutdown.
    pub stop: oneshot::Sender<()>,
    /// The server task: ends when the shutdown has drained.
    pub server: tokio::task::JoinHandle<Result<(), beacon_service::Error>>,
}

/// Starts `serve` with `config` on `store`, listening on a free port of 127.0.0.1.
pub async fn serve_on(config: Config, store: Arc<dyn DynStore>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(config, store, listener, async move {
        let _ = stopped.await;
    }));
    Running { url, stop, server }
}

/// `GET url`, answered with JSON (panics on a transport error or a body that is not JSON).
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Registers device `id` with `token` on the service at `url` (no provisioning token):
/// asserts the answer is 201 Created.
pub async fn register(client: &reqwest::Client, url: &str, id: u32, token: &str) {
    let r = client
        .post(format!("{url}/api/v1/devices"))
        .json(&json!({"id": id, "token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "register {id} on {url}");
}

/// Posts the JSON `body` to device `id`'s readings with `token`: the answer, or the error of
/// a connection refused or cut.
pub async fn post_readings(
    client: &reqwest::Client,
    url: &str,
    id: u32,
    token: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{url}/api/v1/devices/{id}/readings"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

/// An ingest body with one reading per seq: `uptime_ms` and a counter value equal to the seq.
pub fn counter_batch(seqs: &[u32]) -> Value {
    json!({"readings": seqs.iter().map(|&s| json!({"seq": s, "uptime_ms": s, "values": [{"kind": "counter", "value": s}]})).collect::<Vec<_>>()})
}

/// The seqs of every reading of `device` stored on the service at `url`, in the order the
/// query API pages them (`limit=10000` a page, on `after_seq`).
pub async fn all_seqs(client: &reqwest::Client, url: &str, device: u32) -> Vec<u32> {
    let mut seqs = Vec::new();
    let mut after = String::new();
    loop {
        let page = get_json(
            client,
            &format!("{url}/api/v1/devices/{device}/readings?limit=10000{after}"),
        )
        .await;
        seqs.extend(
            page["readings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap() as u32),
        );
        match page["next_after_seq"].as_u64() {
            Some(n) => after = format!("&after_seq={n}"),
            None => return seqs,
        }
    }
}

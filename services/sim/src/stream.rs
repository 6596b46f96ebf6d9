//! What is measured on the service while the fleet runs: sample-to-queryable latency from the
//! SSE stream ([`watch_stream`]), and its accepted-readings counter ([`accepted_total`]).

use crate::{Config, SentAt, now_ms};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Reads the SSE stream and records the latency of every reading it carries.
pub(crate) async fn watch_stream(
    client: reqwest::Client,
    config: Arc<Config>,
    sent_at: Arc<SentAt>,
    latencies: Arc<Mutex<Vec<u32>>>,
    lagged: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut req = client.get(format!("{}/api/v1/stream", config.service));
    if let Some(t) = &config.read_token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("cannot open {}/api/v1/stream: {e}", config.service))?;
    if !resp.status().is_success() {
        return Err(format!(
            "GET /api/v1/stream answered {}; pass --read-token if the service needs one",
            resp.status()
        ));
    }
    let mut pending = Vec::<u8>::new();
    #[derive(serde::Deserialize)]
    struct Seen {
        device_id: u32,
        #[serde(default)]
        boot: u32,
        seq: u32,
    }
    while let Ok(Some(chunk)) = resp.chunk().await {
        let now = now_ms();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let mut kind = "";
            let mut data = String::new();
            for line in text.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            match kind {
                "readings" => {
                    let Ok(seen) = serde_json::from_str::<Vec<Seen>>(&data) else {
                        continue;
                    };
                    let mut map = sent_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut lat = latencies
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for s in seen {
                        if let Some(at) = map.remove(&(s.device_id, s.boot, s.seq)) {
                            lat.push(u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX));
                        }
                    }
                }
                "lagged" => {
                    let n = data
                        .split(|c: char| !c.is_ascii_digit())
                        .find(|s| !s.is_empty())
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(1);
                    lagged.fetch_add(n, Relaxed);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The service's count of accepted readings (`/metrics`).
pub(crate) async fn accepted_total(client: &reqwest::Client, config: &Config) -> Option<f64> {
    let mut req = client.get(format!("{}/metrics", config.service));
    if let Some(t) = &config.read_token {
        req = req.bearer_auth(t);
    }
    let text = req.send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("beacon_ingest_readings_total{result=\"accepted\"} "))
        .and_then(|v| v.trim().parse().ok())
}

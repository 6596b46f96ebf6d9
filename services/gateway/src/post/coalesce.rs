//! A service replica's coalescer: puts the device batches that are ready into one
//! multi-device request (`POST /api/v1/readings`, bounded by devices, readings and bytes),
//! sends it when an in-flight slot is free, and hands each device the service's answer for its
//! entry.

use super::{Entry, Failure, PostConfig, Poster, REQUEST_MAX_BYTES, classify, error_of, network};
use crate::model::{DeviceOutcome, IngestOutcome, MultiIngestOutcome};
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

impl Poster {
    /// One service's coalescer: takes the first ready device batch, waits up to
    /// `request_linger` for more (bounded by devices, readings and bytes per request), then
    /// sends them as one request once an in-flight slot is free. While every slot is busy the
    /// queue grows, so the next request carries more devices: load makes requests bigger, not
    /// more numerous.
    pub(super) async fn coalesce(
        self: Arc<Self>,
        service: usize,
        mut rx: mpsc::UnboundedReceiver<Entry>,
    ) {
        let mut carry: Option<Entry> = None;
        loop {
            let first = match carry.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => return,
                },
            };
            let mut group = Group::new(first);
            let deadline = tokio::time::Instant::now() + self.config.request_linger;
            while carry.is_none() && !group.full(&self.config) {
                tokio::select! {
                    e = rx.recv() => match e {
                        Some(e) => carry = group.add(e, &self.config),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                return;
            };
            while carry.is_none() && !group.full(&self.config) {
                match rx.try_recv() {
                    Ok(e) => carry = group.add(e, &self.config),
                    Err(_) => break,
                }
            }
            tokio::spawn(Arc::clone(&self).send_group(service, group, permit));
        }
    }

    /// Sends one multi-device request and answers each entry.
    async fn send_group(
        self: Arc<Self>,
        service: usize,
        group: Group,
        _permit: OwnedSemaphorePermit,
    ) {
        let mut body = Vec::with_capacity(group.bytes + group.entries.len() + 16);
        body.extend_from_slice(b"{\"batches\":[");
        for (i, e) in group.entries.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&e.json);
        }
        body.extend_from_slice(b"]}");
        self.metrics.requests.fetch_add(1, Relaxed);
        self.metrics
            .request_entries
            .fetch_add(group.entries.len() as u64, Relaxed);
        let service = &self.config.services[service];
        match self.post_many(service, body).await {
            Ok(answer) if answer.results.len() == group.entries.len() => {
                for (e, r) in group.entries.into_iter().zip(answer.results) {
                    let _ = e.reply.send(entry_result(r));
                }
            }
            Ok(answer) => {
                let f = Failure::Retry {
                    why: format!(
                        "the service answered {} results for {} entries",
                        answer.results.len(),
                        group.entries.len()
                    ),
                    after: None,
                };
                for e in group.entries {
                    let _ = e.reply.send(Err(f.clone()));
                }
            }
            Err(f) => {
                for e in group.entries {
                    let _ = e.reply.send(Err(f.clone()));
                }
            }
        }
    }

    async fn post_many(&self, service: &str, body: Vec<u8>) -> Result<MultiIngestOutcome, Failure> {
        let url = format!("{service}/api/v1/readings");
        let resp = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(network)?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json::<MultiIngestOutcome>()
                .await
                .map_err(|e| Failure::Retry {
                    why: format!("unreadable answer from the service: {e}"),
                    after: None,
                });
        }
        let (after, msg) = error_of(resp).await;
        Err(match status {
            // The path itself: unknown devices are answered per entry.
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Failure::Refused(format!(
                "{url} answered {status} ({msg}): the service has no multi-device ingest; it is older than this gateway, upgrade it"
            )),
            s => classify(s, after, msg),
        })
    }
}

/// Device batches going out in one request, and their size so far.
struct Group {
    entries: Vec<Entry>,
    readings: usize,
    bytes: usize,
}

impl Group {
    fn new(first: Entry) -> Self {
        Self {
            readings: first.readings,
            bytes: first.json.len(),
            entries: vec![first],
        }
    }

    fn full(&self, c: &PostConfig) -> bool {
        self.entries.len() >= c.request_max_devices.max(1)
            || self.readings >= c.request_max_readings
            || self.bytes >= REQUEST_MAX_BYTES
    }

    /// Adds `e`, or hands it back when it would take the request past a bound.
    fn add(&mut self, e: Entry, c: &PostConfig) -> Option<Entry> {
        if self.readings + e.readings > c.request_max_readings.max(1)
            || self.bytes + e.json.len() > REQUEST_MAX_BYTES
        {
            return Some(e);
        }
        self.readings += e.readings;
        self.bytes += e.json.len();
        self.entries.push(e);
        None
    }
}

/// The service's answer to one entry, as the per-device endpoint's answer would be read.
fn entry_result(r: DeviceOutcome) -> Result<IngestOutcome, Failure> {
    let id = r.device_id;
    let msg = r.error.unwrap_or_default();
    match StatusCode::from_u16(r.status) {
        Ok(StatusCode::OK) => Ok(IngestOutcome {
            accepted: r.accepted,
            duplicates: r.duplicates,
        }),
        Ok(StatusCode::NOT_FOUND) => Err(Failure::Unregistered),
        Ok(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Failure::Refused(format!(
            "the service refused device {id}'s token: {msg}; pass the right one with --device-token {id}=TOKEN"
        ))),
        Ok(s) => Err(classify(s, None, msg)),
        Err(_) => Err(Failure::Retry {
            why: format!(
                "the service answered status {} for device {id}'s entry",
                r.status
            ),
            after: None,
        }),
    }
}

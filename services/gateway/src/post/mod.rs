//! Posting to the service: one task per device (its token, its batch, idempotent registration
//! on first sight, retries with backoff and jitter), and one coalescer per service replica
//! that puts the ready batches of many devices into one multi-device request
//! (`POST /api/v1/readings`, each device's entry with its own token) and hands each device
//! the service's answer for its entry.
//!
//! Retries never double-count: the service stores a `(device, boot, seq)` triple once and
//! answers a repeat as a duplicate. A batch stays in the buffer (holding its permits) until the service
//! acknowledged it, so a service that is down or answers 503 costs time, never readings.
//!
//! # Files
//! - this file: [`PostConfig`], [`Poster`] (the shared state, routing frames to device tasks,
//!   registering, handing a batch to a coalescer), reading the service's errors, [`acks_for`];
//! - `device.rs`: a device's task (batching, fail-over, backoff, acks);
//! - `coalesce.rs`: a replica's coalescer (multi-device requests and their answers).

mod coalesce;
mod device;

use crate::link::{AckSink, Pending};
use crate::metrics::Metrics;
use crate::model::{DeviceBatchRef, ErrorBody, IngestOutcome, RegisterRequest};
use beacon_protocol::Ack;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How the poster talks to the service.
#[derive(Debug, Clone)]
pub struct PostConfig {
    /// Base URLs of the service replicas, e.g. `http://127.0.0.1:8080` (at least one).
    pub services: Vec<String>,
    /// Explicit per-device tokens.
    pub tokens: HashMap<u32, String>,
    /// Token of a device without an explicit one: this prefix and the id.
    pub token_prefix: String,
    /// Sent as the bearer token of registrations when set.
    pub provisioning_token: Option<String>,
    /// Most readings per request.
    pub batch_max: usize,
    /// How long the first reading of a batch waits for company.
    pub linger: Duration,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Most requests to the service at once, over all devices.
    pub max_in_flight: usize,
    /// Most device entries in one multi-device request.
    pub request_max_devices: usize,
    /// Most readings in one multi-device request (the service's `--max-batch` is 10,000).
    pub request_max_readings: usize,
    /// How long the first device batch of a request waits for others.
    pub request_linger: Duration,
}

/// Most body bytes of one multi-device request (the service's `--max-body-bytes` is 4 MiB);
/// a single device's batch is always sent, even alone past it.
pub const REQUEST_MAX_BYTES: usize = 1024 * 1024;

impl PostConfig {
    fn token_for(&self, id: u32) -> String {
        self.tokens
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("{}{id}", self.token_prefix))
    }
}

/// Why a request (or a device's entry in it) did not go through.
#[derive(Debug, Clone)]
enum Failure {
    /// Transient (network, 5xx, 503, 429, timeout): retry later, honouring `after`.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The service does not know the device (404): register again, then retry.
    Unregistered,
    /// Needs a person (wrong token, missing provisioning token): keep the readings, retry slowly.
    Refused(String),
    /// The service will never take these readings (400, 413, 415): give them up, loudly.
    Rejected(String),
}

/// The shared posting state.
#[derive(Debug)]
pub struct Poster {
    config: PostConfig,
    client: reqwest::Client,
    /// One permit per request in flight: with thousands of devices each posting on its own,
    /// an unbounded pool opened a connection per device, far past the service's connection
    /// cap, and thousands sat in SYN retransmits (seconds each). Bounded, the requests wait
    /// here, their readings pile up into bigger batches, and a few keep-alive connections
    /// carry them.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Registrations' own share of `max_in_flight` (a quarter): thousands of new devices
    /// registering queue here, not in front of the ingest requests of the running fleet.
    registering: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
    /// Cancelled when the drain period after shutdown is over: whatever is still not
    /// acknowledged then is counted as dropped.
    give_up: CancellationToken,
    /// Round robin over `config.services`: the next batch's first choice.
    next: std::sync::atomic::AtomicUsize,
    /// Per service: the queue of its coalescer (device batches ready to go).
    queues: Vec<mpsc::UnboundedSender<Entry>>,
    /// The coalescers' ends of `queues`, taken by [`Poster::run`].
    receivers: std::sync::Mutex<Vec<mpsc::UnboundedReceiver<Entry>>>,
}

/// One device's batch, serialised as its entry of a multi-device request, waiting for the
/// service's answer to it.
#[derive(Debug)]
struct Entry {
    json: Vec<u8>,
    readings: usize,
    reply: oneshot::Sender<Result<IngestOutcome, Failure>>,
}

impl Poster {
    /// A poster with a keep-alive connection pool.
    pub fn new(
        config: PostConfig,
        metrics: Arc<Metrics>,
        give_up: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.max_in_flight.max(1))
            .tcp_nodelay(true)
            .user_agent(concat!("beacon-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the http client: {e}"))?;
        if config.services.is_empty() {
            return Err("no service URL: pass --service URL (repeat it for replicas)".into());
        }
        let (queues, receivers) = config
            .services
            .iter()
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let total = config.max_in_flight.max(2);
        let registering = (total / 4).max(1);
        Ok(Arc::new(Self {
            in_flight: Arc::new(tokio::sync::Semaphore::new(total - registering)),
            registering: tokio::sync::Semaphore::new(registering),
            config,
            client,
            metrics,
            give_up,
            next: std::sync::atomic::AtomicUsize::new(0),
            queues,
            receivers: std::sync::Mutex::new(receivers),
        }))
    }

    /// Routes frames to one task per device until every link is gone, then waits for every
    /// device's buffer to drain.
    pub async fn run(self: Arc<Self>, mut frames: mpsc::UnboundedReceiver<Pending>) {
        let mut coalescers = tokio::task::JoinSet::new();
        let receivers =
            std::mem::take(&mut *self.receivers.lock().unwrap_or_else(|e| e.into_inner()));
        for (service, rx) in receivers.into_iter().enumerate() {
            coalescers.spawn(Arc::clone(&self).coalesce(service, rx));
        }
        let mut devices: HashMap<u32, mpsc::UnboundedSender<Pending>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(p) = frames.recv().await {
            // `from_frame` always names the device; a reading without one is device 0.
            let id = p.reading.device_id.unwrap_or_default();
            let tx = devices.entry(id).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tasks.spawn(Arc::clone(&self).device(id, rx));
                tx
            });
            if let Err(mpsc::error::SendError(p)) = tx.send(p) {
                // The device task ended (given up at shutdown): count the frame as dropped.
                self.give_up_on(1);
                drop(p);
            }
        }
        drop(devices);
        while tasks.join_next().await.is_some() {}
        // Every device task has its answers: nothing is queued or in flight any more.
        coalescers.abort_all();
    }

    fn give_up_on(&self, n: usize) {
        self.metrics.dropped.fetch_add(n as u64, Relaxed);
        self.metrics.buffered.fetch_sub(n as u64, Relaxed);
    }

    async fn register(&self, service: &str, id: u32, token: &str) -> Result<(), Failure> {
        let _permit = self.registering.acquire().await;
        let url = format!("{service}/api/v1/devices");
        let mut req = self.client.post(&url).json(&RegisterRequest {
            id: Some(id),
            token: Some(token.to_string()),
            name: Some("registered by beacon-gateway".into()),
        });
        if let Some(p) = &self.config.provisioning_token {
            req = req.bearer_auth(p);
        }
        let resp = req.send().await.map_err(network)?;
        let status = resp.status();
        if status.is_success() {
            tracing::debug!("device {id}: registered ({status})");
            return Ok(());
        }
        let (after, msg) = error_of(resp).await;
        Err(match status {
            StatusCode::CONFLICT => Failure::Refused(format!(
                "device {id} is registered with another token; pass its token with --device-token {id}=TOKEN ({msg})"
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Refused(format!(
                "registration refused: {msg}; pass --provisioning-token (or BEACON_PROVISIONING_TOKEN)"
            )),
            s => classify(s, after, msg),
        })
    }

    /// Hands the device's batch to the coalescer of service `service` and waits for the
    /// service's answer to its entry.
    async fn ingest(
        &self,
        service: usize,
        id: u32,
        token: &str,
        batch: &[Pending],
    ) -> Result<IngestOutcome, Failure> {
        let entry = DeviceBatchRef {
            device_id: id,
            token,
            readings: batch.iter().map(|p| &p.reading).collect(),
        };
        let json = serde_json::to_vec(&entry)
            .map_err(|e| Failure::Rejected(format!("cannot encode: {e}")))?;
        let (reply, answer) = oneshot::channel();
        let gone = || Failure::Retry {
            why: "the request coalescer ended".into(),
            after: None,
        };
        self.queues[service]
            .send(Entry {
                json,
                readings: batch.len(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn network(e: reqwest::Error) -> Failure {
    let kind = if e.is_connect() {
        "service unreachable"
    } else if e.is_timeout() {
        "request timed out"
    } else {
        "request failed"
    };
    Failure::Retry {
        why: format!("{kind}: {e}"),
        after: None,
    }
}

fn classify(status: StatusCode, after: Option<Duration>, msg: String) -> Failure {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Failure::Retry {
            why: format!("service answered {status}: {msg}"),
            after,
        }
    } else {
        Failure::Rejected(format!("{status}: {msg}"))
    }
}

async fn error_of(resp: reqwest::Response) -> (Option<Duration>, String) {
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or_else(|_| text.chars().take(200).collect());
    (after, msg)
}

/// The acks for a batch the service committed: one per run of consecutive `seq`s of one boot
/// that came over one connection, in batch order. Frames from a link with no way back get none.
pub fn acks_for(batch: &[Pending]) -> Vec<(AckSink, Ack)> {
    let mut out: Vec<(AckSink, Ack)> = Vec::new();
    for p in batch {
        let Some(sink) = &p.ack_to else { continue };
        let (boot, seq) = (p.reading.boot, p.reading.seq);
        if let Some((last_sink, ack)) = out.last_mut()
            && last_sink.same_channel(sink)
            && ack.boot == boot
            && ack.last.wrapping_add(1) == seq
        {
            ack.last = seq;
            continue;
        }
        out.push((
            sink.clone(),
            Ack {
                boot,
                first: seq,
                last: seq,
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewReading;
    use tokio::sync::Semaphore;

    fn pending(sink: &AckSink, boot: u32, seq: u32, permits: &Arc<Semaphore>) -> Pending {
        Pending {
            reading: NewReading {
                device_id: Some(1),
                boot,
                seq,
                uptime_ms: 0,
                sampled_at_ms: Some(0),
                values: Vec::new(),
            },
            permit: Arc::clone(permits).try_acquire_owned().unwrap(),
            ack_to: Some(sink.clone()),
        }
    }

    #[test]
    fn one_ack_per_run_of_consecutive_seqs_of_one_boot_and_connection() {
        let permits = Arc::new(Semaphore::new(16));
        let (a, _ra) = mpsc::unbounded_channel();
        let (b, _rb) = mpsc::unbounded_channel();
        let mut batch: Vec<Pending> = [(7, 0), (7, 1), (7, 2), (7, 5), (8, 6), (8, 7)]
            .into_iter()
            .map(|(boot, seq)| pending(&a, boot, seq, &permits))
            .collect();
        batch.push(pending(&b, 8, 8, &permits));
        batch.push(Pending {
            ack_to: None,
            ..pending(&a, 8, 9, &permits)
        });
        batch.push(pending(&a, 9, u32::MAX, &permits));
        batch.push(pending(&a, 9, 0, &permits));
        let acks: Vec<(bool, Ack)> = acks_for(&batch)
            .into_iter()
            .map(|(sink, ack)| (sink.same_channel(&a), ack))
            .collect();
        let ack = |boot, first, last| Ack { boot, first, last };
        assert_eq!(
            acks,
            [
                (true, ack(7, 0, 2)),
                (true, ack(7, 5, 5)),
                (true, ack(8, 6, 7)),
                (false, ack(8, 8, 8)),
                (true, ack(9, u32::MAX, 0)),
            ]
        );
    }
}

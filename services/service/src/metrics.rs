//! Prometheus metrics through the maintained client crate (`prometheus-client`, the
//! OpenMetrics text format): label values are escaped by the encoder, so a request line with
//! an odd method cannot corrupt the exposition. The handles are cheap clones sharing one
//! registry; `render` encodes it for `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, seconds (0.5 ms to 2.5 s).
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by (route, method, status).
    requests: Family<RequestLabels, Counter>,
    /// Readings received, by result (accepted: stored; duplicate: already stored, a retry).
    readings: Family<ResultLabel, Counter>,
    /// Store operations refused with 503 (queue full, disk full, shutting down).
    store_unavailable: Counter,
    /// Time from handing a batch to the store to its durable commit (queue + commit).
    store_ingest_latency: Histogram,
    /// Time of store reads (queries, latest, device list).
    store_read_latency: Histogram,
    /// Open SSE streams.
    sse_clients: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "beacon_http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let readings = Family::<ResultLabel, Counter>::default();
        registry.register(
            "beacon_ingest_readings",
            "Readings received, by result (the ingest rate is its rate())",
            readings.clone(),
        );
        let store_unavailable = Counter::default();
        registry.register(
            "beacon_store_unavailable",
            "Store operations refused with 503 (queue full, disk full, shutting down)",
            store_unavailable.clone(),
        );
        let store_ingest_latency = Histogram::new(BUCKETS);
        registry.register(
            "beacon_store_ingest_seconds",
            "Time from handing a batch to the store to its durable commit",
            store_ingest_latency.clone(),
        );
        let store_read_latency = Histogram::new(BUCKETS);
        registry.register(
            "beacon_store_read_seconds",
            "Time of store reads",
            store_read_latency.clone(),
        );
        let sse_clients = Gauge::default();
        registry.register(
            "beacon_sse_clients",
            "Open live streams",
            sse_clients.clone(),
        );
        Self {
            registry,
            requests,
            readings,
            store_unavailable,
            store_ingest_latency,
            store_read_latency,
            sse_clients,
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts what one ingest stored and what it found already stored.
    pub fn ingested(&self, accepted: usize, duplicates: usize) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.readings
            .get_or_create(&ResultLabel { result: "accepted" })
            .inc_by(n(accepted));
        self.readings
            .get_or_create(&ResultLabel {
                result: "duplicate",
            })
            .inc_by(n(duplicates));
    }

    /// Counts one store operation refused with 503.
    pub fn store_unavailable(&self) {
        self.store_unavailable.inc();
    }

    /// Records how long a batch took from the store's queue to its commit.
    pub fn store_ingest_latency(&self, d: Duration) {
        self.store_ingest_latency.observe(d.as_secs_f64());
    }

    /// Records how long a store read took.
    pub fn store_read_latency(&self, d: Duration) {
        self.store_read_latency.observe(d.as_secs_f64());
    }

    /// A live stream opened (`+1`) or closed (`-1`).
    pub fn sse_clients(&self, delta: i64) {
        self.sse_clients.inc_by(delta);
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

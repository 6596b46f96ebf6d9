//! Prometheus metrics, hand-written: a few atomics and the text exposition format. Small
//! enough that a metrics crate would add more than it saves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency histogram with fixed buckets (seconds).
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every metric the service exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by (route, method, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Readings stored.
    pub readings_accepted: AtomicU64,
    /// Readings that were already stored (retries).
    pub readings_duplicate: AtomicU64,
    /// Ingest requests refused by the store (503).
    pub store_unavailable: AtomicU64,
    /// Time from handing a batch to the store to its durable commit (queue + commit).
    pub store_ingest_latency: Histogram,
    /// Time of store reads (queries, latest, device list).
    pub store_read_latency: Histogram,
    /// Open SSE streams.
    pub sse_clients: AtomicU64,
}

impl Metrics {
    /// Counts one finished request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        // A std Mutex: held for one map update, never across an .await.
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP beacon_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE beacon_http_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((route, method, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "beacon_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, labels: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {}",
                v.load(Relaxed)
            );
        };
        let _ = writeln!(
            out,
            "# HELP beacon_ingest_readings_total Readings received, by result (the ingest rate is its rate()).\n\
             # TYPE beacon_ingest_readings_total counter\n\
             beacon_ingest_readings_total{{result=\"accepted\"}} {}\n\
             beacon_ingest_readings_total{{result=\"duplicate\"}} {}",
            self.readings_accepted.load(Relaxed),
            self.readings_duplicate.load(Relaxed)
        );
        counter(
            &mut out,
            "beacon_store_unavailable_total",
            "Store operations refused with 503 (queue full, disk full, shutting down).",
            "",
            &self.store_unavailable,
        );
        self.store_ingest_latency.render(
            &mut out,
            "beacon_store_ingest_seconds",
            "Time from handing a batch to the store to its durable commit.",
        );
        self.store_read_latency.render(
            &mut out,
            "beacon_store_read_seconds",
            "Time of store reads.",
        );
        let _ = writeln!(
            out,
            "# HELP beacon_sse_clients Open live streams.\n# TYPE beacon_sse_clients gauge\nbeacon_sse_clients {}",
            self.sse_clients.load(Relaxed)
        );
        out
    }
}

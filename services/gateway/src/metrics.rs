//! Counters, the latency histogram, per-device figures, and the stats snapshot that the log
//! lines, the stats file and the final summary are made from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency histogram: 1 ms buckets up to [`Histogram::MAX_MS`], one overflow bucket.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_ms: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; Self::MAX_MS as usize + 1],
            count: 0,
            max_ms: 0,
        }
    }
}

impl Histogram {
    /// Largest latency with its own bucket.
    pub const MAX_MS: u64 = 60_000;

    /// Records one latency.
    pub fn record(&mut self, ms: u64) {
        let i = ms.min(Self::MAX_MS) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0.0..=1.0) in ms, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(if ms as u64 == Self::MAX_MS {
                    self.max_ms
                } else {
                    ms as u64
                });
            }
        }
        Some(self.max_ms)
    }
}

/// What the gateway knows about one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStats {
    /// Frames received from it (including replays).
    pub frames: u64,
    /// Readings the service acknowledged (stored now or before).
    pub posted: u64,
    /// Highest sequence number received, over all boots.
    pub max_seq: Option<u32>,
    /// Wall-clock time of the last frame.
    pub last_seen_ms: i64,
    /// The device's boots seen (protocol v2 `boot` ids; 0 for v1 frames), in the order they
    /// first appeared, the last [`MAX_BOOTS`] of them: a device's `seq` restarts at 0 at each
    /// boot, so what it sent is counted per boot.
    #[serde(default)]
    pub boots: Vec<BootStats>,
}

/// Boots kept per device in [`DeviceStats::boots`] (older ones are dropped: memory stays
/// bounded however often a device restarts).
pub const MAX_BOOTS: usize = 16;

/// What the gateway saw of one boot of a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStats {
    /// The boot id.
    pub boot: u32,
    /// Frames received from this boot (including replays).
    pub frames: u64,
    /// Highest sequence number received from this boot.
    pub max_seq: u32,
}

/// The gateway's counters. Shared by every task; all updates are relaxed atomics or short
/// critical sections.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bytes read from all links.
    pub bytes_in: AtomicU64,
    /// Good frames decoded (including replays).
    pub frames_in: AtomicU64,
    /// Corrupted or truncated frames (counted, logged, skipped).
    pub corrupt: AtomicU64,
    /// Readings the service acknowledged (accepted + duplicates).
    pub posted: AtomicU64,
    /// Of those, readings stored by our request.
    pub accepted: AtomicU64,
    /// Of those, readings the service already had (retries, replays).
    pub duplicates: AtomicU64,
    /// Ingest or registration attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Readings the service refused for good (400): logged; must stay 0.
    pub rejected: AtomicU64,
    /// Readings given up at shutdown because the service stayed unreachable: must stay 0.
    pub dropped: AtomicU64,
    /// Readings waiting in the buffer (decoded, not yet acknowledged).
    pub buffered: AtomicU64,
    /// Link (re)connections.
    pub connects: AtomicU64,
    /// Replay requests sent to devices after a (re)connect.
    pub replay_requests: AtomicU64,
    /// Acks written to devices ("the service committed frames first..=last of boot B").
    pub acks_sent: AtomicU64,
    /// Multi-device ingest requests sent (`POST /api/v1/readings`).
    pub requests: AtomicU64,
    /// Device entries in those requests (over `requests`: devices coalesced per request).
    pub request_entries: AtomicU64,
    /// Frame-in to acknowledged latency (`sampled_at_ms` to the service's answer).
    pub latency: Mutex<Histogram>,
    /// Per device.
    pub devices: Mutex<BTreeMap<u32, DeviceStats>>,
}

/// A point-in-time copy of [`Metrics`], as written to the stats file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Seconds since the gateway started.
    pub uptime_s: f64,
    /// See [`Metrics::bytes_in`].
    pub bytes_in: u64,
    /// See [`Metrics::frames_in`].
    pub frames_in: u64,
    /// See [`Metrics::corrupt`].
    pub corrupt: u64,
    /// See [`Metrics::posted`].
    pub posted: u64,
    /// See [`Metrics::accepted`].
    pub accepted: u64,
    /// See [`Metrics::duplicates`].
    pub duplicates: u64,
    /// See [`Metrics::retries`].
    pub retries: u64,
    /// See [`Metrics::rejected`].
    pub rejected: u64,
    /// See [`Metrics::dropped`].
    pub dropped: u64,
    /// See [`Metrics::buffered`].
    pub buffered: u64,
    /// See [`Metrics::connects`].
    pub connects: u64,
    /// See [`Metrics::replay_requests`].
    pub replay_requests: u64,
    /// See [`Metrics::acks_sent`].
    #[serde(default)]
    pub acks_sent: u64,
    /// Multi-device ingest requests sent.
    #[serde(default)]
    pub requests: u64,
    /// Device entries in those requests.
    #[serde(default)]
    pub request_entries: u64,
    /// Median frame-in to acknowledged latency, ms.
    pub latency_p50_ms: Option<u64>,
    /// 99th percentile of it, ms.
    pub latency_p99_ms: Option<u64>,
    /// Largest, ms.
    pub latency_max_ms: Option<u64>,
    /// Per device (JSON object keys are the ids).
    pub devices: BTreeMap<u32, DeviceStats>,
}

impl Metrics {
    /// Counts one frame from `device`'s boot `boot`.
    pub fn frame_in(&self, device: u32, boot: u32, seq: u32, now_ms: i64) {
        self.frames_in.fetch_add(1, Relaxed);
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let d = devices.entry(device).or_default();
        d.frames += 1;
        d.max_seq = Some(d.max_seq.map_or(seq, |m| m.max(seq)));
        d.last_seen_ms = now_ms;
        match d.boots.iter_mut().find(|b| b.boot == boot) {
            Some(b) => {
                b.frames += 1;
                b.max_seq = b.max_seq.max(seq);
            }
            None => {
                if d.boots.len() >= MAX_BOOTS {
                    d.boots.remove(0);
                }
                d.boots.push(BootStats {
                    boot,
                    frames: 1,
                    max_seq: seq,
                });
            }
        }
    }

    /// Counts readings the service acknowledged, with their latencies.
    pub fn acked(&self, device: u32, accepted: usize, duplicates: usize, latencies_ms: &[u64]) {
        let n = (accepted + duplicates) as u64;
        self.posted.fetch_add(n, Relaxed);
        self.accepted.fetch_add(accepted as u64, Relaxed);
        self.duplicates.fetch_add(duplicates as u64, Relaxed);
        {
            let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            for &ms in latencies_ms {
                h.record(ms);
            }
        }
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.entry(device).or_default().posted += n;
    }

    /// A snapshot.
    pub fn snapshot(&self, uptime_s: f64) -> Stats {
        let (p50, p99, max) = {
            let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            (
                h.quantile(0.5),
                h.quantile(0.99),
                (h.count() > 0).then_some(h.max_ms),
            )
        };
        Stats {
            uptime_s,
            bytes_in: self.bytes_in.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            posted: self.posted.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            retries: self.retries.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            buffered: self.buffered.load(Relaxed),
            connects: self.connects.load(Relaxed),
            replay_requests: self.replay_requests.load(Relaxed),
            acks_sent: self.acks_sent.load(Relaxed),
            requests: self.requests.load(Relaxed),
            request_entries: self.request_entries.load(Relaxed),
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            latency_max_ms: max,
            devices: self
                .devices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl Stats {
    /// The one-line form used by the periodic log line and the final summary.
    pub fn line(&self) -> String {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v}ms"));
        format!(
            "frames_in={} posted={} (new={} dup={}) acks={} requests={} (devices/request={:.1}) retries={} corrupt={} rejected={} dropped={} buffered={} devices={} latency p50={} p99={} max={}",
            self.frames_in,
            self.posted,
            self.accepted,
            self.duplicates,
            self.acks_sent,
            self.requests,
            self.request_entries as f64 / self.requests.max(1) as f64,
            self.retries,
            self.corrupt,
            self.rejected,
            self.dropped,
            self.buffered,
            self.devices.len(),
            ms(self.latency_p50_ms),
            ms(self.latency_p99_ms),
            ms(self.latency_max_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(1.0), Some(100));
        h.record(1_000_000);
        assert_eq!(h.quantile(1.0), Some(1_000_000));
    }

    #[test]
    fn stats_round_trip_through_json() {
        let m = Metrics::default();
        m.frame_in(4, 77, 9, 1);
        m.acked(4, 1, 0, &[12]);
        let s = m.snapshot(1.0);
        let back: Stats = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.devices[&4].max_seq, Some(9));
        assert_eq!(back.latency_p50_ms, Some(12));
    }

    #[test]
    fn boots_are_counted_apart_and_bounded() {
        let m = Metrics::default();
        for seq in 0..45 {
            m.frame_in(5, 111, seq, 1);
        }
        for seq in 0..30 {
            m.frame_in(5, 222, seq, 2);
        }
        m.frame_in(5, 111, 3, 3); // a late replay of the first boot
        let d = &m.snapshot(1.0).devices[&5];
        assert_eq!(
            d.boots,
            [
                BootStats {
                    boot: 111,
                    frames: 46,
                    max_seq: 44
                },
                BootStats {
                    boot: 222,
                    frames: 30,
                    max_seq: 29
                },
            ]
        );
        assert_eq!((d.frames, d.max_seq), (76, Some(44)));
        for boot in 0..100 {
            m.frame_in(6, boot, 0, 1);
        }
        let d = &m.snapshot(1.0).devices[&6];
        assert_eq!(d.boots.len(), MAX_BOOTS);
        assert_eq!(d.boots.last().map(|b| b.boot), Some(99));
    }
}

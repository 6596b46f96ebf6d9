//! `beacon-sim`: a fleet of simulated devices that speak the real wire protocol to the
//! gateway's real `listen:` link, the way the firmware does, and then check through the
//! service's query API what was stored.
//!
//! Each device is one tokio task with its own TCP connection, its own device id, boot id
//! (random, never 0) and sequence numbers from 0 at each boot. It sends the firmware's frame
//! shapes (protocol v2): a `Boot` frame first, then one sample per period
//! (`Temperature`, `Humidity`, `Counter`), and a `Status(TX_OVERFLOW), Counter(dropped)` frame
//! when its outbox overflowed. It keeps every frame in a bounded outbox until the gateway acks
//! it (firmware/app/src/outbox.rs: oldest dropped and counted when full), re-sends everything
//! held when the gateway asks (`R`, on every connect), and removes acked frames.
//!
//! Tokens and registration are the gateway's, as on the real path: the gateway registers a
//! device on its first frame with the token `--token-prefix` + id (the service must run with
//! open registration or the gateway with `--provisioning-token`).
//!
//! Optional faults: `--disconnect-every-secs` (each device drops its connection at random
//! times, mean interval given, and reconnects 0.2-1 s later) and `--reboot-every-secs` (a
//! reboot: the device waits up to 2 s for its outbox to empty, then starts a new boot id at
//! seq 0; frames still unacked are lost with the device's RAM and counted as
//! `lost_at_reboot`, as a real device's would be).
//!
//! Measured: sample-to-queryable latency through the service's SSE stream (`/api/v1/stream`,
//! published after the commit), from the moment a frame was first written to the moment it
//! arrives on the stream. Checked: every frame the devices built, queried back per device
//! (`GET /api/v1/devices/{id}/readings`, paged); `lost` counts frames neither stored nor
//! explained by a device-side drop.

/// The open-file limit (shared with the other binaries: `beacon-os`).
pub use beacon_os::fdlimit;

use beacon_protocol::{Downlink, DownlinkDecoder, Frame, MAX_WIRE_LEN, Reading, encode, status};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Firmware version the simulated devices report in their `Boot` frame.
pub const FIRMWARE: [u8; 3] = [0, 1, 0];
/// Board id of a simulated device (`board` 0x7F: not a real board).
pub const SIM_BOARD: u8 = 0x7F;
/// Frames a device holds unacked before it drops the oldest: the QEMU board's 64 KiB outbox
/// holds about 1,700 sample frames (services/gateway/README.md).
pub const OUTBOX_FRAMES: usize = 1_700;

/// What to simulate.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "beacon-sim",
    version,
    about = "Simulates a fleet of devices against the gateway's listen link and checks what the service stored"
)]
pub struct Config {
    /// The gateway's `listen:` link address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub gateway: SocketAddr,
    /// The service's base URL (for the stream and the final check).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub service: String,
    /// Read token for the service's read endpoints, when it needs one.
    #[arg(long, env = "BEACON_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Number of devices (each its own connection).
    #[arg(long, default_value_t = 100)]
    pub devices: u32,
    /// Id of the first device; the others follow.
    #[arg(long, default_value_t = 100_000)]
    pub first_id: u32,
    /// Samples per second per device.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of sampling.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// New connections per second while the fleet starts (the gateway's accept backlog).
    #[arg(long, default_value_t = 2_000)]
    pub connects_per_sec: u32,
    /// Mean seconds between a device's disconnects (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub disconnect_every_secs: f64,
    /// Mean seconds between a device's reboots (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub reboot_every_secs: f64,
    /// After sampling ends, seconds to wait for the outboxes to empty and the service to
    /// catch up.
    #[arg(long, default_value_t = 30)]
    pub drain_secs: u64,
    /// Print the report as one JSON object on stdout (for `cargo xtask bench-fleet`).
    #[arg(long)]
    pub json: bool,
}

/// What a run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Devices simulated.
    pub devices: u32,
    /// Samples per second per device.
    pub rate: f64,
    /// Seconds of sampling.
    pub duration_secs: f64,
    /// Distinct frames the devices built (boot and overflow frames included).
    pub built: u64,
    /// Frame writes, re-sends included.
    pub writes: u64,
    /// Boots, the first one of each device included.
    pub boots: u64,
    /// Re-sent frames (after a replay request).
    pub resent: u64,
    /// Acks received.
    pub acks: u64,
    /// Connections made (reconnects included).
    pub connects: u64,
    /// Connect attempts that failed.
    pub connect_errors: u64,
    /// Frames dropped from a full outbox (reported by an overflow frame).
    pub dropped_overflow: u64,
    /// Frames unacked when their device rebooted (lost with its RAM).
    pub lost_at_reboot: u64,
    /// Frames still unacked when the drain ended.
    pub unacked_at_end: u64,
    /// Frames found through the query API.
    pub stored: u64,
    /// Frames built, not stored, not explained by a device-side drop.
    pub lost: u64,
    /// Readings the service accepted per second while the whole fleet was sampling (its
    /// `beacon_ingest_readings_total{result="accepted"}` counter, from the end of the connect
    /// ramp to the end of sampling): the sustained rate, not what a drain caught up later.
    pub readings_per_sec: f64,
    /// What the fleet offered: devices x rate.
    pub offered_per_sec: f64,
    /// Sample-to-queryable latency samples (from the SSE stream).
    pub latency_samples: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
    /// Batches the SSE stream skipped because this client lagged.
    pub sse_lagged: u64,
    /// Seconds the final check took.
    pub check_secs: f64,
}

/// Counters shared by every device task.
#[derive(Debug, Default)]
struct Counters {
    built: AtomicU64,
    writes: AtomicU64,
    resent: AtomicU64,
    acks: AtomicU64,
    connects: AtomicU64,
    connect_errors: AtomicU64,
    dropped_overflow: AtomicU64,
    lost_at_reboot: AtomicU64,
    unacked_at_end: AtomicU64,
    boots: AtomicU64,
}

/// First write time (Unix ms) of each frame not yet seen on the stream.
type SentAt = Mutex<HashMap<(u32, u32, u32), u64>>;

/// What one device built, for the final check.
#[derive(Debug, Default)]
struct Ledger {
    /// `(boot, frames built in that boot)`: seqs `0..n`.
    boots: Vec<(u32, u32)>,
    /// `(boot, seq)` the device itself dropped (overflow, reboot).
    dropped: HashSet<(u32, u32)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A frame held until acked.
#[derive(Debug)]
struct Held {
    boot: u32,
    seq: u32,
    wire: Vec<u8>,
}

/// One simulated device: its boot, sequence numbers and outbox.
#[derive(Debug)]
struct Device {
    id: u32,
    boot: u32,
    next_seq: u32,
    booted: Instant,
    counter: u32,
    outbox: VecDeque<Held>,
    /// Entries from the front already written since the last rewind.
    sent: usize,
    /// Dropped since boot (overflow).
    dropped: u32,
    /// Dropped by overflow over all boots.
    overflow_total: u64,
    reported: u32,
    ledger: Ledger,
}

impl Device {
    fn new(id: u32) -> Self {
        let mut d = Self {
            id,
            boot: 0,
            next_seq: 0,
            booted: Instant::now(),
            counter: 0,
            outbox: VecDeque::new(),
            sent: 0,
            dropped: 0,
            overflow_total: 0,
            reported: 0,
            ledger: Ledger::default(),
        };
        d.reboot(None);
        d
    }

    /// A new boot: a new boot id, seq from 0, the outbox empty (RAM is gone), a `Boot` frame.
    fn reboot(&mut self, counters: Option<&Counters>) {
        for h in self.outbox.drain(..) {
            self.ledger.dropped.insert((h.boot, h.seq));
            if let Some(c) = counters {
                c.lost_at_reboot.fetch_add(1, Relaxed);
            }
        }
        self.sent = 0;
        let old = self.boot;
        loop {
            self.boot = beacon_protocol::frame::boot_id(fastrand::u32(..));
            if self.boot != old {
                break;
            }
        }
        self.next_seq = 0;
        self.booted = Instant::now();
        self.counter = 0;
        self.dropped = 0;
        self.reported = 0;
        self.ledger.boots.push((self.boot, 0));
        self.push(&[Reading::Boot {
            firmware: FIRMWARE,
            board: SIM_BOARD,
        }]);
    }

    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.booted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Builds a frame with the next seq and puts it in the outbox (dropping the oldest when
    /// full, like the firmware).
    fn push(&mut self, readings: &[Reading]) {
        let mut frame = Frame::new(self.id, self.next_seq, self.uptime_ms()).with_boot(self.boot);
        for r in readings {
            // At most 3 readings: always fits.
            let _ = frame.push(*r);
        }
        let mut wire = [0u8; MAX_WIRE_LEN];
        let n = encode(&frame, &mut wire).unwrap_or(0);
        if let Some(last) = self.ledger.boots.last_mut() {
            last.1 = self.next_seq.wrapping_add(1);
        }
        self.outbox.push_back(Held {
            boot: self.boot,
            seq: self.next_seq,
            wire: wire.get(..n).unwrap_or_default().to_vec(),
        });
        self.next_seq = self.next_seq.wrapping_add(1);
        while self.outbox.len() > OUTBOX_FRAMES {
            if let Some(h) = self.outbox.pop_front() {
                self.ledger.dropped.insert((h.boot, h.seq));
                self.dropped += 1;
                self.overflow_total += 1;
                self.sent = self.sent.saturating_sub(1);
            }
        }
    }

    fn sample(&mut self) {
        if self.dropped != self.reported {
            self.reported = self.dropped;
            self.push(&[
                Reading::Status(status::TX_OVERFLOW),
                Reading::Counter(self.dropped),
            ]);
        }
        let t = f64::from(self.counter % 600) / 600.0 * std::f64::consts::TAU;
        #[allow(clippy::cast_possible_truncation, reason = "bounded sine values")]
        let readings = [
            Reading::Temperature {
                centi_celsius: 2100 + (t.sin() * 300.0) as i16,
            },
            Reading::Humidity {
                centi_percent: 4500 + (t.cos() * 500.0) as u16,
            },
            Reading::Counter(self.counter),
        ];
        self.counter = self.counter.wrapping_add(1);
        self.push(&readings);
    }

    /// The bytes of every frame not written since the last rewind; marks them written.
    fn unsent(&mut self, sent_at: &SentAt, counters: &Counters) -> Vec<u8> {
        let mut out = Vec::new();
        let now = now_ms();
        let mut first_sends = Vec::new();
        for h in self.outbox.iter().skip(self.sent) {
            out.extend_from_slice(&h.wire);
            first_sends.push((h.boot, h.seq));
        }
        let n = self.outbox.len() - self.sent.min(self.outbox.len());
        self.sent = self.outbox.len();
        if n > 0 {
            counters.writes.fetch_add(n as u64, Relaxed);
            let mut map = sent_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (boot, seq) in first_sends {
                map.entry((self.id, boot, seq)).or_insert(now);
            }
        }
        out
    }

    fn ack(&mut self, boot: u32, first: u32, last: u32) {
        let ack = beacon_protocol::Ack { boot, first, last };
        let mut kept = VecDeque::with_capacity(self.outbox.len());
        let mut sent = self.sent;
        for (i, h) in self.outbox.drain(..).enumerate() {
            if ack.covers(h.boot, h.seq) {
                if i < self.sent {
                    sent -= 1;
                }
            } else {
                kept.push_back(h);
            }
        }
        self.outbox = kept;
        self.sent = sent;
    }

    fn rewind(&mut self, counters: &Counters) {
        counters.resent.fetch_add(self.sent as u64, Relaxed);
        self.sent = 0;
    }
}

/// Mean-`secs` exponential delay (0: never).
fn random_interval(secs: f64) -> Option<Duration> {
    (secs > 0.0).then(|| Duration::from_secs_f64(-secs * (1.0 - fastrand::f64()).ln()))
}

enum Ended {
    Disconnect,
    Reboot,
    Done,
}

/// What the device does with bytes from the gateway: an ack drops frames from its outbox, a
/// replay request re-sends what it holds.
fn on_downlink(bytes: &[u8], decoder: &mut DownlinkDecoder, dev: &mut Device, counters: &Counters) {
    for &b in bytes {
        match decoder.push(b) {
            Some(Ok(Downlink::Replay)) => dev.rewind(counters),
            Some(Ok(Downlink::Ack(a))) => {
                counters.acks.fetch_add(1, Relaxed);
                dev.ack(a.boot, a.first, a.last);
            }
            Some(Err(_)) | None => {}
        }
    }
}

/// A graceful reboot: up to 2 s for the outbox to empty (sending, reading acks); the rest is
/// lost with the RAM.
async fn drain_before_reboot(
    dev: &mut Device,
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    decoder: &mut DownlinkDecoder,
    sent_at: &SentAt,
    counters: &Counters,
) {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dev.outbox.is_empty() && Instant::now() < deadline {
        let bytes = dev.unsent(sent_at, counters);
        if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
            break;
        }
        let read = tokio::time::timeout_at(deadline.into(), reader.read(&mut buf));
        match read.await {
            Ok(Ok(n)) if n > 0 => {
                on_downlink(buf.get(..n).unwrap_or_default(), decoder, dev, counters)
            }
            _ => break,
        }
    }
}

async fn run_device(
    id: u32,
    start_at: Instant,
    end_at: Instant,
    drain_until: Instant,
    config: Arc<Config>,
    counters: Arc<Counters>,
    sent_at: Arc<SentAt>,
) -> (u32, Ledger) {
    tokio::time::sleep_until(start_at.into()).await;
    let period = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let mut dev = Device::new(id);
    let mut tick = tokio::time::interval_at(
        (Instant::now() + period.mul_f64(fastrand::f64())).into(),
        period,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_disconnect = random_interval(config.disconnect_every_secs).map(|d| start_at + d);
    let mut next_reboot = random_interval(config.reboot_every_secs).map(|d| start_at + d);
    let mut connect_backoff = Duration::from_millis(50);
    'connection: loop {
        let stream = match TcpStream::connect(config.gateway).await {
            Ok(s) => s,
            Err(_) => {
                counters.connect_errors.fetch_add(1, Relaxed);
                if Instant::now() > drain_until {
                    break 'connection;
                }
                tokio::time::sleep(connect_backoff).await;
                connect_backoff = (connect_backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        connect_backoff = Duration::from_millis(50);
        counters.connects.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        // A fresh link: nothing held is known to have arrived (the gateway also asks with `R`).
        dev.rewind(&counters);
        let mut decoder = DownlinkDecoder::new();
        let mut buf = [0u8; 512];
        let ended = loop {
            let bytes = dev.unsent(&sent_at, &counters);
            if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
                break Ended::Disconnect;
            }
            let now = Instant::now();
            if now >= end_at && dev.outbox.is_empty() {
                break Ended::Done;
            }
            if now >= drain_until {
                break Ended::Done;
            }
            let fault_at = [next_disconnect, next_reboot]
                .into_iter()
                .flatten()
                .filter(|t| *t < end_at)
                .min()
                .unwrap_or(drain_until);
            tokio::select! {
                _ = tick.tick(), if now < end_at => {
                    dev.sample();
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break Ended::Disconnect,
                    Ok(n) => on_downlink(buf.get(..n).unwrap_or_default(), &mut decoder, &mut dev, &counters),
                },
                () = tokio::time::sleep_until(fault_at.into()) => {
                    let now = Instant::now();
                    if next_reboot.is_some_and(|t| t <= now) {
                        next_reboot = random_interval(config.reboot_every_secs).map(|d| now + d);
                        break Ended::Reboot;
                    }
                    if next_disconnect.is_some_and(|t| t <= now) {
                        next_disconnect =
                            random_interval(config.disconnect_every_secs).map(|d| now + d);
                        break Ended::Disconnect;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(200)), if now >= end_at => {}
            }
        };
        match ended {
            Ended::Done => break 'connection,
            Ended::Disconnect => {
                drop(writer);
                drop(reader);
                // Unplugged, not off: the device goes on sampling into its outbox.
                let until = Instant::now() + Duration::from_millis(200 + fastrand::u64(..800));
                while Instant::now() < until {
                    tokio::select! {
                        _ = tick.tick(), if Instant::now() < end_at => dev.sample(),
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                }
            }
            Ended::Reboot => {
                drain_before_reboot(
                    &mut dev,
                    &mut writer,
                    &mut reader,
                    &mut decoder,
                    &sent_at,
                    &counters,
                )
                .await;
                drop(writer);
                drop(reader);
                dev.reboot(Some(&counters));
                tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..400))).await;
            }
        }
        if Instant::now() >= drain_until {
            break;
        }
    }
    counters
        .unacked_at_end
        .fetch_add(dev.outbox.len() as u64, Relaxed);
    counters
        .dropped_overflow
        .fetch_add(dev.overflow_total, Relaxed);
    let built: u64 = dev.ledger.boots.iter().map(|&(_, n)| u64::from(n)).sum();
    counters.built.fetch_add(built, Relaxed);
    counters
        .boots
        .fetch_add(dev.ledger.boots.len() as u64, Relaxed);
    (id, dev.ledger)
}

/// Reads the SSE stream and records the latency of every reading it carries.
async fn watch_stream(
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
async fn accepted_total(client: &reqwest::Client, config: &Config) -> Option<f64> {
    let mut req = client.get(format!("{}/metrics", config.service));
    if let Some(t) = &config.read_token {
        req = req.bearer_auth(t);
    }
    let text = req.send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("beacon_ingest_readings_total{result=\"accepted\"} "))
        .and_then(|v| v.trim().parse().ok())
}

/// How many of `ledger`'s frames the service has stored; the ones it has not, minus
/// device-side drops, are lost.
async fn check_device(
    client: &reqwest::Client,
    config: &Config,
    id: u32,
    ledger: &Ledger,
) -> Result<(u64, u64), String> {
    let mut stored: HashSet<(u32, u32)> = HashSet::new();
    let mut after: Option<(u32, u32)> = None;
    loop {
        let mut url = format!(
            "{}/api/v1/devices/{id}/readings?limit=10000",
            config.service
        );
        if let Some((b, s)) = after {
            url.push_str(&format!("&after_boot={b}&after_seq={s}"));
        }
        let mut req = client.get(&url);
        if let Some(t) = &config.read_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            break; // never registered: nothing stored
        }
        if !resp.status().is_success() {
            return Err(format!("GET {url} answered {}", resp.status()));
        }
        let page: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("GET {url}: bad JSON: {e}"))?;
        for r in page["readings"].as_array().into_iter().flatten() {
            let boot = r["boot"].as_u64().and_then(|b| u32::try_from(b).ok());
            let seq = r["seq"].as_u64().and_then(|s| u32::try_from(s).ok());
            if let (Some(b), Some(s)) = (boot, seq) {
                stored.insert((b, s));
            }
        }
        match (
            page["next_after_boot"].as_u64(),
            page["next_after_seq"].as_u64(),
        ) {
            (Some(b), Some(s)) => {
                after = Some((u32::try_from(b).unwrap_or(0), u32::try_from(s).unwrap_or(0)));
            }
            _ => break,
        }
    }
    let mut found = 0u64;
    let mut lost = 0u64;
    for &(boot, n) in &ledger.boots {
        for seq in 0..n {
            if stored.contains(&(boot, seq)) {
                found += 1;
            } else if !ledger.dropped.contains(&(boot, seq)) {
                lost += 1;
            }
        }
    }
    Ok((found, lost))
}

/// Reads back, 16 devices at a time, what the service stored of each device's ledger:
/// (stored, lost) over the fleet.
async fn check_all(
    client: &reqwest::Client,
    config: &Arc<Config>,
    ledgers: Vec<(u32, Ledger)>,
) -> Result<(u64, u64), String> {
    let mut stored = 0u64;
    let mut lost = 0u64;
    let mut checks = tokio::task::JoinSet::new();
    let ledgers = Arc::new(ledgers);
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..16 {
        let client = client.clone();
        let config = Arc::clone(config);
        let ledgers = Arc::clone(&ledgers);
        let next = Arc::clone(&next);
        checks.spawn(async move {
            let mut found = 0u64;
            let mut lost = 0u64;
            loop {
                let i = usize::try_from(next.fetch_add(1, Relaxed)).unwrap_or(usize::MAX);
                let Some((id, ledger)) = ledgers.get(i) else {
                    break;
                };
                let (f, l) = check_device(&client, &config, *id, ledger).await?;
                found += f;
                lost += l;
            }
            Ok::<_, String>((found, lost))
        });
    }
    while let Some(joined) = checks.join_next().await {
        let (f, l) = joined.map_err(|e| format!("a check task failed: {e}"))??;
        stored += f;
        lost += l;
    }
    Ok((stored, lost))
}

/// Runs the fleet, waits for it to drain, checks what was stored.
pub async fn run(config: Config) -> Result<Report, String> {
    if config.devices == 0 || config.rate <= 0.0 {
        return Err("--devices and --rate must be above 0".into());
    }
    let config = Arc::new(config);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| format!("cannot build the http client: {e}"))?;
    let counters = Arc::new(Counters::default());
    let sent_at: Arc<SentAt> = Arc::new(Mutex::new(HashMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let lagged = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch_stream(
        client.clone(),
        Arc::clone(&config),
        Arc::clone(&sent_at),
        Arc::clone(&latencies),
        Arc::clone(&lagged),
    ));
    // Let the stream subscribe before the first frame.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if watcher.is_finished() {
        return match watcher.await {
            Ok(Err(e)) => Err(e),
            _ => Err("the SSE stream ended at once".into()),
        };
    }

    let begin = Instant::now();
    let ramp = Duration::from_secs_f64(
        f64::from(config.devices) / f64::from(config.connects_per_sec.max(1)),
    );
    let end_at = begin + ramp + Duration::from_secs(config.duration_secs);
    let drain_until = end_at + Duration::from_secs(config.drain_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.devices {
        let id = config.first_id.wrapping_add(i);
        let start_at = begin + ramp.mul_f64(f64::from(i) / f64::from(config.devices));
        tasks.spawn(run_device(
            id,
            start_at,
            end_at,
            drain_until,
            Arc::clone(&config),
            Arc::clone(&counters),
            Arc::clone(&sent_at),
        ));
    }
    let sustained = {
        let client = client.clone();
        let config = Arc::clone(&config);
        let steady = begin + ramp;
        tokio::spawn(async move {
            tokio::time::sleep_until(steady.into()).await;
            let a = accepted_total(&client, &config).await?;
            let t0 = Instant::now();
            // An overloaded service answers /metrics late too: a window shorter than half the
            // sampling time measures nothing worth printing.
            if end_at.saturating_duration_since(t0) < (end_at - steady) / 2 {
                return None;
            }
            tokio::time::sleep_until(end_at.into()).await;
            let b = accepted_total(&client, &config).await?;
            Some((b - a) / t0.elapsed().as_secs_f64().max(0.001))
        })
    };
    let mut ledgers: Vec<(u32, Ledger)> = Vec::with_capacity(config.devices as usize);
    while let Some(joined) = tasks.join_next().await {
        ledgers.push(joined.map_err(|e| format!("a device task failed: {e}"))?);
    }
    let sampling = (end_at - begin - ramp).as_secs_f64();

    // The last commits reach the stream shortly after their acks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();

    let check_started = Instant::now();
    let (stored, lost) = check_all(&client, &config, ledgers).await?;

    let mut lat = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let p50 = beacon_api::quantile(&mut lat, 0.50).map_or(0.0, f64::from);
    let p99 = beacon_api::quantile(&mut lat, 0.99).map_or(0.0, f64::from);
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let report = Report {
        devices: config.devices,
        rate: config.rate,
        duration_secs: sampling,
        built: counters.built.load(Relaxed),
        writes: counters.writes.load(Relaxed),
        boots: counters.boots.load(Relaxed),
        resent: counters.resent.load(Relaxed),
        acks: counters.acks.load(Relaxed),
        connects: counters.connects.load(Relaxed),
        connect_errors: counters.connect_errors.load(Relaxed),
        dropped_overflow: counters.dropped_overflow.load(Relaxed),
        lost_at_reboot: counters.lost_at_reboot.load(Relaxed),
        unacked_at_end: counters.unacked_at_end.load(Relaxed),
        stored,
        lost,
        readings_per_sec: sustained.await.ok().flatten().unwrap_or(f64::NAN),
        offered_per_sec: f64::from(config.devices) * config.rate,
        latency_samples: lat.len() as u64,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: lat.last().copied().map_or(0.0, f64::from),
        sse_lagged: lagged.load(Relaxed),
        check_secs: check_started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

impl Report {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "{} devices at {}/s for {:.0}s ({} boots): built {}, stored {}, lost {} (device-side: {} \
             overflow, {} at reboot; {} unacked at the end), {:.0} readings/s, latency p50 \
             {:.0} ms p99 {:.0} ms max {:.0} ms ({} samples, {} SSE batches lagged), {} \
             connects, {} re-sent (offered {:.0}/s)",
            self.devices,
            self.rate,
            self.duration_secs,
            self.boots,
            self.built,
            self.stored,
            self.lost,
            self.dropped_overflow,
            self.lost_at_reboot,
            self.unacked_at_end,
            self.readings_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.latency_samples,
            self.sse_lagged,
            self.connects,
            self.resent,
            self.offered_per_sec,
        )
    }
}

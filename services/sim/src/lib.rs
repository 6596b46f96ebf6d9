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
//!
//! The files: this one the [`Config`], the [`Report`] and [`run`]; `device.rs` a simulated
//! device and its task; `stream.rs` the measurements on the service while the fleet runs
//! (latency on the SSE stream, the accepted-readings rate); `check.rs` the final check through
//! the query API.

mod check;
mod device;
mod stream;

/// The open-file limit (shared with the other binaries: `beacon-os`).
pub use beacon_os::fdlimit;

use device::{Ledger, run_device};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::{JoinHandle, JoinSet};

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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the tasks of one run share: the counters, the first write of each frame, and what the
/// SSE stream measured.
#[derive(Debug, Default)]
struct Shared {
    counters: Arc<Counters>,
    sent_at: Arc<SentAt>,
    latencies: Arc<Mutex<Vec<u32>>>,
    lagged: Arc<AtomicU64>,
}

/// When a run's phases end.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    begin: Instant,
    /// The connect ramp: device `i` of `n` starts at `begin + ramp * i / n`.
    ramp: Duration,
    /// Sampling ends.
    end_at: Instant,
    /// The drain ends.
    drain_until: Instant,
}

impl Schedule {
    fn new(config: &Config) -> Self {
        let begin = Instant::now();
        let ramp = Duration::from_secs_f64(
            f64::from(config.devices) / f64::from(config.connects_per_sec.max(1)),
        );
        let end_at = begin + ramp + Duration::from_secs(config.duration_secs);
        Self {
            begin,
            ramp,
            end_at,
            drain_until: end_at + Duration::from_secs(config.drain_secs),
        }
    }

    /// The whole fleet samples from here to `end_at`.
    fn steady(&self) -> Instant {
        self.begin + self.ramp
    }
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
    let shared = Shared::default();
    let watcher = subscribe(&client, &config, &shared).await?;

    let schedule = Schedule::new(&config);
    let mut tasks = spawn_fleet(&config, &schedule, &shared);
    let sustained = spawn_sustained(&client, &config, &schedule);
    let mut ledgers: Vec<(u32, Ledger)> = Vec::with_capacity(config.devices as usize);
    while let Some(joined) = tasks.join_next().await {
        ledgers.push(joined.map_err(|e| format!("a device task failed: {e}"))?);
    }
    let sampling = (schedule.end_at - schedule.steady()).as_secs_f64();

    // The last commits reach the stream shortly after their acks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();

    let check_started = Instant::now();
    let (stored, lost) = check::check_all(&client, &config, ledgers).await?;
    let mut report = shared.report(&config);
    report.duration_secs = sampling;
    report.stored = stored;
    report.lost = lost;
    report.readings_per_sec = sustained.await.ok().flatten().unwrap_or(f64::NAN);
    report.check_secs = check_started.elapsed().as_secs_f64();
    Ok(report)
}

/// Subscribes to the service's SSE stream before the first frame; `Err` if it ended at once.
async fn subscribe(
    client: &reqwest::Client,
    config: &Arc<Config>,
    shared: &Shared,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let watcher = tokio::spawn(stream::watch_stream(
        client.clone(),
        Arc::clone(config),
        Arc::clone(&shared.sent_at),
        Arc::clone(&shared.latencies),
        Arc::clone(&shared.lagged),
    ));
    // Let the stream subscribe before the first frame.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if watcher.is_finished() {
        return match watcher.await {
            Ok(Err(e)) => Err(e),
            _ => Err("the SSE stream ended at once".into()),
        };
    }
    Ok(watcher)
}

/// One task per device, their starts spread over the connect ramp.
fn spawn_fleet(
    config: &Arc<Config>,
    schedule: &Schedule,
    shared: &Shared,
) -> JoinSet<(u32, Ledger)> {
    let mut tasks = JoinSet::new();
    for i in 0..config.devices {
        let id = config.first_id.wrapping_add(i);
        let start_at = schedule.begin
            + schedule
                .ramp
                .mul_f64(f64::from(i) / f64::from(config.devices));
        tasks.spawn(run_device(
            id,
            start_at,
            schedule.end_at,
            schedule.drain_until,
            Arc::clone(config),
            Arc::clone(&shared.counters),
            Arc::clone(&shared.sent_at),
        ));
    }
    tasks
}

/// The service's accepted readings per second from the end of the ramp to the end of
/// sampling (`None` if it cannot say, or answers too late for a window worth printing).
fn spawn_sustained(
    client: &reqwest::Client,
    config: &Arc<Config>,
    schedule: &Schedule,
) -> JoinHandle<Option<f64>> {
    let client = client.clone();
    let config = Arc::clone(config);
    let (steady, end_at) = (schedule.steady(), schedule.end_at);
    tokio::spawn(async move {
        tokio::time::sleep_until(steady.into()).await;
        let a = stream::accepted_total(&client, &config).await?;
        let t0 = Instant::now();
        // An overloaded service answers /metrics late too: a window shorter than half the
        // sampling time measures nothing worth printing.
        if end_at.saturating_duration_since(t0) < (end_at - steady) / 2 {
            return None;
        }
        tokio::time::sleep_until(end_at.into()).await;
        let b = stream::accepted_total(&client, &config).await?;
        Some((b - a) / t0.elapsed().as_secs_f64().max(0.001))
    })
}

impl Shared {
    /// The report's counts and latencies (the check's and the rate's figures are the caller's).
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn report(&self, config: &Config) -> Report {
        let counters = &self.counters;
        let mut lat = std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let p50 = beacon_api::quantile(&mut lat, 0.50).map_or(0.0, f64::from);
        let p99 = beacon_api::quantile(&mut lat, 0.99).map_or(0.0, f64::from);
        Report {
            devices: config.devices,
            rate: config.rate,
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
            offered_per_sec: f64::from(config.devices) * config.rate,
            latency_samples: lat.len() as u64,
            p50_ms: p50,
            p99_ms: p99,
            max_ms: lat.last().copied().map_or(0.0, f64::from),
            sse_lagged: self.lagged.load(Relaxed),
            ..Report::default()
        }
    }
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

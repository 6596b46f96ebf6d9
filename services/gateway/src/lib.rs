//! The beacon gateway: bridges devices to the service.
//!
//! ```text
//! device --(UART over TCP | serial | RTT | recorded file)--> link producer --bytes--> consumer
//!   (Decoder, one per connection; resync on reconnect) --frames--> bounded buffer --> poster
//!   (one task per device: register once, batch, retry) --> coalescer (one per service
//!   replica: many devices' batches, each with its device's token, in one POST) --> service
//! ```
//!
//! - Links (`--link`, repeatable, one task each): see [`link::LinkSpec`].
//! - Reliability: a frame holds a permit of a bounded buffer (`--buffer`) from decoding until
//!   the service acknowledges it. A service that is down or answers 5xx/503 is retried with
//!   exponential backoff and jitter; readings stay in memory meanwhile. When the buffer is
//!   full the gateway applies **back-pressure** to the links (it stops reading them; it does
//!   not spill to disk): the device's UART then reports "TX full" and the firmware waits.
//! - Replicas: `--service` repeated spreads batches across service replicas in turn and fails
//!   a batch over to the next replica at once; the backoff starts when all of them failed.
//! - Store-and-forward: after the service's 2xx for a batch, and only then, the gateway acks
//!   its frames back to the device over the link they came in on ([`post::acks_for`],
//!   protocol/SPEC.md section 8); the device keeps every frame until then. On every
//!   (re)connect the gateway asks the device to re-send what is not acked yet
//!   ([`link::REPLAY_REQUEST`]), so a gateway restart (even `kill -9`) loses nothing the
//!   device still holds.
//! - Corrupted frames are counted and logged; the decoder resynchronises on the next frame.
//! - Metrics: a log line every `--log-interval-secs`, a JSON stats file (`--stats-file`,
//!   rewritten every second; see [`metrics::Stats`]) and a final summary.
#![warn(missing_docs)]

// Dev builds after `cargo xtask setup`: take the heavy dependencies from one shared library
// (services/devdeps, docs/compile-times.md). Without `--cfg beacon_dylib` this is nothing,
// and in release builds too (no debug assertions): what is installed or shipped stays static.
#[cfg(all(beacon_dylib, debug_assertions))]
extern crate beacon_devdeps as _;

/// The open-file limit (shared with the other binaries: `beacon-os`).
pub use beacon_os::fdlimit;
pub mod link;
pub mod metrics;
pub mod model;
pub mod post;

use clap::Parser;
use link::{Ctx, LinkSpec};
use metrics::{Metrics, Stats};
use post::{PostConfig, Poster};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// The gateway's configuration. Every flag has a `BEACON_*` environment fallback.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "beacon-gateway",
    version,
    about = "Bridges devices to the beacon service: reads device links, decodes frames, posts them"
)]
pub struct Config {
    /// A device link; repeat for several: tcp:HOST:PORT, listen:HOST:PORT,
    /// serial:/dev/ttyX[@BAUD], file:PATH, rtt:CHIP[@CHANNEL].
    #[arg(long = "link", required = true, value_name = "LINK")]
    pub links: Vec<LinkSpec>,

    /// The service's base URL; repeat (or comma-separate in the environment) for several
    /// replicas on one shared store: batches are spread across them in turn, and a batch that
    /// one cannot take (down, 5xx, 503) goes to the next at once; only when every replica
    /// failed does the gateway back off (honouring `Retry-After`).
    #[arg(
        long,
        env = "BEACON_SERVICE_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub service: Vec<String>,

    /// A device's ingest token, as ID=TOKEN; repeat for several.
    #[arg(long = "device-token", value_name = "ID=TOKEN", value_parser = parse_device_token)]
    pub device_tokens: Vec<(u32, String)>,

    /// Token of a device without --device-token: this prefix followed by its id.
    /// TODO(3): derive tokens from your device id scheme / provisioning.
    #[arg(
        long,
        env = "BEACON_GATEWAY_TOKEN_PREFIX",
        default_value = "beacon-device-",
        hide_env_values = true
    )]
    pub token_prefix: String,

    /// Bearer token for device registration, when the service requires one.
    #[arg(long, env = "BEACON_PROVISIONING_TOKEN", hide_env_values = true)]
    pub provisioning_token: Option<String>,

    /// Most readings per request.
    #[arg(long, env = "BEACON_GATEWAY_BATCH_MAX", default_value_t = 256)]
    pub batch_max: usize,

    /// How long a device's first reading of a batch waits for more of its readings, in ms
    /// (0: hand it on at once). Off by default: the device's readings that arrive during a
    /// request go in its next one anyway, and `--request-linger-ms` gathers many devices into
    /// one request. Measured (`cargo xtask bench-fleet`, 10,000 devices at 1 Hz, two pairs):
    /// 10 ms cost a timer per reading and 10 ms of latency, p50 31 ms vs 13-20 ms at 0.
    #[arg(long, env = "BEACON_GATEWAY_BATCH_MS", default_value_t = 0)]
    pub batch_ms: u64,

    /// Readings held in memory between decoding and the service's acknowledgement; when full,
    /// the gateway stops reading the links (back-pressure).
    #[arg(long, env = "BEACON_GATEWAY_BUFFER", default_value_t = 100_000)]
    pub buffer: usize,

    /// First retry delay in ms (doubles per failure, with jitter).
    #[arg(long, env = "BEACON_GATEWAY_RETRY_BASE_MS", default_value_t = 100)]
    pub retry_base_ms: u64,

    /// Longest retry delay in ms.
    #[arg(long, env = "BEACON_GATEWAY_RETRY_MAX_MS", default_value_t = 2_000)]
    pub retry_max_ms: u64,

    /// Do not ask devices to re-send their unacknowledged frames on (re)connect.
    #[arg(long)]
    pub no_replay: bool,

    /// After a shutdown signal, how long to keep trying to deliver buffered readings, in
    /// seconds; what is left after that is counted as dropped.
    #[arg(long, env = "BEACON_GATEWAY_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Write the stats as JSON to this file every second (and at exit).
    #[arg(long, env = "BEACON_GATEWAY_STATS_FILE")]
    pub stats_file: Option<PathBuf>,

    /// Seconds between metric log lines (0: none).
    #[arg(long, env = "BEACON_GATEWAY_LOG_INTERVAL_SECS", default_value_t = 10)]
    pub log_interval_secs: u64,

    /// Log filter (tracing EnvFilter syntax). `RUST_LOG` wins when set.
    #[arg(long, env = "BEACON_LOG", default_value = "info")]
    pub log: String,

    /// Most requests to the service at once, over all devices (each device posts one batch
    /// at a time; with more devices than this, their readings wait and go out in bigger
    /// batches). Keeps the gateway's connections to the service few and reused.
    #[arg(long, env = "BEACON_GATEWAY_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Most devices whose batches go out together in one multi-device request
    /// (`POST /api/v1/readings`; the service takes up to 1000).
    #[arg(
        long,
        env = "BEACON_GATEWAY_REQUEST_MAX_DEVICES",
        default_value_t = 500
    )]
    pub request_max_devices: usize,

    /// Most readings in one multi-device request (the service's --max-batch is 10,000).
    #[arg(
        long,
        env = "BEACON_GATEWAY_REQUEST_MAX_READINGS",
        default_value_t = 5_000
    )]
    pub request_max_readings: usize,

    /// How long the first device batch of a request waits for other devices' batches, in ms
    /// (0: send at once; batches that become ready while every in-flight slot is busy always
    /// go out together).
    #[arg(long, env = "BEACON_GATEWAY_REQUEST_LINGER_MS", default_value_t = 5)]
    pub request_linger_ms: u64,

    /// How many devices you expect to connect at once (0: unchecked). At start-up the gateway
    /// raises its open-file limit to the hard limit and warns when that still cannot hold
    /// one descriptor per device plus 512 for its connections to the service.
    #[arg(long, env = "BEACON_GATEWAY_EXPECTED_DEVICES", default_value_t = 0)]
    pub expected_devices: u64,
}

/// Descriptors the gateway keeps for everything but device connections: its pooled HTTP
/// connections to the service, listeners, the stats file, logs.
pub const FD_RESERVE: u64 = 512;

/// Raises the open-file limit (soft to hard) and logs what it is; warns when it cannot hold
/// `expected_devices` connections plus [`FD_RESERVE`]. Call once at start-up.
pub fn raise_open_file_limit(expected_devices: u64) {
    let now = match fdlimit::raise() {
        Ok(r) => {
            if r.before != r.now {
                tracing::info!(
                    "open-file limit raised from {} to {} (the hard limit)",
                    fdlimit::show(r.before),
                    fdlimit::show(r.now)
                );
            }
            r.now
        }
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    };
    let needed = expected_devices.saturating_add(FD_RESERVE);
    if let Some(limit) = now
        && expected_devices > 0
        && limit < needed
    {
        tracing::warn!(
            "the open-file limit {limit} is too low for --expected-devices {expected_devices}: \
             each device connection is a descriptor, plus about {FD_RESERVE} for the service \
             pool; raise the hard limit to at least {needed} (`ulimit -Hn`, LimitNOFILE= in a \
             systemd unit, --ulimit nofile= for Docker); connections beyond it are refused"
        );
    }
}

fn parse_device_token(s: &str) -> Result<(u32, String), String> {
    let (id, token) = s
        .split_once('=')
        .ok_or_else(|| format!("bad device token `{s}`: expected ID=TOKEN"))?;
    let id = id
        .parse()
        .map_err(|_| format!("bad device token `{s}`: `{id}` is not a device id"))?;
    if token.is_empty() {
        return Err(format!("bad device token `{s}`: the token is empty"));
    }
    Ok((id, token.to_owned()))
}

/// Runs the gateway until `shutdown` completes, every link has ended (only `file:` links
/// end), or a link fails for good. Then stops reading, delivers what is buffered (for up to
/// `--drain-secs`), and returns the final stats. `Err` names a link that failed for good.
#[allow(
    clippy::result_large_err,
    reason = "returned once per gateway run: the size of the error costs nothing"
)]
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Stats, (String, Stats)> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::default());
    let cancel = CancellationToken::new();
    let give_up = CancellationToken::new();
    let poster = Poster::new(
        PostConfig {
            services: config
                .service
                .iter()
                .map(|s| s.trim_end_matches('/').to_owned())
                .collect(),
            tokens: config
                .device_tokens
                .iter()
                .cloned()
                .collect::<HashMap<_, _>>(),
            token_prefix: config.token_prefix.clone(),
            provisioning_token: config.provisioning_token.clone(),
            batch_max: config.batch_max,
            linger: Duration::from_millis(config.batch_ms),
            retry_base: Duration::from_millis(config.retry_base_ms.max(1)),
            retry_max: Duration::from_millis(config.retry_max_ms.max(1)),
            request_timeout: Duration::from_secs(10),
            max_in_flight: config.max_in_flight,
            request_max_devices: config.request_max_devices,
            request_max_readings: config.request_max_readings,
            request_linger: Duration::from_millis(config.request_linger_ms),
        },
        Arc::clone(&metrics),
        give_up.clone(),
    )
    .map_err(|e| (e, metrics.snapshot(0.0)))?;
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    let posting = tokio::spawn(poster.run(frames_rx));
    let ctx = Ctx {
        metrics: Arc::clone(&metrics),
        buffer: Arc::new(Semaphore::new(config.buffer.max(1))),
        frames: frames_tx,
        cancel: cancel.clone(),
        replay: !config.no_replay,
    };
    let mut links = tokio::task::JoinSet::new();
    for spec in &config.links {
        tracing::info!("link {spec}: starting");
        links.spawn(link::run_link(spec.clone(), ctx.clone()));
    }
    drop(ctx);

    let reporter = tokio::spawn(report(
        Arc::clone(&metrics),
        started,
        config.stats_file.clone(),
        config.log_interval_secs,
        cancel.clone(),
    ));

    let mut failure = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!("shutdown: stopping the links, delivering what is buffered");
                break;
            }
            joined = links.join_next() => match joined {
                None => {
                    tracing::info!("every link has ended; delivering what is buffered");
                    break;
                }
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::error!("{e}");
                    failure = Some(e);
                    break;
                }
                Some(Err(e)) => {
                    let e = format!("a link task failed: {e}");
                    tracing::error!("{e}");
                    failure = Some(e);
                    break;
                }
            },
        }
    }
    cancel.cancel();
    while links.join_next().await.is_some() {}
    // Every frame sender is gone now: the poster drains and ends. Give it --drain-secs.
    let drain = Duration::from_secs(config.drain_secs);
    let timer = {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            give_up.cancel();
        })
    };
    let _ = posting.await;
    timer.abort();
    let _ = reporter.await;
    let stats = metrics.snapshot(started.elapsed().as_secs_f64());
    if let Some(path) = &config.stats_file
        && let Err(e) = write_stats(path, &stats)
    {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    tracing::info!("summary: {}", stats.line());
    match failure {
        None => Ok(stats),
        Some(e) => Err((e, stats)),
    }
}

/// Writes the stats file atomically (temp file + rename), so a reader never sees half of it.
pub fn write_stats(path: &Path, stats: &Stats) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(stats)?)?;
    std::fs::rename(&tmp, path)
}

async fn report(
    metrics: Arc<Metrics>,
    started: Instant,
    stats_file: Option<PathBuf>,
    log_every: u64,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        n += 1;
        let stats = metrics.snapshot(started.elapsed().as_secs_f64());
        if let Some(path) = &stats_file {
            let path = path.clone();
            let s = stats.clone();
            // Small, but still file I/O: off the async workers.
            let _ = tokio::task::spawn_blocking(move || write_stats(&path, &s)).await;
        }
        if log_every > 0 && n.is_multiple_of(log_every) {
            tracing::info!("{}", stats.line());
        }
    }
}

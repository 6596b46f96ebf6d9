//! `beacon-demo`: the whole stack, live. `cargo xtask demo` builds what is stale and runs this.
//!
//! Starts the service (with tokio-console when built with its `console` feature), the gateway
//! and N QEMU devices (or a real nRF52840-DK through probe-rs with `--board nrf52840`), shows a
//! live view, and on Ctrl-C (or after `--duration`) stops everything in order (devices, then
//! the gateway, which delivers what it holds, then the service) and prints a summary: frames
//! the devices sent, readings stored, lost, duplicated, sample-to-queryable latency.
//!
//! `--faults` runs the fault plan of [`beacon_demo::faults`] during the run (a device reboot,
//! `kill -9` of the gateway and of the service with restarts, a 30 s cut of one device's
//! link), prints its timeline, and adds each fault's heal time to the summary; `--check` then
//! also fails if a fault did not heal.
//!
//! Exit codes: 0 ok; 1 a process failed, or `--check` found a loss or no data; 2 bad usage.
//!
//! The files: this one the command line and the run's order; `start.rs` bringing the stack up
//! (and flashing a real board); `live.rs` the live view, with the fault plan during it;
//! `summary.rs` the orderly stop, the count, the summary and `--check`.

mod live;
mod start;
mod summary;

use beacon_demo::{Live, watch_stream};
use clap::Parser;
use live::live_view;
use start::start;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use summary::{check, print_summary, stop_and_count};

#[derive(Debug, Parser)]
#[command(
    name = "beacon-demo",
    about = "Runs the service, the gateway and QEMU devices end to end, live"
)]
struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Exit non-zero if any reading was lost or duplicated, or no data flowed (for CI).
    #[arg(long)]
    check: bool,
    /// Emulated devices to boot.
    #[arg(long, default_value_t = 3)]
    devices: u32,
    /// Sampling period of each device, ms.
    #[arg(long, default_value_t = 100)]
    period_ms: u32,
    /// `qemu` (emulated devices) or `nrf52840` (a real nRF52840-DK through probe-rs RTT).
    #[arg(long, default_value = "qemu", value_parser = ["qemu", "nrf52840"])]
    board: String,
    /// Where the service (and its dashboard) listens; a taken port falls back to a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where tokio-console attaches (loopback only).
    #[arg(long, default_value = "127.0.0.1:6669")]
    console_addr: SocketAddr,
    /// Do not start the service's tokio-console server.
    #[arg(long)]
    no_console: bool,
    /// Folder for the database and the logs (default: target/demo); emptied at start.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Print a status line every few seconds instead of redrawing the screen.
    #[arg(long)]
    plain: bool,
    /// Inject faults during the run, with a printed timeline: a device reboot, `kill -9` of
    /// the gateway and of the service (each restarted), a cut of one device's link. The
    /// summary adds each fault's heal time. The run ends when the plan is done (about 70 s),
    /// or at `--duration` if that is later.
    #[arg(long)]
    faults: bool,
    /// With `--faults`: how long the link cut lasts, s.
    #[arg(long, default_value_t = 30)]
    cut_secs: u64,
    /// With `--faults`: how long the gateway and the service stay down after `kill -9`, s.
    #[arg(long, default_value_t = 3)]
    down_secs: u64,
    /// The nRF52840 firmware ELF to flash with `--board nrf52840`.
    #[arg(long)]
    nrf_elf: Option<PathBuf>,
    /// The database the service replicas share: `sqlite` (a file in the workdir) or
    /// `postgres` (a throwaway local cluster in the workdir, removed at exit; PostgreSQL from
    /// `cargo xtask setup --only postgres`).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    db: String,
    /// Service replicas on that database (more than 1 needs `--db postgres`); the gateway
    /// spreads batches across them and fails over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: u32,
    /// The real board's probe-rs chip name (`cargo xtask demo` passes it from its board
    /// table, xtask/src/firmware.rs, the one place board settings live).
    #[arg(long, required_if_eq("board", "nrf52840"))]
    chip: Option<String>,
}

// Two workers: the demo is a handful of tasks (the live view, the stream, the fault plan).
#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    match demo(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// When the run started: now, or `cargo xtask demo`'s own start time.
fn t0() -> Instant {
    // `cargo xtask demo` passes its own start time, so "time to first reading" includes the
    // (warm) build check and the process starts.
    let now = Instant::now();
    let Some(start_ms) = std::env::var("BEACON_DEMO_T0_MS")
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
    else {
        return now;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(start_ms);
    let ago = Duration::from_millis(u64::try_from(now_ms.saturating_sub(start_ms)).unwrap_or(0));
    now.checked_sub(ago).unwrap_or(now)
}

async fn demo(args: Args) -> Result<bool, String> {
    let started = t0();
    let mut stack = start(&args).await?;
    let live = Arc::new(Mutex::new(Live::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_stream(
        stack.client.clone(),
        stack.base.clone(),
        Arc::clone(&live),
        stop_rx,
    ));
    let (failure, faults) = live_view(&args, &mut stack, &live, started).await?;
    let counts = stop_and_count(&args, &mut stack, stop_tx, watcher).await?;
    let totals = print_summary(&counts, &live, faults.as_deref(), started);
    if let Some(f) = failure {
        return Err(f);
    }
    if args.check {
        return Ok(check(&counts, &totals, faults.as_deref(), &stack.workdir));
    }
    Ok(true)
}

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

use beacon_demo::faults::{FaultReport, Plan, Rig, Timeline, secs};
use beacon_demo::replicas::{Db, Took};
use beacon_demo::{
    Live, Paths, ServiceOpts, Tally, all_readings, free_port, quantile, read_stats, start_service,
    wait_ready, watch_stream,
};
use beacon_gateway::metrics::Stats;
use clap::Parser;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A port that is free, or a free one instead (with a note).
fn usable(addr: SocketAddr, what: &str) -> Result<SocketAddr, String> {
    if std::net::TcpListener::bind(addr).is_ok() {
        return Ok(addr);
    }
    let port = free_port()?;
    let other = SocketAddr::new(addr.ip(), port);
    eprintln!("note: {addr} is taken; {what} uses {other} instead");
    Ok(other)
}

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

/// What [`start`] brought up.
struct Stack {
    rig: Rig,
    plan: Plan,
    client: reqwest::Client,
    base: String,
    console: Option<SocketAddr>,
    workdir: PathBuf,
    qemu: bool,
    /// Last: dropped after every process that uses it.
    db: Db,
}

/// Starts the service (on a fresh database), the devices and the gateway.
async fn start(args: &Args) -> Result<Stack, String> {
    let paths = Paths::discover();
    let qemu = args.board == "qemu";
    paths.check(qemu)?;
    let workdir = args.workdir.clone().unwrap_or_else(|| {
        paths
            .service_bin
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(|| PathBuf::from("target/demo"), |t| t.join("demo"))
    });
    if args.replicas > 1 && args.db != "postgres" {
        // Db::open says the same; here before anything is deleted or started.
        Db::open(&args.db, args.replicas, &workdir)?;
    }
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir)
        .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;

    if args.faults && (!qemu || args.devices == 0) {
        return Err(
            "--faults breaks QEMU devices and their links: run it with --board qemu and --devices 1 or more".into(),
        );
    }
    if !qemu {
        // Before anything starts: without a probe there is nothing to run.
        flash_nrf(args, &workdir)?;
    }

    // 1. The service, on a fresh database (device sequence numbers restart at 0 on every boot).
    let db = Db::open(&args.db, args.replicas, &workdir)?;
    let listen = usable(args.listen, "the service")?;
    let console = if args.no_console {
        None
    } else {
        Some(usable(args.console_addr, "tokio-console")?)
    };
    let service_opts = ServiceOpts {
        db: db.arg(),
        listen,
        console,
        log: workdir.join("service.log"),
    };
    let ((service, addr), console) = match start_service(&paths, &service_opts) {
        Ok(s) => (s, console),
        Err(e) if console.is_some() => {
            let log = std::fs::read_to_string(&service_opts.log).unwrap_or_default();
            if !log.contains("--console needs the `console` cargo feature") {
                return Err(e);
            }
            eprintln!(
                "note: this service build has no tokio-console support (build it with --features console); running without"
            );
            let opts = ServiceOpts {
                console: None,
                ..service_opts.clone()
            };
            (start_service(&paths, &opts)?, None)
        }
        Err(e) => return Err(e),
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base, Duration::from_secs(10)).await?;
    let service_opts = ServiceOpts {
        listen: addr,
        console,
        ..service_opts
    };
    let mut rig = Rig::new(
        paths.clone(),
        workdir.clone(),
        args.period_ms,
        service,
        service_opts,
    );
    for _ in 1..args.replicas {
        rig.add_replica(&client).await?;
    }
    let plan = Plan {
        cut_for: Duration::from_secs(args.cut_secs),
        down: Duration::from_secs(args.down_secs),
        ..Plan::demo(args.devices)
    };

    // 2. The devices and 3. the gateway.
    if qemu {
        for id in 1..=args.devices {
            // With --faults one device's link runs through a relay that can cut it.
            rig.add_device(id, args.faults && id == plan.cut)?;
        }
    } else {
        rig.other_links
            .push(format!("rtt:{}", args.chip.as_deref().unwrap_or_default()));
    }
    rig.start_gateway()?;

    Ok(Stack {
        rig,
        plan,
        client,
        base,
        console,
        workdir,
        qemu,
        db,
    })
}

/// Shows the stack live until Ctrl-C, SIGTERM/SIGHUP, `--duration` or (with `--faults`) the
/// end of the fault plan; returns the failure that stopped it, if any, and the fault reports.
async fn live_view(
    args: &Args,
    stack: &mut Stack,
    live: &Arc<Mutex<Live>>,
    started: Instant,
) -> Result<(Option<String>, Option<Vec<FaultReport>>), String> {
    let Stack {
        rig,
        plan,
        client,
        base,
        console,
        workdir,
        db,
        ..
    } = stack;
    let (plan, console) = (&*plan, *console);
    let mut header = format!(
        "dashboard:     {base}/\ntokio-console: {}\nlogs:          {}\ndatabase:      {}",
        console.map_or_else(
            || "off (run the service with --features console)".to_owned(),
            |c| format!("tokio-console http://{c}")
        ),
        workdir.display(),
        db.describe()
    );
    if !rig.replicas.is_empty() {
        header.push_str(&format!(
            "\nreplicas:      {} (the gateway spreads batches across them)",
            rig.bases().join(", ")
        ));
    }
    println!("{header}");
    let redraw = !args.plain && std::io::stdout().is_terminal();
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut failure: Option<String> = None;
    // The children run in their own process groups (so a terminal's Ctrl-C reaches only this
    // process, which stops them in order): SIGTERM and SIGHUP (terminal closed) must stop
    // them too, or they would outlive the demo.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle sigterm: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle sighup: {e}"))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut n = 0u64;
    let mut show = |rig: &Rig, timeline: &[String]| {
        n += 1;
        let mut view = render(live, &rig.stats_file(), started, args.devices);
        if !timeline.is_empty() {
            view.push_str("\nfaults\n");
            for l in timeline {
                view.push_str(&format!("  {l}\n"));
            }
        }
        if redraw {
            print!(
                "\x1b[H\x1b[2J{header}\n\n{view}\nCtrl-C stops everything and prints the summary.\n"
            );
            let _ = std::io::stdout().flush();
        } else if n.is_multiple_of(10) {
            let status = view
                .lines()
                .find(|l| l.starts_with('['))
                .unwrap_or_default();
            println!("{status}");
        }
    };

    // With --faults: the fault plan first (it ends the run when done, unless --duration
    // asks for more).
    let mut stopped = false;
    let mut faults = None;
    let mut timeline_lines = Vec::new();
    if args.faults {
        let mut timeline = Timeline::new(started, !redraw);
        timeline.note(format!(
            "faults: reboot device {}, kill -9 the gateway and the service ({} down each), cut device {}'s link for {}; {} of steady running before each",
            plan.reboot,
            secs(plan.down),
            plan.cut,
            secs(plan.cut_for),
            secs(plan.settle)
        ));
        let outcome = {
            let mut tick = |rig: &Rig, t: &Timeline| show(rig, &t.lines);
            let run = beacon_demo::faults::run(rig, plan, client, &mut timeline, &mut tick);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => Ok(r),
                _ = &mut ctrl_c => Err("ctrl-c"),
                _ = term.recv() => Err("sigterm"),
                _ = hup.recv() => Err("sighup"),
            }
        };
        match outcome {
            Ok(Ok(reports)) => {
                timeline.note("all faults injected and healed");
                faults = Some(reports);
            }
            Ok(Err(e)) => {
                failure = Some(format!("during the faults: {e}"));
                stopped = true;
            }
            Err(why) => {
                println!("\n{why}: stopping the devices, then the gateway, then the service");
                stopped = true;
            }
        }
        // Settle: the last heal is seen, then a moment of plain running.
        if !stopped && deadline.is_none_or(|d| Instant::now() >= d) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("\nfault plan done: stopping the devices, then the gateway, then the service");
            stopped = true;
        }
        timeline_lines = timeline.lines;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        if stopped {
            break;
        }
        let stop = tokio::select! {
            _ = &mut ctrl_c => Some("ctrl-c"),
            _ = term.recv() => Some("sigterm"),
            _ = hup.recv() => Some("sighup"),
            _ = tick.tick() => None,
        };
        if let Some(why) = stop {
            println!("\n{why}: stopping the devices, then the gateway, then the service");
            break;
        }
        if let Err(e) = rig.check_alive() {
            failure = Some(e);
            break;
        }
        show(rig, &timeline_lines);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!(
                "\n--duration reached: stopping the devices, then the gateway, then the service"
            );
            break;
        }
    }

    // Stopped in the middle of a fault: end it first (and let the backlog through), so the
    // count is of a whole system.
    if args.faults {
        match rig.undo_faults() {
            Ok(true) => {
                println!("ending the fault in progress first (restart / restore), 3 s");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(false) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    Ok((failure, faults))
}

/// What the run stored, per device, and what the gateway counted.
struct Counts {
    tallies: Vec<Tally>,
    stats: Stats,
    gateway_status: Option<std::process::ExitStatus>,
    /// Per service replica: its URL and what it took (since its last start).
    replicas: Vec<(String, Result<Took, String>)>,
}

/// The orderly stop, then the count from the service's store.
async fn stop_and_count(
    args: &Args,
    stack: &mut Stack,
    stop_tx: tokio::sync::watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
) -> Result<Counts, String> {
    let Stack {
        rig,
        client,
        base,
        qemu,
        ..
    } = stack;
    let qemu = *qemu;
    // Orderly stop: devices first (their last bytes reach the gateway), then the gateway
    // (it delivers everything it holds), then count, then the service.
    for d in &mut rig.devices {
        d.proc.terminate(Duration::from_secs(2));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateway_status = rig
        .gateway
        .as_mut()
        .and_then(|g| g.terminate(Duration::from_secs(15)));
    let (stats, seen) = rig.gateway_stats();
    // Let the stream deliver the last events before closing it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    let _ = watcher.await;

    let mut tallies = Vec::new();
    let ids: Vec<u32> = if qemu {
        (1..=args.devices).collect()
    } else {
        seen.keys().copied().collect()
    };
    for id in ids {
        let readings = all_readings(client, base, id).await?;
        tallies.push(Tally::count(id, &readings, seen.get(&id)));
    }
    let mut replicas = Vec::new();
    for b in rig.bases() {
        let took = Took::of(client, &b).await;
        replicas.push((b, took));
    }
    if let Some(s) = rig.service.as_mut() {
        s.terminate(Duration::from_secs(10));
    }
    for r in &mut rig.replicas {
        r.proc.terminate(Duration::from_secs(10));
    }

    Ok(Counts {
        tallies,
        stats,
        gateway_status,
        replicas,
    })
}

/// Totals over every device.
struct Totals {
    sent: u64,
    lost: u64,
    duplicated: u64,
}

/// Prints the per-device table, the fault heal times and the totals.
fn print_summary(
    counts: &Counts,
    live: &Arc<Mutex<Live>>,
    faults: Option<&[FaultReport]>,
    started: Instant,
) -> Totals {
    let Counts {
        tallies,
        stats,
        gateway_status,
        replicas,
    } = counts;
    let (mut lat, first) = {
        let l = live.lock().unwrap_or_else(|e| e.into_inner());
        (l.latencies_ms.clone(), l.first_reading)
    };
    let p50 = quantile(&mut lat, 0.50);
    let p99 = quantile(&mut lat, 0.99);
    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let stored: u64 = tallies.iter().map(|t| t.stored).sum();
    let lost: u64 = tallies.iter().map(|t| t.lost).sum();
    let duplicated: u64 = tallies.iter().map(|t| t.duplicated).sum();
    let ms = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    println!("\nsummary");
    for t in tallies {
        println!(
            "  device {:>3}: sent {:>6}  stored {:>6}  lost {:>3}  duplicated {:>3}  boots {}{}",
            t.id,
            t.sent,
            t.stored,
            t.lost,
            t.duplicated,
            t.boots.len(),
            if t.missing_sample.is_empty() {
                String::new()
            } else {
                format!("  (missing (boot, seq) {:?}...)", t.missing_sample)
            }
        );
    }
    if let Some(reports) = faults {
        println!(
            "  faults (heal: from the injection until the device's readings flow again, backlog stored):"
        );
        for r in reports {
            println!("    {}", r.line());
        }
    }
    println!("  frames sent by the devices: {sent}");
    println!("  readings stored:            {stored}");
    println!("  lost:                       {lost}");
    println!("  duplicated:                 {duplicated}");
    println!(
        "  sample-to-queryable:        p50 {}  p99 {}  ({} readings on the live stream)",
        ms(p50),
        ms(p99),
        lat.len()
    );
    println!(
        "  first reading visible:      {}",
        first.map_or_else(
            || "never".to_owned(),
            |t| format!(
                "{:.1} s after start",
                t.duration_since(started).as_secs_f64()
            )
        )
    );
    for (i, (base, took)) in replicas.iter().enumerate() {
        let took = took.as_ref().map_or_else(
            |e| format!("unknown ({e})"),
            |t| {
                format!(
                    "batches {:>5}  readings stored {:>6}",
                    t.batches, t.readings
                )
            },
        );
        println!("  service replica {}: {base}  {took}", i + 1);
    }
    println!(
        "  gateway: frames in {}  posted {}  retries {}  corrupt {}  dropped {}  ({})",
        stats.frames_in,
        stats.posted,
        stats.retries,
        stats.corrupt,
        stats.dropped,
        gateway_status.map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string())
    );
    Totals {
        sent,
        lost,
        duplicated,
    }
}

/// `--check`: false (and why, on stderr) when data was lost, duplicated, never flowed, a fault
/// did not heal or the gateway dropped frames.
fn check(
    counts: &Counts,
    totals: &Totals,
    faults: Option<&[FaultReport]>,
    workdir: &std::path::Path,
) -> bool {
    let Counts {
        tallies,
        stats,
        replicas,
        ..
    } = counts;
    let &Totals {
        sent,
        lost,
        duplicated,
    } = totals;
    {
        let mut problems = Vec::new();
        if sent == 0 || tallies.iter().any(|t| t.sent == 0) {
            problems.push("no data from at least one device".to_owned());
        }
        if lost > 0 {
            problems.push(format!("{lost} readings lost"));
        }
        if duplicated > 0 {
            problems.push(format!("{duplicated} readings duplicated"));
        }
        if let Some(reports) = faults
            && let Some(r) = reports.iter().find(|r| r.heal().is_none())
        {
            problems.push(format!("not healed: {}", r.what));
        }
        if stats.dropped > 0 {
            problems.push(format!("the gateway dropped {}", stats.dropped));
        }
        if replicas.len() > 1 {
            for (base, took) in replicas {
                match took {
                    Ok(t) if t.batches == 0 => {
                        problems.push(format!("the replica at {base} took no batch"));
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("cannot ask the replica at {base}: {e}")),
                }
            }
        }
        if !problems.is_empty() {
            eprintln!(
                "error: check failed: {}; logs in {}",
                problems.join(", "),
                workdir.display()
            );
            return false;
        }
        println!("check: ok");
    }
    true
}

fn render(
    live: &Mutex<Live>,
    stats_file: &std::path::Path,
    started: Instant,
    expected: u32,
) -> String {
    let l = live.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    out.push_str("device  readings  last seq  rate/s  e2e ms  last reading\n");
    for (id, d) in &l.devices {
        let rate = if d.arrivals.len() > 1 {
            let span = d
                .arrivals
                .back()
                .zip(d.arrivals.front())
                .map_or(0.0, |(b, f)| b.duration_since(*f).as_secs_f64());
            if span > 0.0 {
                (d.arrivals.len() - 1) as f64 / span
            } else {
                0.0
            }
        } else {
            0.0
        };
        let values: Vec<String> = d.last_values.iter().map(describe).collect();
        out.push_str(&format!(
            "{id:>6}  {:>8}  {:>8}  {rate:>6.1}  {:>6}  {}\n",
            d.count,
            d.last_seq,
            d.last_latency_ms,
            values.join(", ")
        ));
    }
    if l.devices.is_empty() {
        out.push_str(&format!(
            "  (waiting for the first reading from {expected} devices...)\n"
        ));
    }
    let mut lat: Vec<i64> = l.latencies_ms.iter().rev().take(2000).copied().collect();
    let p50 = quantile(&mut lat, 0.5);
    let p99 = quantile(&mut lat, 0.99);
    let gw = read_stats(stats_file);
    out.push_str(&format!(
        "\n[{:>5.1}s] e2e sample-to-queryable p50 {} p99 {} | gateway: in {} posted {} retries {} corrupt {} dropped {} buffered {}\n",
        started.elapsed().as_secs_f64(),
        p50.map_or_else(|| "-".into(), |v| format!("{v}ms")),
        p99.map_or_else(|| "-".into(), |v| format!("{v}ms")),
        gw.as_ref().map_or(0, |s| s.frames_in),
        gw.as_ref().map_or(0, |s| s.posted),
        gw.as_ref().map_or(0, |s| s.retries),
        gw.as_ref().map_or(0, |s| s.corrupt),
        gw.as_ref().map_or(0, |s| s.dropped),
        gw.as_ref().map_or(0, |s| s.buffered),
    ));
    out
}

fn describe(v: &beacon_demo::Value) -> String {
    use beacon_demo::Value;
    match v {
        Value::TemperatureC { value } => format!("{value:.2} °C"),
        Value::HumidityPct { value } => format!("{value:.2} %RH"),
        Value::Counter { value } => format!("counter {value}"),
        Value::Status { value } => format!("status {value}"),
        Value::Boot { firmware, .. } => format!("boot fw {firmware}"),
        Value::Unknown { code, .. } => format!("unknown kind {code}"),
    }
}

/// Flashes the real board with the probe-rs CLI (`cargo xtask setup` installs it).
fn flash_nrf(args: &Args, workdir: &std::path::Path) -> Result<(), String> {
    let elf = args.nrf_elf.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../firmware/target/thumbv7em-none-eabihf/release/beacon-nrf52840")
    });
    if !elf.is_file() {
        return Err(format!(
            "the nRF52840 firmware is not built ({}); run `cargo xtask demo --board nrf52840`, which builds it",
            elf.display()
        ));
    }
    let log = workdir.join("flash.log");
    let chip = args.chip.as_deref().unwrap_or_default();
    let out = std::process::Command::new("probe-rs")
        .args(["download", "--chip", chip])
        .arg(&elf)
        .output()
        .map_err(|e| format!("cannot run probe-rs: {e}; install it with `cargo xtask setup` (or `cargo install probe-rs-tools --locked`)"))?;
    let _ = std::fs::write(
        &log,
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    );
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        // probe-rs prints warnings and backtraces too: keep its `Error:` line (all of it is
        // in flash.log).
        let said = msg
            .lines()
            .find(|l| l.starts_with("Error"))
            .unwrap_or_else(|| msg.lines().last().unwrap_or_default())
            .trim();
        let hint = if said.to_lowercase().contains("no connected probes")
            || said.to_lowercase().contains("no probe")
        {
            "no debug probe found: connect the nRF52840-DK's debug USB port, or run without --board to use QEMU"
        } else {
            "flashing the nRF52840-DK failed"
        };
        return Err(format!(
            "{hint} (probe-rs: {said}; full output in {})",
            log.display()
        ));
    }
    let _ = std::process::Command::new("probe-rs")
        .args(["reset", "--chip", chip])
        .output();
    Ok(())
}

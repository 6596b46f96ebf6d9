//! `cargo xtask bench-fleet` (`beacon-bench fleet`): a simulated fleet through one gateway into
//! one service, on loopback.
//!
//! With the service, the gateway and the fleet simulator (`beacon-sim`) built in release, for
//! each rung of the ladder (default 100, 1,000 and 10,000 devices at 1 Hz) starts a fresh
//! service (new SQLite file, fsync per commit) and gateway (`listen:` link), runs the simulator
//! and reads back from `/proc/<pid>/stat` and `/proc/<pid>/status`:
//! sustained readings/s (stored / sampling time), sample-to-queryable p50/p99 (first write of
//! a frame by the device to its arrival on the service's SSE stream), gateway and service CPU
//! per reading, peak RSS of each and the gateway's memory per device, and lost frames (built,
//! not stored: checked per device through the query API).
//!
//! Then the ceiling: `--ceiling-devices` devices at doubling rates until a rung misses (a
//! frame lost, p99 over the target, or less than 90 % of the offered readings/s stored), and
//! the CPU use of each process at that rung, which says what limits it.
//!
//! Then registration under load: `--register-devices` new devices join a running fleet of
//! `--register-base-devices`; the running fleet's p99 says whether registering stalls ingest.
//!
//! Everything runs on one machine: the simulator competes with the gateway and the service for
//! the same cores, and so does anything else running (the load average is printed).

use crate::proc::{self, Proc, free_port, load_average};
use crate::{Result, bail, field, write_report};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet sizes of the ladder, comma-separated.
    #[arg(long, default_value = "100,1000,10000", value_delimiter = ',')]
    pub devices: Vec<u32>,
    /// Samples per second per device on the ladder.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of sampling per rung.
    #[arg(long, default_value_t = 25)]
    pub secs: u64,
    /// Fleet size for the ceiling search (0: skip it).
    #[arg(long, default_value_t = 1000)]
    pub ceiling_devices: u32,
    /// First rate of the ceiling search (doubles each step).
    #[arg(long, default_value_t = 2.0)]
    pub ceiling_start_rate: f64,
    /// Most steps of the ceiling search.
    #[arg(long, default_value_t = 5)]
    pub ceiling_steps: u32,
    /// Seconds of sampling per ceiling step.
    #[arg(long, default_value_t = 15)]
    pub ceiling_secs: u64,
    /// Registration under load: this many new devices connect (each registers on its first
    /// frame) while `--register-base-devices` run at 1 Hz (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub register_devices: u32,
    /// The running fleet of the registration measurement.
    #[arg(long, default_value_t = 1_000)]
    pub register_base_devices: u32,
    /// Seconds the running fleet samples; the new devices connect after a third of it.
    #[arg(long, default_value_t = 30)]
    pub register_secs: u64,
}

const TARGET_P99_MS: f64 = 250.0;

struct Bins {
    service: PathBuf,
    gateway: PathBuf,
    sim: PathBuf,
    ticks: f64,
}

#[derive(Debug, Clone, Copy)]
struct Rung {
    devices: u32,
    rate: f64,
    rps: f64,
    p50: f64,
    p99: f64,
    built: f64,
    stored: f64,
    lost: f64,
    gateway_cpu_us: f64,
    service_cpu_us: f64,
    sim_wall: f64,
    gateway_cpu_pct: f64,
    service_cpu_pct: f64,
    gateway_rss: f64,
    service_rss: f64,
    gateway_kb_per_device: f64,
    lagged: f64,
    samples: f64,
    connect_errors: f64,
    /// CPU µs per reading while the whole fleet samples (no connect ramp, registration, drain
    /// or final check): gateway, service, simulator.
    steady_us: [f64; 3],
}

impl Rung {
    fn passed(&self) -> bool {
        self.lost == 0.0
            && self.p99 < TARGET_P99_MS
            && self.rps >= 0.9 * f64::from(self.devices) * self.rate
    }
}

fn start_service(bins: &Bins, db: &Path) -> Result<(Proc, String)> {
    Proc::service(&bins.service, db, &["--max-connections", "4096"])
}

/// A fresh service (its own SQLite file `name`.db) and a gateway with a `listen:` link:
/// (service, its URL, gateway, the link's address).
fn start_stack(
    bins: &Bins,
    dir: &Path,
    name: &str,
    devices: u32,
) -> Result<(Proc, String, Proc, String)> {
    let db = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&db);
    let (service, url) = start_service(bins, &db)?;
    let link = format!("127.0.0.1:{}", free_port()?);
    let gateway = Proc {
        child: Command::new(&bins.gateway)
            .args(["--link", &format!("listen:{link}"), "--service", &url])
            .args(["--log-interval-secs", "0"])
            .args(["--expected-devices", &devices.to_string()])
            // Every device connection that ends logs a warning at shutdown: 10,000 lines.
            .env("RUST_LOG", "warn,beacon_gateway::link=error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bins.gateway.display()))?,
        name: "gateway",
    };
    // The gateway binds its link at start-up; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&link).is_err() {
        if Instant::now() > deadline {
            bail!("the gateway did not listen on {link} within 10 s; its log is above");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((service, url, gateway, link))
}

/// Starts `beacon-sim` with its JSON report on stdout.
fn spawn_sim(bins: &Bins, link: &str, url: &str, extra: &[String]) -> Result<std::process::Child> {
    Ok(Command::new(&bins.sim)
        .args(["--gateway", link, "--service", url, "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bins.sim.display()))?)
}

/// Waits for a simulator and returns its report.
fn sim_report(mut sim: std::process::Child) -> Result<String> {
    let mut report = String::new();
    if let Some(mut out) = sim.stdout.take() {
        out.read_to_string(&mut report)?;
    }
    let _ = sim.wait()?;
    if !report.contains("\"stored\"") {
        bail!("beacon-sim printed no report ({report:?}); its log is above");
    }
    Ok(report)
}

fn rung(bins: &Bins, dir: &Path, devices: u32, rate: f64, secs: u64) -> Result<Rung> {
    eprintln!("rung: {devices} devices at {rate}/s for {secs} s");
    let (service, url, gateway, link) =
        start_stack(bins, dir, &format!("fleet-{devices}-{rate}"), devices)?;
    let g0 = gateway.cpu_secs(bins.ticks);
    let s0 = service.cpu_secs(bins.ticks);
    let g_rss0 = gateway.status_mb("VmRSS:");
    let started = Instant::now();
    let sim = spawn_sim(
        bins,
        &link,
        &url,
        &[
            "--devices".into(),
            devices.to_string(),
            "--rate".into(),
            rate.to_string(),
            "--duration-secs".into(),
            secs.to_string(),
        ],
    )?;
    let steady = steady_cpu(
        bins,
        &started,
        devices,
        secs,
        [&gateway, &service],
        sim.id(),
    );
    let report = sim_report(sim);
    let wall = started.elapsed().as_secs_f64();
    let g1 = gateway.cpu_secs(bins.ticks);
    let s1 = service.cpu_secs(bins.ticks);
    let g_hwm = gateway.status_mb("VmHWM:");
    let s_hwm = service.status_mb("VmHWM:");
    for p in [gateway, service] {
        let name = p.name;
        match p.stop() {
            Ok(()) => eprintln!("  {name} stopped"),
            Err(e) => eprintln!("  warning: {e}"),
        }
    }
    let report = report?;
    let stored = field(&report, "stored");
    let per = |cpu: f64| cpu / stored.max(1.0) * 1e6;
    Ok(Rung {
        devices,
        rate,
        rps: field(&report, "readings_per_sec"),
        p50: field(&report, "p50_ms"),
        p99: field(&report, "p99_ms"),
        built: field(&report, "built"),
        stored,
        lost: field(&report, "lost"),
        gateway_cpu_us: per(g1 - g0),
        service_cpu_us: per(s1 - s0),
        sim_wall: wall,
        gateway_cpu_pct: (g1 - g0) / wall * 100.0,
        service_cpu_pct: (s1 - s0) / wall * 100.0,
        gateway_rss: g_hwm,
        service_rss: s_hwm,
        gateway_kb_per_device: (g_hwm - g_rss0) * 1024.0 / f64::from(devices.max(1)),
        lagged: field(&report, "sse_lagged"),
        samples: field(&report, "latency_samples"),
        connect_errors: field(&report, "connect_errors"),
        steady_us: {
            let readings = field(&report, "readings_per_sec") * steady.1;
            steady.0.map(|cpu| cpu / readings.max(1.0) * 1e6)
        },
    })
}

/// CPU seconds of the gateway, the service and the simulator over the steady part of a rung
/// (from 1 s after the simulator's connect ramp, 2,000 devices/s, to 1 s before sampling
/// ends), and that window's length; NaN for a rung too short to have one.
fn steady_cpu(
    bins: &Bins,
    started: &Instant,
    devices: u32,
    secs: u64,
    procs: [&Proc; 2],
    sim: u32,
) -> ([f64; 3], f64) {
    let ramp = 0.2 + f64::from(devices) / 2000.0;
    let (from, to) = (ramp + 1.0, ramp + secs as f64 - 1.0);
    if to - from < 2.0 {
        return ([f64::NAN; 3], f64::NAN);
    }
    let at = |t: f64| {
        std::thread::sleep(Duration::from_secs_f64(t).saturating_sub(started.elapsed()));
        [
            procs[0].cpu_secs(bins.ticks),
            procs[1].cpu_secs(bins.ticks),
            proc::cpu_secs(sim, bins.ticks).unwrap_or(f64::NAN),
        ]
    };
    let a = at(from);
    let b = at(to);
    ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], to - from)
}

/// Registration under load: `base` devices run at 1 Hz for `secs`; after a third of it, `new`
/// devices connect (at the simulator's connect rate) and sample at 0.1 Hz, so the gateway
/// registers each on its first frame while the running fleet's readings keep flowing. The
/// running fleet's p50/p99 over its whole run (the registrations included) against its ladder
/// rung says whether registration stalls ingest.
fn registration(bins: &Bins, dir: &Path, base: u32, new: u32, secs: u64) -> Result<Value> {
    eprintln!("registration: {new} new devices while {base} run at 1/s for {secs} s");
    let (service, url, gateway, link) = start_stack(bins, dir, "registration", base + new)?;
    let args = |devices: u32, first: u32, rate: &str, secs: u64| {
        [
            "--devices",
            &devices.to_string(),
            "--first-id",
            &first.to_string(),
            "--rate",
            rate,
            "--duration-secs",
            &secs.to_string(),
            "--drain-secs",
            "60",
        ]
        .map(str::to_owned)
    };
    let running = spawn_sim(bins, &link, &url, &args(base, 100_000, "1", secs))?;
    std::thread::sleep(Duration::from_secs(secs / 3));
    let started = Instant::now();
    let joining = spawn_sim(bins, &link, &url, &args(new, 200_000, "0.1", secs / 2))?;
    let joined = sim_report(joining);
    let joined_wall = started.elapsed().as_secs_f64();
    let running = sim_report(running);
    for p in [gateway, service] {
        let _ = p.stop();
    }
    let (running, joined) = (running?, joined?);
    let out = json!({
        "running_devices": base,
        "new_devices": new,
        "running_p50_ms": field(&running, "p50_ms"),
        "running_p99_ms": field(&running, "p99_ms"),
        "running_lost": field(&running, "lost"),
        "new_p50_ms": field(&joined, "p50_ms"),
        "new_p99_ms": field(&joined, "p99_ms"),
        "new_lost": field(&joined, "lost"),
        "new_stored": field(&joined, "stored"),
        "new_wall_secs": joined_wall,
    });
    Ok(out)
}

fn print_header() {
    println!(
        "{:>7} {:>6} {:>10} {:>8} {:>8} {:>9} {:>9} {:>17} {:>8} {:>8} {:>9} {:>6} {:>6}",
        "devices",
        "rate",
        "readings/s",
        "p50 ms",
        "p99 ms",
        "gw us/rd",
        "svc us/rd",
        "steady gw/svc/sim",
        "gw MB",
        "svc MB",
        "KB/device",
        "lost",
        "ok"
    );
}

fn print_row(r: &Rung) {
    println!(
        "{:>7} {:>6} {:>10.0} {:>8.0} {:>8.0} {:>9.1} {:>9.1} {:>17} {:>8.1} {:>8.1} {:>9.1} {:>6} {:>6}",
        r.devices,
        r.rate,
        r.rps,
        r.p50,
        r.p99,
        r.gateway_cpu_us,
        r.service_cpu_us,
        format!(
            "{:.0}/{:.0}/{:.0}",
            r.steady_us[0], r.steady_us[1], r.steady_us[2]
        ),
        r.gateway_rss,
        r.service_rss,
        r.gateway_kb_per_device,
        r.lost,
        if r.passed() { "ok" } else { "MISSED" }
    );
}

fn to_json(r: &Rung) -> Value {
    json!({
        "devices": f64::from(r.devices),
        "rate": r.rate,
        "readings_per_sec": r.rps,
        "p50_ms": r.p50,
        "p99_ms": r.p99,
        "built": r.built,
        "stored": r.stored,
        "lost": r.lost,
        "gateway_cpu_us_per_reading": r.gateway_cpu_us,
        "service_cpu_us_per_reading": r.service_cpu_us,
        "gateway_cpu_pct": r.gateway_cpu_pct,
        "service_cpu_pct": r.service_cpu_pct,
        "gateway_peak_rss_mb": r.gateway_rss,
        "service_peak_rss_mb": r.service_rss,
        "gateway_kb_per_device": r.gateway_kb_per_device,
        "latency_samples": r.samples,
        "sse_lagged_batches": r.lagged,
        "connect_errors": r.connect_errors,
        "steady_cpu_us_per_reading": {
            "gateway": r.steady_us[0], "service": r.steady_us[1], "sim": r.steady_us[2]
        },
        "wall_secs": r.sim_wall,
        "passed": r.passed(),
    })
}

/// `beacon-bench fleet`: the binaries in `bin_dir`, reports and scratch files in `out`.
pub fn run(args: &Args, bin_dir: &Path, out: &Path) -> Result {
    let bins = Bins {
        service: bin_dir.join("beacon-service"),
        gateway: bin_dir.join("beacon-gateway"),
        sim: bin_dir.join("beacon-sim"),
        ticks: proc::clock_ticks(),
    };
    let dir = out.join("bench-fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let load_before = load_average();
    let cpu_before = proc::CpuTimes::now();

    let mut ladder = Vec::new();
    for &n in &args.devices {
        ladder.push(rung(&bins, &dir, n, args.rate, args.secs)?);
    }
    let ceiling = ceiling_search(args, &bins, &dir)?;
    let registered = if args.register_devices > 0 {
        Some(registration(
            &bins,
            &dir,
            args.register_base_devices,
            args.register_devices,
            args.register_secs,
        )?)
    } else {
        None
    };
    let load_after = load_average();
    let (steal_line, steal) = proc::steal_line(cpu_before);

    println!();
    println!(
        "beacon fleet benchmark: beacon-sim -> gateway (listen link) -> service (SQLite, fsync \
         per commit), all on this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!("load average before/after: {load_before} / {load_after}");
    println!("{steal_line}");
    println!(
        "p50/p99: a frame's first write by the device to its arrival on the SSE stream (after \
         the commit); us/rd: CPU microseconds per stored reading (whole rung); steady: the same \
         while the whole fleet samples (no ramp, registration, drain or check); MB: peak RSS; KB/device: \
         gateway RSS growth per connected device; ok: 0 lost, p99 < {TARGET_P99_MS} ms, >= 90 % \
         of the offered rate stored"
    );
    println!("ladder:");
    print_header();
    for r in &ladder {
        print_row(r);
    }
    if !ceiling.is_empty() {
        print_ceiling(args, &ceiling);
    }
    if let Some(r) = &registered {
        print_registration(r);
    }
    let report = json!({
        "load_average_before": load_before,
        "load_average_after": load_after,
        "steal_percent": steal,
        "ladder": ladder.iter().map(to_json).collect::<Vec<_>>(),
        "ceiling": ceiling.iter().map(to_json).collect::<Vec<_>>(),
        "registration_under_load": registered,
    });
    write_report(&out.join("bench-fleet.json"), &report)
}

/// The ceiling search: `--ceiling-devices` devices at doubling rates until a rung misses
/// (none with `--ceiling-devices 0`).
fn ceiling_search(args: &Args, bins: &Bins, dir: &Path) -> Result<Vec<Rung>> {
    let mut ceiling = Vec::new();
    if args.ceiling_devices > 0 {
        let mut rate = args.ceiling_start_rate;
        for _ in 0..args.ceiling_steps.max(1) {
            let r = rung(bins, dir, args.ceiling_devices, rate, args.ceiling_secs)?;
            let passed = r.passed();
            ceiling.push(r);
            if !passed {
                break;
            }
            rate *= 2.0;
        }
    }
    Ok(ceiling)
}

/// The ceiling's rungs, the best one and what the first miss says limits it.
fn print_ceiling(args: &Args, ceiling: &[Rung]) {
    println!(
        "ceiling ({} devices, doubling the rate):",
        args.ceiling_devices
    );
    print_header();
    for r in ceiling {
        print_row(r);
    }
    let best = ceiling.iter().rfind(|r| r.passed());
    let first_miss = ceiling.iter().find(|r| !r.passed());
    match (best, first_miss) {
        (Some(b), Some(m)) => println!(
            "ceiling: {:.0} readings/s sustained ({} devices at {}/s); at {}/s: {:.0} \
             readings/s, p99 {:.0} ms, {} lost; CPU there: gateway {:.0} %, service {:.0} % \
             of one core (the simulator takes the rest of the {} cores)",
            b.rps,
            b.devices,
            b.rate,
            m.rate,
            m.rps,
            m.p99,
            m.lost,
            m.gateway_cpu_pct,
            m.service_cpu_pct,
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        ),
        (Some(b), None) => println!(
            "ceiling not reached: {:.0} readings/s at {}/s passed; raise --ceiling-steps",
            b.rps, b.rate
        ),
        (None, _) => println!("even the first ceiling step missed: see the ladder"),
    }
}

/// What registering new devices under load did to the running fleet.
fn print_registration(r: &Value) {
    println!(
        "registration under load: {} new devices connected and registered while {} ran at \
         1/s: the running fleet p50 {} ms, p99 {} ms, {} lost (its ladder rung without \
         registrations: see above); the new devices' readings (their first one waited for \
         the registration) p50 {} ms, p99 {} ms, {} stored, {} lost, in {:.1} s",
        r["new_devices"],
        r["running_devices"],
        r["running_p50_ms"],
        r["running_p99_ms"],
        r["running_lost"],
        r["new_p50_ms"],
        r["new_p99_ms"],
        r["new_stored"],
        r["new_lost"],
        r["new_wall_secs"].as_f64().unwrap_or(f64::NAN),
    );
}

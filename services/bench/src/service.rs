//! `cargo xtask bench-service` (`beacon-bench service`): the telemetry service under load, on
//! loopback. xtask builds the service (with the `console` feature) and the load generator
//! (`beacon-load`, src/bin/) in release; this runs them:
//! 1. durable ingest throughput and latency, console off vs on, alternating rounds on a fresh
//!    SQLite file each time (the best round of each is reported: other processes on the
//!    machine only ever make a round slower);
//! 2. peak RSS (`VmHWM`) of the service after a connection-churn run (a new TCP connection per
//!    request) with the console on: the case where console-subscriber's per-task retention
//!    would grow without bound.
//!
//! Prints a table against the targets and writes `target/bench-service.json`. Figures depend
//! on the machine and on what else runs on it: the load average is printed with them.
//!
//! `--db postgres` measures the backends side by side instead (same run, same load): SQLite
//! and PostgreSQL (a throwaway local cluster, [`crate::pg`]), each beside its *limit* (the same
//! rows written straight into the same schema by a bare client, `beacon-load --limit-db`: no
//! HTTP, no service, one transaction per batch; COPY on PostgreSQL), and with `--replicas 2`
//! two service replicas on the one database, each loaded by its own `beacon-load`. Durable
//! readings/s, p50/p99, service and database CPU per reading; writes
//! `target/bench-service-db.json`.

use crate::pg::Cluster;
use crate::proc::{self, Proc, free_port, load_average};
use crate::{Result, bail, field, write_report};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Rounds of (console off, console on) throughput runs.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Concurrent ingest requests in the throughput runs.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u32,
    /// Readings per request in the throughput runs.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Seconds of connection churn for the memory check.
    #[arg(long, default_value_t = 60)]
    pub churn_secs: u64,
    /// Concurrent clients in the churn run (each request on a new connection).
    #[arg(long, default_value_t = 32)]
    pub churn_concurrency: u32,
    /// `sqlite`: the benchmark above (console on/off, churn). `postgres`: SQLite and
    /// PostgreSQL side by side, each beside its limit (needs `apt-get install -y postgresql`).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub db: String,
    /// With `--db postgres`: also run this many service replicas on the one database.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
}

const TARGET_RPS: f64 = 200_000.0;
const TARGET_RATIO: f64 = 0.90;
const TARGET_RSS_MB: f64 = 150.0;

/// A running service and its base URL.
type Service = (Proc, String);

/// Starts the service on `db`, with the console on a free port when `console`.
fn start(bins: &Bins, db: &Path, console: bool, extra: &[&str]) -> Result<Service> {
    let addr = if console {
        Some(format!("127.0.0.1:{}", free_port()?))
    } else {
        None
    };
    let mut args: Vec<&str> = extra.to_vec();
    if let Some(addr) = &addr {
        args.extend(["--console", "--console-addr", addr]);
    }
    Proc::service(&bins.service, db, &args)
}

/// Runs `beacon-load` to its end; its one-line JSON summary.
fn load(bins: &Bins, args: &[String]) -> Result<String> {
    let out = Command::new(&bins.load)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", bins.load.display()))?;
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("beacon-load failed ({}): {summary}", out.status);
    }
    Ok(summary)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    /// Service CPU time per durable reading, microseconds: a figure that other load on the
    /// machine disturbs much less than readings/s.
    cpu_us: f64,
    p50: f64,
    p99: f64,
    errors: f64,
}

fn throughput(args: &Args, bins: &Bins, dir: &Path, console: bool, round: u32) -> Result<Run> {
    let db = dir.join(format!(
        "tp-{round}-{}.db",
        if console { "on" } else { "off" }
    ));
    let (service, url) = start(bins, &db, console, &[])?;
    let summary = load(
        bins,
        &[
            "--url".into(),
            url,
            "--duration-secs".into(),
            args.secs.to_string(),
            "--concurrency".into(),
            args.concurrency.to_string(),
            "--batch".into(),
            args.batch.to_string(),
        ],
    )?;
    let cpu = service.cpu_secs(bins.ticks);
    service.stop()?;
    let run = Run {
        rps: field(&summary, "readings_per_sec"),
        cpu_us: cpu * 1e6 / field(&summary, "readings"),
        p50: field(&summary, "p50_ms"),
        p99: field(&summary, "p99_ms"),
        errors: field(&summary, "errors"),
    };
    eprintln!(
        "  round {round} console {:<3} {:>9.0} readings/s  p50 {:>7.1} ms  p99 {:>7.1} ms  service cpu {:.2} us/reading  errors {}",
        if console { "on" } else { "off" },
        run.rps,
        run.p50,
        run.p99,
        run.cpu_us,
        run.errors
    );
    Ok(run)
}

struct Bins {
    service: PathBuf,
    load: PathBuf,
    /// Clock ticks per second of /proc/<pid>/stat times.
    ticks: f64,
}

/// What the connection-churn run measured.
struct Churn {
    conn_per_sec: f64,
    errors: f64,
    /// Peak RSS (`VmHWM`) of the service, MB.
    hwm_mb: f64,
    /// RSS every 5 s, MB.
    samples: Vec<f64>,
}

/// A new TCP connection per request, console on, RSS sampled every 5 s: the case where
/// console-subscriber's per-task retention would grow without bound.
fn churn(args: &Args, bins: &Bins, dir: &Path) -> Result<Churn> {
    eprintln!(
        "churn: {} s, {} clients, a new connection per request (batches of 10), console on",
        args.churn_secs, args.churn_concurrency
    );
    let (service, url) = start(bins, &dir.join("churn.db"), true, &[])?;
    let mut load = Command::new(&bins.load)
        .args(["--url", &url, "--churn", "--batch", "10"])
        .args(["--duration-secs", &args.churn_secs.to_string()])
        .args(["--concurrency", &args.churn_concurrency.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let mut samples = Vec::new();
    while load.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_secs(5));
        let rss = service.status_mb("VmRSS:");
        if rss.is_finite() {
            samples.push(rss);
            eprintln!("  t={:>3}s rss {rss:>6.1} MB", started.elapsed().as_secs());
        }
    }
    let mut summary = String::new();
    if let Some(mut out) = load.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut summary)?;
    }
    let hwm_mb = service.status_mb("VmHWM:");
    service.stop()?;
    Ok(Churn {
        conn_per_sec: field(&summary, "requests_per_sec"),
        errors: field(&summary, "errors"),
        hwm_mb,
        samples,
    })
}

/// `beacon-bench service`: the binaries in `bin_dir`, reports and scratch files in `out`.
pub fn run(args: &Args, bin_dir: &Path, out: &Path) -> Result {
    let bins = Bins {
        service: bin_dir.join("beacon-service"),
        load: bin_dir.join("beacon-load"),
        ticks: proc::clock_ticks(),
    };
    let dir = out.join("bench-service");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if args.db == "postgres" {
        return compare(args, &bins, out, &dir);
    }
    let load_before = load_average();
    let cpu_before = proc::CpuTimes::now();
    let (off, on) = console_off_on(args, &bins, &dir)?;
    let churn = churn(args, &bins, &dir)?;
    let load_after = load_average();
    let (steal_line, steal) = proc::steal_line(cpu_before);
    let console = Console {
        off,
        on,
        ratio: on.rps / off.rps,
    };
    print_console(args, [&load_before, &load_after], &console, &churn);
    println!("{steal_line}");
    let Console { off, on, ratio } = console;
    let report = json!({
        "load_average_before": load_before,
        "load_average_after": load_after,
        "steal_percent": steal,
        "concurrency": f64::from(args.concurrency),
        "batch": f64::from(args.batch),
        "console_off_readings_per_sec": off.rps,
        "console_off_p50_ms": off.p50,
        "console_off_p99_ms": off.p99,
        "console_off_service_cpu_us_per_reading": off.cpu_us,
        "console_on_readings_per_sec": on.rps,
        "console_on_service_cpu_us_per_reading": on.cpu_us,
        "console_on_p50_ms": on.p50,
        "console_on_p99_ms": on.p99,
        "console_ratio": ratio,
        "churn_seconds": args.churn_secs as f64,
        "churn_connections_per_sec": churn.conn_per_sec,
        "churn_peak_rss_mb": churn.hwm_mb,
        "churn_rss_samples_mb": churn.samples,
    });
    write_report(&out.join("bench-service.json"), &report)
}

/// The throughput rounds, console off then on in each: the best run of each (other processes
/// on the machine only ever make a round slower).
fn console_off_on(args: &Args, bins: &Bins, dir: &Path) -> Result<(Run, Run)> {
    eprintln!(
        "throughput: {} s per run, {} concurrent requests of {} readings (binary frames), fsync per commit",
        args.secs, args.concurrency, args.batch
    );
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 1..=args.rounds.max(1) {
        off.push(throughput(args, bins, dir, false, round)?);
        on.push(throughput(args, bins, dir, true, round)?);
    }
    let best = |runs: &[Run]| {
        runs.iter()
            .copied()
            .fold(None, |b: Option<Run>, r| match b {
                Some(b) if b.rps >= r.rps => Some(b),
                _ => Some(r),
            })
    };
    let (Some(off), Some(on)) = (best(&off), best(&on)) else {
        bail!("no throughput run completed");
    };
    Ok((off, on))
}

/// The best throughput runs with the console off and on, and on / off.
struct Console {
    off: Run,
    on: Run,
    ratio: f64,
}

/// The table against the targets; `loads` the load average before and after.
fn print_console(args: &Args, loads: [&str; 2], console: &Console, churn: &Churn) {
    let &Console { off, on, ratio } = console;
    let &Churn {
        conn_per_sec,
        errors: churn_errors,
        hwm_mb,
        ..
    } = churn;
    let [load_before, load_after] = loads;
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("beacon-service benchmark (loopback, load generator on the same machine)");
    println!(
        "load average before/after: {load_before} / {load_after} (other processes slow every figure)"
    );
    println!(
        "durable ingest, console off : {:>9.0} readings/s  p50 {:.1} ms  p99 {:.1} ms   target >= {TARGET_RPS:.0}: {}",
        off.rps,
        off.p50,
        off.p99,
        mark(off.rps >= TARGET_RPS)
    );
    println!(
        "durable ingest, console on  : {:>9.0} readings/s  p50 {:.1} ms  p99 {:.1} ms",
        on.rps, on.p50, on.p99
    );
    println!(
        "service CPU per reading     : {:>9.2} us off, {:.2} us on (= {:.0} readings per CPU-second off)",
        off.cpu_us,
        on.cpu_us,
        1e6 / off.cpu_us
    );
    println!(
        "console on / off            : {ratio:>9.3}   target >= {TARGET_RATIO}: {}",
        mark(ratio >= TARGET_RATIO)
    );
    println!(
        "churn, console on           : {conn_per_sec:>9.0} connections/s for {} s, {churn_errors} errors",
        args.churn_secs
    );
    println!(
        "peak RSS (VmHWM) after churn: {hwm_mb:>9.1} MB   target < {TARGET_RSS_MB}: {}",
        mark(hwm_mb < TARGET_RSS_MB)
    );
}

/// One measured configuration of the backend comparison.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: f64,
    /// Service CPU per durable reading, microseconds (all replicas; 0 for a limit run).
    service_cpu_us: f64,
    /// PostgreSQL server CPU per durable reading, microseconds (0 for SQLite: in-process).
    db_cpu_us: f64,
}

/// Runs the load: one `beacon-load` per service URL (the concurrency split between them), or
/// one `beacon-load --limit-db` against the database itself.
fn measure(
    args: &Args,
    bins: &Bins,
    services: &[Service],
    limit_db: Option<&str>,
    cluster: Option<&Cluster>,
) -> Result<Measured> {
    let db_cpu = || cluster.map_or(0.0, |c| crate::pg::cpu_secs(c, bins.ticks));
    let svc_cpu = || {
        services
            .iter()
            .map(|(p, _)| proc::cpu_secs(p.child.id(), bins.ticks).unwrap_or(0.0))
            .sum::<f64>()
    };
    let (db0, svc0) = (db_cpu(), svc_cpu());
    let targets: Vec<(Vec<String>, u32)> = match limit_db {
        Some(db) => vec![(vec!["--limit-db".into(), db.into()], args.concurrency)],
        None => {
            let n = services.len().max(1) as u32;
            services
                .iter()
                .map(|(_, url)| {
                    (
                        vec!["--url".into(), url.clone()],
                        (args.concurrency / n).max(1),
                    )
                })
                .collect()
        }
    };
    let mut children = Vec::new();
    for (i, (target, concurrency)) in targets.iter().enumerate() {
        children.push(
            Command::new(&bins.load)
                .args(target)
                .args(["--duration-secs", &args.secs.to_string()])
                .args(["--concurrency", &concurrency.to_string()])
                .args(["--batch", &args.batch.to_string()])
                .args(["--first-device", &(100_000 + i as u32 * 10_000).to_string()])
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let mut summaries = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        let summary = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!("beacon-load failed ({}): {summary}", out.status);
        }
        summaries.push(summary);
    }
    let (db1, svc1) = (db_cpu(), svc_cpu());
    let readings: f64 = summaries.iter().map(|s| field(s, "readings")).sum();
    let secs = summaries
        .iter()
        .map(|s| field(s, "secs"))
        .fold(0.0, f64::max);
    let max = |key: &str| summaries.iter().map(|s| field(s, key)).fold(0.0, f64::max);
    Ok(Measured {
        rps: readings / secs,
        p50: max("p50_ms"),
        p99: max("p99_ms"),
        errors: summaries.iter().map(|s| field(s, "errors")).sum(),
        service_cpu_us: (svc1 - svc0) * 1e6 / readings,
        db_cpu_us: (db1 - db0) * 1e6 / readings,
    })
}

/// `--db postgres`: the backends side by side, each beside its limit, best of `--rounds`.
fn compare(args: &Args, bins: &Bins, target: &Path, dir: &Path) -> Result {
    let cluster = crate::pg::start(&dir.join("pg"))?;
    let load_before = load_average();
    let cpu_before = proc::CpuTimes::now();
    let replicas = args.replicas.max(1);
    let labels = compare_labels(replicas);
    let mut best: Vec<Option<Measured>> = vec![None; labels.len()];
    eprintln!(
        "backends: {} s per run, {} concurrent requests of {} readings (binary frames), durable commits",
        args.secs, args.concurrency, args.batch
    );
    for round in 1..=args.rounds.max(1) {
        let runs = compare_round(args, bins, dir, &cluster, round, replicas)?;
        for (i, run) in runs.into_iter().enumerate() {
            eprintln!(
                "  round {round} {:<28} {:>9.0} readings/s  p50 {:>7.1} ms  p99 {:>7.1} ms  service {:.2} us/reading  db {:.2} us/reading  errors {}",
                labels[i], run.rps, run.p50, run.p99, run.service_cpu_us, run.db_cpu_us, run.errors
            );
            if best[i].is_none_or(|b| run.rps > b.rps) {
                best[i] = Some(run);
            }
        }
    }
    let best: Vec<Measured> = best.into_iter().flatten().collect();
    if best.len() != labels.len() {
        bail!("a benchmark run did not complete");
    }
    let loads = [load_before, load_average()];
    let (steal_line, steal) = proc::steal_line(cpu_before);
    print_comparison(args, &loads, &labels, &best, replicas);
    println!("{steal_line}");
    let mut report = comparison_report(args, loads, &labels, &best, replicas);
    report["steal_percent"] = json!(steal);
    drop(cluster);
    write_report(&target.join("bench-service-db.json"), &report)
}

/// What [`compare`] measures, in the order of [`compare_round`]'s runs.
fn compare_labels(replicas: u32) -> Vec<String> {
    let mut labels = vec![
        "sqlite, 1 service".to_owned(),
        "sqlite limit (bare client)".to_owned(),
        "postgres, 1 replica".to_owned(),
        "postgres limit (bare COPY)".to_owned(),
    ];
    if replicas > 1 {
        labels.push(format!("postgres, {replicas} replicas"));
        eprintln!(
            "{replicas} replicas: {} writer connection(s) each, as many in all as one replica's 2",
            (2 / replicas).max(1)
        );
    }
    labels
}

/// One round of the comparison: each configuration of [`compare_labels`] on a fresh database.
fn compare_round(
    args: &Args,
    bins: &Bins,
    dir: &Path,
    cluster: &Cluster,
    round: u32,
    replicas: u32,
) -> Result<Vec<Measured>> {
    let mut runs = Vec::new();
    let svc = start(bins, &dir.join(format!("cmp-{round}.db")), false, &[])?;
    runs.push(measure(args, bins, std::slice::from_ref(&svc), None, None)?);
    svc.0.stop()?;
    let limit = dir.join(format!("limit-{round}.db")).display().to_string();
    runs.push(measure(args, bins, &[], Some(&limit), None)?);
    let url = cluster.create_db(&format!("svc1_{round}"))?;
    let svc = start(bins, Path::new(&url), false, &[])?;
    runs.push(measure(
        args,
        bins,
        std::slice::from_ref(&svc),
        None,
        Some(cluster),
    )?);
    svc.0.stop()?;
    let url = cluster.create_db(&format!("limit_{round}"))?;
    runs.push(measure(args, bins, &[], Some(&url), Some(cluster))?);
    if replicas > 1 {
        let url = cluster.create_db(&format!("svc{replicas}_{round}"))?;
        // The same database resources as one replica: its 2 writer connections in all.
        let writers = (2 / replicas).max(1).to_string();
        let services = (0..replicas)
            .map(|_| start(bins, Path::new(&url), false, &["--db-writers", &writers]))
            .collect::<Result<Vec<_>>>()?;
        runs.push(measure(args, bins, &services, None, Some(cluster))?);
        for (s, _) in services {
            s.stop()?;
        }
    }
    Ok(runs)
}

/// The comparison's table and its ratios against the targets; `loads` the load average
/// before and after.
fn print_comparison(
    args: &Args,
    loads: &[String; 2],
    labels: &[String],
    best: &[Measured],
    replicas: u32,
) {
    let [load_before, load_after] = loads;
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    let sqlite_ratio = best[0].rps / best[1].rps;
    let pg_ratio = best[2].rps / best[3].rps;
    println!();
    println!(
        "beacon-service backends (loopback, load generator and database on the same machine; best of {} rounds)",
        args.rounds.max(1)
    );
    println!(
        "load average before/after: {load_before} / {load_after} (other processes slow every figure)"
    );
    println!(
        "{:<28} {:>11} {:>8} {:>8} {:>11} {:>11}",
        "", "readings/s", "p50 ms", "p99 ms", "svc us/rdg", "db us/rdg"
    );
    for (label, m) in labels.iter().zip(best) {
        println!(
            "{label:<28} {:>11.0} {:>8.1} {:>8.1} {:>11.2} {:>11.2}",
            m.rps, m.p50, m.p99, m.service_cpu_us, m.db_cpu_us
        );
    }
    println!(
        "sqlite service / limit      : {sqlite_ratio:.2}   target >= 0.6: {}",
        mark(sqlite_ratio >= 0.6)
    );
    println!(
        "postgres service / limit    : {pg_ratio:.2}   target >= 0.6: {}",
        mark(pg_ratio >= 0.6)
    );
    println!(
        "postgres, 1 replica         : {:.0} readings/s   target >= {TARGET_RPS:.0}: {}",
        best[2].rps,
        mark(best[2].rps >= TARGET_RPS)
    );
    if replicas > 1 {
        let r = best[4].rps / best[2].rps;
        println!(
            "postgres {replicas} replicas / 1     : {r:.2}   target >= 1.0: {}",
            mark(r >= 1.0)
        );
    }
}

/// `target/bench-service-db.json`.
fn comparison_report(
    args: &Args,
    loads: [String; 2],
    labels: &[String],
    best: &[Measured],
    replicas: u32,
) -> Value {
    let [load_before, load_after] = loads;
    let mut report = json!({
        "load_average_before": load_before,
        "load_average_after": load_after,
        "concurrency": f64::from(args.concurrency),
        "batch": f64::from(args.batch),
        "sqlite_service_over_limit": best[0].rps / best[1].rps,
        "postgres_service_over_limit": best[2].rps / best[3].rps,
    });
    if replicas > 1 {
        report["postgres_replicas_over_one"] = json!(best[4].rps / best[2].rps);
    }
    let runs = labels
        .iter()
        .zip(best)
        .map(|(label, m)| {
            json!({
                "what": label.clone(),
                "readings_per_sec": m.rps,
                "p50_ms": m.p50,
                "p99_ms": m.p99,
                "service_cpu_us_per_reading": m.service_cpu_us,
                "db_cpu_us_per_reading": m.db_cpu_us,
                "errors": m.errors,
            })
        })
        .collect::<Vec<Value>>();
    report["runs"] = json!(runs);
    report
}

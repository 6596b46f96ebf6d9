//! The end of a run: the orderly stop (devices, then the gateway, which delivers what it holds,
//! then the service), the count of what the service stored against what each device sent, the
//! printed summary and `--check`.

use crate::Args;
use crate::start::Stack;
use beacon_demo::faults::FaultReport;
use beacon_demo::replicas::Took;
use beacon_demo::{Live, Tally, all_readings, quantile};
use beacon_gateway::metrics::Stats;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the run stored, per device, and what the gateway counted.
pub(crate) struct Counts {
    tallies: Vec<Tally>,
    stats: Stats,
    gateway_status: Option<std::process::ExitStatus>,
    /// Per service replica: its URL and what it took (since its last start).
    replicas: Vec<(String, Result<Took, String>)>,
}

/// The orderly stop, then the count from the service's store.
pub(crate) async fn stop_and_count(
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
pub(crate) struct Totals {
    sent: u64,
    lost: u64,
    duplicated: u64,
}

/// Prints the per-device table, the fault heal times and the totals.
pub(crate) fn print_summary(
    counts: &Counts,
    live: &Arc<Mutex<Live>>,
    faults: Option<&[FaultReport]>,
    started: Instant,
) -> Totals {
    let tallies = &counts.tallies;
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
    print_devices(tallies);
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
    print_processes(counts);
    Totals {
        sent,
        lost,
        duplicated,
    }
}

/// One line per device: what it sent, what was stored, lost, duplicated, its boots.
fn print_devices(tallies: &[Tally]) {
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
}

/// What each service replica took, and what the gateway counted.
fn print_processes(counts: &Counts) {
    let Counts {
        stats,
        gateway_status,
        replicas,
        ..
    } = counts;
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
}

/// `--check`: false (and why, on stderr) when data was lost, duplicated, never flowed, a fault
/// did not heal or the gateway dropped frames.
pub(crate) fn check(
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

//! The live view: the header, the per-device table redrawn every 500 ms (or a status line now
//! and then with `--plain`), and with `--faults` the fault plan run during it, its timeline
//! under the table; until Ctrl-C, SIGTERM/SIGHUP, `--duration` or the end of the plan.

use crate::Args;
use crate::start::Stack;
use beacon_demo::faults::{FaultReport, Rig, Timeline, secs};
use beacon_demo::{Live, quantile, read_stats};
use std::io::{IsTerminal as _, Write as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Shows the stack live until Ctrl-C, SIGTERM/SIGHUP, `--duration` or (with `--faults`) the
/// end of the fault plan; returns the failure that stopped it, if any, and the fault reports.
pub(crate) async fn live_view(
    args: &Args,
    stack: &mut Stack,
    live: &Arc<Mutex<Live>>,
    started: Instant,
) -> Result<(Option<String>, Option<Vec<FaultReport>>), String> {
    let header = header(stack);
    println!("{header}");
    let mut view = View {
        live,
        started,
        devices: args.devices,
        header,
        redraw: !args.plain && std::io::stdout().is_terminal(),
        shown: 0,
    };
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut stops = Stops::new()?;

    // With --faults: the fault plan first (it ends the run when done, unless --duration
    // asks for more).
    let mut plan = PlanRun::default();
    if args.faults {
        plan = run_faults(stack, &mut view, &mut stops, deadline, started).await;
    }
    let mut failure = plan.failure;
    if !plan.stopped {
        failure = watch(
            &mut stack.rig,
            &mut view,
            &mut stops,
            deadline,
            &plan.timeline,
        )
        .await;
    }

    // Stopped in the middle of a fault: end it first (and let the backlog through), so the
    // count is of a whole system.
    if args.faults {
        match stack.rig.undo_faults() {
            Ok(true) => {
                println!("ending the fault in progress first (restart / restore), 3 s");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(false) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    Ok((failure, plan.reports))
}

/// Where everything is: the dashboard, tokio-console, the logs, the database, the replicas.
fn header(stack: &Stack) -> String {
    let Stack {
        rig,
        base,
        console,
        workdir,
        db,
        ..
    } = stack;
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
    header
}

/// What stops the run: Ctrl-C, SIGTERM, SIGHUP.
///
/// The children run in their own process groups (so a terminal's Ctrl-C reaches only this
/// process, which stops them in order): SIGTERM and SIGHUP (terminal closed) must stop them
/// too, or they would outlive the demo.
struct Stops {
    ctrl_c: Pin<Box<dyn Future<Output = std::io::Result<()>>>>,
    term: Signal,
    hup: Signal,
}

impl Stops {
    fn new() -> Result<Self, String> {
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle sigterm: {e}"))?;
        let hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle sighup: {e}"))?;
        Ok(Self {
            ctrl_c: Box::pin(tokio::signal::ctrl_c()),
            term,
            hup,
        })
    }

    /// Waits for the next one; its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = &mut self.ctrl_c => "ctrl-c",
            _ = self.term.recv() => "sigterm",
            _ = self.hup.recv() => "sighup",
        }
    }
}

/// The screen (or with `--plain`, or not on a terminal, a status line every 10th time).
struct View<'a> {
    live: &'a Mutex<Live>,
    started: Instant,
    /// Devices expected.
    devices: u32,
    header: String,
    redraw: bool,
    /// Times shown so far.
    shown: u64,
}

impl View<'_> {
    /// Shows the table, with the fault `timeline` under it.
    fn show(&mut self, rig: &Rig, timeline: &[String]) {
        self.shown += 1;
        let mut view = render(self.live, &rig.stats_file(), self.started, self.devices);
        if !timeline.is_empty() {
            view.push_str("\nfaults\n");
            for l in timeline {
                view.push_str(&format!("  {l}\n"));
            }
        }
        if self.redraw {
            print!(
                "\x1b[H\x1b[2J{}\n\n{view}\nCtrl-C stops everything and prints the summary.\n",
                self.header
            );
            let _ = std::io::stdout().flush();
        } else if self.shown.is_multiple_of(10) {
            let status = view
                .lines()
                .find(|l| l.starts_with('['))
                .unwrap_or_default();
            println!("{status}");
        }
    }
}

/// How the fault plan went.
#[derive(Default)]
struct PlanRun {
    /// Every fault's report, when the plan ran to its end.
    reports: Option<Vec<FaultReport>>,
    failure: Option<String>,
    /// The run is over (a stop, a failure, or the plan done with no `--duration` left).
    stopped: bool,
    /// The timeline's lines, shown under the table for the rest of the run.
    timeline: Vec<String>,
}

/// `--faults`: the fault plan, with the view ticking and the stop signals heard during it.
async fn run_faults(
    stack: &mut Stack,
    view: &mut View<'_>,
    stops: &mut Stops,
    deadline: Option<Instant>,
    started: Instant,
) -> PlanRun {
    let plan = &stack.plan;
    let mut timeline = Timeline::new(started, !view.redraw);
    timeline.note(format!(
        "faults: reboot device {}, kill -9 the gateway and the service ({} down each), cut device {}'s link for {}; {} of steady running before each",
        plan.reboot,
        secs(plan.down),
        plan.cut,
        secs(plan.cut_for),
        secs(plan.settle)
    ));
    let outcome = {
        let mut tick = |rig: &Rig, t: &Timeline| view.show(rig, &t.lines);
        let run = beacon_demo::faults::run(
            &mut stack.rig,
            plan,
            &stack.client,
            &mut timeline,
            &mut tick,
        );
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => Ok(r),
            why = stops.next() => Err(why),
        }
    };
    let mut out = PlanRun::default();
    match outcome {
        Ok(Ok(reports)) => {
            timeline.note("all faults injected and healed");
            out.reports = Some(reports);
        }
        Ok(Err(e)) => {
            out.failure = Some(format!("during the faults: {e}"));
            out.stopped = true;
        }
        Err(why) => {
            println!("\n{why}: stopping the devices, then the gateway, then the service");
            out.stopped = true;
        }
    }
    // Settle: the last heal is seen, then a moment of plain running.
    if !out.stopped && deadline.is_none_or(|d| Instant::now() >= d) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("\nfault plan done: stopping the devices, then the gateway, then the service");
        out.stopped = true;
    }
    out.timeline = timeline.lines;
    out
}

/// The view every 500 ms until a stop signal or `--duration`; the failure if a process ended.
async fn watch(
    rig: &mut Rig,
    view: &mut View<'_>,
    stops: &mut Stops,
    deadline: Option<Instant>,
    timeline: &[String],
) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let stop = tokio::select! {
            why = stops.next() => Some(why),
            _ = tick.tick() => None,
        };
        if let Some(why) = stop {
            println!("\n{why}: stopping the devices, then the gateway, then the service");
            return None;
        }
        if let Err(e) = rig.check_alive() {
            return Some(e);
        }
        view.show(rig, timeline);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!(
                "\n--duration reached: stopping the devices, then the gateway, then the service"
            );
            return None;
        }
    }
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

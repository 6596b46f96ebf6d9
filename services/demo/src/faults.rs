//! Fault injection: what `cargo xtask demo --faults` and the e2e fault test do to a running
//! stack, and how they measure the healing.
//!
//! A [`Rig`] owns the real processes (service, gateway, QEMU devices) and can break them:
//! - **device reboot**: the device's QEMU is stopped and started again on the same port with a
//!   new random boot id (the emulated board's reset; protocol/SPEC.md 3.1); whatever it had
//!   not sent yet dies with it, as on a real reset, and its new boot starts at `seq` 0.
//! - **gateway `kill -9`**, then a restart after a while: what the gateway held unposted is gone
//!   from the gateway, but every device still holds it (nothing is acked before the service's
//!   2xx) and re-sends it when the new gateway connects and asks.
//! - **service `kill -9`**, then a restart on the same database file and address: the gateway
//!   keeps its batches and retries; a batch committed just before the kill is re-posted and
//!   deduplicated by `(device, boot, seq)`.
//! - **a cut of one device's link**: that device's link runs through a [`Relay`] (a TCP relay
//!   between the gateway and the device's QEMU UART socket); a cut closes both connections and
//!   stops listening, so the gateway's reconnects are refused and QEMU sees its client gone
//!   (it drops what the UART writes; the firmware's outbox keeps every frame). At the end of
//!   the cut the relay listens again, the gateway reconnects and asks for a replay.
//!
//! Healing is measured per device on what the service returns, not on process state: a
//! device has healed when the service holds every `seq` of its current boot from 0 up to a
//! reading the device sampled after the fault ended (by the device's own `uptime_ms`, mapped
//! to the wall clock from the readings received in the steady running before the fault, so
//! an emulated clock that runs a few percent slow does not inflate the figure; see
//! `Prefix::uptime_at`). After a reboot, the first reading of the new boot. So "healed" means
//! its readings flow again *and* the backlog it built up during the fault is stored.

use crate::{Paths, Proc, ServiceOpts, StoredReading, qemu_command, read_stats, start_gateway};
use beacon_gateway::metrics::{DeviceStats, Stats};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A TCP relay in front of one device's QEMU UART socket, which can cut the link.
///
/// It runs on its own thread with its own small runtime, so it works the same under the
/// demo's runtime and in a synchronous test.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    cut: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and relays each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self, String> {
        let (cut, rx) = watch::channel(false);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("link relay".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = port_tx.send(Err(format!("relay runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(relay(upstream, rx, port_tx));
            })
            .map_err(|e| format!("cannot start the link relay thread: {e}"))?;
        let port = port_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the link relay did not start listening".to_owned())??;
        Ok(Self {
            port,
            cut,
            thread: Some(thread),
        })
    }

    /// Where the gateway connects (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link: closes both sides of the current connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Restores the link: listens and relays again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing the channel ends the relay task; its thread then ends.
        let (tx, _) = watch::channel(true);
        drop(std::mem::replace(&mut self.cut, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // The port is bound again after a cut while the closed connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(16)
}

async fn relay(
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    port_tx: std::sync::mpsc::Sender<Result<u16, String>>,
) {
    let first = match listen(0).and_then(|l| Ok((l.local_addr()?.port(), l))) {
        Ok(v) => v,
        Err(e) => {
            let _ = port_tx.send(Err(format!("the link relay cannot listen: {e}")));
            return;
        }
    };
    let port = first.0;
    let _ = port_tx.send(Ok(port));
    let mut listener = Some(first.1);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                // After a cut: the same port again (retried: the old socket may linger).
                let mut tries = 0;
                loop {
                    match listen(port) {
                        Ok(l) => break l,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            eprintln!("link relay: cannot listen on {port} again: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => return,
                    }
                }
            }
        };
        let mut pumps = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                acc = l.accept() => {
                    if let Ok((down, _)) = acc {
                        pumps.spawn(pump(down, upstream));
                    }
                }
                r = cut.wait_for(|c| *c) => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        // The cut: no listener, both sides of every connection closed.
        drop(l);
        pumps.abort_all();
        while pumps.join_next().await.is_some() {}
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
    }
}

async fn pump(mut down: tokio::net::TcpStream, upstream: SocketAddr) {
    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
        // The device is not there (rebooting): the gateway sees a closed link and reconnects.
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
}

/// One QEMU device of a [`Rig`].
#[derive(Debug)]
pub struct Device {
    /// Its device id.
    pub id: u32,
    /// Its QEMU process.
    pub proc: Proc,
    /// The boot id of its current boot.
    pub boot: u32,
    /// When its current QEMU was launched (its uptime counts from about then).
    pub launched: Instant,
    /// Its UART's TCP server port (QEMU `-serial tcp:...,server=on`).
    pub qemu_port: u16,
    /// The relay in front of it, if its link can be cut.
    pub relay: Option<Relay>,
    /// Boots so far (launches).
    pub boots: u32,
}

impl Device {
    /// Where the gateway connects for this device: its relay, or QEMU itself.
    pub fn link(&self) -> String {
        let port = self.relay.as_ref().map_or(self.qemu_port, Relay::port);
        format!("tcp:127.0.0.1:{port}")
    }
}

/// The processes of one run: the service, the gateway, the QEMU devices.
#[derive(Debug)]
pub struct Rig {
    /// The binaries.
    pub paths: Paths,
    /// Logs, stats files, the database.
    pub workdir: PathBuf,
    /// The devices' sampling period.
    pub period_ms: u32,
    /// The service, `None` while it is down.
    pub service: Option<Proc>,
    /// How it was started (its `listen` is the address it got, so a restart keeps it).
    pub service_opts: ServiceOpts,
    /// `http://` + its address.
    pub base: String,
    /// The gateway, `None` while it is down.
    pub gateway: Option<Proc>,
    /// Gateway starts so far; each run writes its own stats file.
    pub gateway_runs: u32,
    /// Links for the gateway when there are no QEMU devices (e.g. `rtt:`).
    pub other_links: Vec<String>,
    /// Extra gateway flags.
    pub gateway_extra: Vec<String>,
    /// The QEMU devices.
    pub devices: Vec<Device>,
    /// More service replicas on the same database (`--replicas`; the first is `service`):
    /// the gateway spreads batches across all of them.
    pub replicas: Vec<Replica>,
}

/// A service replica beyond the first (same database, its own address).
#[derive(Debug)]
pub struct Replica {
    /// Its process.
    pub proc: Proc,
    /// `http://` + its address.
    pub base: String,
}

impl Rig {
    /// A rig around a running service (no gateway, no devices yet).
    pub fn new(
        paths: Paths,
        workdir: PathBuf,
        period_ms: u32,
        service: Proc,
        service_opts: ServiceOpts,
    ) -> Self {
        let base = format!("http://{}", service_opts.listen);
        Self {
            paths,
            workdir,
            period_ms,
            service: Some(service),
            service_opts,
            base,
            gateway: None,
            gateway_runs: 0,
            other_links: Vec::new(),
            gateway_extra: Vec::new(),
            devices: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// Starts one more replica like the first (same database) on any free port, its log
    /// `service-N.log`; it is ready when this returns.
    pub async fn add_replica(&mut self, client: &reqwest::Client) -> Result<(), String> {
        let n = self.replicas.len() + 2;
        let opts = ServiceOpts {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            console: None,
            log: self.workdir.join(format!("service-{n}.log")),
            ..self.service_opts.clone()
        };
        let (proc, addr) = crate::start_service(&self.paths, &opts)?;
        let base = format!("http://{addr}");
        crate::wait_ready(client, &base, Duration::from_secs(10)).await?;
        self.replicas.push(Replica { proc, base });
        Ok(())
    }

    /// Every replica's base URL, the first one first.
    pub fn bases(&self) -> Vec<String> {
        std::iter::once(self.base.clone())
            .chain(self.replicas.iter().map(|r| r.base.clone()))
            .collect()
    }

    /// The stats file of gateway run `run` (from 1).
    pub fn stats_file_of(&self, run: u32) -> PathBuf {
        self.workdir.join(format!("gateway-stats-{run}.json"))
    }

    /// The stats file of the current (last) gateway run.
    pub fn stats_file(&self) -> PathBuf {
        self.stats_file_of(self.gateway_runs.max(1))
    }

    /// Adds QEMU device `id`, on a free port, with a [`Relay`] in front when `cuttable`.
    pub fn add_device(&mut self, id: u32, cuttable: bool) -> Result<(), String> {
        let qemu_port = crate::free_port()?;
        let relay = if cuttable {
            Some(Relay::start(SocketAddr::from(([127, 0, 0, 1], qemu_port)))?)
        } else {
            None
        };
        let (proc, boot) = self.launch(id, qemu_port)?;
        self.devices.push(Device {
            id,
            proc,
            boot,
            launched: Instant::now(),
            qemu_port,
            relay,
            boots: 1,
        });
        Ok(())
    }

    fn launch(&self, id: u32, port: u16) -> Result<(Proc, u32), String> {
        let (mut cmd, boot) = qemu_command(
            &self.paths,
            &format!("tcp:127.0.0.1:{port},server=on,wait=off"),
            &format!("device-id={id} period-ms={}", self.period_ms),
        )?;
        let log = self.workdir.join(format!("qemu-{id}.log"));
        Ok((
            Proc::spawn(&format!("qemu device {id}"), &mut cmd, &log)?,
            boot,
        ))
    }

    /// Starts the gateway on every device's link (a new stats file per run).
    pub fn start_gateway(&mut self) -> Result<(), String> {
        self.gateway_runs += 1;
        let links: Vec<String> = self
            .devices
            .iter()
            .map(Device::link)
            .chain(self.other_links.iter().cloned())
            .collect();
        let extra: Vec<&str> = self.gateway_extra.iter().map(String::as_str).collect();
        self.gateway = Some(start_gateway(
            &self.paths,
            &self.bases(),
            &links,
            &self.stats_file(),
            &self.workdir.join("gateway.log"),
            &extra,
        )?);
        Ok(())
    }

    /// Starts the service again on the same database file and address.
    pub fn start_service(&mut self) -> Result<(), String> {
        let (proc, addr) = crate::start_service(&self.paths, &self.service_opts)?;
        if addr != self.service_opts.listen {
            return Err(format!(
                "the restarted service listens on {addr}, not {}",
                self.service_opts.listen
            ));
        }
        self.service = Some(proc);
        Ok(())
    }

    fn device(&mut self, id: u32) -> Result<&mut Device, String> {
        self.devices
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| format!("no device {id} in this run"))
    }

    /// Stops device `id`'s QEMU and boots it again on the same port with a new boot id.
    pub fn reboot(&mut self, id: u32) -> Result<(), String> {
        let port = {
            let d = self.device(id)?;
            d.proc.terminate(Duration::from_secs(2));
            d.qemu_port
        };
        let (proc, boot) = self.launch(id, port)?;
        let d = self.device(id)?;
        d.proc = proc;
        d.boot = boot;
        d.launched = Instant::now();
        d.boots += 1;
        Ok(())
    }

    /// Ends a fault in progress (a stop in the middle of the plan): the service and the
    /// gateway started again if down, cut links restored. Whether there was one.
    pub fn undo_faults(&mut self) -> Result<bool, String> {
        let mut undone = false;
        if self.service.is_none() {
            self.start_service()?;
            undone = true;
        }
        if self.gateway.is_none() {
            self.start_gateway()?;
            undone = true;
        }
        for r in self.devices.iter().filter_map(|d| d.relay.as_ref()) {
            if r.is_cut() {
                r.restore();
                undone = true;
            }
        }
        Ok(undone)
    }

    /// `Err` naming the first process that ended though nobody stopped it.
    pub fn check_alive(&mut self) -> Result<(), String> {
        let log_error = |p: &Proc| {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            log.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("no error line")
                .to_owned()
        };
        if let Some(g) = self.gateway.as_mut()
            && let Some(status) = g.try_wait()
        {
            return Err(format!(
                "the gateway stopped ({status}): {}; see {}",
                log_error(g),
                g.log.display()
            ));
        }
        if let Some(s) = self.service.as_mut()
            && let Some(status) = s.try_wait()
        {
            return Err(format!(
                "the service stopped ({status}); see {}",
                s.log.display()
            ));
        }
        for r in &mut self.replicas {
            if let Some(status) = r.proc.try_wait() {
                return Err(format!(
                    "the service replica at {} stopped ({status}); see {}",
                    r.base,
                    r.proc.log.display()
                ));
            }
        }
        for d in &mut self.devices {
            if let Some(status) = d.proc.try_wait() {
                return Err(format!(
                    "{} stopped ({status}); see {}",
                    d.proc.name(),
                    d.proc.log.display()
                ));
            }
        }
        Ok(())
    }

    /// What every gateway run saw, per device: each boot's highest seq over all runs (a
    /// gateway killed with `kill -9` leaves its last once-a-second stats file). With the
    /// last run's stats.
    pub fn gateway_stats(&self) -> (Stats, BTreeMap<u32, DeviceStats>) {
        let mut merged: BTreeMap<u32, DeviceStats> = BTreeMap::new();
        let mut last = Stats::default();
        for run in 1..=self.gateway_runs {
            let Some(stats) = read_stats(&self.stats_file_of(run)) else {
                continue;
            };
            for (id, d) in &stats.devices {
                let m = merged.entry(*id).or_default();
                m.frames += d.frames;
                for b in &d.boots {
                    match m.boots.iter_mut().find(|x| x.boot == b.boot) {
                        Some(x) => {
                            x.max_seq = x.max_seq.max(b.max_seq);
                            x.frames += b.frames;
                        }
                        None => m.boots.push(*b),
                    }
                }
            }
            if run == self.gateway_runs {
                last = stats;
            }
        }
        (last, merged)
    }
}

/// What to break, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The device to reboot.
    pub reboot: u32,
    /// The device whose link is cut (it needs a [`Relay`]: [`Rig::add_device`] with
    /// `cuttable`).
    pub cut: u32,
    /// How long the gateway and the service stay down after their `kill -9`.
    pub down: Duration,
    /// How long the link stays cut.
    pub cut_for: Duration,
    /// Steady running before each fault.
    pub settle: Duration,
    /// A fault not healed by then fails the run.
    pub heal_timeout: Duration,
}

impl Plan {
    /// The demo's plan: 3 s outages of the gateway and the service, a 30 s cut.
    pub fn demo(devices: u32) -> Self {
        Self {
            reboot: 1,
            cut: devices.max(1),
            down: Duration::from_secs(3),
            cut_for: Duration::from_secs(30),
            settle: Duration::from_secs(5),
            heal_timeout: Duration::from_secs(60),
        }
    }
}

/// How one device healed after a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Healed {
    /// The device.
    pub device: u32,
    /// From the injection until its readings flowed again with the backlog stored; `None`
    /// if it did not heal within the plan's `heal_timeout`.
    pub after: Option<Duration>,
    /// Readings sampled before the fault ended that were stored after the injection (what
    /// the fault held back and the device or the gateway delivered late).
    pub backlog: u64,
}

/// One fault of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultReport {
    /// What was done, e.g. "kill -9 the gateway".
    pub what: String,
    /// When it was injected, from the start of the run.
    pub injected: Duration,
    /// How long the fault lasted (until the restart or the link restore).
    pub lasted: Duration,
    /// Per affected device.
    pub healed: Vec<Healed>,
}

impl FaultReport {
    /// The slowest device's heal time, `None` if one did not heal.
    pub fn heal(&self) -> Option<Duration> {
        self.healed
            .iter()
            .map(|h| h.after)
            .try_fold(Duration::ZERO, |m, a| a.map(|a| m.max(a)))
    }

    /// One line for the summary.
    pub fn line(&self) -> String {
        let per: Vec<String> = self
            .healed
            .iter()
            .map(|h| {
                format!(
                    "device {} {} (backlog {})",
                    h.device,
                    h.after.map_or_else(|| "NOT HEALED".to_owned(), secs),
                    h.backlog
                )
            })
            .collect();
        format!(
            "{:<34} at t+{:<6} down {:<6} healed after {}",
            self.what,
            secs(self.injected),
            secs(self.lasted),
            per.join(", ")
        )
    }
}

/// `d` as "12.3s".
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The printed timeline: "t+12.3s <what happened>".
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    /// The lines so far.
    pub lines: Vec<String>,
    /// Print each line as it is added (off when the demo redraws the screen with them).
    pub echo: bool,
}

impl Timeline {
    /// A timeline counting from `start`.
    pub fn new(start: Instant, echo: bool) -> Self {
        Self {
            start,
            lines: Vec::new(),
            echo,
        }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds "t+N.Ns: `what`".
    pub fn note(&mut self, what: impl std::fmt::Display) {
        let line = format!("t+{:>6}: {what}", secs(self.now()));
        if self.echo {
            println!("{line}");
        }
        self.lines.push(line);
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    readings: Vec<StoredReading>,
    #[serde(default)]
    next_after_boot: Option<u32>,
    next_after_seq: Option<u32>,
}

/// How far one device's current boot is stored without a gap.
#[derive(Debug, Clone, Default)]
struct Prefix {
    boot: u32,
    /// The first seq not stored (all below are).
    next: u32,
    /// `uptime_ms` of the reading `next - 1`.
    uptime_ms: Option<u64>,
    /// Readings counted into the prefix so far.
    count: u64,
    /// `(uptime_ms, received_at_ms - uptime_ms)` of each reading in the prefix: how the
    /// device's clock maps to the wall clock (see [`Prefix::uptime_at`]).
    offsets: Vec<(u64, i64)>,
}

impl Prefix {
    fn new(boot: u32) -> Self {
        Self {
            boot,
            ..Self::default()
        }
    }

    /// The device's uptime at wall-clock time `wall_ms`, from the readings the service
    /// received since `since_ms` (steady running: none of them held back by a fault).
    ///
    /// The emulated clock is not the wall clock: under load QEMU's SysTick falls behind (about
    /// 3-6 % measured on this machine, seconds after a minute), so "uptime since launch" would
    /// wait for readings sampled seconds after the fault ended. Each reading's
    /// `received_at_ms - uptime_ms` is the device's boot time on the wall clock plus its
    /// transit delay and the lag so far; the lowest in each half of the window (the fastest
    /// transits) gives two points of that line, and the line gives the uptime at `wall_ms`
    /// (early by the fastest transit, a few ms). `None` with fewer than 4 readings.
    fn uptime_at(&self, wall_ms: i64, since_ms: i64) -> Option<u64> {
        let steady: Vec<(u64, i64)> = self
            .offsets
            .iter()
            .copied()
            .filter(|&(u, o)| o.saturating_add(i64::try_from(u).unwrap_or(i64::MAX)) >= since_ms)
            .collect();
        if steady.len() < 4 {
            return None;
        }
        let (early, late) = steady.split_at(steady.len() / 2);
        // The lowest offset once the lag found so far is taken out (a few rounds: the first
        // guess, with no lag, favours the early readings of each half).
        let lowest = |s: &[(u64, i64)], lag: f64| {
            s.iter().copied().min_by(|a, b| {
                (a.1 as f64 - lag * a.0 as f64).total_cmp(&(b.1 as f64 - lag * b.0 as f64))
            })
        };
        let mut lag = 0.0;
        let (mut ub, mut ob) = lowest(late, lag)?;
        for _ in 0..4 {
            let (ua, oa) = lowest(early, lag)?;
            (ub, ob) = lowest(late, lag)?;
            if ub <= ua + 500 {
                break;
            }
            lag = ((ob - oa) as f64 / (ub - ua) as f64).clamp(-0.2, 0.2);
        }
        // wall = u + ob + lag * (u - ub), solved for u.
        let u = ((wall_ms - ob) as f64 + lag * ub as f64) / (1.0 + lag);
        Some(u.max(0.0) as u64)
    }

    /// Extends the prefix with what the service holds now. `Err` when it cannot be asked
    /// (e.g. it is down); `uptimes` gets the uptime of each reading added.
    async fn advance(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        id: u32,
        uptimes: &mut Vec<u64>,
    ) -> Result<(), String> {
        loop {
            let mut url = format!(
                "{base}/api/v1/devices/{id}/readings?limit=1000&after_boot={}",
                self.boot
            );
            if let Some(prev) = self.next.checked_sub(1) {
                url.push_str(&format!("&after_seq={prev}"));
            }
            let resp = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| format!("query {url}: {e}"))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(());
            }
            if !resp.status().is_success() {
                return Err(format!("query {url}: {}", resp.status()));
            }
            let page: Page = resp.json().await.map_err(|e| format!("query {url}: {e}"))?;
            for r in &page.readings {
                if r.boot != self.boot || r.seq != self.next {
                    return Ok(());
                }
                self.next = self.next.wrapping_add(1);
                self.uptime_ms = Some(r.uptime_ms);
                self.count += 1;
                uptimes.push(r.uptime_ms);
                let uptime = i64::try_from(r.uptime_ms).unwrap_or(i64::MAX);
                self.offsets
                    .push((r.uptime_ms, r.received_at_ms.saturating_sub(uptime)));
            }
            if page.next_after_seq.is_none() || page.next_after_boot != Some(self.boot) {
                return Ok(());
            }
        }
    }
}

/// Runs the four faults of `plan` one after another on `rig`, each after `plan.settle` of
/// steady running, and waits for every affected device to heal before the next. Calls
/// `tick` about every 500 ms (the demo redraws its view), and fails as soon as a process
/// ends that the plan did not stop.
pub async fn run(
    rig: &mut Rig,
    plan: &Plan,
    client: &reqwest::Client,
    timeline: &mut Timeline,
    tick: &mut dyn FnMut(&Rig, &Timeline),
) -> Result<Vec<FaultReport>, String> {
    let all: Vec<u32> = rig.devices.iter().map(|d| d.id).collect();
    for id in [plan.reboot, plan.cut] {
        if !all.contains(&id) {
            return Err(format!("the fault plan names device {id}, not in this run"));
        }
    }
    if rig
        .devices
        .iter()
        .find(|d| d.id == plan.cut)
        .is_none_or(|d| d.relay.is_none())
    {
        return Err(format!(
            "device {}'s link has no relay, it cannot be cut",
            plan.cut
        ));
    }
    let mut clock = Clock {
        last_tick: Instant::now(),
    };
    let mut reports = Vec::new();

    // 1. A device reboot.
    clock.pause(rig, timeline, tick, plan.settle).await?;
    let before = prefixes(rig, client, &[plan.reboot]).await?;
    let injected = timeline.now();
    let t = Instant::now();
    timeline.note(format!(
        "reboot device {} (QEMU stopped, started again with a new boot id)",
        plan.reboot
    ));
    rig.reboot(plan.reboot)?;
    let lasted = t.elapsed();
    let boot = rig.device(plan.reboot)?.boot;
    timeline.note(format!(
        "device {} booted again (boot id {boot:#010x})",
        plan.reboot
    ));
    let healed = heal(
        rig,
        client,
        timeline,
        tick,
        &mut clock,
        plan,
        t,
        Instant::now(),
        before,
    )
    .await?;
    reports.push(FaultReport {
        what: format!("reboot device {}", plan.reboot),
        injected,
        lasted,
        healed,
    });

    // 2. kill -9 the gateway, restart it.
    clock.pause(rig, timeline, tick, plan.settle).await?;
    let before = prefixes(rig, client, &all).await?;
    let injected = timeline.now();
    let t = Instant::now();
    if let Some(mut g) = rig.gateway.take() {
        g.kill9();
    }
    timeline.note(format!(
        "kill -9 the gateway (down for {})",
        secs(plan.down)
    ));
    clock.pause(rig, timeline, tick, plan.down).await?;
    rig.start_gateway()?;
    let restored = Instant::now();
    timeline.note("gateway started again");
    let healed = heal(
        rig, client, timeline, tick, &mut clock, plan, t, restored, before,
    )
    .await?;
    reports.push(FaultReport {
        what: "kill -9 the gateway, restart".into(),
        injected,
        lasted: restored - t,
        healed,
    });

    // 3. kill -9 the service, restart it on the same database.
    clock.pause(rig, timeline, tick, plan.settle).await?;
    let before = prefixes(rig, client, &all).await?;
    let injected = timeline.now();
    let t = Instant::now();
    if let Some(mut s) = rig.service.take() {
        s.kill9();
    }
    timeline.note(format!(
        "kill -9 the service (down for {})",
        secs(plan.down)
    ));
    clock.pause(rig, timeline, tick, plan.down).await?;
    rig.start_service()?;
    let restored = Instant::now();
    timeline.note(format!(
        "service started again on the same database ({})",
        rig.service_opts.db.to_string_lossy()
    ));
    let healed = heal(
        rig, client, timeline, tick, &mut clock, plan, t, restored, before,
    )
    .await?;
    reports.push(FaultReport {
        what: "kill -9 the service, restart".into(),
        injected,
        lasted: restored - t,
        healed,
    });

    // 4. Cut one device's link.
    clock.pause(rig, timeline, tick, plan.settle).await?;
    let before = prefixes(rig, client, &[plan.cut]).await?;
    let injected = timeline.now();
    let t = Instant::now();
    if let Some(r) = &rig.device(plan.cut)?.relay {
        r.cut();
    }
    timeline.note(format!(
        "cut device {}'s link (for {})",
        plan.cut,
        secs(plan.cut_for)
    ));
    clock.pause(rig, timeline, tick, plan.cut_for).await?;
    if let Some(r) = &rig.device(plan.cut)?.relay {
        r.restore();
    }
    let restored = Instant::now();
    timeline.note(format!("device {}'s link restored", plan.cut));
    let healed = heal(
        rig, client, timeline, tick, &mut clock, plan, t, restored, before,
    )
    .await?;
    reports.push(FaultReport {
        what: format!("cut device {}'s link", plan.cut),
        injected,
        lasted: restored - t,
        healed,
    });
    Ok(reports)
}

struct Clock {
    last_tick: Instant,
}

impl Clock {
    /// Lets `d` pass, ticking and checking that the processes still run.
    async fn pause(
        &mut self,
        rig: &mut Rig,
        timeline: &Timeline,
        tick: &mut dyn FnMut(&Rig, &Timeline),
        d: Duration,
    ) -> Result<(), String> {
        let until = Instant::now() + d;
        loop {
            self.poll(rig, timeline, tick)?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
        }
    }

    fn poll(
        &mut self,
        rig: &mut Rig,
        timeline: &Timeline,
        tick: &mut dyn FnMut(&Rig, &Timeline),
    ) -> Result<(), String> {
        rig.check_alive()?;
        if self.last_tick.elapsed() >= Duration::from_millis(500) {
            self.last_tick = Instant::now();
            tick(rig, timeline);
        }
        Ok(())
    }
}

/// Each device's stored prefix, just before a fault.
async fn prefixes(
    rig: &Rig,
    client: &reqwest::Client,
    ids: &[u32],
) -> Result<Vec<(u32, Prefix)>, String> {
    let mut out = Vec::new();
    for &id in ids {
        let boot = rig
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.boot)
            .ok_or_else(|| format!("no device {id}"))?;
        let mut p = Prefix::new(boot);
        p.advance(client, &rig.base, id, &mut Vec::new()).await?;
        out.push((id, p));
    }
    Ok(out)
}

/// Waits until every device in `before` has healed (see the module docs): its current boot
/// stored without a gap up to a reading sampled after `restored`.
#[allow(clippy::too_many_arguments, reason = "one private helper of `run`")]
async fn heal(
    rig: &mut Rig,
    client: &reqwest::Client,
    timeline: &mut Timeline,
    tick: &mut dyn FnMut(&Rig, &Timeline),
    clock: &mut Clock,
    plan: &Plan,
    injected: Instant,
    restored: Instant,
    before: Vec<(u32, Prefix)>,
) -> Result<Vec<Healed>, String> {
    let settle_ms = i64::try_from(plan.settle.as_millis()).unwrap_or(0);
    struct Watch {
        id: u32,
        prefix: Prefix,
        /// The device uptime at `restored` (at most: QEMU takes a moment to start).
        after_uptime: u64,
        backlog: u64,
        done: Option<Duration>,
    }
    let mut watches = Vec::new();
    for (id, prefix) in before {
        let d = rig
            .devices
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| format!("no device {id}"))?;
        // A rebooted device: its new boot, from seq 0.
        let prefix = if d.boot == prefix.boot {
            prefix
        } else {
            Prefix::new(d.boot)
        };
        let since_launch =
            u64::try_from(restored.saturating_duration_since(d.launched).as_millis()).unwrap_or(0);
        // A rebooted device: every reading of its new boot is after the fault.
        let after_uptime = if prefix.count == 0 {
            0
        } else {
            prefix
                .uptime_at(wall_ms(restored), wall_ms(injected) - settle_ms)
                .unwrap_or(since_launch)
        };
        watches.push(Watch {
            id,
            prefix,
            after_uptime,
            backlog: 0,
            done: None,
        });
    }
    let deadline = restored + plan.heal_timeout;
    loop {
        let mut pending = 0;
        for w in &mut watches {
            if w.done.is_some() {
                continue;
            }
            let mut uptimes = Vec::new();
            // The service may still be starting: try again on the next round.
            let _ = w
                .prefix
                .advance(client, &rig.base, w.id, &mut uptimes)
                .await;
            w.backlog += uptimes.iter().filter(|&&u| u < w.after_uptime).count() as u64;
            if w.prefix.uptime_ms.is_some_and(|u| u >= w.after_uptime) {
                let after = injected.elapsed();
                w.done = Some(after);
                timeline.note(format!(
                    "device {} healed: {} after the injection, {} after the restore; backlog of {} readings stored, up to (boot {:#010x}, seq {})",
                    w.id,
                    secs(after),
                    secs(restored.elapsed()),
                    w.backlog,
                    w.prefix.boot,
                    w.prefix.next.saturating_sub(1)
                ));
            } else {
                pending += 1;
            }
        }
        if pending == 0 || Instant::now() >= deadline {
            break;
        }
        clock.poll(rig, timeline, tick)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in &watches {
        if w.done.is_none() {
            timeline.note(format!(
                "device {} NOT healed after {}: stored without a gap up to seq {} of boot {:#010x}",
                w.id,
                secs(plan.heal_timeout),
                w.prefix.next.saturating_sub(1),
                w.prefix.boot
            ));
        }
    }
    Ok(watches
        .into_iter()
        .map(|w| Healed {
            device: w.id,
            after: w.done,
            backlog: w.backlog,
        })
        .collect())
}

/// `at` on the wall clock, Unix ms (as the service's `received_at_ms`).
fn wall_ms(at: Instant) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    now - i64::try_from(at.elapsed().as_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device clock 5 % slow against the wall clock, transits of 10-59 ms: the uptime at a
    /// wall time is found within a few ms, not off by the lag accumulated since boot.
    #[test]
    fn uptime_at_follows_a_slow_device_clock() {
        let boot_wall = 1_000_000i64;
        let mut p = Prefix::new(7);
        for k in 0..60u64 {
            let uptime = k * 100;
            let sampled = boot_wall + (uptime as f64 * 1.05) as i64;
            let received = sampled + 10 + ((k * 37) % 50) as i64;
            p.offsets.push((uptime, received - uptime as i64));
        }
        let wall = boot_wall + 9_000;
        let expected = (9_000.0 / 1.05) as i64;
        let got = p.uptime_at(wall, 0).unwrap() as i64;
        // Early by about the fastest transit (10 ms); "uptime since launch" would say 9000,
        // 429 ms late.
        assert!((0..=15).contains(&(expected - got)), "{got} vs {expected}");
        // Only the readings received since `since_ms` count; too few: no estimate.
        assert_eq!(p.uptime_at(wall, boot_wall + 6_100), None);
        assert!(p.uptime_at(wall, boot_wall + 5_000).is_some());
    }
}

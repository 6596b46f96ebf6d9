//! The pieces the demo (`cargo xtask demo`) and the end-to-end tests share: start the real
//! processes (service, gateway, QEMU devices) on 127.0.0.1, watch the service's live stream,
//! and count what each device sent against what the service can return.
//!
//! Every process is started in its own process group and killed (the whole group) when its
//! [`Proc`] is dropped, so neither a panic in a test nor Ctrl-C in the demo leaves strays.
#![warn(missing_docs)]

pub mod faults;
pub mod replicas;

use rustix::process::{Pid, Signal, kill_process_group};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process in its own process group, killed with its group on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    done: Option<ExitStatus>,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in a new process group with stdin closed and stdout/stderr appended to
    /// `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            done: None,
            log: log.to_owned(),
        })
    }

    fn spawn_piped(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, String> {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            done: None,
            log: log.to_owned(),
        })
    }

    /// Its process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn signal_group(&self, sig: Signal) {
        // kill(-pgid, sig) reaches the whole group (QEMU's children too). By syscall: a
        // minimal box has no `kill` program. An error means the group is already gone.
        if let Some(pid) = Pid::from_raw(self.pid() as i32) {
            let _ = kill_process_group(pid, sig);
        }
    }

    /// `None` while it runs; its exit status once it ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.done.is_none() {
            self.done = self.child.try_wait().ok().flatten();
        }
        self.done
    }

    /// SIGKILL to its group, then reap it.
    pub fn kill9(&mut self) {
        if self.try_wait().is_none() {
            self.signal_group(Signal::KILL);
            let _ = self.child.kill();
            self.done = self.child.wait().ok();
        }
    }

    /// SIGTERM to its group; SIGKILL if it is still running after `grace`. Its exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_wait() {
            return Some(s);
        }
        self.signal_group(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        self.done
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `beacon-service`.
    pub service_bin: PathBuf,
    /// `beacon-gateway`.
    pub gateway_bin: PathBuf,
    /// The QEMU firmware ELF (`firmware/target/thumbv7em-none-eabihf/release/beacon-qemu`).
    pub firmware_elf: PathBuf,
    /// `qemu-system-arm`.
    pub qemu: PathBuf,
}

impl Paths {
    /// From `BEACON_SERVICE_BIN`, `BEACON_GATEWAY_BIN`, `BEACON_FIRMWARE_ELF`, `BEACON_QEMU`
    /// when set; otherwise the binaries next to this executable (or its parent, for test
    /// binaries in `deps/`) and the firmware's release build in this repository.
    pub fn discover() -> Self {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let bin = |name: &str, var: &str| {
            if let Some(p) = std::env::var_os(var) {
                return PathBuf::from(p);
            }
            let here = exe_dir.join(name);
            if here.is_file() || exe_dir.file_name().is_none_or(|n| n != "deps") {
                return here;
            }
            exe_dir.parent().map_or(here, |p| p.join(name))
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Self {
            service_bin: bin("beacon-service", "BEACON_SERVICE_BIN"),
            gateway_bin: bin("beacon-gateway", "BEACON_GATEWAY_BIN"),
            firmware_elf: std::env::var_os("BEACON_FIRMWARE_ELF")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    root.join("firmware/target/thumbv7em-none-eabihf/release/beacon-qemu")
                }),
            qemu: std::env::var_os("BEACON_QEMU")
                .map_or_else(|| PathBuf::from("qemu-system-arm"), PathBuf::from),
        }
    }

    /// Checks that everything exists, with a message that says how to get it.
    pub fn check(&self, qemu_needed: bool) -> Result<(), String> {
        for (p, what) in [
            (&self.service_bin, "the service"),
            (&self.gateway_bin, "the gateway"),
        ] {
            if !p.is_file() {
                return Err(format!(
                    "{what} is not built ({} is missing); run `cargo xtask demo`, which builds it",
                    p.display()
                ));
            }
        }
        if qemu_needed {
            if !self.firmware_elf.is_file() {
                return Err(format!(
                    "the QEMU firmware is not built ({} is missing); run `cd firmware && cargo build --release`",
                    self.firmware_elf.display()
                ));
            }
            let found = self.qemu.is_file()
                || std::env::var_os("PATH").is_some_and(|paths| {
                    std::env::split_paths(&paths).any(|d| d.join(&self.qemu).is_file())
                });
            if !found {
                return Err(format!(
                    "{} not found; install it (Debian/Ubuntu: apt-get install qemu-system-arm) or `cargo xtask setup`",
                    self.qemu.display()
                ));
            }
        }
        Ok(())
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: good enough for tests and the demo).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// How to start the service.
#[derive(Debug, Clone)]
pub struct ServiceOpts {
    /// Its `--db`: a SQLite file or a `postgres://` URL.
    pub db: std::ffi::OsString,
    /// Where it listens (port 0: any).
    pub listen: SocketAddr,
    /// Serve tokio-console here (needs the service's `console` feature).
    pub console: Option<SocketAddr>,
    /// Its log.
    pub log: PathBuf,
}

/// Starts the service and waits for its "listening on" line; returns it and its address.
pub fn start_service(paths: &Paths, opts: &ServiceOpts) -> Result<(Proc, SocketAddr), String> {
    let mut cmd = Command::new(&paths.service_bin);
    cmd.arg("--listen")
        .arg(opts.listen.to_string())
        .arg("--db")
        .arg(&opts.db)
        .arg("--shutdown-grace-secs")
        .arg("3");
    if let Some(addr) = opts.console {
        cmd.arg("--console")
            .arg("--console-addr")
            .arg(addr.to_string());
    }
    let mut proc = Proc::spawn_piped("service", &mut cmd, &opts.log)?;
    let stdout = proc
        .child
        .stdout
        .take()
        .ok_or("the service's stdout is not piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let log = opts.log.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        // Keep draining, so the service never blocks on a full pipe.
        let mut out = std::fs::OpenOptions::new().append(true).open(log).ok();
        for line in lines.map_while(Result::ok) {
            if let Some(f) = out.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).map_err(|_| {
        let status = proc.try_wait();
        format!(
            "the service did not start (status {status:?}); see {}",
            proc.log.display()
        )
    })?;
    let addr = beacon_api::parse_listening(&first)
        .ok_or_else(|| format!("unexpected first line from the service: {first:?}"))?;
    Ok((proc, addr))
}

/// Starts the gateway on `links`, posting to `services` (one `--service` each: replicas it
/// spreads batches across).
pub fn start_gateway(
    paths: &Paths,
    services: &[String],
    links: &[String],
    stats_file: &Path,
    log: &Path,
    extra: &[&str],
) -> Result<Proc, String> {
    let mut cmd = Command::new(&paths.gateway_bin);
    for s in services {
        cmd.arg("--service").arg(s);
    }
    for l in links {
        cmd.arg("--link").arg(l);
    }
    cmd.arg("--stats-file").arg(stats_file).args(extra);
    Proc::spawn("gateway", &mut cmd, log)
}

/// A fresh boot id for one QEMU launch, from the host's random source (never 0): the emulated
/// board has no RNG, so every launch is handed its boot identity (protocol/SPEC.md 3.1).
pub fn random_boot_id() -> Result<u32, String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a device boot id: {e}"))?;
    Ok(u32::from_le_bytes(bytes).max(1))
}

/// The QEMU command for the firmware with UART0 on `serial` (a QEMU chardev spec) and
/// `settings` as its command line; a random `boot-id=N` is added, as a real board's RNG would
/// give a new one at every reset. Returns the command and that boot id.
pub fn qemu_command(paths: &Paths, serial: &str, settings: &str) -> Result<(Command, u32), String> {
    let boot_id = random_boot_id()?;
    let mut cmd = Command::new(&paths.qemu);
    cmd.args(["-machine", "mps2-an386", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-serial")
        .arg(serial)
        .arg("-kernel")
        .arg(&paths.firmware_elf)
        .arg("-append")
        .arg(format!("{settings} boot-id={boot_id}"));
    Ok((cmd, boot_id))
}

/// Boots the QEMU firmware as device `id`, its UART0 a TCP server on 127.0.0.1:`port`
/// (`server=on,wait=off`: the device runs whether or not the gateway is connected; QEMU drops
/// what it writes while nobody listens, and the device re-sends every frame not acked yet when
/// the gateway connects and asks).
pub fn start_qemu(
    paths: &Paths,
    id: u32,
    period_ms: u32,
    port: u16,
    log: &Path,
) -> Result<Proc, String> {
    let (mut cmd, _boot) = qemu_command(
        paths,
        &format!("tcp:127.0.0.1:{port},server=on,wait=off"),
        &format!("device-id={id} period-ms={period_ms}"),
    )?;
    Proc::spawn(&format!("qemu device {id}"), &mut cmd, log)
}

/// Reads the gateway's stats file, `None` until it exists.
pub fn read_stats(path: &Path) -> Option<beacon_gateway::metrics::Stats> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Waits until `GET /readyz` answers 200.
pub async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the service at {base} is not ready after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The contract's types (`beacon-api`, shared with the service and the gateway).
pub use beacon_api::{ReadingsPage as Page, StoredReading, Value};

/// Every stored reading of a device, in `(boot, seq)` order (pages through the query API).
pub async fn all_readings(
    client: &reqwest::Client,
    base: &str,
    id: u32,
) -> Result<Vec<StoredReading>, String> {
    let mut out = Vec::new();
    let mut after: Option<(u32, u32)> = None;
    loop {
        let mut url = format!("{base}/api/v1/devices/{id}/readings?limit=10000");
        if let Some((boot, seq)) = after {
            url.push_str(&format!("&after_boot={boot}&after_seq={seq}"));
        }
        let resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("query {url}: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(out);
        }
        if !resp.status().is_success() {
            return Err(format!("query {url}: {}", resp.status()));
        }
        let page: Page = resp.json().await.map_err(|e| format!("query {url}: {e}"))?;
        out.extend(page.readings);
        match page.next_after_seq {
            Some(seq) => after = Some((page.next_after_boot.unwrap_or(0), seq)),
            None => return Ok(out),
        }
    }
}

/// What one device sent against what the service holds, over all its boots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// The device.
    pub id: u32,
    /// Frames it sent: in each boot its sequence numbers run from 0 without gaps, so per boot
    /// the highest one seen (by the service or the gateway) plus one, summed.
    pub sent: u64,
    /// Readings the service returned.
    pub stored: u64,
    /// `(boot, seq)` pairs below each boot's `sent` the service does not have.
    pub lost: u64,
    /// Readings returned more than once (same boot and seq twice).
    pub duplicated: u64,
    /// The first few missing `(boot, seq)` pairs, for the report.
    pub missing_sample: Vec<(u32, u32)>,
    /// Per boot, in boot id order.
    pub boots: Vec<BootTally>,
}

/// One boot of a device in a [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootTally {
    /// The boot id (0: frames without one, protocol v1).
    pub boot: u32,
    /// Frames this boot sent (highest seq seen plus one).
    pub sent: u64,
    /// Distinct readings of this boot the service holds.
    pub stored: u64,
}

impl Tally {
    /// Counts `readings` (one device's) per boot, against what the gateway saw of it (each
    /// boot's highest seq, `beacon_gateway::metrics::DeviceStats::boots`), if known.
    pub fn count(
        id: u32,
        readings: &[StoredReading],
        gateway: Option<&beacon_gateway::metrics::DeviceStats>,
    ) -> Self {
        let mut keys: Vec<(u32, u32)> = readings.iter().map(|r| (r.boot, r.seq)).collect();
        keys.sort_unstable();
        let stored = keys.len() as u64;
        keys.dedup();
        let duplicated = stored - keys.len() as u64;
        let mut max_seq: BTreeMap<u32, u32> = BTreeMap::new();
        let seen = keys.iter().copied().chain(
            gateway
                .into_iter()
                .flat_map(|d| d.boots.iter().map(|b| (b.boot, b.max_seq))),
        );
        for (boot, seq) in seen {
            let m = max_seq.entry(boot).or_insert(seq);
            *m = (*m).max(seq);
        }
        let mut t = Self {
            id,
            stored,
            duplicated,
            ..Self::default()
        };
        for (&boot, &max) in &max_seq {
            let sent = u64::from(max) + 1;
            let have: Vec<u32> = keys.iter().filter(|k| k.0 == boot).map(|k| k.1).collect();
            for seq in 0..=max {
                if have.binary_search(&seq).is_err() {
                    t.lost += 1;
                    if t.missing_sample.len() < 10 {
                        t.missing_sample.push((boot, seq));
                    }
                }
            }
            t.sent += sent;
            t.boots.push(BootTally {
                boot,
                sent,
                stored: have.len() as u64,
            });
        }
        t
    }
}

pub use beacon_api::quantile;

/// One device as the live stream shows it.
#[derive(Debug, Clone, Default)]
pub struct LiveDevice {
    /// Readings seen on the stream.
    pub count: u64,
    /// Highest seq seen.
    pub last_seq: u32,
    /// The values of the newest reading.
    pub last_values: Vec<Value>,
    /// When recent readings arrived (for the rate).
    pub arrivals: VecDeque<Instant>,
    /// Sample-to-queryable latency of the newest reading, ms.
    pub last_latency_ms: i64,
}

/// What the live stream showed so far.
#[derive(Debug, Default)]
pub struct Live {
    /// Per device.
    pub devices: BTreeMap<u32, LiveDevice>,
    /// Sample-to-queryable latencies in ms: stream arrival (the service publishes after the
    /// commit) minus the reading's `sampled_at_ms`.
    pub latencies_ms: Vec<i64>,
    /// When the first reading arrived.
    pub first_reading: Option<Instant>,
    /// Stream (re)connections.
    pub connects: u64,
}

impl Live {
    fn record(&mut self, r: StoredReading, now: Instant, now_ms: i64) {
        self.first_reading.get_or_insert(now);
        let latency = now_ms - r.sampled_at_ms;
        self.latencies_ms.push(latency);
        let d = self.devices.entry(r.device_id).or_default();
        d.count += 1;
        d.last_latency_ms = latency;
        if r.seq >= d.last_seq || d.count == 1 {
            d.last_seq = r.seq;
            d.last_values = r.values;
        }
        d.arrivals.push_back(now);
        while d
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(5))
        {
            d.arrivals.pop_front();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Server-sent events from a byte stream that arrives in arbitrary chunks. Bytes are kept
/// until an event is complete, so a UTF-8 character or a line split across two chunks is
/// decoded whole; lines end with LF, CRLF or CR (the SSE spec allows all three); an event's
/// `data:` lines are joined with `\n`.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    name: String,
    data: Vec<String>,
    /// The previous chunk ended with CR: a LF at the start of this one belongs to it.
    after_cr: bool,
}

impl SseParser {
    /// Feeds one chunk; returns the events it completed, as (event name, data).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut chunk = chunk;
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            let line = String::from_utf8_lossy(&self.buf[start..i]).into_owned();
            let mut next = i + 1;
            if b == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.line(&line, &mut out);
            start = next;
            i = next;
        }
        self.buf.drain(..start);
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<(String, String)>) {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let name = std::mem::take(&mut self.name);
            if !data.is_empty() {
                out.push((
                    if name.is_empty() {
                        "message".into()
                    } else {
                        name
                    },
                    data.join("\n"),
                ));
            }
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {} // comments (`: keep-alive`), id, retry
        }
    }
}

/// Follows `GET /api/v1/stream` (server-sent events) into `live` until `stop` fires,
/// reconnecting when the service restarts.
pub async fn watch_stream(
    client: reqwest::Client,
    base: String,
    live: Arc<Mutex<Live>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(mut resp) = client.get(format!("{base}/api/v1/stream")).send().await
            && resp.status().is_success()
        {
            live.lock().unwrap_or_else(|e| e.into_inner()).connects += 1;
            let mut events = SseParser::default();
            let mut stop = stop.clone();
            loop {
                let chunk = tokio::select! {
                    c = resp.chunk() => c,
                    _ = stop.changed() => return,
                };
                let Ok(Some(chunk)) = chunk else { break };
                let (now, now_ms) = (Instant::now(), now_ms());
                for (name, data) in events.push(&chunk) {
                    if name == "readings"
                        && let Ok(rs) = serde_json::from_str::<Vec<StoredReading>>(&data)
                    {
                        let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
                        for r in rs {
                            l.record(r, now, now_ms);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_anywhere_decode_whole() {
        let text = "event: readings\r\ndata: [\"é€\"]\r\n\r\n: keep-alive\n\nevent: x\rdata: a\rdata: b\r\r";
        let bytes = text.as_bytes();
        let want = vec![
            ("readings".to_string(), "[\"é€\"]".to_string()),
            ("x".to_string(), "a\nb".to_string()),
        ];
        // Every split point, including inside the two- and three-byte characters and
        // between CR and LF.
        for cut in 0..=bytes.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&bytes[..cut]);
            got.extend(p.push(&bytes[cut..]));
            assert_eq!(got, want, "split at byte {cut}");
        }
        // One byte at a time.
        let mut p = SseParser::default();
        let got: Vec<_> = bytes.iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(got, want);
    }

    fn r(seq: u32) -> StoredReading {
        rb(0, seq)
    }

    fn rb(boot: u32, seq: u32) -> StoredReading {
        StoredReading {
            device_id: 1,
            boot,
            seq,
            uptime_ms: 0,
            sampled_at_ms: 0,
            received_at_ms: 0,
            values: vec![],
        }
    }

    fn gateway_saw(boots: &[(u32, u32)]) -> beacon_gateway::metrics::DeviceStats {
        beacon_gateway::metrics::DeviceStats {
            boots: boots
                .iter()
                .map(|&(boot, max_seq)| beacon_gateway::metrics::BootStats {
                    boot,
                    frames: 0,
                    max_seq,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tally_counts_gaps_duplicates_and_the_unseen_tail() {
        let rs: Vec<_> = [0, 1, 1, 3, 4].into_iter().map(r).collect();
        let t = Tally::count(1, &rs, Some(&gateway_saw(&[(0, 6)])));
        assert_eq!(
            (t.sent, t.stored, t.lost, t.duplicated),
            (7, 5, 3, 1),
            "{t:?}"
        );
        assert_eq!(t.missing_sample, [(0, 2), (0, 5), (0, 6)]);
        let clean: Vec<_> = (0..10).map(r).collect();
        let t = Tally::count(1, &clean, None);
        assert_eq!((t.sent, t.lost, t.duplicated), (10, 0, 0));
        assert_eq!(Tally::count(1, &[], None).sent, 0);
    }

    #[test]
    fn tally_counts_each_boot_from_seq_0() {
        // 45 frames, a reboot, 30 frames: the same seqs twice are not duplicates.
        let rs: Vec<_> = (0..45)
            .map(|s| rb(111, s))
            .chain((0..30).map(|s| rb(222, s)))
            .collect();
        let t = Tally::count(1, &rs, Some(&gateway_saw(&[(111, 44), (222, 30)])));
        assert_eq!(
            (t.sent, t.stored, t.lost, t.duplicated),
            (76, 75, 1, 0),
            "{t:?}"
        );
        assert_eq!(t.missing_sample, [(222, 30)]);
        assert_eq!(
            t.boots,
            [
                BootTally {
                    boot: 111,
                    sent: 45,
                    stored: 45
                },
                BootTally {
                    boot: 222,
                    sent: 31,
                    stored: 30
                },
            ]
        );
    }
}

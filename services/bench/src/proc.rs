//! The processes under test: starting the service (its listening line read with
//! `beacon_api::parse_listening`), stopping by SIGTERM (a syscall, not the `kill` program), and
//! what the benchmarks read about processes and the machine (Linux /proc): CPU seconds of a
//! process, a `/proc/<pid>/status` figure, the clock-tick rate, the load average, the
//! hypervisor's steal ([`CpuTimes`]), a free port.

use crate::{Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A process under test, killed (and reaped) if dropped without [`Proc::stop`].
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `bin` (the service) on a free loopback port with `--db db` and `extra`, and
    /// returns it with its base URL, read from the first line it prints.
    pub fn service(bin: &Path, db: &Path, extra: &[&str]) -> Result<(Self, String)> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}; build it first", bin.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let proc = Self {
            child,
            name: "service",
        };
        match beacon_api::parse_listening(&line) {
            Some(addr) => Ok((proc, format!("http://{addr}"))),
            None => bail!("the service did not start (first line {line:?}); its log is above"),
        }
    }

    /// CPU seconds so far (NaN if unknown).
    pub fn cpu_secs(&self, ticks: f64) -> f64 {
        cpu_secs(self.child.id(), ticks).unwrap_or(f64::NAN)
    }

    /// A `/proc/<pid>/status` figure in MB (NaN if unknown).
    pub fn status_mb(&self, key: &str) -> f64 {
        status_kb(self.child.id(), key).map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// SIGTERM, then wait: the service drains and flushes, the gateway delivers what it holds.
    /// `Err` unless it exits 0.
    pub fn stop(mut self) -> Result {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or("the process has no pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| format!("cannot send SIGTERM to the {}: {e}", self.name))?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!(
                "the {} exited with {status} after SIGTERM; its log is above",
                self.name
            );
        }
        Ok(())
    }
}

/// The `utime` and `stime` clock ticks in a `/proc/<pid>/stat` line, its `ppid`, and the
/// `cutime` + `cstime` of the children it has reaped. The command name is in parentheses and
/// may hold spaces, so fields count from the last ')': state 0, ppid 1, ... utime 11, stime
/// 12, cutime 13, cstime 14.
fn stat_fields(stat: &str) -> Option<(String, f64, f64)> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Option<f64> { f.get(i)?.parse().ok() };
    Some((
        (*f.get(1)?).to_owned(),
        tick(11)? + tick(12)?,
        tick(13)? + tick(14)?,
    ))
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_secs(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat).map(|(_, t, _)| t / ticks)
}

/// CPU seconds of process `pid` and its direct children (a server and its workers), the
/// children that have exited included: PostgreSQL's postmaster reaps a backend whose client
/// disconnected, and its time then moves into the postmaster's `cutime`/`cstime` (counting only
/// the living made the database's CPU per reading negative when the bare COPY clients closed).
pub fn cpu_secs_with_children(pid: &str, ticks: f64) -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let own = entry.file_name().to_string_lossy() == pid;
        match stat_fields(&stat) {
            Some((_, t, reaped)) if own => total += t + reaped,
            Some((ppid, t, _)) if ppid == pid => total += t,
            _ => {}
        }
    }
    total / ticks
}

/// A `kB` figure from `/proc/<pid>/status`, by its key (`"VmRSS:"`, `"VmHWM:"`).
pub fn status_kb(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` says them (`?` if unknown).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The machine's CPU time so far (`/proc/stat`'s `cpu` line, in clock ticks): taken before
/// and after a benchmark, it says how much of the run's CPU time the hypervisor gave to other
/// guests of the host (steal), which no process of ours sees and every figure pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    /// Now, or `None` where there is no `/proc/stat` (not Linux).
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the text of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`
    /// (`guest` is already counted in `user`).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        Some(Self {
            total: f.iter().sum(),
            steal: *f.get(7)?,
        })
    }

    /// Steal since `earlier`, in percent of all CPU time (`None` if no time passed).
    pub fn steal_percent_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        (total > 0).then(|| 100.0 * steal as f64 / total as f64)
    }
}

/// The line printed under the load average, and the figure for the JSON report.
pub fn steal_line(before: Option<CpuTimes>) -> (String, Option<f64>) {
    let pct = before
        .zip(CpuTimes::now())
        .and_then(|(b, a)| a.steal_percent_since(&b));
    let line = match pct {
        Some(p) => format!(
            "hypervisor steal during the run: {p:.1} % of CPU time went to other guests of this \
             host (every figure pays for it; compare ratios from one run)"
        ),
        None => "hypervisor steal during the run: unknown (no /proc/stat)".to_owned(),
    };
    (line, pct)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn steal_is_its_share_of_all_cpu_time_between_two_readings() {
        let at = |user: u64, idle: u64, steal: u64| {
            super::CpuTimes::parse(&format!(
                "cpu  {user} 0 10 {idle} 5 0 5 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
            ))
            .unwrap()
        };
        let (a, b) = (at(100, 800, 0), at(400, 1100, 400));
        // 1,000 ticks passed, 400 of them stolen.
        assert_eq!(b.steal_percent_since(&a), Some(40.0));
        assert_eq!(a.steal_percent_since(&a), None);
        assert_eq!(super::CpuTimes::parse("intr 1 2 3"), None);
        let (line, pct) = super::steal_line(super::CpuTimes::now());
        assert!(
            line.starts_with("hypervisor steal during the run: "),
            "{line}"
        );
        assert!(pct.is_none_or(|p| (0.0..=100.0).contains(&p)), "{pct:?}");
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 30 12 20 0 1 0";
        assert_eq!(super::stat_fields(stat), Some(("7".into(), 300.0, 42.0)));
        assert_eq!(super::stat_fields("42 (x) S"), None);
        let me = super::cpu_secs(std::process::id(), 100.0);
        assert!(me.is_some_and(|s| s >= 0.0), "{me:?}");
    }

    /// A child that burns CPU and exits still counts: its time moves into the parent's
    /// `cutime` once reaped (the database's backends exit when a client disconnects).
    #[test]
    fn a_reaped_child_keeps_counting_in_its_parents_cpu() {
        let ticks = super::clock_ticks();
        let me = std::process::id().to_string();
        let before = super::cpu_secs_with_children(&me, ticks);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "proc::tests::spin_for_a_third_of_a_second",
                "--ignored",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let after = super::cpu_secs_with_children(&me, ticks);
        assert!(
            after - before >= 0.25,
            "the exited child's CPU is lost: {before} -> {after}"
        );
    }

    #[test]
    #[ignore = "the busy child of a_reaped_child_keeps_counting_in_its_parents_cpu, run by it"]
    fn spin_for_a_third_of_a_second() {
        // Until this process has used 0.3 s of CPU (steal does not count), at most 20 s.
        let (t, ticks, me) = (
            std::time::Instant::now(),
            super::clock_ticks(),
            std::process::id(),
        );
        let mut x = 0u64;
        while super::cpu_secs(me, ticks).unwrap_or(0.0) < 0.3 && t.elapsed().as_secs() < 20 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }
}

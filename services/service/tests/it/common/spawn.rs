//! The real `beacon-service` binary as a child process, for the tests that need the binary
//! (its flags, its shutdown on signals, its on-disk database across restarts). Declared once
//! in `main.rs` (`crate::spawn`), not through `mod common;`: the modules that copy `common/`
//! do not need it.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running service, killed (and reaped) when dropped, pass or fail.
pub struct Service {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its first stdout line.
    pub url: String,
    /// Its stderr, line by line, when started by [`launch_logged`] (empty otherwise).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `beacon-service --listen 127.0.0.1:0 --db <db> <extra>` with `RUST_LOG=warn`, stdout piped
/// (for [`launch`]) and stderr the test's; a caller may change any of that before launching.
pub fn command(db: impl AsRef<OsStr>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beacon-service"));
    cmd.args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Starts [`command`]`(db, extra)` and reads the address it printed.
pub fn start(db: &Path, extra: &[&str]) -> Service {
    launch(command(db, extra))
}

/// Spawns `cmd` (a service whose stdout is piped: [`command`], or a wrapper running it) and
/// reads the address it printed first.
pub fn launch(cmd: Command) -> Service {
    run(cmd, false)
}

/// [`launch`] with the service's stderr collected into [`Service::log`].
#[cfg(feature = "postgres")]
pub fn launch_logged(mut cmd: Command) -> Service {
    cmd.stderr(Stdio::piped());
    run(cmd, true)
}

fn run(mut cmd: Command, collect_stderr: bool) -> Service {
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {:?} (beacon-service is built by cargo for this test binary): {e}",
            cmd.get_program()
        )
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    if collect_stderr {
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("cannot read beacon-service's first line");
    let url = beacon_service::model::parse_listening(&line)
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_default();
    let service = Service { child, url, log };
    assert!(
        service.url.starts_with("http://127.0.0.1:"),
        "unexpected first line from beacon-service: {line:?} (expected \"... http://127.0.0.1:PORT\"); \
         its log: {:?}",
        service.log.lock().unwrap()
    );
    service
}

/// Sends SIGTERM to `child`: by syscall, not the `kill` program (procps, which a minimal box
/// lacks).
pub fn sigterm(child: &Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap())
        .expect("a child has a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM failed");
}

//! The real `beacon-service` binary as a child process, for the tests that need the binary
//! (its flags, its shutdown on signals, its on-disk database across restarts). Declared once
//! in `main.rs` (`crate::spawn`), not through `mod common;`: the modules that copy `common/`
//! do not need it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running service, killed (and reaped) when dropped, pass or fail.
pub struct Service {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its first stdout line.
    pub url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `beacon-service --listen 127.0.0.1:0 --db <db> <extra>` (`RUST_LOG=warn`, stderr to
/// the test's) and reads the address it printed.
pub fn start(db: &Path, extra: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_beacon-service"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start beacon-service (built by cargo for this test binary)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("cannot read beacon-service's first line");
    let url = beacon_service::model::parse_listening(&line)
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_default();
    let service = Service { child, url };
    assert!(
        service.url.starts_with("http://127.0.0.1:"),
        "unexpected first line from beacon-service: {line:?} (expected \"... http://127.0.0.1:PORT\")"
    );
    service
}

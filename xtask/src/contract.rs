// template:service:file
//! The contract step of `cargo xtask test`: a bounded schemathesis run (PyPI) against the real
//! service's `/openapi.json`, on 127.0.0.1 only, every check on; any failure fails the step.
//!
//! - schemathesis is installed, pinned, into a venv under `target/` (first run ~1 min; later
//!   runs reuse it). When that fails (no network, no `python3 -m venv`), the error says what to
//!   run by hand.
//! - The service is the debug binary on `127.0.0.1:0` with a fresh database in a temp dir,
//!   device 7 registered with token `tok-seven`, which is also the provisioning token (so one
//!   bearer header reaches every endpoint).
//! - Configuration and the hooks for the two rules JSON Schema cannot say (the open SSE
//!   stream, `device_id` equal to the path id) are in `services/service/tests/schemathesis/`.
//! - Bounded: `--max-examples` per operation and a fixed seed, one worker (CPython 3.11's
//!   parser is not thread-safe: `SystemError: AST constructor recursion depth mismatch` with
//!   more), a request timeout, and a wall-clock cap on the whole run.

use crate::bail;
use crate::cmd::{Result, cmd};
use crate::project::root as project_root;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The schemathesis release the contract is checked with (the issue measured 4.32).
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: ~700 requests, about a minute on a busy 2-core machine.
const MAX_EXAMPLES: &str = "25";
/// The whole run is stopped (and the step fails) after this long.
const RUN_CAP: Duration = Duration::from_secs(600);
const TOKEN: &str = "tok-seven";

fn venv_dir(root: &Path) -> PathBuf {
    crate::project::target_dir(root).join("schemathesis-venv")
}

fn install_hint(venv: &Path) -> String {
    format!(
        "install it by hand and rerun: `python3 -m venv {v} && {v}/bin/pip install \
         schemathesis=={SCHEMATHESIS_VERSION}` (needs PyPI; on Debian `apt-get install -y \
         python3-venv` first)",
        v = venv.display()
    )
}

/// The venv's schemathesis, installed (pinned) when missing or another version.
fn ensure_schemathesis(root: &Path) -> Result<PathBuf> {
    let venv = venv_dir(root);
    let exe = venv.join("bin/schemathesis");
    let installed = Command::new(&exe)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .is_some_and(|v| v.trim().ends_with(SCHEMATHESIS_VERSION));
    if installed {
        return Ok(exe);
    }
    if !venv.join("bin/pip").is_file() {
        cmd("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .run()
            .map_err(|e| crate::cmd::Error(format!("{e}; {}", install_hint(&venv))))?;
    }
    cmd(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}"))
        .run()
        .map_err(|e| crate::cmd::Error(format!("{e}; {}", install_hint(&venv))))?;
    Ok(exe)
}

/// The service, killed on drop.
struct Service {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop (xtask is std only).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_service(root: &Path) -> Result<Service> {
    cmd("cargo")
        .args(["build", "-p", "beacon-service", "--bin", "beacon-service"])
        .dir(root)
        .run()?;
    let bin = venv_dir(root)
        .parent()
        .map(|t| t.join("debug/beacon-service"))
        .unwrap_or_default();
    let dir = TempDir(std::env::temp_dir().join(format!("beacon-contract-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let mut child = Command::new(&bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--provisioning-token",
            TOKEN,
            // Every documented path mounted: /debug/tasks is opt-in (loopback only).
            "--debug-endpoints",
            "--db",
        ])
        .arg(dir.0.join("contract.db"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| crate::cmd::Error(format!("cannot start {}: {e}", bin.display())))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let Some(addr) = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|u| u.strip_prefix("http://"))
        .map(str::to_owned)
    else {
        let _ = child.kill();
        bail!(
            "beacon-service did not print its address (first line: {line:?}); see its stderr above"
        );
    };
    Ok(Service {
        child,
        addr,
        _dir: dir,
    })
}

/// `POST /api/v1/devices` over a plain socket (xtask has no HTTP client); the status line.
fn register_device(addr: &str) -> Result<String> {
    let body = format!(r#"{{"id":7,"token":"{TOKEN}"}}"#);
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /api/v1/devices HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default().to_owned();
    if !status.contains(" 201 ") {
        bail!("registering device 7 for the contract run failed: {answer}");
    }
    Ok(status)
}

/// Runs the contract step.
pub fn run() -> Result {
    let root = project_root();
    let schemathesis = ensure_schemathesis(&root)?;
    let service = start_service(&root)?;
    register_device(&service.addr)?;
    let config = root.join("services/service/tests/schemathesis");
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(config.join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(format!("http://{}/openapi.json", service.addr))
        .args([
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .args(["--request-timeout", "10", "--generation-database", "none"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .env("SCHEMATHESIS_HOOKS", config.join("hooks.py"))
        // Hypothesis keeps its cache in the working directory: under target/, not the source.
        .current_dir(venv_dir(&root).parent().unwrap_or(&root))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "$ schemathesis run http://{}/openapi.json --max-examples {MAX_EXAMPLES} (all checks)",
        service.addr
    );
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        crate::cmd::Error(format!(
            "cannot start {}: {e}; {}",
            schemathesis.display(),
            install_hint(&venv_dir(&root))
        ))
    })?;
    // The report goes to a file under target/ (it is long); the totals are printed here.
    let reader = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(out).read_to_string(&mut text);
            text
        })
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= RUN_CAP {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let report = venv_dir(&root).with_file_name("schemathesis-report.txt");
    std::fs::write(&report, &output)?;
    drop(service);
    let totals: Vec<&str> = output
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    eprintln!("{}", totals.join("\n"));
    let Some(status) = status else {
        bail!(
            "schemathesis did not finish within {RUN_CAP:?} and was stopped; its report is {}",
            report.display()
        );
    };
    if !status.success() {
        bail!(
            "schemathesis found failures against /openapi.json ({status}): the service or the \
             contract (services/service/src/openapi.json) is wrong; the full report, with a curl \
             line per failure, is {}",
            report.display()
        );
    }
    eprintln!(
        "contract: schemathesis {SCHEMATHESIS_VERSION}, 0 failures, in {:.0}s (report: {})",
        started.elapsed().as_secs_f64(),
        report.display()
    );
    Ok(())
}

/// `cargo xtask contract --help`.
pub const HELP: &str = "\
The contract step of `cargo xtask test` alone: a bounded schemathesis run (installed into a venv
under target/) against the real service's /openapi.json on 127.0.0.1, all checks.

Usage: cargo xtask contract
";

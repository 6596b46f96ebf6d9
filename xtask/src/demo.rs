// template:service:file
// template:firmware:file
//! `cargo xtask demo`: build what is stale (the firmware, the service with tokio-console, the
//! gateway, the demo orchestrator), then hand over to `beacon-demo` (services/demo), which
//! starts everything, shows it live, and stops it all on Ctrl-C with a summary.
//!
//! Also the end-to-end step of `cargo xtask test` ([`e2e`]).

use crate::cmd::{Result, cmd};
use crate::firmware::{Board, BoardName};
use crate::project::root as project_root;
use crate::setup::ensure::{self, When};
use std::path::PathBuf;

#[derive(Debug)]
pub struct Args {
    pub duration: Option<u64>,
    pub check: bool,
    pub board: BoardName,
    pub devices: u32,
    pub faults: bool,
    pub db: Db,
    pub replicas: u32,
    pub yes: bool,
    /// After `--`: more flags for beacon-demo.
    pub rest: Vec<String>,
}

/// `cargo xtask demo --help`.
pub const HELP: &str = "\
The whole stack end to end: builds what is stale, starts the service (tokio-console on), the
gateway and 3 QEMU devices, shows them live; Ctrl-C stops all and prints a summary. Installs what
is missing first (the thumb target, QEMU, a C compiler), asking before it does.

Usage: cargo xtask demo [OPTIONS] [-- <BEACON-DEMO FLAGS>...]

Options:
      --duration <SECS>  Stop after this many seconds (default: run until Ctrl-C)
      --check            Exit non-zero if any reading was lost or no data flowed (for CI)
      --board <BOARD>    Emulated devices (`qemu`) or a real board through probe-rs RTT
                         [default: qemu] [possible values: qemu, nrf52840]
      --devices <N>      Number of emulated devices [default: 3]
      --faults           Inject faults with a printed timeline: a device reboot, `kill -9` of the
                         gateway and of the service (each restarted), a 30 s cut of one device's
                         link; the summary adds each fault's heal time (`cargo xtask demo --
                         --help`: `--cut-secs`, `--down-secs`)
      --db <DB>          The database the service replicas share: `sqlite` (a file) or `postgres`
                         (a throwaway local cluster under target/demo, removed at exit; `cargo
                         xtask setup --only postgres` installs the server) [default: sqlite]
      --replicas <N>     Service replicas on that database, 1 to 16 (more than 1 needs `--db
                         postgres`); the gateway spreads batches across them and fails over
                         [default: 1]
  -y, --yes              Install what is missing (QEMU, a C compiler) without asking (implied
                         when CI=true)
  -h, --help             Print help
";

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        let replicas = a.value("--replicas")?.unwrap_or(1);
        Ok(Args {
            duration: a.value("--duration")?,
            check: a.flag("--check", None)?,
            board: a.value("--board")?.unwrap_or(BoardName::Qemu),
            devices: a.value("--devices")?.unwrap_or(3),
            faults: a.flag("--faults", None)?,
            db: a.value("--db")?.unwrap_or(Db::Sqlite),
            replicas: a.in_range(replicas, "--replicas", 1, 16)?,
            yes: a.flag("--yes", Some('y'))?,
            rest: a.rest(),
        })
    }
}

/// `--db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl std::str::FromStr for Db {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sqlite" => Ok(Db::Sqlite),
            "postgres" => Ok(Db::Postgres),
            _ => Err(crate::args::one_of(s, &["sqlite", "postgres"])),
        }
    }
}

/// What the demo builds (after `cargo build`): the dev-loop feature check
/// (xtask/src/devdeps.rs) resolves the same set, so the two cannot drift apart. Without the
/// default features: SQLite only (the service's `postgres` feature is added for `--db
/// postgres`), 40 crates fewer to compile before the first reading on a fresh clone.
pub const BUILD: &[&str] = &[
    "-p",
    "beacon-service",
    "-p",
    "beacon-gateway",
    "-p",
    "beacon-demo",
    "--no-default-features",
    "--features",
    "beacon-service/console",
];

fn target_dir() -> PathBuf {
    crate::project::target_dir(&project_root())
}

/// The firmware the demo and the end-to-end tests boot (or flash, for a real board).
fn build_firmware(board: &Board) -> Result {
    firmware_build(board).run()
}

fn firmware_build(board: &Board) -> crate::cmd::Cmd {
    let firmware = project_root().join("firmware");
    let mut c = cmd("cargo").args(["build", "--release"]);
    if board.chip.is_some() {
        c = c.args(["-p", board.package]);
    }
    // The firmware is its own workspace with its own target dir: do not inherit ours.
    c.env_remove("CARGO_TARGET_DIR").dir(firmware)
}

pub fn run(args: Args) -> Result {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if args.replicas > 1 && args.db != Db::Postgres {
        // beacon-demo refuses it too; here before a build.
        crate::bail!(
            "--replicas {} needs --db postgres: SQLite is one file owned by one service \
             process, so replicas need a shared database (add --db postgres, or drop --replicas)",
            args.replicas
        );
    }
    let root = project_root();
    // A fresh machine: the pinned toolchain may lack the thumb target, QEMU may be missing.
    let mut needs = vec![ensure::RUST, ensure::C_COMPILER];
    let board = args.board.board();
    if board.chip.is_none() {
        needs.push(ensure::qemu("the demo boots its devices' firmware in it"));
    }
    if args.db == Db::Postgres {
        needs.push(ensure::POSTGRES);
    }
    // Every question first; then what the builds need (the thumb target, a C compiler).
    let mut plan = ensure::check("demo", &needs, args.yes)?;
    plan.install(When::Build)?;
    // The firmware (its own workspace and target dir) builds beside the host: on a fresh
    // clone its serial chain (syn, the macros, the app) fills the host build's idle core, so
    // the two take about as long as the host alone (13 s saved here from a cold start).
    let firmware = firmware_build(board).spawn_beside("firmware", "the host build")?;
    let mut build = cmd("cargo").arg("build").args(BUILD);
    if board.chip.is_some() {
        build = build.args(["--features", "beacon-gateway/rtt"]);
    }
    if args.db == Db::Postgres {
        build = build.args(["--features", "beacon-service/postgres"]);
    }
    let build = build.dir(&root);
    if plan.has(When::Run) {
        // QEMU (PostgreSQL) is needed only to run: its install (mostly download and unpack)
        // goes beside the builds, in front, with its output and any question of its own live;
        // the host build's output follows once it is done.
        let host = build.spawn_beside("host build", "the install")?;
        plan.install(When::Run)?;
        host.follow()?;
    } else {
        build.run()?;
    }
    firmware.wait()?;

    let demo = target_dir().join("debug").join("beacon-demo");
    let mut c = std::process::Command::new(&demo);
    c.arg("--board").arg(board.name);
    if let Some(chip) = board.chip {
        c.arg("--chip").arg(chip);
        c.arg("--nrf-elf")
            .arg(crate::firmware::release_dir().join(board.bin));
    }
    c.arg("--devices").arg(args.devices.to_string());
    if args.db == Db::Postgres {
        c.args(["--db", "postgres"]);
    }
    if args.replicas > 1 {
        c.arg("--replicas").arg(args.replicas.to_string());
    }
    if let Some(d) = args.duration {
        c.arg("--duration").arg(d.to_string());
    }
    if args.check {
        c.arg("--check");
    }
    if args.faults {
        c.arg("--faults");
    }
    c.args(&args.rest).env("BEACON_DEMO_T0_MS", t0.to_string());
    eprintln!("$ {}", demo.display());
    // Become the demo (exec): Ctrl-C then reaches one process, which stops everything it
    // started in order and prints the summary.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = c.exec();
        crate::bail!("cannot start {}: {e}", demo.display());
    }
    #[cfg(not(unix))]
    {
        let status = c.status()?;
        if !status.success() {
            crate::bail!("the demo failed ({status})");
        }
        Ok(())
    }
}

/// The gateway's RTT build, then the end-to-end and fault tests (services/demo/tests/e2e.rs):
/// real service, gateway and QEMU firmware on 127.0.0.1. They are `#[ignore]`d for a plain `cargo test` (they need QEMU
/// and the firmware build); this builds what they need and runs them with `--ignored`.
pub fn e2e() -> Result {
    let root = project_root();
    // The gateway's RTT path (probe-rs) is behind a cargo feature the workspace build does not
    // turn on: lint it here so it keeps compiling. About 4-5 min cold on 2 busy cores.
    cmd("cargo")
        .args([
            "clippy",
            "-p",
            "beacon-gateway",
            "--features",
            "rtt",
            "--all-targets",
        ])
        .args(["--", "-D", "warnings"])
        .dir(&root)
        .run()?;
    build_firmware(BoardName::Qemu.board())?;
    cmd("cargo")
        .args(["build", "-p", "beacon-service", "-p", "beacon-gateway"])
        .dir(&root)
        .run()?;
    cmd("cargo")
        .args([
            "test",
            "-p",
            "beacon-demo",
            "--test",
            "e2e",
            "--",
            "--ignored",
        ])
        .args(["--test-threads", "1"])
        .dir(&root)
        .run()
}

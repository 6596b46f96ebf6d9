// template:service:file
//! `cargo xtask bench-service` and `cargo xtask bench-fleet`: build, then hand over.
//!
//! The benchmarks themselves live with what they measure, in `services/bench` (`beacon-bench`:
//! the load generator, the fleet ladder, the throwaway PostgreSQL cluster), where they use the
//! services' own crates instead of std re-implementations. xtask's part is the build: the
//! service (with `console`, for the console on/off comparison), the gateway, the simulator and
//! the benchmark in release, then `beacon-bench <which> --bin-dir target/release ...` with the
//! rest of the command line passed through (`cargo xtask bench-service --help` lists it).

use crate::cmd::{Result, cmd};

/// The command line after `bench-service` / `bench-fleet`, passed through untouched.
#[derive(Debug)]
pub struct Args {
    pub rest: Vec<String>,
}

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> Self {
        Args {
            rest: a.pass_through(),
        }
    }
}

/// `cargo xtask help bench-service` (`cargo xtask bench-service --help` is beacon-bench's own).
pub const HELP_SERVICE: &str = "\
Load-test the telemetry service on loopback: durable ingest readings/s and p50/p99, console off vs
on, peak RSS under connection churn; writes target/bench-service.json. `--db postgres [--replicas
2]`: SQLite and PostgreSQL side by side, each beside its limit (a bare client); writes
target/bench-service-db.json. Builds the release binaries, then runs `beacon-bench service`
(services/bench) with the rest of the command line.

Usage: cargo xtask bench-service [BEACON-BENCH OPTIONS]   (`cargo xtask bench-service --help` lists them)
";

/// `cargo xtask help bench-fleet`.
pub const HELP_FLEET: &str = "\
A simulated fleet (beacon-sim) through one gateway into one service: readings/s,
sample-to-queryable p50/p99, CPU per reading, RSS per process and per device, lost, for
100/1,000/10,000 devices at 1 Hz, then the ceiling; writes target/bench-fleet.json. Builds the
release binaries, then runs `beacon-bench fleet` (services/bench) with the rest of the command line.

Usage: cargo xtask bench-fleet [BEACON-BENCH OPTIONS]   (`cargo xtask bench-fleet --help` lists them)
";

/// Builds the binaries a benchmark runs and runs `beacon-bench <which>`.
pub fn run(which: &str, args: Args) -> Result {
    let root = crate::project::root();
    let target = crate::project::target_dir(&root);
    cmd("cargo")
        .args([
            "build",
            "--release",
            "--bins",
            "--features",
            "beacon-service/console",
        ])
        .args([
            "-p",
            "beacon-service",
            "-p",
            "beacon-gateway",
            "-p",
            "beacon-sim",
        ])
        .args(["-p", "beacon-bench"])
        .dir(&root)
        .run()?;
    let release = target.join("release");
    cmd(release.join("beacon-bench"))
        .arg(which)
        .arg("--bin-dir")
        .arg(&release)
        .arg("--out-dir")
        .arg(&target)
        .args(&args.rest)
        .dir(&root)
        .run()
}

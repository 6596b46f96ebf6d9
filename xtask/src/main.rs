//! Project automation, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`). One module (or folder) per command; the subcommands are the one
//! enum below.
//!
//! Leaf modules, which any command may import and which import nothing of xtask but other
//! leaves: [`cmd`] (the one command runner and the error type), [`fs`] (file errors that name
//! the path), [`project`] (the root, the pins, the config paths), [`tools`] (installed
//! versions, rustup's lists), [`toml_lite`], [`json`], [`elf`], [`sha256`]. Commands import
//! leaves and, where one command composes another, only downwards (bench-build -> setup,
//! doctor -> setup, test -> demo); no two modules import each other
//! (`xtask/tests/layout.rs` checks it).
//!
//! Exit codes: 0 success; 1 a step failed (the message says which and what to do next);
//! 2 bad command-line usage.

// template:service:begin
mod bench;
// template:service:end
mod bench_build;
mod cmd;
// template:service:begin
mod contract;
// template:service:end
// template:service:begin
// template:firmware:begin
mod demo;
// template:firmware:end
// template:service:end
mod devdeps;
mod doctor;
mod elf;
mod fast;
mod fs;
// template:firmware:begin
mod firmware;
// template:firmware:end
mod json;
mod new;
mod project;
mod safety;
mod setup;
mod sha256;
mod test;
use xtask_leaf::toml_lite;
mod tools;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation: run `cargo xtask help <command>`"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install and configure every tool the project uses (toolchains/manifest.toml): rustup
    /// components, the Cranelift nightly, mold, QEMU, probe-rs, tokio-console, just; write
    /// .cargo/local.toml and .cargo/fast.toml for this machine.
    Setup(setup::Args),
    /// Check this machine: tools vs pins, and proof from built binaries that the chosen
    /// linker, Cranelift (host fast loop) and --cfg tokio_unstable are really in effect.
    Doctor(doctor::Args),
    /// Measure stock stable vs the fast loop (clean and incremental builds) and mold vs LLD;
    /// writes target/bench-build.json.
    BenchBuild(bench_build::Args),
    // template:service:begin
    /// Load-test the telemetry service on loopback: durable ingest readings/s and p50/p99,
    /// console off vs on, peak RSS under connection churn; writes target/bench-service.json.
    /// `--db postgres [--replicas 2]`: SQLite and PostgreSQL side by side, each beside its
    /// limit (a bare client); writes target/bench-service-db.json. Runs `beacon-bench service`
    /// (services/bench): `cargo xtask bench-service --help` lists its options.
    #[command(disable_help_flag = true)]
    BenchService(bench::Args),
    /// The contract step of `test` alone: a bounded schemathesis run (installed into a venv
    /// under target/) against the real service's /openapi.json on 127.0.0.1, all checks.
    Contract,
    /// A simulated fleet (beacon-sim) through one gateway into one service: readings/s,
    /// sample-to-queryable p50/p99, CPU per reading, RSS per process and per device, lost,
    /// for 100/1,000/10,000 devices at 1 Hz, then the ceiling; writes target/bench-fleet.json.
    /// Runs `beacon-bench fleet` (services/bench): `--help` lists its options.
    #[command(disable_help_flag = true)]
    BenchFleet(bench::Args),
    // template:service:end
    /// Run a cargo command in the Cranelift fast loop: `cargo xtask fast build -p beacon-service`.
    Fast(fast::Args),
    /// Run every test in the repository: the host workspace, the protocol crate built for the
    /// firmware target, the firmware's host tests and QEMU boot, and the end-to-end tests.
    Test(test::Args),
    // template:service:begin
    // template:firmware:begin
    /// The whole stack end to end: builds what is stale, starts the service (tokio-console on),
    /// the gateway and 3 QEMU devices, shows them live; Ctrl-C stops all and prints a summary.
    /// `--duration N --check` for CI; `--board nrf52840` for a real board through probe-rs.
    Demo(demo::Args),
    // template:firmware:end
    // template:service:end
    /// The safety evidence pack for the protocol crate: strict lints, Miri, coverage,
    /// mutation testing, Kani harnesses, requirement traceability; writes
    /// target/safety/report.md and report.json. `--fast` is what CI runs on every change.
    /// Runs `beacon-safety` (protocol/safety): `cargo xtask safety --help` lists its options.
    #[command(disable_help_flag = true)]
    Safety(safety::Args),
    /// Start a new project from this template: copy, rename, drop opted-out parts, fresh git.
    New(new::Args),
    // template:firmware:begin
    /// Build the real board's firmware and run it through probe-rs (flash, reset, defmt logs).
    /// Needs the board on USB; without a probe, probe-rs says so.
    Flash(firmware::FlashArgs),
    /// Flash and static RAM of each board's release firmware, checked against the budget.
    Size,
    // template:firmware:end
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => {
            // Composed here, not inside setup: bench-build uses setup's config writer, so
            // setup calling bench-build would make the two modules import each other.
            if args.bench
                && !args.dry_run
                && !args.undo
                && let Err(e) = bench_build::run(bench_build::Args::default())
            {
                eprintln!("warning: bench-build failed ({e}); choosing the linker without it");
            }
            setup::run(args)
        }
        Command::Doctor(args) => doctor::run(args),
        Command::BenchBuild(args) => bench_build::run(args),
        // template:service:begin
        Command::BenchService(args) => bench::run("service", args),
        Command::Contract => contract::run(),
        Command::BenchFleet(args) => bench::run("fleet", args),
        // template:service:end
        Command::Fast(args) => fast::run(args),
        Command::Test(args) => test::run(args),
        // template:service:begin
        // template:firmware:begin
        Command::Demo(args) => demo::run(args),
        // template:firmware:end
        // template:service:end
        Command::New(args) => new::run(args),
        // Its own exit status, passed through (2 for a usage error, 1 for a failed check).
        Command::Safety(args) => return safety::run(args),
        // template:firmware:begin
        Command::Flash(args) => firmware::flash(args),
        Command::Size => firmware::size(),
        // template:firmware:end
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

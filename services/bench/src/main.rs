//! The services' benchmarks, on loopback. Run through `cargo xtask bench-service` and
//! `cargo xtask bench-fleet`, which build the binaries in release and pass `--bin-dir`.
//!
//! Layout: [`service`] (durable ingest, console on/off, churn; `--db postgres` the backends
//! side by side), [`fleet`] (the simulated-fleet ladder and its ceiling), [`proc`] (the
//! processes under test: start, /proc figures, stop), [`pg`] (a throwaway PostgreSQL
//! cluster); `src/bin/beacon-load.rs` is the load generator. Benchmarks print figures and
//! write JSON; they never assert on time (machines are noisy: compare ratios from one run).

mod fleet;
mod pg;
mod proc;
mod service;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// `bail!("...")`: return an error built with `format!`.
macro_rules! bail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}
pub(crate) use bail;

#[derive(Debug, Parser)]
#[command(
    name = "beacon-bench",
    about = "The services' benchmarks (run through `cargo xtask bench-service` / `bench-fleet`)"
)]
struct Cli {
    /// Where the release binaries are (beacon-service, beacon-load, beacon-gateway, beacon-sim).
    #[arg(long, global = true, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the JSON reports and the scratch files go.
    #[arg(long, global = true, default_value = "target")]
    out_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Durable ingest readings/s and p50/p99, console off vs on, peak RSS under connection
    /// churn; writes bench-service.json. `--db postgres [--replicas 2]`: SQLite and
    /// PostgreSQL side by side, each beside its limit; writes bench-service-db.json.
    Service(service::Args),
    /// A simulated fleet (beacon-sim) through one gateway into one service: the ladder
    /// 100/1,000/10,000 devices at 1 Hz, then the ceiling; writes bench-fleet.json.
    Fleet(fleet::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Service(args) => service::run(&args, &cli.bin_dir, &cli.out_dir),
        Command::Fleet(args) => fleet::run(&args, &cli.bin_dir, &cli.out_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A number from a tool's one-line JSON report (NaN when absent or not JSON).
fn field(summary: &str, key: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(summary.trim())
        .ok()
        .and_then(|j| j.get(key).and_then(serde_json::Value::as_f64))
        .unwrap_or(f64::NAN)
}

/// Writes a report as pretty JSON and says where.
fn write_report(path: &std::path::Path, report: &serde_json::Value) -> Result {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("written: {}", path.display());
    Ok(())
}

//! The `beacon-gateway` binary: configuration, logging, the runtime and the shutdown signal;
//! everything else is the library (`beacon_gateway::run`).
//!
//! Exit codes: 0 clean stop; 1 a link failed for good or readings were dropped; 2 bad usage.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = beacon_gateway::Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log));
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: bad log filter {:?}: {e}; see --log", config.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    beacon_gateway::raise_open_file_limit(config.expected_devices);
    let run = beacon_os::block_on(
        Some(2),
        beacon_gateway::run(config, beacon_os::shutdown_signal()),
    );
    let result = match run {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(stats) if stats.dropped == 0 && stats.rejected == 0 => ExitCode::SUCCESS,
        Ok(stats) => {
            eprintln!(
                "error: {} readings dropped and {} rejected; see the log above",
                stats.dropped, stats.rejected
            );
            ExitCode::FAILURE
        }
        Err((e, _)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

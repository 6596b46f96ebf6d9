//! The `beacon-sim` binary: see the library docs (`beacon_sim`).
//!
//! Exit codes: 0 every frame built was stored (or explained by a device-side drop); 1 frames
//! were lost or the run failed; 2 bad usage.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = beacon_sim::Config::parse();
    match beacon_sim::fdlimit::raise() {
        Ok(r) => {
            let needed = u64::from(config.devices) + 256;
            if r.now.is_some_and(|n| n < needed) {
                eprintln!(
                    "warning: the open-file limit {} is too low for {} devices (one connection \
                     each); raise the hard limit (ulimit -Hn) to at least {needed}",
                    beacon_sim::fdlimit::show(r.now),
                    config.devices
                );
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    let json = config.json;
    match beacon_os::block_on(None, beacon_sim::run(config)).and_then(|r| r) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report)
                        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
                );
            }
            eprintln!("beacon-sim: {}", report.line());
            if report.lost == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: {} frames were built, not stored, and not dropped by a device",
                    report.lost
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

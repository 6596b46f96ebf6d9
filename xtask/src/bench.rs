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
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

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

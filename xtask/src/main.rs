//! Project automation, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`). One module per command; shared helpers in [`cmd`].
//!
//! Exit codes: 0 success; 1 a step failed (the message says which and what to do next);
//! 2 bad command-line usage.

mod cmd;
mod test;

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
    /// Run every test in the repository: the host workspace, the protocol crate built for the
    /// firmware target, the firmware's host tests and QEMU boot, and the end-to-end tests.
    Test(test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

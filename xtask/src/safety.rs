//! `cargo xtask safety`: hand over to `beacon-safety`.
//!
//! The safety evidence pack (strict lints, Miri, coverage, mutation testing, Kani harnesses,
//! traceability) is a certification tool for the protocol crate, so it lives with what it
//! serves, in `protocol/safety` (`beacon-safety`), not in xtask. xtask's part is the command
//! line: `cargo run -q -p beacon-safety -- <the rest>` from the project root, with the rest
//! passed through untouched (`cargo xtask safety --help` lists it) and its exit status kept.

use std::process::{Command, ExitCode};

/// The command line after `safety`, passed through untouched.
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

/// `cargo xtask help safety` (`cargo xtask safety --help` is beacon-safety's own).
pub const HELP: &str = "\
The safety evidence pack for the protocol crate: strict lints, Miri, coverage, mutation testing,
Kani harnesses, requirement traceability; writes target/safety/report.md and report.json.
`--fast` is what CI runs on every change. Runs `beacon-safety` (protocol/safety) with the rest of
the command line.

Usage: cargo xtask safety [BEACON-SAFETY OPTIONS]   (`cargo xtask safety --help` lists them)
";

/// Runs `beacon-safety` with the rest of the command line; its exit status is ours.
pub fn run(args: Args) -> ExitCode {
    let root = crate::project::root();
    let mut cmd = Command::new("cargo");
    cmd.args(["run", "-q", "-p", "beacon-safety", "--"])
        .args(&args.rest)
        .current_dir(&root);
    eprintln!(
        "$ cargo run -q -p beacon-safety -- {} (in {})",
        args.rest.join(" "),
        root.display()
    );
    match cmd.status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            // Killed by a signal: a failure, said as such.
            None => {
                eprintln!("error: beacon-safety was stopped by a signal ({status})");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!(
                "error: could not start `cargo run -p beacon-safety` in {}: {e}; is cargo on PATH?",
                root.display()
            );
            ExitCode::FAILURE
        }
    }
}

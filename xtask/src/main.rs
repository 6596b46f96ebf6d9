//! Project automation, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`). One module (or folder) per command; the subcommands are the one
//! enum below.
//!
//! Leaf modules, which any command may import and which import nothing of xtask but other
//! leaves: [`args`] (the command line), [`cmd`] (the one command runner and the error type), [`fs`] (file errors that name
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
mod args;
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

use args::Usage;
use std::process::ExitCode;

/// `cargo xtask`, `cargo xtask help`, `cargo xtask --help`: this, then a line per [`COMMANDS`].
const HELP: &str = "\
Project automation: run `cargo xtask help <command>` (or `<command> --help`)

Usage: cargo xtask <COMMAND>

Commands:
";

/// A command's name, its line in [`HELP`], its own help, and whether it hands its whole
/// command line (`--help` included) to the program it runs.
struct Entry {
    name: &'static str,
    summary: &'static str,
    help: &'static str,
    passes_through: bool,
}

const fn own(name: &'static str, summary: &'static str, help: &'static str) -> Entry {
    Entry {
        name,
        summary,
        help,
        passes_through: false,
    }
}

const fn passing(name: &'static str, summary: &'static str, help: &'static str) -> Entry {
    Entry {
        name,
        summary,
        help,
        passes_through: true,
    }
}

/// Every command, in [`HELP`]'s order; `cargo xtask new` drops the lines of the parts it drops.
const COMMANDS: &[Entry] = &[
    own(
        "setup",
        "Install and configure every tool the project uses (toolchains/manifest.toml)",
        setup::HELP,
    ),
    own(
        "doctor",
        "Check this machine: tools vs pins, and proof from built binaries of each lever",
        doctor::HELP,
    ),
    own(
        "bench-build",
        "Measure stock stable vs the fast loop (L1-L4) and the linkers; writes JSON",
        bench_build::HELP,
    ),
    passing(
        "fast",
        "Run a cargo command in the Cranelift fast loop",
        fast::HELP,
    ),
    own(
        "test",
        "Run every test in the repository (host, firmware target, QEMU, end to end)",
        test::HELP,
    ),
    passing(
        "safety",
        "The protocol crate's safety evidence pack (`--fast` is what CI runs)",
        safety::HELP,
    ),
    own("new", "Start a new project from this template", new::HELP),
    // template:service:begin
    passing(
        "bench-service",
        "Load-test the telemetry service on loopback (`--db postgres --replicas 2`)",
        bench::HELP_SERVICE,
    ),
    passing(
        "bench-fleet",
        "A simulated fleet through one gateway into one service, 100 to 10,000 devices",
        bench::HELP_FLEET,
    ),
    own(
        "contract",
        "The contract step of `test` alone: schemathesis against /openapi.json",
        contract::HELP,
    ),
    // template:service:end
    // template:firmware:begin
    own(
        "flash",
        "Build the real board's firmware and run it through probe-rs",
        firmware::FLASH_HELP,
    ),
    own(
        "size",
        "Flash and static RAM of each board's release firmware, against the budget",
        firmware::SIZE_HELP,
    ),
    // template:firmware:end
    // template:service:begin
    // template:firmware:begin
    own(
        "demo",
        "The whole stack end to end: service, gateway, 3 QEMU devices, live",
        demo::HELP,
    ),
    // template:firmware:end
    // template:service:end
];

/// The commands, one per module (or folder); `main` runs the one named.
#[derive(Debug)]
enum Command {
    Setup(setup::Args),
    Doctor(doctor::Args),
    BenchBuild(bench_build::Args),
    // template:service:begin
    BenchService(bench::Args),
    Contract,
    BenchFleet(bench::Args),
    // template:service:end
    Fast(fast::Args),
    Test(test::Args),
    // template:service:begin
    // template:firmware:begin
    Demo(demo::Args),
    // template:firmware:end
    // template:service:end
    Safety(safety::Args),
    New(new::Args),
    // template:firmware:begin
    Flash(firmware::FlashArgs),
    Size,
    // template:firmware:end
}

/// The top-level help: [`HELP`] and a line per command.
fn help() -> String {
    let mut h = HELP.to_owned();
    for c in COMMANDS {
        h.push_str(&format!("  {:<14} {}\n", c.name, c.summary));
    }
    h.push_str("  help           Print this message or the help of the given command\n");
    h
}

fn entry(name: &str) -> Result<&'static Entry, Usage> {
    COMMANDS.iter().find(|c| c.name == name).ok_or_else(|| {
        Usage(format!(
            "unknown command `{name}`; `cargo xtask help` lists them"
        ))
    })
}

/// What the command line asks for.
enum Wanted {
    Run(Command),
    Help(String),
}

fn parse(mut argv: Vec<String>) -> Result<Wanted, Usage> {
    if argv.is_empty() {
        return Err(Usage(format!("no command given\n\n{}", help())));
    }
    let name = argv.remove(0);
    if name == "help" || name == "-h" || name == "--help" {
        return match argv.first() {
            None => Ok(Wanted::Help(help())),
            Some(c) => Ok(Wanted::Help(entry(c)?.help.to_owned())),
        };
    }
    let e = entry(&name)?;
    // A pass-through command hands `--help` to the program it runs, except `fast --help`
    // with nothing before it: cargo's own help would say nothing of the fast loop.
    let own_help = !e.passes_through
        || (name == "fast" && matches!(argv.first().map(String::as_str), Some("-h" | "--help")));
    let mut a = args::Args::new(&name, argv);
    if own_help && a.wants_help() {
        return Ok(Wanted::Help(e.help.to_owned()));
    }
    let command = match name.as_str() {
        "setup" => Command::Setup(setup::Args::parse(&mut a)?),
        "doctor" => Command::Doctor(doctor::Args::parse(&mut a)?),
        "bench-build" => Command::BenchBuild(bench_build::Args::parse(&mut a)?),
        // template:service:begin
        "bench-service" => Command::BenchService(bench::Args::parse(&mut a)),
        "contract" => Command::Contract,
        "bench-fleet" => Command::BenchFleet(bench::Args::parse(&mut a)),
        // template:service:end
        "fast" => Command::Fast(fast::Args::parse(&mut a)?),
        "test" => Command::Test(test::Args::parse(&mut a)?),
        // template:service:begin
        // template:firmware:begin
        "demo" => Command::Demo(demo::Args::parse(&mut a)?),
        // template:firmware:end
        // template:service:end
        "safety" => Command::Safety(safety::Args::parse(&mut a)),
        "new" => Command::New(new::Args::parse(&mut a)?),
        // template:firmware:begin
        "flash" => Command::Flash(firmware::FlashArgs::parse(&mut a)?),
        "size" => Command::Size,
        // template:firmware:end
        _ => unreachable!("`{name}` is in COMMANDS but not here"),
    };
    a.finish()?;
    Ok(Wanted::Run(command))
}

fn main() -> ExitCode {
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let wanted = match argv {
        Ok(argv) => parse(argv),
        Err(a) => Err(Usage(format!("an argument is not UTF-8: {a:?}"))),
    };
    let command = match wanted {
        Ok(Wanted::Run(c)) => c,
        Ok(Wanted::Help(h)) => {
            print!("{h}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
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

#[cfg(test)]
mod tests {
    use super::{COMMANDS, Command, Wanted, help, parse};
    use crate::{args, project};

    fn p(line: &str) -> Result<Wanted, args::Usage> {
        parse(line.split_whitespace().map(str::to_owned).collect())
    }

    #[test]
    fn every_command_in_the_help_has_its_own_help_and_parses() {
        let all = help();
        let listed: Vec<&str> = all
            .lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(listed.len() >= 8, "{listed:?}");
        for c in listed.iter().filter(|c| **c != "help") {
            assert!(
                COMMANDS.iter().any(|e| e.name == *c && !e.help.is_empty()),
                "`cargo xtask help {c}` has no text"
            );
            // Every listed command reaches the dispatch (an error for missing flags is fine;
            // a name left out of the dispatch panics).
            let _ = p(c);
            assert!(
                matches!(p(&format!("help {c}")), Ok(Wanted::Help(_))),
                "{c}"
            );
        }
        assert!(matches!(p("test --help"), Ok(Wanted::Help(h)) if h.contains("--host-only")));
        assert!(p("").is_err() && p("nosuch").is_err() && p("help nosuch").is_err());
    }

    // template:service:begin
    // template:firmware:begin
    #[test]
    fn demo_flags_and_the_part_after_double_dash_reach_its_args() {
        let Ok(Wanted::Run(Command::Demo(d))) =
            p("demo --duration 20 --check -y --db postgres --replicas 2 -- --cut-secs 3")
        else {
            panic!("not a demo");
        };
        assert_eq!(d.duration, Some(20));
        assert!(d.check && d.yes && !d.faults);
        assert_eq!(
            (d.db, d.replicas, d.devices),
            (crate::demo::Db::Postgres, 2, 3)
        );
        assert_eq!(d.rest, ["--cut-secs", "3"]);
    }
    // template:firmware:end
    // template:service:end

    #[test]
    fn a_pass_through_command_keeps_help_and_double_dash_for_the_program_it_runs() {
        assert!(matches!(p("fast --help"), Ok(Wanted::Help(h)) if h.contains("Cranelift")));
        let Ok(Wanted::Run(Command::Fast(f))) = p("fast run -p svc -- --help") else {
            panic!("not fast");
        };
        assert_eq!(f.cargo_args, ["run", "-p", "svc", "--", "--help"]);
    }

    /// Every `cargo xtask ...` line in the README's and docs/'s ```sh blocks is one the parser
    /// accepts: a renamed or removed flag fails here, not in a user's terminal.
    #[test]
    fn every_xtask_command_in_the_docs_parses() {
        let root = project::root();
        let mut pages = vec![root.join("README.md")];
        if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
            pages.extend(dir.flatten().map(|e| e.path()));
        }
        let mut seen = 0;
        for page in pages
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
        {
            let text = std::fs::read_to_string(page).unwrap();
            let mut in_sh = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with("```") {
                    in_sh = !in_sh && (line == "```sh" || line == "```console");
                    continue;
                }
                if !in_sh {
                    continue;
                }
                let line = line.split(" #").next().unwrap_or_default();
                for part in line.split("&&").map(str::trim) {
                    let Some(rest) = part.strip_prefix("cargo xtask ") else {
                        continue;
                    };
                    if rest.contains('<') {
                        continue; // a placeholder, not a command
                    }
                    seen += 1;
                    if let Err(e) = p(rest) {
                        panic!("{}: `{part}` does not parse: {e}", page.display());
                    }
                }
            }
        }
        assert!(seen >= 10, "only {seen} xtask commands found in the docs");
    }
}

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

/// `cargo xtask`, `cargo xtask help`, `cargo xtask --help`: this, the commands' lines, and
/// [`HELP_END`].
const HELP: &str = "\
Project automation: run `cargo xtask help <command>` (or `<command> --help`)

Usage: cargo xtask <COMMAND>

Commands:
";
const HELP_CORE: &str = concat!(
    "  setup          Install and configure every tool the project uses (toolchains/manifest.toml)\n",
    "  doctor         Check this machine: tools vs pins, and proof from built binaries of each lever\n",
    "  bench-build    Measure stock stable vs the fast loop (L1-L4) and the linkers; writes JSON\n",
    "  fast           Run a cargo command in the Cranelift fast loop\n",
    "  test           Run every test in the repository (host, firmware target, QEMU, end to end)\n",
    "  safety         The protocol crate's safety evidence pack (`--fast` is what CI runs)\n",
    "  new            Start a new project from this template\n",
);
// The lines that `cargo xtask new` drops with their parts.
// template:service:begin
const HELP_SERVICE: &str = concat!(
    "  bench-service  Load-test the telemetry service on loopback (`--db postgres --replicas 2`)\n",
    "  bench-fleet    A simulated fleet through one gateway into one service, 100 to 10,000 devices\n",
    "  contract       The contract step of `test` alone: schemathesis against /openapi.json\n",
);
// template:service:end
// template:firmware:begin
const HELP_FIRMWARE: &str = concat!(
    "  flash          Build the real board's firmware and run it through probe-rs\n",
    "  size           Flash and static RAM of each board's release firmware, against the budget\n",
);
// template:firmware:end
// template:service:begin
// template:firmware:begin
const HELP_DEMO: &str =
    "  demo           The whole stack end to end: service, gateway, 3 QEMU devices, live\n";
// template:firmware:end
// template:service:end
const HELP_END: &str = "  help           Print this message or the help of the given command\n";

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

/// The top-level help: [`HELP`] and the lines of the parts this project still has.
fn help() -> String {
    let mut h = format!("{HELP}{HELP_CORE}");
    // template:service:begin
    h.push_str(HELP_SERVICE);
    // template:service:end
    // template:firmware:begin
    h.push_str(HELP_FIRMWARE);
    // template:firmware:end
    // template:service:begin
    // template:firmware:begin
    h.push_str(HELP_DEMO);
    // template:firmware:end
    // template:service:end
    h.push_str(HELP_END);
    h
}

/// A command's help text (None: no such command).
fn help_of(name: &str) -> Option<&'static str> {
    Some(match name {
        "setup" => setup::HELP,
        "doctor" => doctor::HELP,
        "bench-build" => bench_build::HELP,
        // template:service:begin
        "bench-service" => bench::HELP_SERVICE,
        "bench-fleet" => bench::HELP_FLEET,
        "contract" => contract::HELP,
        // template:service:end
        "fast" => fast::HELP,
        "test" => test::HELP,
        // template:service:begin
        // template:firmware:begin
        "demo" => demo::HELP,
        // template:firmware:end
        // template:service:end
        "safety" => safety::HELP,
        "new" => new::HELP,
        // template:firmware:begin
        "flash" => firmware::FLASH_HELP,
        "size" => firmware::SIZE_HELP,
        // template:firmware:end
        _ => return None,
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
    let unknown = || {
        Usage(format!(
            "unknown command `{name}`; `cargo xtask help` lists them"
        ))
    };
    if name == "help" || name == "-h" || name == "--help" {
        return match argv.first() {
            None => Ok(Wanted::Help(help())),
            Some(c) => help_of(c)
                .map(|h| Wanted::Help(h.to_owned()))
                .ok_or_else(|| {
                    Usage(format!(
                        "unknown command `{c}`; `cargo xtask help` lists them"
                    ))
                }),
        };
    }
    // Pass-through commands hand `--help` to the program they run; `fast --help` (nothing
    // before it) is xtask's own, `fast test -- --help` is cargo's.
    let passes_through = match name.as_str() {
        "bench-service" | "bench-fleet" | "safety" => true,
        "fast" => !matches!(argv.first().map(String::as_str), Some("-h" | "--help")),
        _ => false,
    };
    let mut a = args::Args::new(&name, argv);
    if !passes_through && a.wants_help() {
        return help_of(&name)
            .map(|h| Wanted::Help(h.to_owned()))
            .ok_or_else(unknown);
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
        _ => return Err(unknown()),
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
    use super::{Command, Wanted, help, help_of, parse};
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
            assert!(help_of(c).is_some(), "`cargo xtask help {c}` has no text");
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

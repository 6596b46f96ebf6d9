//! `cargo xtask fast <cargo command>`: the Cranelift dev loop for the host workspace.
//!
//! Runs `cargo +<pinned nightly> --config .cargo/fast.toml <command> --profile fast ...` (via
//! `rustup run`, which works from inside `cargo xtask` too). Stable cargo never reads
//! `.cargo/fast.toml`, so plain `cargo build` is untouched; builds land in `target/fast/`, beside
//! stable's `target/debug/`, so switching between the two rebuilds nothing.

use std::path::Path;

use crate::cmd::{Result, cmd};
use crate::toml_lite::Doc;

#[derive(Debug)]
pub struct Args {
    /// The cargo command and its arguments, e.g. `build -p beacon-service` or `run -p
    /// beacon-service -- --help`.
    pub cargo_args: Vec<String>,
}

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> Result<Self, crate::args::Usage> {
        let cargo_args = a.pass_through();
        if cargo_args.is_empty() {
            return Err(crate::args::Usage(
                "give a cargo command: `cargo xtask fast build -p beacon-service`".into(),
            ));
        }
        Ok(Args { cargo_args })
    }
}

/// `cargo xtask help fast`.
pub const HELP: &str = "\
Run a cargo command in the Cranelift fast loop (the pinned nightly, .cargo/fast.toml, the `fast`
profile): `cargo xtask fast build -p beacon-service`. Everything after `fast` goes to cargo.

Usage: cargo xtask fast <CARGO ARGS>...
";

/// Cargo commands that take `--profile`.
const PROFILED: &[&str] = &[
    "build", "b", "check", "c", "run", "r", "test", "t", "bench", "clippy", "doc", "rustc",
];

/// The full command line: `rustup run <nightly> cargo --config <fast.toml> <cmd> [--profile fast] ...`.
pub fn argv(nightly: &str, fast_toml: &Path, cargo_args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "rustup".into(),
        "run".into(),
        nightly.into(),
        "cargo".into(),
    ];
    argv.push("--config".into());
    argv.push(fast_toml.display().to_string());
    if let Some((sub, rest)) = cargo_args.split_first() {
        argv.push(sub.clone());
        if PROFILED.contains(&sub.as_str())
            && !rest.iter().any(|a| a == "--profile" || a == "--release")
        {
            argv.push("--profile".into());
            argv.push("fast".into());
        }
        argv.extend(rest.iter().cloned());
    }
    argv
}

pub fn run(args: Args) -> Result {
    let root = crate::project::root();
    let fast = crate::project::fast_toml(&root);
    if !fast.is_file() {
        crate::bail!(
            "no .cargo/fast.toml: run `cargo xtask setup` first (it installs the pinned nightly \
             with Cranelift and writes that file)"
        );
    }
    let manifest = Doc::read(&root.join("toolchains/manifest.toml"))?;
    let nightly = format!("nightly-{}", manifest.req("nightly.date")?);
    let argv = argv(&nightly, &fast, &args.cargo_args);
    cmd(&argv[0]).args(&argv[1..]).dir(&root).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_the_profile_after_the_subcommand() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = argv(
            "nightly-x",
            Path::new("/p/.cargo/fast.toml"),
            &a(&["run", "-p", "svc", "--", "--help"]),
        );
        assert_eq!(
            got.join(" "),
            "rustup run nightly-x cargo --config /p/.cargo/fast.toml run --profile fast -p svc -- --help"
        );
        let got = argv("n", Path::new("f"), &a(&["tree"]));
        assert_eq!(got.join(" "), "rustup run n cargo --config f tree");
    }
}

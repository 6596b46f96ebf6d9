//! `cargo xtask safety`: the safety evidence pack for the code that parses untrusted bytes
//! (the protocol crate) and, where practical, the firmware's host-testable logic.
//!
//! Sections, each one independent: a tool that is missing makes its section say "not run" with
//! the install command, never fail silently or pretend:
//! 1. lint profile: clippy with the panicking-construct denials (table in [`LINTS`]);
//! 2. Miri over the protocol crate's tests (pinned nightly, `miri` component);
//! 3. coverage (cargo-llvm-cov): line and region figures on the pinned stable, branch figures
//!    on the pinned nightly; uncovered lines listed; gate: >= 95 % of the decoder's lines;
//! 4. mutation testing of the decoder (cargo-mutants; full run only);
//! 5. Kani proof harnesses (protocol/src/proofs.rs): run when `cargo kani` exists;
//! 6. traceability: each requirement id in protocol/SPEC.md, the tests whose doc comment says
//!    `Checks: R-...`, and their results in this run.
//!
//! Writes `<target dir>/safety/report.md` and `report.json`. Exit status: 0 when every check
//! that ran passed (sections not run do not fail the command; the report says they did not
//! run), 1 otherwise.

use crate::bail;
use crate::cmd::{Result, on_path, project_root};
use crate::json::Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Versions `--install` installs (checked to build with the pinned stable on this kind of
/// machine). TODO(1): bump deliberately.
const LLVM_COV_VERSION: &str = "0.9.1";
const MUTANTS_VERSION: &str = "27.1.0";

/// The decoder: the files whose line coverage is gated and whose mutants are tested.
const DECODER_FILES: [&str; 5] = ["stream.rs", "wire.rs", "frame.rs", "cobs.rs", "crc.rs"];

/// Line-coverage gate for the decoder files, in percent.
const COVERAGE_GATE: f64 = 95.0;

/// Proptest cases per property under Miri (interpreted: about 1000x slower than native).
const MIRI_PROPTEST_CASES: &str = "4";

/// Proptest cases per property while testing mutants (the default 2000 would make each mutant
/// cost minutes; the deterministic vector tests run in full either way).
const MUTANTS_PROPTEST_CASES: &str = "256";

/// The strict lint profile: lint, level, and the guideline it serves. Guideline ids are from
/// the Safety-Critical Rust Coding Guidelines (rustfoundation/safety-critical-rust-coding-
/// guidelines, draft status at the time of writing), checked against its source; "related to"
/// marks a link that is not a one-to-one mapping.
pub const LINTS: &[(&str, &str, &str)] = &[
    (
        "unsafe_code",
        "forbid",
        "No `unsafe` at all, so no undefined behaviour can come from this crate's own code. \
         Related to SCRC gui_692a3c0abe93 (defensive error handling SHALL block invalid states \
         from reaching unsafe operations): there are none to reach.",
    ),
    (
        "clippy::arithmetic_side_effects",
        "deny",
        "SCRC gui_dCquvqE1csI3 \"Ensure that integer operations do not result in arithmetic \
         overflow\" (required); also covers SCRC gui_kMbiWbn8Z6g5 \"Do not divide by 0\" and is \
         related to gui_RHvQj8BHlz9b (out-of-range shifts). Forces checked/saturating/wrapping \
         operations that state the intended behaviour.",
    ),
    (
        "clippy::as_conversions",
        "deny",
        "SCRC gui_ADHABsmK9FXz \"The 'as' operator should not be used with numeric operands\" \
         (advisory): `From`/`TryFrom` instead, so a lossy conversion is visible and handled.",
    ),
    (
        "clippy::indexing_slicing",
        "deny",
        "R-SAFE-1 (no crash on any input): `a[i]` and `a[i..j]` panic when out of bounds; \
         `get`/`split_at_checked` return an Option that must be handled. No dedicated SCRC \
         guideline found; related to the SCRC rationale that a panic is an abnormal program \
         state to be avoided (gui_kMbiWbn8Z6g5).",
    ),
    (
        "clippy::unwrap_used",
        "deny",
        "R-SAFE-1: `unwrap` turns a recoverable error into a panic. Related to SCRC \
         gui_kMbiWbn8Z6g5's rationale (panics must be avoided); no dedicated guideline found.",
    ),
    (
        "clippy::expect_used",
        "deny",
        "R-SAFE-1: as `unwrap_used`, with a message.",
    ),
    (
        "clippy::panic",
        "deny",
        "R-SAFE-1: no explicit `panic!` in the decoder; every rejection is a typed error.",
    ),
    (
        "clippy::unreachable",
        "deny",
        "R-SAFE-1: `unreachable!` is a panic that claims an invariant the compiler cannot check.",
    ),
    (
        "clippy::todo",
        "deny",
        "R-SAFE-1: unfinished code panics at run time.",
    ),
    ("clippy::unimplemented", "deny", "R-SAFE-1: as `todo`."),
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only what CI runs on every change: lint profile, Miri, coverage, traceability
    /// (skips mutation testing and the Kani stand-in build).
    #[arg(long)]
    pub fast: bool,
    /// Install the missing tools first (nightly miri/llvm-tools components, cargo-llvm-cov,
    /// and for a full run cargo-mutants). Without it nothing is installed.
    #[arg(long)]
    pub install: bool,
    /// Directory for report.md, report.json and the tools' raw output
    /// [default: <cargo target dir>/safety].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Mutation testing: re-test only the mutants that the previous run in the same output
    /// directory did not catch (cargo-mutants `--iterate`); the report counts the earlier
    /// catches separately. Without it every mutant is tested.
    #[arg(long)]
    pub mutants_iterate: bool,
}

/// How a section ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    NotRun,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::NotRun => "not run",
        }
    }
}

/// One section of the report.
#[derive(Debug)]
struct Section {
    id: &'static str,
    title: &'static str,
    status: Status,
    /// One line for the summary table.
    summary: String,
    /// Markdown body.
    body: String,
    /// Machine-readable details.
    data: Vec<(String, Json)>,
    seconds: f64,
}

impl Section {
    fn new(id: &'static str, title: &'static str) -> Self {
        Self {
            id,
            title,
            status: Status::NotRun,
            summary: String::new(),
            body: String::new(),
            data: Vec::new(),
            seconds: 0.0,
        }
    }

    fn not_run(mut self, why: String) -> Self {
        self.status = Status::NotRun;
        self.body = format!("**Not run:** {why}\n");
        self.summary = format!("not run: {why}");
        self.data.push(("reason".into(), Json::str(why)));
        self
    }

    fn put(&mut self, key: &str, value: Json) {
        self.data.push((key.to_string(), value));
    }
}

/// Everything the sections share.
#[derive(Debug)]
struct Ctx {
    root: PathBuf,
    out: PathBuf,
    target_dir: PathBuf,
    stable: String,
    nightly: String,
}

impl Ctx {
    fn log(&self, name: &str) -> PathBuf {
        self.out.join(format!("{name}.log"))
    }

    /// How the report names a log: beside the report, so the text is the same on every machine.
    fn shown(&self, name: &str) -> String {
        format!("{name}.log (next to report.md)")
    }
}

pub fn run(args: Args) -> Result {
    let started = Instant::now();
    let root = project_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("safety"));
    std::fs::create_dir_all(&out)
        .map_err(|e| crate::cmd::Error(format!("cannot create {}: {e}", out.display())))?;
    let ctx = Ctx {
        stable: pinned_stable(&root)?,
        nightly: pinned_nightly(&root)?,
        root,
        out,
        target_dir,
    };
    eprintln!(
        "safety: {} run; stable {}, nightly {}; output in {}",
        if args.fast { "fast" } else { "full" },
        ctx.stable,
        ctx.nightly,
        ctx.out.display()
    );
    if args.install {
        install_missing(&ctx, args.fast)?;
    }

    let mut sections = vec![timed(|| lint(&ctx)), timed(|| miri(&ctx))];
    let (coverage, test_log) = {
        let t = Instant::now();
        let (mut s, log) = coverage(&ctx);
        s.seconds = t.elapsed().as_secs_f64();
        (s, log)
    };
    sections.push(coverage);
    if args.fast {
        sections.push(
            Section::new("mutants", "Mutation testing (decoder)").not_run(
                "`--fast` skips mutation testing; run `cargo xtask safety` for the full report"
                    .into(),
            ),
        );
        sections.push(
            Section::new("kani", "Kani proof harnesses").not_run(
                "`--fast` skips the Kani harnesses; run `cargo xtask safety` for the full report"
                    .into(),
            ),
        );
    } else {
        sections.push(timed(|| mutants(&ctx, args.mutants_iterate)));
        sections.push(timed(|| kani(&ctx)));
    }
    sections.push(timed(|| traceability(&ctx, test_log.as_deref())));

    let total = started.elapsed().as_secs_f64();
    let md = render_markdown(&ctx, &sections, args.fast, total);
    let json = render_json(&ctx, &sections, args.fast, total);
    let md_path = ctx.out.join("report.md");
    let json_path = ctx.out.join("report.json");
    std::fs::write(&md_path, md)?;
    std::fs::write(&json_path, json.pretty())?;
    eprintln!();
    for s in &sections {
        eprintln!("{:<13} {:<8} {}", s.id, s.status.as_str(), s.summary);
    }
    eprintln!(
        "report: {} (and report.json), {total:.0}s",
        md_path.display()
    );
    let failed: Vec<&str> = sections
        .iter()
        .filter(|s| s.status == Status::Fail)
        .map(|s| s.id)
        .collect();
    if !failed.is_empty() {
        bail!(
            "safety checks failed: {}; see {}",
            failed.join(", "),
            md_path.display()
        );
    }
    Ok(())
}

fn timed(f: impl FnOnce() -> Section) -> Section {
    let t = Instant::now();
    let mut s = f();
    s.seconds = t.elapsed().as_secs_f64();
    s
}

// ---------------------------------------------------------------------------------------------
// Toolchains and tools

/// `channel` from rust-toolchain.toml (the pinned stable).
fn pinned_stable(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("rust-toolchain.toml"))?;
    toml_string(&text, "toolchain", "channel")
        .ok_or_else(|| crate::cmd::Error("rust-toolchain.toml has no `channel`; pin one".into()))
}

/// `nightly-<date>` from toolchains/manifest.toml (the nightly the project pins).
fn pinned_nightly(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("toolchains/manifest.toml"))?;
    toml_string(&text, "nightly", "date")
        .map(|d| format!("nightly-{d}"))
        .ok_or_else(|| {
            crate::cmd::Error("toolchains/manifest.toml has no [nightly] date; pin one".into())
        })
}

/// `key = "value"` inside `[table]` of a simple TOML file.
fn toml_string(text: &str, table: &str, key: &str) -> Option<String> {
    let header = format!("[{table}]");
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            let v = v.trim();
            let v = v.split('#').next().unwrap_or(v).trim();
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

/// Installed components of a toolchain (`None`: the toolchain itself is not installed).
fn components(toolchain: &str) -> Option<Vec<String>> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
    )
}

/// `component` is `miri`, `rust-src`, `llvm-tools`...; rustup lists most with the host
/// triple appended (`llvm-tools-x86_64-unknown-linux-gnu`).
fn has_component(toolchain: &str, component: &str) -> bool {
    components(toolchain).is_some_and(|c| c.iter().any(|x| is_component(x, component)))
}

fn is_component(installed: &str, component: &str) -> bool {
    const ARCHES: [&str; 11] = [
        "x86_64",
        "aarch64",
        "i686",
        "i586",
        "arm",
        "thumb",
        "riscv",
        "powerpc",
        "s390x",
        "loongarch",
        "wasm",
    ];
    installed == component
        || installed
            .strip_prefix(component)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|triple| ARCHES.iter().any(|a| triple.starts_with(a)))
}

fn install_missing(ctx: &Ctx, fast: bool) -> Result {
    let mut wanted: Vec<&str> = Vec::new();
    for c in ["miri", "rust-src", "llvm-tools"] {
        if !has_component(&ctx.nightly, c) {
            wanted.push(c);
        }
    }
    if !wanted.is_empty() {
        let t = Instant::now();
        let mut cmd = Command::new("rustup");
        if components(&ctx.nightly).is_some() {
            cmd.args(["component", "add", "--toolchain", &ctx.nightly])
                .args(&wanted);
        } else {
            cmd.args(["toolchain", "install", &ctx.nightly, "--profile", "minimal"])
                .arg("--component")
                .arg(wanted.join(","));
        }
        run_plain(cmd, "install the nightly components")?;
        // Miri builds its own sysroot on first use (a few minutes); do it now, not mid-report.
        if wanted.contains(&"miri") {
            let mut cmd = Command::new("cargo");
            cmd.arg(format!("+{}", ctx.nightly))
                .args(["miri", "setup"])
                .env_remove("RUSTUP_TOOLCHAIN");
            run_plain(cmd, "prepare Miri's sysroot")?;
        }
        eprintln!(
            "installed {} for {} in {:.0}s",
            wanted.join(", "),
            ctx.nightly,
            t.elapsed().as_secs_f64()
        );
    }
    if !has_component(&ctx.stable, "llvm-tools") {
        let mut cmd = Command::new("rustup");
        cmd.args(["component", "add", "llvm-tools", "--toolchain", &ctx.stable]);
        run_plain(cmd, "install llvm-tools for the pinned stable")?;
    }
    let mut crates = vec![("cargo-llvm-cov", LLVM_COV_VERSION)];
    if !fast {
        crates.push(("cargo-mutants", MUTANTS_VERSION));
    }
    for (name, version) in crates {
        if on_path(name) {
            continue;
        }
        let t = Instant::now();
        let mut cmd = Command::new("cargo");
        cmd.args([&format!("+{}", ctx.stable), "install", "--locked", name])
            .args(["--version", version]);
        // Builds in cargo's own temporary directory, not the project's target dir.
        cmd.env_remove("CARGO_TARGET_DIR");
        run_plain(cmd, &format!("install {name}"))?;
        eprintln!(
            "installed {name} {version} in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn run_plain(mut cmd: Command, what: &str) -> Result {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| crate::cmd::Error(format!("could not {what}: {e}")))?;
    if !status.success() {
        bail!("could not {what}: {cmd:?} exited with {status}");
    }
    Ok(())
}

/// The result of a command whose output was captured.
#[derive(Debug)]
struct Ran {
    ok: bool,
    /// stdout and stderr, interleaved as they were written.
    output: String,
}

/// Runs `cmd` with stdout and stderr merged into one pipe, echoing each line to our stderr
/// (so CI logs show progress) and saving everything to `log`.
fn run_logged(mut cmd: Command, log: &Path) -> Ran {
    eprintln!("$ {}", show(&cmd));
    let fail = |e: String| {
        let _ = std::fs::write(log, &e);
        Ran {
            ok: false,
            output: e,
        }
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot clone a pipe: {e}")),
    };
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("could not start `{}`: {e}", show(&cmd))),
    };
    // Drop our copies of the write ends (held by `cmd`) so the reader sees EOF.
    drop(cmd);
    let mut output = String::new();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        // cargo's JSON messages are for us; their "rendered" text is in the log.
        if !line.starts_with("{\"reason\"") {
            eprintln!("  | {line}");
        }
        output.push_str(&line);
        output.push('\n');
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    let _ = std::fs::write(log, &output);
    Ran { ok, output }
}

fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo(ctx: &Ctx, toolchain: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}")).current_dir(&ctx.root);
    // The toolchain is chosen explicitly above; a RUSTUP_TOOLCHAIN inherited from the
    // `cargo xtask` invocation must not override it.
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

// ---------------------------------------------------------------------------------------------
// 1. Lint profile

/// clippy's arguments for the profile at `level` (`D` deny, `W` warn).
fn lint_flags(level: char) -> Vec<String> {
    LINTS
        .iter()
        .map(|(lint, lvl, _)| {
            let l = if *lvl == "forbid" { 'F' } else { level };
            format!("-{l}{lint}")
        })
        .collect()
}

/// A finding: lint, level, `file:line`.
#[derive(Debug)]
struct Finding {
    lint: String,
    level: String,
    place: String,
}

/// Findings in cargo's `--message-format=json` output (top-level diagnostics with a code).
fn findings(json_lines: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for line in json_lines.lines() {
        if !line.contains("\"reason\":\"compiler-message\"") {
            continue;
        }
        let Some(code) = between(line, "\"code\":{\"code\":\"", "\"") else {
            continue;
        };
        // The top-level level: "rendered" starts with it (children come first in the JSON).
        let level = between(line, "\"rendered\":\"", ":").unwrap_or("?");
        let file = between(line, "\"file_name\":\"", "\"").unwrap_or("?");
        let line_no = between(line, "\"line_start\":", ",").unwrap_or("?");
        out.push(Finding {
            lint: code.to_string(),
            level: level.to_string(),
            place: format!("{file}:{line_no}"),
        });
    }
    out
}

/// Did cargo report a finished build (`--message-format=json`)?
fn finished(json_lines: &str) -> bool {
    json_lines.contains("{\"reason\":\"build-finished\",\"success\":true}")
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)?.checked_add(start.len())?;
    let rest = s.get(from..)?;
    rest.get(..rest.find(end)?)
}

fn lint(ctx: &Ctx) -> Section {
    let mut s = Section::new("lint", "Strict lint profile");
    let mut body = String::new();
    body.push_str(
        "Clippy on the library code (tests may unwrap), with the profile below passed on the \
         command line, so the profile holds even if the crate's own `#![deny(...)]` list \
         (protocol/src/lib.rs) is weakened. Protocol findings fail the check; firmware \
         findings are reported (advisory) until the firmware logic adopts the profile.\n\n",
    );
    body.push_str("| lint | level | guideline it serves |\n|---|---|---|\n");
    for (lint, level, why) in LINTS {
        let _ = writeln!(body, "| `{lint}` | {level} | {why} |");
    }
    body.push('\n');

    let mut failed = false;
    let mut runs = Vec::new();
    // The protocol crate: host build with std, and the firmware target without it.
    let protocol_runs: [(&str, Vec<&str>); 2] = [
        (
            "protocol (host, std)",
            vec!["-p", "beacon-protocol", "--lib"],
        ),
        (
            "protocol (thumbv7em-none-eabihf, no_std)",
            vec![
                "-p",
                "beacon-protocol",
                "--lib",
                "--no-default-features",
                "--target",
                "thumbv7em-none-eabihf",
            ],
        ),
    ];
    for (i, (name, args)) in protocol_runs.iter().enumerate() {
        let mut cmd = cargo(ctx, &ctx.stable);
        cmd.arg("clippy")
            .args(args)
            .args(["--message-format=json", "--", "-Dwarnings"])
            .args(lint_flags('D'));
        let ran = run_logged(cmd, &ctx.log(&format!("lint-protocol-{i}")));
        let found = findings(&ran.output);
        // A positive signal that clippy really ran, not just a command that exited 0.
        let ok = ran.ok && found.is_empty() && finished(&ran.output);
        failed |= !ok;
        let _ = writeln!(
            body,
            "- **{name}**: {} ({} findings)",
            if ok { "clean" } else { "FAILED" },
            found.len()
        );
        for f in &found {
            let _ = writeln!(body, "  - `{}` ({}) at {}", f.lint, f.level, f.place);
        }
        if !ok && found.is_empty() {
            let _ = writeln!(
                body,
                "  - clippy did not complete; see {}",
                ctx.shown(&format!("lint-protocol-{i}"))
            );
        }
        runs.push(Json::obj([
            ("name", Json::str(*name)),
            ("gating", Json::Bool(true)),
            ("passed", Json::Bool(ok)),
            ("findings", findings_json(&found)),
        ]));
    }

    // The firmware's application logic (its own workspace): advisory.
    let fw = ctx.root.join("firmware");
    if fw.join("app/Cargo.toml").is_file() {
        let mut cmd = cargo(ctx, &ctx.stable);
        cmd.current_dir(&fw)
            .args(["clippy", "-p", "beacon-firmware", "--lib"])
            .args(["--message-format=json", "--"])
            .args(lint_flags('W'));
        let ran = run_logged(cmd, &ctx.log("lint-firmware"));
        let found: Vec<Finding> = findings(&ran.output)
            .into_iter()
            .filter(|f| LINTS.iter().any(|(l, _, _)| *l == f.lint))
            .collect();
        let mut per_lint: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &found {
            *per_lint.entry(f.lint.as_str()).or_default() += 1;
        }
        if ran.ok && finished(&ran.output) {
            let counts: Vec<String> = per_lint.iter().map(|(l, n)| format!("`{l}` {n}")).collect();
            let _ = writeln!(
                body,
                "- **firmware app (beacon-firmware, thumbv7em), advisory**: {} findings{}",
                found.len(),
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(": {}", counts.join(", "))
                }
            );
            for f in found.iter().take(40) {
                let _ = writeln!(body, "  - `{}` at {}", f.lint, f.place);
            }
            if found.len() > 40 {
                let _ = writeln!(body, "  - ... {} more in the log", found.len() - 40);
            }
        } else {
            let _ = writeln!(
                body,
                "- **firmware app, advisory**: clippy did not complete (the firmware does not \
                 build right now); see {}",
                ctx.shown("lint-firmware")
            );
        }
        runs.push(Json::obj([
            ("name", Json::str("firmware app (advisory)")),
            ("gating", Json::Bool(false)),
            ("completed", Json::Bool(ran.ok)),
            ("findings", findings_json(&found)),
        ]));
    } else {
        body.push_str("- firmware app: not present (firmware/app/Cargo.toml missing)\n");
    }
    s.status = if failed { Status::Fail } else { Status::Pass };
    s.summary = if failed {
        "protocol crate has findings under the strict profile".into()
    } else {
        "protocol crate clean under the strict profile (host and thumbv7em)".into()
    };
    s.body = body;
    s.put(
        "profile",
        Json::Arr(
            LINTS
                .iter()
                .map(|(l, lvl, why)| {
                    Json::obj([
                        ("lint", Json::str(*l)),
                        ("level", Json::str(*lvl)),
                        ("guideline", Json::str(*why)),
                    ])
                })
                .collect(),
        ),
    );
    s.put("runs", Json::Arr(runs));
    s
}

fn findings_json(found: &[Finding]) -> Json {
    Json::Arr(
        found
            .iter()
            .map(|f| {
                Json::obj([
                    ("lint", Json::str(&f.lint)),
                    ("level", Json::str(&f.level)),
                    ("at", Json::str(&f.place)),
                ])
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// libtest output

/// One test result from libtest's output.
#[derive(Debug, Clone)]
struct TestResult {
    /// "unittests src/lib.rs", "tests/properties.rs", "doctests".
    binary: String,
    name: String,
    outcome: String,
}

/// Parses `Running ...` headers and `test NAME ... ok|FAILED|ignored` lines.
fn parse_libtest(output: &str) -> Vec<TestResult> {
    let mut binary = String::from("?");
    let mut out = Vec::new();
    for line in output.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Running ") {
            // "Running tests/properties.rs (target/...)" or "Running unittests src/lib.rs (...)"
            binary = rest.split(" (").next().unwrap_or(rest).to_string();
        } else if t.starts_with("Doc-tests ") {
            binary = "doctests".into();
        } else if let Some(rest) = t.strip_prefix("test ")
            && let Some((name, outcome)) = rest.rsplit_once(" ... ")
        {
            let outcome = outcome.split([' ', ',']).next().unwrap_or("").to_string();
            if matches!(outcome.as_str(), "ok" | "FAILED" | "ignored") {
                out.push(TestResult {
                    binary: binary.clone(),
                    name: name.trim().to_string(),
                    outcome,
                });
            }
        }
    }
    out
}

fn test_counts(results: &[TestResult]) -> (usize, usize, usize) {
    let n = |o: &str| results.iter().filter(|r| r.outcome == o).count();
    (n("ok"), n("FAILED"), n("ignored"))
}

// ---------------------------------------------------------------------------------------------
// 2. Miri

fn miri(ctx: &Ctx) -> Section {
    let mut s = Section::new(
        "miri",
        "Miri (undefined-behaviour checker) over the protocol tests",
    );
    if components(&ctx.nightly).is_none() {
        return s.not_run(format!(
            "toolchain {} missing, install with `rustup toolchain install {} --profile minimal \
             --component miri,rust-src` (or `cargo xtask safety --install`)",
            ctx.nightly, ctx.nightly
        ));
    }
    if !has_component(&ctx.nightly, "miri") {
        return s.not_run(format!(
            "miri missing, install with `rustup component add miri rust-src --toolchain {}` \
             (or `cargo xtask safety --install`)",
            ctx.nightly
        ));
    }
    let flags = "-Zmiri-disable-isolation";
    let mut cmd = cargo(ctx, &ctx.nightly);
    cmd.args(["miri", "test", "-p", "beacon-protocol"])
        .env("PROPTEST_CASES", MIRI_PROPTEST_CASES)
        .env("MIRIFLAGS", flags);
    let ran = run_logged(cmd, &ctx.log("miri"));
    let results = parse_libtest(&ran.output);
    let (passed, failed, ignored) = test_counts(&results);
    let ub = ran.output.contains("Undefined Behavior");
    s.status = if ran.ok && failed == 0 && passed > 0 {
        Status::Pass
    } else {
        Status::Fail
    };
    s.summary = if s.status == Status::Pass {
        format!("clean: {passed} tests passed under Miri, no undefined behaviour reported")
    } else if ub {
        "Miri reported undefined behaviour".into()
    } else {
        format!("{failed} tests failed under Miri (or Miri did not complete)")
    };
    let mut body = format!(
        "`cargo +{} miri test -p beacon-protocol` with `MIRIFLAGS={flags}` and \
         `PROPTEST_CASES={MIRI_PROPTEST_CASES}`.\n\n\
         - result: **{}**\n- tests: {passed} passed, {failed} failed, {ignored} ignored \
         (unit, property, vector and doc tests)\n",
        ctx.nightly,
        s.status.as_str()
    );
    body.push_str(
        "\nWhat this shows: every test of the crate ran in Miri's interpreter, which checks each \
         memory access, alignment, initialisation and arithmetic overflow at run time, with no \
         undefined behaviour found. The crate has no `unsafe` (`forbid(unsafe_code)`), so this \
         mostly guards the standard library paths it uses and any future `unsafe`.\n\n\
         What it does not show: the property tests run only \
         a few cases each under Miri (interpretation is slow; they run 2000 cases each natively). \
         Isolation is disabled so that proptest can read its environment and regression files; \
         the code under test does no I/O.\n",
    );
    if ub {
        body.push_str("\n**Miri reported undefined behaviour**: see the log.\n");
    }
    let _ = writeln!(body, "\nLog: `{}`", ctx.shown("miri"));
    s.body = body;
    s.put("toolchain", Json::str(&ctx.nightly));
    s.put("miriflags", Json::str(flags));
    s.put("proptest_cases", Json::str(MIRI_PROPTEST_CASES));
    s.put("passed", Json::Num(passed as f64));
    s.put("failed", Json::Num(failed as f64));
    s.put("ignored", Json::Num(ignored as f64));
    s.put("undefined_behavior_reported", Json::Bool(ub));
    s
}

// ---------------------------------------------------------------------------------------------
// 3. Coverage

/// Line and branch data of one source file, from an lcov file.
#[derive(Debug, Default)]
struct FileCov {
    /// line -> hit count (only instrumented lines).
    lines: BTreeMap<u32, u64>,
    branches_found: u64,
    branches_hit: u64,
    /// lines with a branch never taken.
    branch_lines: BTreeSet<u32>,
}

/// Parses lcov into per-file data, keyed by path relative to the project root.
fn parse_lcov(text: &str, root: &Path) -> BTreeMap<String, FileCov> {
    let root = format!("{}/", root.display());
    let mut files = BTreeMap::new();
    let mut current: Option<(String, FileCov)> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("SF:") {
            let rel = path.strip_prefix(root.as_str()).unwrap_or(path).to_string();
            current = Some((rel, FileCov::default()));
        } else if let Some(da) = line.strip_prefix("DA:") {
            if let Some((_, f)) = current.as_mut() {
                let mut it = da.split(',');
                if let (Some(Ok(n)), Some(Ok(c))) = (
                    it.next().map(str::parse::<u32>),
                    it.next().map(str::parse::<u64>),
                ) {
                    let e = f.lines.entry(n).or_default();
                    *e = (*e).max(c);
                }
            }
        } else if let Some(brda) = line.strip_prefix("BRDA:") {
            if let Some((_, f)) = current.as_mut() {
                let parts: Vec<&str> = brda.split(',').collect();
                if let [line_no, _, _, taken] = parts.as_slice() {
                    f.branches_found += 1;
                    if taken.parse::<u64>().unwrap_or(0) > 0 {
                        f.branches_hit += 1;
                    } else if let Ok(n) = line_no.parse() {
                        f.branch_lines.insert(n);
                    }
                }
            }
        } else if line == "end_of_record"
            && let Some((name, f)) = current.take()
        {
            files.insert(name, f);
        }
    }
    files
}

/// First line of the `#[cfg(test)]` module of a source file (unit tests sit at the end).
fn test_module_start(source: &str) -> Option<u32> {
    let lines: Vec<&str> = source.lines().collect();
    lines.windows(2).enumerate().find_map(|(i, w)| {
        (w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
            .then(|| u32::try_from(i + 1).unwrap_or(u32::MAX))
    })
}

/// `1, 4-6, 9` from a sorted list of line numbers.
fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// Per-file line figures for protocol/src, test modules excluded.
#[derive(Debug)]
struct LineFig {
    file: String,
    covered: usize,
    total: usize,
    uncovered: Vec<u32>,
}

fn line_figures(ctx: &Ctx, lcov: &BTreeMap<String, FileCov>) -> Vec<LineFig> {
    let mut figs = Vec::new();
    for (file, cov) in lcov {
        if !file.starts_with("protocol/src/") {
            continue;
        }
        let source = std::fs::read_to_string(ctx.root.join(file)).unwrap_or_default();
        let end = test_module_start(&source).unwrap_or(u32::MAX);
        let lines: Vec<(u32, u64)> = cov
            .lines
            .iter()
            .filter(|(n, _)| **n < end)
            .map(|(n, c)| (*n, *c))
            .collect();
        figs.push(LineFig {
            file: file.clone(),
            covered: lines.iter().filter(|(_, c)| *c > 0).count(),
            total: lines.len(),
            uncovered: lines
                .iter()
                .filter(|(_, c)| *c == 0)
                .map(|(n, _)| *n)
                .collect(),
        });
    }
    figs
}

fn pct(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

/// Region/function/line totals from `cargo llvm-cov report`'s text table, for protocol/src.
fn region_totals(table: &str) -> Option<(u64, u64)> {
    let mut regions = 0u64;
    let mut missed = 0u64;
    let mut any = false;
    for line in table.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = cols.first() else { continue };
        // `cargo llvm-cov report -p beacon-protocol` lists that crate's sources by file name
        // (relative to protocol/src); the TOTAL row and separators are skipped.
        if !name.ends_with(".rs") || cols.len() < 3 {
            continue;
        }
        if let (Ok(r), Ok(m)) = (cols[1].parse::<u64>(), cols[2].parse::<u64>()) {
            regions += r;
            missed += m;
            any = true;
        }
    }
    any.then_some((regions, missed))
}

/// Returns the section and the libtest output of the (stable) coverage run, which the
/// traceability section reuses as the test results.
fn coverage(ctx: &Ctx) -> (Section, Option<String>) {
    let mut s = Section::new("coverage", "Coverage of the protocol crate");
    if !on_path("cargo-llvm-cov") {
        return (
            s.not_run(format!(
                "cargo-llvm-cov missing, install with `cargo install cargo-llvm-cov --locked \
                 --version {LLVM_COV_VERSION}` (or `cargo xtask safety --install`)"
            )),
            None,
        );
    }
    if !has_component(&ctx.stable, "llvm-tools") {
        return (
            s.not_run(format!(
                "llvm-tools missing, install with `rustup component add llvm-tools --toolchain {}`",
                ctx.stable
            )),
            None,
        );
    }
    let lcov_path = ctx.out.join("lcov.info");
    let mut cmd = cargo(ctx, &ctx.stable);
    cmd.args([
        "llvm-cov",
        "-p",
        "beacon-protocol",
        "--lcov",
        "--output-path",
    ])
    .arg(&lcov_path);
    let ran = run_logged(cmd, &ctx.log("coverage"));
    let test_output = ran.output.clone();
    if !ran.ok {
        s.status = Status::Fail;
        s.summary = "the tests failed under coverage instrumentation".into();
        s.body = format!(
            "`cargo llvm-cov` failed; see `{}`.\n",
            ctx.shown("coverage")
        );
        return (s, Some(test_output));
    }
    // Region figures: the text summary of the same profile data.
    let mut cmd = cargo(ctx, &ctx.stable);
    cmd.args(["llvm-cov", "report", "-p", "beacon-protocol"]);
    let table = run_logged(cmd, &ctx.log("coverage-summary"));
    let regions = table.ok.then(|| region_totals(&table.output)).flatten();

    let lcov = parse_lcov(
        &std::fs::read_to_string(&lcov_path).unwrap_or_default(),
        &ctx.root,
    );
    let figs = line_figures(ctx, &lcov);
    let is_decoder = |f: &LineFig| DECODER_FILES.iter().any(|d| f.file.ends_with(d));
    let (dc, dt) = figs
        .iter()
        .filter(|f| is_decoder(f))
        .fold((0, 0), |(c, t), f| (c + f.covered, t + f.total));
    let (ac, at) = figs
        .iter()
        .fold((0, 0), |(c, t), f| (c + f.covered, t + f.total));
    let decoder_pct = pct(dc, dt);

    // Branch coverage needs nightly (`-Z coverage-options=branch`).
    let branch = branch_coverage(ctx);

    let mut body = format!(
        "`cargo +{} llvm-cov -p beacon-protocol` (all unit, property, vector and doc tests; \
         proptest at its default 2000 cases). Line figures exclude the `#[cfg(test)]` modules \
         at the end of each source file.\n\n",
        ctx.stable
    );
    body.push_str("| file | lines covered | line % | uncovered lines |\n|---|---:|---:|---|\n");
    for f in &figs {
        let _ = writeln!(
            body,
            "| {}{} | {}/{} | {:.1} | {} |",
            f.file,
            if is_decoder(f) { " (decoder)" } else { "" },
            f.covered,
            f.total,
            pct(f.covered, f.total),
            if f.uncovered.is_empty() {
                "-".to_string()
            } else {
                ranges(&f.uncovered)
            }
        );
    }
    let _ = writeln!(
        body,
        "\n- **decoder lines** ({}): **{dc}/{dt} = {decoder_pct:.1} %** (gate: >= {COVERAGE_GATE} %)",
        DECODER_FILES.join(", ")
    );
    let _ = writeln!(
        body,
        "- all protocol/src lines: {ac}/{at} = {:.1} %",
        pct(ac, at)
    );
    match regions {
        Some((r, m)) => {
            let _ = writeln!(
                body,
                "- regions (llvm-cov, protocol/src, test modules included): {}/{r} = {:.1} %",
                r - m,
                pct(
                    usize::try_from(r - m).unwrap_or(0),
                    usize::try_from(r).unwrap_or(0)
                )
            );
        }
        None => body.push_str("- regions: the summary table could not be read\n"),
    }
    match &branch {
        Ok((hit, found, lines, _)) => {
            let _ = writeln!(
                body,
                "- **branches** (nightly `--branch`, protocol/src, test modules excluded): \
                 {hit}/{found} = {:.1} %. These are the conditions rustc's \
                 `-Z coverage-options=branch` instruments (`if`, `while`, `&&`, `||`); `match` \
                 arms and other paths show in the region figure.",
                pct(*hit, *found)
            );
            for (file, ls) in lines {
                let _ = writeln!(body, "  - branch not taken on {file}: {}", ranges(ls));
            }
        }
        Err(why) => {
            let _ = writeln!(body, "- branches: not measured: {why}");
        }
    }
    // Show the uncovered decoder lines themselves, so a reader can judge them.
    // A line the stable counters report as never run, while the nightly run (same tests, same
    // sources) counts executions on it, is a counter-mapping artifact of the stable compiler
    // (seen on `x = x.saturating_add(1);` after a `?`, and on format-string lines). Say so
    // per line; the gate still uses the stable figure.
    let nightly_lines = branch.as_ref().ok().map(|b| &b.3);
    let mut artifacts = 0usize;
    let mut listing = String::new();
    for f in figs.iter().filter(|f| !f.uncovered.is_empty()) {
        let source = std::fs::read_to_string(ctx.root.join(&f.file)).unwrap_or_default();
        let lines: Vec<&str> = source.lines().collect();
        for n in &f.uncovered {
            let text = usize::try_from(*n)
                .ok()
                .and_then(|i| lines.get(i.saturating_sub(1)))
                .copied()
                .unwrap_or("")
                .trim();
            let ran_on_nightly = nightly_lines
                .and_then(|m| m.get(&f.file))
                .and_then(|c| c.lines.get(n))
                .is_some_and(|count| *count > 0);
            artifacts += usize::from(ran_on_nightly);
            let _ = writeln!(
                listing,
                "{}:{n}: {text}{}",
                f.file,
                if ran_on_nightly {
                    "    [executed per the nightly run's counters]"
                } else {
                    ""
                }
            );
        }
    }
    if !listing.is_empty() {
        let _ = write!(
            body,
            "\nUncovered lines (per the stable run; {artifacts} of them were executed according to \
             the nightly run's counters, which points to a counter-mapping artifact of the stable \
             compiler on those lines, not to untested code):\n\n```text\n{listing}```\n"
        );
    }
    let pass = decoder_pct >= COVERAGE_GATE;
    s.status = if pass { Status::Pass } else { Status::Fail };
    s.summary = format!(
        "decoder lines {decoder_pct:.1} % (gate {COVERAGE_GATE} %), all lines {:.1} %{}",
        pct(ac, at),
        match &branch {
            Ok((h, f, _, _)) => format!(", branches {:.1} %", pct(*h, *f)),
            Err(_) => ", branches not measured".into(),
        }
    );
    s.body = body;
    s.put("decoder_lines_covered", Json::Num(dc as f64));
    s.put("decoder_lines_total", Json::Num(dt as f64));
    s.put("decoder_line_percent", Json::Num(decoder_pct));
    s.put("all_line_percent", Json::Num(pct(ac, at)));
    s.put("gate_percent", Json::Num(COVERAGE_GATE));
    s.put(
        "uncovered_lines_executed_on_nightly",
        Json::Num(artifacts as f64),
    );
    if let Some((r, m)) = regions {
        s.put("regions_total", Json::Num(r as f64));
        s.put("regions_missed", Json::Num(m as f64));
    }
    match &branch {
        Ok((hit, found, _, _)) => {
            s.put("branches_hit", Json::Num(*hit as f64));
            s.put("branches_total", Json::Num(*found as f64));
        }
        Err(why) => s.put("branches", Json::str(format!("not measured: {why}"))),
    }
    s.put(
        "files",
        Json::Arr(
            figs.iter()
                .map(|f| {
                    Json::obj([
                        ("file", Json::str(&f.file)),
                        ("covered", Json::Num(f.covered as f64)),
                        ("total", Json::Num(f.total as f64)),
                        (
                            "uncovered",
                            Json::Arr(
                                f.uncovered
                                    .iter()
                                    .map(|n| Json::Num(f64::from(*n)))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect(),
        ),
    );
    (s, Some(test_output))
}

/// Branch coverage on the pinned nightly: (hit, found, lines with an untaken branch per file).
/// Also returns the nightly run's line data, to cross-check the stable line counters.
type Branches = (
    usize,
    usize,
    Vec<(String, Vec<u32>)>,
    BTreeMap<String, FileCov>,
);

fn branch_coverage(ctx: &Ctx) -> std::result::Result<Branches, String> {
    if !has_component(&ctx.nightly, "llvm-tools") {
        return Err(format!(
            "branch coverage needs nightly; install llvm-tools for it with `rustup component add \
             llvm-tools --toolchain {}` (stable has no branch coverage)",
            ctx.nightly
        ));
    }
    let path = ctx.out.join("lcov-branch.info");
    let mut cmd = cargo(ctx, &ctx.nightly);
    cmd.args([
        "llvm-cov",
        "-p",
        "beacon-protocol",
        "--branch",
        "--lcov",
        "--output-path",
    ])
    .arg(&path);
    let ran = run_logged(cmd, &ctx.log("coverage-branch"));
    if !ran.ok {
        return Err(format!(
            "the nightly branch-coverage run failed; see {}",
            ctx.shown("coverage-branch")
        ));
    }
    let lcov = parse_lcov(
        &std::fs::read_to_string(&path).unwrap_or_default(),
        &ctx.root,
    );
    let mut hit = 0;
    let mut found = 0;
    let mut lines = Vec::new();
    for (file, cov) in &lcov {
        if !file.starts_with("protocol/src/") {
            continue;
        }
        let source = std::fs::read_to_string(ctx.root.join(file)).unwrap_or_default();
        let end = test_module_start(&source).unwrap_or(u32::MAX);
        hit += usize::try_from(cov.branches_hit).unwrap_or(0);
        found += usize::try_from(cov.branches_found).unwrap_or(0);
        let untaken: Vec<u32> = cov
            .branch_lines
            .iter()
            .copied()
            .filter(|n| *n < end)
            .collect();
        if !untaken.is_empty() {
            lines.push((file.clone(), untaken));
        }
    }
    if found == 0 {
        return Err("the nightly run produced no branch data".into());
    }
    Ok((hit, found, lines, lcov))
}

// ---------------------------------------------------------------------------------------------
// 4. Mutation testing

fn mutants(ctx: &Ctx, iterate: bool) -> Section {
    let mut s = Section::new("mutants", "Mutation testing (decoder)");
    if !on_path("cargo-mutants") {
        return s.not_run(format!(
            "cargo-mutants missing, install with `cargo install cargo-mutants --locked \
             --version {MUTANTS_VERSION}` (or `cargo xtask safety --install`)"
        ));
    }
    let out = ctx.out.join("mutants");
    let _ = std::fs::create_dir_all(&out);
    let mut cmd = cargo(ctx, &ctx.stable);
    // `--tests`: unit and integration tests, not the doctest (an example, slow to build).
    cmd.args(["mutants", "-p", "beacon-protocol", "-j", "1"])
        .arg("--cargo-test-arg=--tests");
    for f in DECODER_FILES {
        cmd.args(["-f", &format!("protocol/src/{f}")]);
    }
    // `--iterate` lists earlier unviable mutants with the caught ones ("previously caught"),
    // and the new run's unviable.txt replaces the old: keep the union of every run's unviable
    // list so the report can tell the two apart.
    let dir = out.join("mutants.out");
    let earlier_unviable_path = out.join("unviable-earlier.txt");
    if iterate {
        cmd.arg("--iterate");
        let mut known: BTreeSet<String> = read_lines(&earlier_unviable_path).into_iter().collect();
        known.extend(read_lines(&dir.join("unviable.txt")));
        let _ = std::fs::write(
            &earlier_unviable_path,
            known.into_iter().map(|l| l + "\n").collect::<String>(),
        );
    } else {
        let _ = std::fs::remove_file(&earlier_unviable_path);
    }
    cmd.arg("--output").arg(&out);
    cmd.env("PROPTEST_CASES", MUTANTS_PROPTEST_CASES);
    // Mutants build in their own copy of the tree; keep them out of the shared target dir.
    cmd.env("CARGO_TARGET_DIR", ctx.target_dir.join("mutants-build"));
    // cargo-mutants exits non-zero whenever a mutant is missed: judge by its result files.
    let _ran = run_logged(cmd, &ctx.log("mutants"));
    let read = |name: &str| read_lines(&dir.join(name));
    let caught = read("caught.txt");
    let missed = read("missed.txt");
    let timeout = read("timeout.txt");
    let mut unviable = read("unviable.txt");
    let mut earlier = Vec::new();
    if iterate {
        let earlier_unviable: BTreeSet<String> =
            read_lines(&earlier_unviable_path).into_iter().collect();
        for m in read("previously_caught.txt") {
            if earlier_unviable.contains(&m) {
                unviable.push(m);
            } else {
                earlier.push(m);
            }
        }
    }
    if caught.is_empty() && earlier.is_empty() && missed.is_empty() && timeout.is_empty() {
        s.status = Status::Fail;
        s.summary = "cargo mutants did not produce results".into();
        s.body = format!(
            "cargo mutants did not produce results (baseline build or tests failed?); see `{}`.\n",
            ctx.shown("mutants")
        );
        return s;
    }
    let killed = caught.len() + earlier.len() + timeout.len();
    let score = pct(killed, killed + missed.len());
    let explained = explained_mutants(&ctx.root);
    let explanation = |m: &str| {
        explained
            .iter()
            .find(|(key, _)| mutant_key(m) == *key)
            .map(|(_, why)| why.clone())
    };
    let mut body = format!(
        "`cargo mutants -p beacon-protocol -j 1 --cargo-test-arg=--tests{}` on {} with \
         `PROPTEST_CASES={MUTANTS_PROPTEST_CASES}`.\n\n\
         | caught | missed | timeout | unviable | score |\n|---:|---:|---:|---:|---:|\n\
         | {}{} | {} | {} | {} | {score:.1} % |\n\n\
         Score = killed / (killed + missed), where killed = caught + timeout (the mutant made a \
         test hang); an unviable mutant did not compile, so no test was needed.\n",
        if iterate { " --iterate" } else { "" },
        DECODER_FILES.join(", "),
        caught.len() + earlier.len(),
        if iterate {
            format!(
                " ({} in this run, {} in the previous run: `--iterate` did not re-test them)",
                caught.len(),
                earlier.len()
            )
        } else {
            String::new()
        },
        missed.len(),
        timeout.len(),
        unviable.len(),
    );
    let mut unexplained = Vec::new();
    if missed.is_empty() {
        body.push_str("\nNo missed mutant.\n");
    } else {
        body.push_str("\nMissed mutants and why they survive:\n\n");
        for m in &missed {
            match explanation(m) {
                Some(why) => {
                    let _ = writeln!(body, "- `{m}`\n  - explained: {why}");
                }
                None => {
                    unexplained.push(m.clone());
                    let _ = writeln!(
                        body,
                        "- `{m}`\n  - **not explained**: kill it with a test, or explain it in \
                         protocol/mutants-explained.txt"
                    );
                }
            }
        }
    }
    body.push_str("\nRaw results: `mutants/mutants.out/` next to report.md.\n");
    s.status = if unexplained.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    s.summary = format!(
        "{} caught, {} missed ({} explained), {} timeout, {} unviable; score {score:.1} %",
        caught.len() + earlier.len(),
        missed.len(),
        missed.len() - unexplained.len(),
        timeout.len(),
        unviable.len(),
    );
    s.body = body;
    s.put("caught", Json::Num((caught.len() + earlier.len()) as f64));
    s.put("caught_in_earlier_run", Json::Num(earlier.len() as f64));
    s.put("missed", Json::Num(missed.len() as f64));
    s.put("timeout", Json::Num(timeout.len() as f64));
    s.put("unviable", Json::Num(unviable.len() as f64));
    s.put("score_percent", Json::Num(score));
    s.put(
        "missed_mutants",
        Json::Arr(
            missed
                .iter()
                .map(|m| {
                    Json::obj([
                        ("mutant", Json::str(m)),
                        ("explanation", explanation(m).map_or(Json::Null, Json::Str)),
                    ])
                })
                .collect(),
        ),
    );
    s
}

/// Non-empty lines of a file (none when it does not exist).
fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `protocol/src/x.rs:12:5: replace a with b` -> `protocol/src/x.rs: replace a with b`: the key
/// without line and column, so explanations survive edits elsewhere in the file.
fn mutant_key(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    let file = parts.next().unwrap_or("");
    let _line = parts.next();
    let _col = parts.next();
    let rest = parts.next().unwrap_or("").trim();
    format!("{file}: {rest}")
}

/// protocol/mutants-explained.txt: `<key>` line, then `  why: <explanation>` line(s).
fn explained_mutants(root: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root.join("protocol/mutants-explained.txt")).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(why) = line.trim_start().strip_prefix("why:") {
            if let Some((_, w)) = out.last_mut() {
                if !w.is_empty() {
                    w.push(' ');
                }
                w.push_str(why.trim());
            }
        } else if !line.starts_with(' ') {
            out.push((line.trim().to_string(), String::new()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 5. Kani

fn kani(ctx: &Ctx) -> Section {
    let mut s = Section::new("kani", "Kani proof harnesses");
    let harnesses = kani_harnesses(&ctx.root);
    let names: Vec<String> = harnesses.iter().map(|(n, _)| n.clone()).collect();
    let mut body = format!(
        "Harnesses in protocol/src/proofs.rs (`#[cfg(kani)]`): {}.\n\n",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kani_result = if on_path("cargo-kani") {
        let mut cmd = cargo(ctx, &ctx.stable);
        cmd.args(["kani", "-p", "beacon-protocol"]);
        let ran = run_logged(cmd, &ctx.log("kani"));
        let ok_count = ran.output.matches("VERIFICATION:- SUCCESSFUL").count();
        let fail_count = ran.output.matches("VERIFICATION:- FAILED").count();
        let _ = writeln!(
            body,
            "- **Kani run**: {ok_count} harnesses verified, {fail_count} failed (log: `{}`)",
            ctx.shown("kani")
        );
        Some(ran.ok && fail_count == 0 && ok_count == names.len())
    } else {
        body.push_str(
            "- **Kani run: NOT RUN.** `cargo kani` is not installed. Install it with `cargo \
             install --locked kani-verifier && cargo kani setup` (setup downloads from GitHub, \
             which these machines cannot reach). No proof result is claimed.\n",
        );
        None
    };

    // Without Kani: compile the harnesses under `--cfg kani` against the stand-in and run them
    // on pseudo-random samples. This is a build check and a smoke test, not a proof.
    let mut cmd = cargo(ctx, &ctx.stable);
    cmd.args([
        "test",
        "-p",
        "beacon-protocol",
        "--lib",
        "proofs::harnesses_hold_on_samples",
    ])
    .env(
        "RUSTFLAGS",
        "--cfg kani --cfg kani_stub --check-cfg=cfg(kani_stub)",
    )
    // Different RUSTFLAGS: its own target dir, so the normal builds stay cached.
    .env("CARGO_TARGET_DIR", ctx.target_dir.join("kani-stub"));
    let stub = run_logged(cmd, &ctx.log("kani-stub"));
    let stub_passed = stub.ok
        && parse_libtest(&stub.output)
            .iter()
            .any(|t| t.name.ends_with("harnesses_hold_on_samples") && t.outcome == "ok");
    let _ = writeln!(
        body,
        "- **stand-in build** (`--cfg kani --cfg kani_stub`, `kani::any()` replaced by a \
         pseudo-random generator): harnesses {} and their assertions {} on 5000 samples each. \
         This shows the harnesses compile and are not trivially false; it proves nothing about \
         all inputs.",
        if stub.ok { "compile" } else { "DO NOT compile" },
        if stub_passed { "held" } else { "FAILED" }
    );
    body.push_str("\n| harness | requirements | Kani result |\n|---|---|---|\n");
    for (name, reqs) in &harnesses {
        let _ = writeln!(
            body,
            "| `{name}` | {} | {} |",
            reqs.join(", "),
            match kani_result {
                Some(true) => "verified",
                Some(false) => "see log",
                None => "not run (Kani missing)",
            }
        );
    }
    s.status = match (kani_result, stub_passed) {
        (Some(false), _) | (_, false) => Status::Fail,
        (Some(true), true) => Status::Pass,
        // The stand-in passing is not a Kani result: the section says "not run".
        (None, true) => Status::NotRun,
    };
    s.summary = match kani_result {
        Some(true) => format!("{} harnesses verified by Kani", names.len()),
        Some(false) => "Kani reported a failure".into(),
        None => format!(
            "not run: cargo-kani missing; {} harnesses compile under --cfg kani (stand-in, {})",
            names.len(),
            if stub_passed {
                "samples held"
            } else {
                "samples FAILED"
            }
        ),
    };
    s.body = body;
    s.put("kani_installed", Json::Bool(kani_result.is_some()));
    s.put(
        "kani_verified",
        kani_result.map(Json::Bool).unwrap_or(Json::Null),
    );
    s.put("stub_compiles", Json::Bool(stub.ok));
    s.put("stub_samples_held", Json::Bool(stub_passed));
    s.put(
        "harnesses",
        Json::Arr(
            harnesses
                .iter()
                .map(|(n, r)| {
                    Json::obj([
                        ("name", Json::str(n)),
                        ("requirements", Json::Arr(r.iter().map(Json::str).collect())),
                    ])
                })
                .collect(),
        ),
    );
    s
}

/// Harness names in proofs.rs and the requirement ids on the first line of their doc comment.
fn kani_harnesses(root: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(root.join("protocol/src/proofs.rs")).unwrap_or_default();
    let mut out = Vec::new();
    let mut doc = Vec::new();
    let mut proof = false;
    for line in text.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            if doc.is_empty() {
                doc = requirement_ids(d.split(':').next().unwrap_or(""));
            }
        } else if line.contains("kani::proof") {
            proof = true;
        } else if let Some(rest) = line.strip_prefix("pub fn ") {
            if proof {
                let name = rest.split('(').next().unwrap_or(rest).to_string();
                out.push((name, std::mem::take(&mut doc)));
            }
            doc.clear();
            proof = false;
        } else if !line.starts_with("#[") {
            doc.clear();
            proof = false;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 6. Traceability

/// `R-XXX-N` ids in `text`, in order.
fn requirement_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == 'R' && bytes[i + 1] == '-' && (i == 0 || !bytes[i - 1].is_alphanumeric()) {
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_uppercase() {
                j += 1;
            }
            if j > i + 2 && j < bytes.len() && bytes[j] == '-' {
                let mut k = j + 1;
                while k < bytes.len() && bytes[k].is_ascii_digit() {
                    k += 1;
                }
                if k > j + 1 {
                    ids.push(bytes[i..k].iter().collect());
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    ids
}

/// Requirements defined in SPEC.md: `**R-XXX-N.** text` -> (id, first sentence).
fn spec_requirements(spec: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in spec.lines() {
        let Some(rest) = line.strip_prefix("**") else {
            continue;
        };
        let Some((id, text)) = rest.split_once(".**") else {
            continue;
        };
        if requirement_ids(id).len() != 1 {
            continue;
        }
        let first = text
            .trim()
            .split(". ")
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        out.push((id.to_string(), first.to_string()));
    }
    out
}

/// A test that says which requirements it checks.
#[derive(Debug)]
struct TracedTest {
    /// tests/properties.rs or src/cobs.rs
    file: String,
    name: String,
    requirements: Vec<String>,
}

/// Doc comments `/// Checks: R-...` in protocol/tests/*.rs and protocol/src/*.rs, with the name
/// of the `fn` they document.
fn traced_tests(root: &Path) -> Vec<TracedTest> {
    let mut files: Vec<PathBuf> = Vec::new();
    // One level of subfolders too: the integration tests are one binary, tests/it/main.rs.
    let mut dirs: Vec<PathBuf> = vec![root.join("protocol/tests"), root.join("protocol/src")];
    while let Some(dir) = dirs.pop() {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && p.parent() == Some(root.join("protocol/tests").as_path()) {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let rel = path
            .strip_prefix(root.join("protocol"))
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut pending: Vec<String> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(doc) = line.strip_prefix("///") {
                if let Some((_, ids)) = doc.split_once("Checks:") {
                    let ids = ids.split(": ").next().unwrap_or(ids);
                    pending.extend(requirement_ids(ids));
                }
            } else if let Some(pos) = line.find("fn ") {
                if !pending.is_empty() {
                    let name = line[pos + 3..]
                        .split(['(', '<'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    out.push(TracedTest {
                        file: rel.clone(),
                        name,
                        requirements: std::mem::take(&mut pending),
                    });
                }
            } else if !line.starts_with("#[") && !line.is_empty() {
                pending.clear();
            }
        }
    }
    out
}

/// The result of a traced test in this run's libtest output.
fn result_of<'a>(t: &TracedTest, results: &'a [TestResult]) -> Option<&'a TestResult> {
    results.iter().find(|r| {
        let same_binary = if let Some(rest) = t.file.strip_prefix("tests/") {
            // A module of a one-binary test folder runs in that folder's main.rs.
            match rest.split_once('/') {
                Some((dir, _)) => r.binary == format!("tests/{dir}/main.rs"),
                None => r.binary == t.file,
            }
        } else {
            r.binary.starts_with("unittests")
        };
        same_binary && (r.name == t.name || r.name.ends_with(&format!("::{}", t.name)))
    })
}

fn traceability(ctx: &Ctx, coverage_log: Option<&str>) -> Section {
    let mut s = Section::new(
        "traceability",
        "Traceability: requirement -> tests -> result",
    );
    let spec = std::fs::read_to_string(ctx.root.join("protocol/SPEC.md")).unwrap_or_default();
    let reqs = spec_requirements(&spec);
    let tests = traced_tests(&ctx.root);
    let (output, source) = match coverage_log {
        Some(log) => (log.to_string(), "the coverage run above"),
        None => {
            let mut cmd = cargo(ctx, &ctx.stable);
            cmd.args(["test", "-p", "beacon-protocol"]);
            let ran = run_logged(cmd, &ctx.log("tests"));
            (ran.output, "`cargo test -p beacon-protocol`")
        }
    };
    let results = parse_libtest(&output);
    let (passed, failed, ignored) = test_counts(&results);
    let harnesses = kani_harnesses(&ctx.root);

    let mut body = format!(
        "Requirements: the `**R-...**` paragraphs of protocol/SPEC.md. Tests: every test whose \
         doc comment says `Checks: R-...` (protocol/tests/*.rs, protocol/src/*.rs). Results: \
         this run's test output ({source}: {passed} passed, {failed} failed, {ignored} \
         ignored). Kani harnesses are listed for completeness; they count only when Kani ran.\n\n\
         | requirement | tests | result |\n|---|---|---|\n"
    );
    let mut failed_reqs = Vec::new();
    let mut json_reqs = Vec::new();
    for (id, text) in &reqs {
        let mine: Vec<&TracedTest> = tests
            .iter()
            .filter(|t| t.requirements.iter().any(|r| r == id))
            .collect();
        let mut cells = Vec::new();
        let mut json_tests = Vec::new();
        let mut all_ok = !mine.is_empty();
        for t in &mine {
            let outcome = result_of(t, &results).map_or("not run", |r| r.outcome.as_str());
            all_ok &= outcome == "ok";
            cells.push(format!("`{}::{}` {}", t.file, t.name, outcome));
            json_tests.push(Json::obj([
                ("file", Json::str(&t.file)),
                ("test", Json::str(&t.name)),
                ("result", Json::str(outcome)),
            ]));
        }
        let proofs: Vec<&str> = harnesses
            .iter()
            .filter(|(_, r)| r.iter().any(|x| x == id))
            .map(|(n, _)| n.as_str())
            .collect();
        for p in &proofs {
            cells.push(format!("Kani `{p}` (see Kani section)"));
        }
        let verdict = if mine.is_empty() {
            "**no test**"
        } else if all_ok {
            "pass"
        } else {
            "**FAIL**"
        };
        if !all_ok {
            failed_reqs.push(id.clone());
        }
        let _ = writeln!(
            body,
            "| **{id}** {} | {} | {verdict} |",
            md_cell(text),
            md_cell(&cells.join("<br>"))
        );
        json_reqs.push(Json::obj([
            ("id", Json::str(id)),
            ("text", Json::str(text)),
            ("tests", Json::Arr(json_tests)),
            (
                "kani_harnesses",
                Json::Arr(proofs.iter().map(|p| Json::str(*p)).collect()),
            ),
            ("result", Json::str(verdict.trim_matches('*'))),
        ]));
    }
    // Ids used by tests but not defined in SPEC.md: a typo or a stale reference.
    let defined: BTreeSet<&str> = reqs.iter().map(|(id, _)| id.as_str()).collect();
    let unknown: BTreeSet<&str> = tests
        .iter()
        .flat_map(|t| t.requirements.iter().map(String::as_str))
        .filter(|id| !defined.contains(id))
        .collect();
    if !unknown.is_empty() {
        let _ = writeln!(
            body,
            "\nReferenced by tests but not defined in SPEC.md: {}",
            unknown.iter().copied().collect::<Vec<_>>().join(", ")
        );
    }
    let ok = !reqs.is_empty() && failed_reqs.is_empty() && unknown.is_empty() && failed == 0;
    s.status = if ok { Status::Pass } else { Status::Fail };
    s.summary = format!(
        "{}/{} requirements have passing tests ({} traced tests){}",
        reqs.len() - failed_reqs.len(),
        reqs.len(),
        tests.len(),
        if failed_reqs.is_empty() {
            String::new()
        } else {
            format!("; failing or untested: {}", failed_reqs.join(", "))
        }
    );
    s.body = body;
    s.put("requirements", Json::Arr(json_reqs));
    s.put("tests_passed", Json::Num(passed as f64));
    s.put("tests_failed", Json::Num(failed as f64));
    s
}

// ---------------------------------------------------------------------------------------------
// Report

/// Text for a Markdown table cell: `|` would end the cell, even inside a code span.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render_markdown(ctx: &Ctx, sections: &[Section], fast: bool, total: f64) -> String {
    let mut md = String::from("# Safety evidence report: beacon-protocol\n\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask safety{}` in {total:.0} s. Toolchains: stable `{}` \
         (rust-toolchain.toml), nightly `{}` (toolchains/manifest.toml; Miri and branch \
         coverage only). What this report does and does not claim: docs/certification.md.\n",
        if fast { " --fast" } else { "" },
        ctx.stable,
        ctx.nightly
    );
    md.push_str("| check | result | summary | time |\n|---|---|---|---:|\n");
    for s in sections {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} s |",
            s.title,
            s.status.as_str(),
            s.summary,
            s.seconds
        );
    }
    for s in sections {
        let _ = write!(md, "\n## {}\n\n{}", s.title, s.body);
    }
    md
}

fn render_json(ctx: &Ctx, sections: &[Section], fast: bool, total: f64) -> Json {
    Json::obj([
        ("schema", Json::Num(1.0)),
        ("mode", Json::str(if fast { "fast" } else { "full" })),
        ("stable", Json::str(&ctx.stable)),
        ("nightly", Json::str(&ctx.nightly)),
        ("seconds", Json::Num(total)),
        (
            "passed",
            Json::Bool(sections.iter().all(|s| s.status != Status::Fail)),
        ),
        (
            "sections",
            Json::Arr(
                sections
                    .iter()
                    .map(|s| {
                        let mut fields = vec![
                            ("id".to_string(), Json::str(s.id)),
                            ("title".to_string(), Json::str(s.title)),
                            ("status".to_string(), Json::str(s.status.as_str())),
                            ("summary".to_string(), Json::str(&s.summary)),
                            ("seconds".to_string(), Json::Num(s.seconds)),
                        ];
                        fields.extend(s.data.iter().cloned());
                        Json::Obj(fields)
                    })
                    .collect(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_output_per_binary() {
        let out = "     Running unittests src/lib.rs (target/debug/deps/x)\n\
                   test cobs::tests::known_encodings ... ok\n\
                   \x20    Running tests/properties.rs (target/debug/deps/p)\n\
                   test chunking_does_not_matter ... FAILED\n\
                   test slow ... ignored, takes long\n\
                   \x20  Doc-tests beacon_protocol\n\
                   test protocol/src/lib.rs - (line 24) ... ok\n";
        let r = parse_libtest(out);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].binary, "unittests src/lib.rs");
        assert_eq!(r[1].binary, "tests/properties.rs");
        assert_eq!(r[1].outcome, "FAILED");
        assert_eq!(r[2].outcome, "ignored");
        assert_eq!(r[3].binary, "doctests");
        assert_eq!(test_counts(&r), (2, 1, 1));
    }

    #[test]
    fn finds_requirement_ids() {
        assert_eq!(
            requirement_ids("Checks: R-SAFE-1, R-DEC-3 (x) R-x-1 AR-B-2 R-ENC-"),
            ["R-SAFE-1", "R-DEC-3"]
        );
        let spec = "**R-WIRE-2.** `CRC` is CRC-32. More.\n**Limits.** no\n**R-DEC-1.** Chunks.\n";
        let reqs = spec_requirements(spec);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], ("R-WIRE-2".into(), "`CRC` is CRC-32".into()));
    }

    #[test]
    fn traced_tests_come_from_checks_comments() {
        let dir = std::env::temp_dir().join(format!("xtask-safety-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("protocol/tests")).unwrap();
        std::fs::write(
            dir.join("protocol/tests/a.rs"),
            "/// Checks: R-DEC-1, R-DEC-2: words R-NOT-1.\n#[test]\nfn one() {}\n\n\
             /// Not traced.\n#[test]\nfn two() {}\n    /// Checks: R-SAFE-1\n    #[test]\n    \
             fn three(x in any()) {}\n",
        )
        .unwrap();
        let t = traced_tests(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].name.as_str(), t[0].requirements.len()), ("one", 2));
        assert_eq!(
            (t[1].name.as_str(), t[1].file.as_str()),
            ("three", "tests/a.rs")
        );
    }

    #[test]
    fn lcov_lines_branches_and_test_modules() {
        let root = Path::new("/r");
        let lcov = "SF:/r/protocol/src/a.rs\nDA:1,3\nDA:2,0\nDA:3,0\nDA:5,1\nDA:9,0\n\
                    BRDA:5,0,0,1\nBRDA:5,0,1,0\nend_of_record\n";
        let files = parse_lcov(lcov, root);
        let a = &files["protocol/src/a.rs"];
        assert_eq!(a.lines.len(), 5);
        assert_eq!((a.branches_found, a.branches_hit), (2, 1));
        assert_eq!(a.branch_lines.iter().copied().collect::<Vec<_>>(), [5]);
        assert_eq!(ranges(&[2, 3, 5, 7, 8, 9]), "2-3, 5, 7-9");
        let src = "fn a() {}\n\n#[cfg(test)]\nmod tests {\n}\n";
        assert_eq!(test_module_start(src), Some(3));
    }

    #[test]
    fn table_cells_escape_pipes() {
        assert_eq!(md_cell("`COBS(raw) || 0x00`"), "`COBS(raw) \\|\\| 0x00`");
    }

    #[test]
    fn mutant_keys_drop_line_and_column() {
        assert_eq!(
            mutant_key("protocol/src/crc.rs:20:9: replace < with <= in make_table"),
            "protocol/src/crc.rs: replace < with <= in make_table"
        );
    }

    #[test]
    fn clippy_json_findings() {
        // Field order as cargo 1.95 writes it: children (with their own levels) first.
        let line = r#"{"reason":"compiler-message","message":{"rendered":"error: used `unwrap()`\n","$message_type":"diagnostic","children":[{"code":null,"level":"help","spans":[]}],"level":"error","spans":[{"file_name":"src/a.rs","line_start":7,"is_primary":true}],"code":{"code":"clippy::unwrap_used","explanation":null}}}"#;
        let f = findings(line);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, "error");
        assert_eq!(f[0].lint, "clippy::unwrap_used");
        assert_eq!(f[0].place, "src/a.rs:7");
        assert!(finished(r#"{"reason":"build-finished","success":true}"#));
        assert!(!finished(r#"{"reason":"build-finished","success":false}"#));
        assert!(lint_flags('D').contains(&"-Funsafe_code".to_string()));
        assert!(lint_flags('W').contains(&"-Wclippy::panic".to_string()));
    }

    #[test]
    fn component_names_with_and_without_triples() {
        assert!(is_component(
            "llvm-tools-x86_64-unknown-linux-gnu",
            "llvm-tools"
        ));
        assert!(is_component("rust-src", "rust-src"));
        assert!(is_component("miri-x86_64-unknown-linux-gnu", "miri"));
        assert!(!is_component(
            "rust-std-x86_64-unknown-linux-gnu",
            "rust-src"
        ));
        assert!(!is_component("llvm-tools-preview", "llvm"));
        assert!(!is_component("llvm-tools-x86_64-unknown-linux-gnu", "llvm"));
    }

    #[test]
    fn reads_pins() {
        let t = "[toolchain]\nchannel = \"1.95.0\" # pinned\n[nightly]\ndate = \"2026-10-29\"\n";
        assert_eq!(
            toml_string(t, "toolchain", "channel").as_deref(),
            Some("1.95.0")
        );
        assert_eq!(
            toml_string(t, "nightly", "date").as_deref(),
            Some("2026-10-29")
        );
        assert_eq!(toml_string(t, "nightly", "channel"), None);
    }
}

//! `cargo xtask setup`: the one command a person runs on a fresh machine.
//!
//! Detects the machine, plans one step per tool from toolchains/manifest.toml (each step
//! skips what is already right), asks once, runs the steps (a failed step does not stop the
//! others), and ends with a summary table. Writes the machine-local cargo config
//! (`.cargo/local.toml`, read by every cargo; `.cargo/fast.toml`, read only by the Cranelift
//! fast loop, `cargo xtask fast ...`). `--undo` removes what it wrote to the project.

pub mod download;
pub mod ensure;
pub mod localcfg;
pub mod platform;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::cmd::project_root;
use crate::cmd::{Error, Result, cmd, on_path};
use crate::toml_lite::Doc;
use platform::{Platform, Pm};

/// Every tool name `--only` / `--skip` accept, in the order setup runs them.
pub const TOOLS: &[&str] = &[
    "rust",
    "nightly",
    "cc",
    "mold",
    "qemu",
    "probe-rs",
    "tokio-console",
    "just",
    "udev",
    "ferrocene",
    "local-config",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these tools (comma-separated or repeated): rust, nightly, cc, mold, qemu, probe-rs,
    /// tokio-console, just, udev, ferrocene, local-config.
    #[arg(long, value_delimiter = ',', value_name = "TOOL")]
    pub only: Vec<String>,
    /// Leave these tools alone (same names as --only).
    #[arg(long, value_delimiter = ',', value_name = "TOOL")]
    pub skip: Vec<String>,
    /// Do not ask before changing anything (implied when CI=true).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Linux: also install udev rules so debug probes work without root (needs root or sudo).
    #[arg(long)]
    pub udev: bool,
    /// Install the qualified toolchain (Ferrocene) with criticalup from
    /// toolchains/criticalup.toml. Needs criticalup installed and authenticated.
    #[arg(long)]
    pub ferrocene: bool,
    /// Run `cargo xtask bench-build` first, so the linker choice is measured (takes minutes).
    #[arg(long)]
    pub bench: bool,
    /// Replace a machine-local config file that was edited by hand (yours is kept as .bak).
    #[arg(long)]
    pub force: bool,
    /// Remove what setup wrote to the project (.cargo/local.toml, .cargo/fast.toml) and put
    /// back any file it had replaced. Installed tools stay.
    #[arg(long)]
    pub undo: bool,
}

/// What a step does when run: a description for the plan, and the work.
type Work = Box<dyn FnOnce(&Ctx) -> Result<String> + Send>;

enum Action {
    /// Already right (or not wanted here): the reason.
    Keep(String),
    /// Cannot be done on this machine: what the person can do instead.
    Cannot(String),
    Do {
        plan: Vec<String>,
        work: Work,
    },
}

struct Step {
    tool: &'static str,
    wanted: String,
    found: String,
    action: Action,
}

/// One row of the summary table.
#[derive(Debug)]
struct Row {
    tool: &'static str,
    wanted: String,
    found: String,
    action: String,
    result: String,
    failed: bool,
}

/// Shared by every step.
pub struct Ctx {
    pub root: PathBuf,
    pub manifest: Doc,
    pub toolchain: Doc,
    pub platform: Platform,
    pub home: PathBuf,
    pub yes: bool,
    apt_updated: AtomicBool,
}

impl Ctx {
    pub fn load() -> Result<Self> {
        let root = project_root();
        let manifest = Doc::read(&root.join("toolchains/manifest.toml"))?;
        let toolchain = Doc::read(&root.join(manifest.req("stable.toolchain-file")?))?;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| Error("HOME is not set: set it and re-run".into()))?;
        Ok(Ctx {
            root,
            manifest,
            toolchain,
            platform: Platform::detect(),
            home,
            yes: false,
            apt_updated: AtomicBool::new(false),
        })
    }

    pub fn stable(&self) -> Result<&str> {
        self.toolchain.req("toolchain.channel")
    }

    pub fn nightly(&self) -> Result<String> {
        Ok(format!("nightly-{}", self.manifest.req("nightly.date")?))
    }

    /// The command line to install a system package, with sudo when needed.
    fn pkg_argv(&self, pm: Pm, pkg: &str) -> Vec<String> {
        let mut argv = Vec::new();
        if pm.needs_root() && !self.platform.root {
            argv.push("sudo".to_string());
            if self.yes {
                argv.push("-n".into());
            }
            if pm == Pm::Apt {
                argv.push("--preserve-env=DEBIAN_FRONTEND".into());
            }
        }
        argv.extend(pm.install_argv(pkg));
        argv
    }

    /// Installs `pkg` with the package manager (runs `apt-get update` once first on apt).
    fn pkg_install(&self, pm: Pm, pkg: &str) -> Result {
        if pm == Pm::Apt && !self.apt_updated.swap(true, Ordering::SeqCst) {
            let mut argv = self.pkg_argv(pm, "");
            argv.truncate(argv.iter().position(|a| a == "apt-get").unwrap_or(0) + 1);
            argv.push("update".into());
            run_argv(&argv)?;
        }
        run_argv(&self.pkg_argv(pm, pkg))
    }

    fn pkg_name(&self, tool: &str, pm: Pm) -> Option<String> {
        self.manifest
            .str(&format!("{tool}.{}", pm.key()))
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    fn pkg_plan(&self, tool: &str) -> Option<(Pm, String)> {
        let pm = self.platform.pm?;
        Some((pm, self.pkg_name(tool, pm)?))
    }
}

fn run_argv(argv: &[String]) -> Result {
    let mut c = cmd(&argv[0]).args(&argv[1..]);
    if argv.iter().any(|a| a == "apt-get") {
        c = c.env("DEBIAN_FRONTEND", "noninteractive");
    }
    c.run()
}

/// `cargo install` runs from a neutral directory so the project's config does not apply to
/// the tools, with the pinned stable toolchain.
fn cargo_install_argv(krate: &str, version: &str) -> Vec<String> {
    ["cargo", "install", "--locked", "--version", version, krate]
        .map(String::from)
        .to_vec()
}

/// The first `x.y[.z]` in `text`.
pub fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|t| t.contains('.') && t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| t.trim_end_matches('.').to_string())
}

/// `a >= b` for dotted versions.
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (mut a, mut b) = (parse(a), parse(b));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

/// `program --version`, first version found in its output (stdout or stderr).
pub fn tool_version(program: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    version_in(&text).or_else(|| out.status.success().then(|| "unknown".to_string()))
}

fn read(argv: &[&str]) -> Option<String> {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installed rustup toolchains (names as rustup prints them, without `(default)` etc).
fn rustup_toolchains() -> Vec<String> {
    read(&["rustup", "toolchain", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

fn toolchain_installed(list: &[String], name: &str) -> bool {
    list.iter()
        .any(|t| t == name || t.strip_prefix(name).is_some_and(|r| r.starts_with('-')))
}

/// Is component/target `c` in rustup's `--installed` output (`llvm-tools` matches
/// `llvm-tools-x86_64-unknown-linux-gnu`, `rust-src` matches itself)?
fn listed(installed: &str, c: &str) -> bool {
    // rustup installs `rustc-codegen-cranelift-preview` as `rustc-codegen-cranelift-<triple>`.
    let names = [c, c.strip_suffix("-preview").unwrap_or(c)];
    installed.lines().map(str::trim).any(|l| {
        names.iter().any(|c| {
            l == *c
                || l.strip_prefix(c)
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|r| r.matches('-').count() >= 2)
        })
    })
}

fn rustup_installed(kind: &str, toolchain: &str) -> String {
    read(&[
        "rustup",
        kind,
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ])
    .unwrap_or_default()
}

/// `CI=true` (or `1`): never ask, as with `--yes`.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

pub fn run(args: Args) -> Result {
    let started = Instant::now();
    let mut ctx = Ctx::load()?;
    ctx.yes = args.yes || in_ci();
    for t in args.only.iter().chain(&args.skip) {
        if !TOOLS.contains(&t.as_str()) {
            crate::bail!("unknown tool `{t}`; known: {}", TOOLS.join(", "));
        }
    }
    if args.undo {
        return undo(&ctx, args.dry_run);
    }
    eprintln!("machine: {}", ctx.platform);
    if args.bench
        && !args.dry_run
        && let Err(e) = crate::bench_build::run(crate::bench_build::Args::default())
    {
        eprintln!("warning: bench-build failed ({e}); choosing the linker without it");
    }

    let wanted = |t: &str| {
        (args.only.is_empty() || args.only.iter().any(|o| o == t))
            && !args.skip.iter().any(|s| s == t)
    };
    // Detection is mostly waiting on `--version` and rustup: plan every tool at once.
    let ctx_ref = &ctx;
    let plan_one = |tool: &'static str| -> Option<Result<Step>> {
        Some(match tool {
            "rust" => plan_rust(ctx_ref),
            "nightly" => plan_nightly(ctx_ref),
            "cc" => plan_cc(ctx_ref),
            "mold" => plan_mold(ctx_ref),
            "qemu" => plan_qemu(ctx_ref),
            "probe-rs" | "tokio-console" | "just" => plan_cargo_tool(ctx_ref, tool),
            "udev" if args.udev => plan_udev(ctx_ref),
            "ferrocene" if args.ferrocene => plan_ferrocene(ctx_ref),
            "udev" | "ferrocene" => return None,
            "local-config" => plan_local_config(ctx_ref, args.force),
            _ => unreachable!("every tool in TOOLS has a planner"),
        })
    };
    let planned: Vec<(&'static str, Option<Result<Step>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = TOOLS
            .iter()
            .filter(|t| wanted(t))
            .map(|&tool| (tool, s.spawn(move || plan_one(tool))))
            .collect();
        handles
            .into_iter()
            .map(|(tool, h)| {
                let step = h
                    .join()
                    .unwrap_or_else(|_| Some(Err(Error(format!("planning {tool} panicked")))));
                (tool, step)
            })
            .collect()
    });
    let steps: Vec<Step> = planned
        .into_iter()
        .filter_map(|(tool, step)| {
            Some(step?.unwrap_or_else(|e| Step {
                tool,
                wanted: "?".into(),
                found: "?".into(),
                action: Action::Cannot(e.0),
            }))
        })
        .collect();

    let todo: Vec<_> = steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Do { plan, .. } => Some((s.tool, plan)),
            _ => None,
        })
        .collect();
    if !todo.is_empty() {
        eprintln!("plan:");
        for (tool, plan) in &todo {
            for line in plan.iter() {
                eprintln!("  {tool:<13} {line}");
            }
        }
    }
    let proceed = if todo.is_empty() || args.dry_run {
        !args.dry_run
    } else if ctx.yes {
        true
    } else if std::io::stdin().is_terminal() {
        eprint!("proceed? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        matches!(answer.trim(), "y" | "Y" | "yes")
    } else {
        crate::bail!(
            "setup would change this machine and cannot ask: re-run with --yes (CI=true implies it), or --dry-run to only see the plan"
        );
    };

    let total = todo.len();
    let mut done = 0;
    let mut rows = Vec::new();
    for mut step in steps {
        // The machine-local config depends on what the steps before it installed (mold):
        // decide it again now.
        if step.tool == "local-config"
            && proceed
            && let Ok(again) = plan_local_config(&ctx, args.force)
        {
            step = again;
        }
        let (action, result, failed) = match step.action {
            Action::Keep(why) => ("none".to_string(), why, false),
            Action::Cannot(what) => ("none".to_string(), what, true),
            Action::Do { plan, .. } if !proceed => {
                let result = if args.dry_run {
                    "planned (dry run)"
                } else {
                    "not run: declined"
                };
                (verb(&plan), result.to_string(), false)
            }
            Action::Do { plan, work } => {
                done += 1;
                eprintln!(
                    "==> [{done}/{}] {}: {}",
                    total.max(done),
                    step.tool,
                    plan.join("; ")
                );
                let t0 = Instant::now();
                let r = with_heartbeat(step.tool, || work(&ctx));
                let secs = t0.elapsed().as_secs_f64();
                eprintln!(
                    "    {} {} after {}",
                    step.tool,
                    if r.is_ok() { "done" } else { "FAILED" },
                    elapsed(secs)
                );
                match r {
                    Ok(msg) => (verb(&plan), format!("{msg} ({})", elapsed(secs)), false),
                    Err(e) => (verb(&plan), e.0, true),
                }
            }
        };
        rows.push(Row {
            tool: step.tool,
            wanted: step.wanted,
            found: step.found,
            action,
            result,
            failed,
        });
    }
    let build_dir = tools_build_dir(&ctx.home);
    if build_dir.exists() {
        // The tools are installed; their intermediate build (often over 1 GB) is not needed.
        let _ = std::fs::remove_dir_all(&build_dir);
    }
    print_summary(&rows);
    let failed: Vec<_> = rows.iter().filter(|r| r.failed).map(|r| r.tool).collect();
    eprintln!("setup took {}", elapsed(started.elapsed().as_secs_f64()));
    if !failed.is_empty() {
        crate::bail!(
            "{} step(s) failed: {}; each row above says what to do",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The summary's action column: the first two words of the first command, without sudo.
fn verb(plan: &[String]) -> String {
    let first = plan.first().map(String::as_str).unwrap_or("");
    let words: Vec<_> = first
        .split_whitespace()
        .filter(|w| *w != "sudo" && !w.starts_with('-'))
        .take(2)
        .collect();
    words.join(" ")
}

/// Runs `f`, printing the elapsed time every 30 s so a long install never looks stuck.
fn with_heartbeat<T>(tool: &str, f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let t0 = Instant::now();
            let mut next = 30;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if t0.elapsed().as_secs() >= next {
                    eprintln!(
                        "    ... {tool} still running ({})",
                        elapsed(t0.elapsed().as_secs_f64())
                    );
                    next += 30;
                }
            }
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}

pub fn elapsed(secs: f64) -> String {
    if secs >= 60.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{secs:.1}s")
    }
}

fn print_summary(rows: &[Row]) {
    let head = ["tool", "wanted", "found", "action", "result"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let result = if r.failed {
                format!("FAILED: {}", r.result)
            } else {
                r.result.clone()
            };
            [
                r.tool.to_string(),
                r.wanted.clone(),
                r.found.clone(),
                r.action.clone(),
                result,
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row).take(4) {
            *w = (*w).max(c.chars().count().min(60));
        }
    }
    let line = |c: &[String; 5]| {
        let mut s = String::new();
        for (i, cell) in c.iter().enumerate() {
            if i < 4 {
                let cell: String = if cell.chars().count() > 60 {
                    cell.chars().take(57).collect::<String>() + "..."
                } else {
                    cell.clone()
                };
                s.push_str(&format!("{cell:<w$}  ", w = width[i]));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    eprintln!("\nsummary:");
    eprintln!("{}", line(&head.map(String::from)));
    for c in &cells {
        eprintln!("{}", line(c));
    }
}

fn undo(ctx: &Ctx, dry_run: bool) -> Result {
    for path in [local_toml(&ctx.root), fast_toml(&ctx.root)] {
        if dry_run {
            eprintln!("would undo {}", path.display());
            continue;
        }
        eprintln!("{}", localcfg::undo(&path)?);
    }
    eprintln!(
        "installed tools were left in place (remove them with your package manager, `rustup toolchain uninstall`, `cargo uninstall`)"
    );
    Ok(())
}

// ---- planners: detect, compare with the pin, decide ----

fn plan_rust(ctx: &Ctx) -> Result<Step> {
    let channel = ctx.stable()?.to_string();
    let comps = ctx.toolchain.list("toolchain.components");
    let targets = ctx.toolchain.list("toolchain.targets");
    let profile = ctx
        .toolchain
        .str("toolchain.profile")
        .unwrap_or("minimal")
        .to_string();
    let wanted = format!(
        "{channel} +{}",
        comps
            .iter()
            .chain(&targets)
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    if !on_path("rustup") {
        return Ok(Step {
            tool: "rust",
            wanted,
            found: "no rustup".into(),
            action: Action::Cannot(
                "install rustup from https://rustup.rs, then re-run setup".into(),
            ),
        });
    }
    let mut argvs: Vec<Vec<String>> = Vec::new();
    let found;
    if !toolchain_installed(&rustup_toolchains(), &channel) {
        found = "not installed".to_string();
        let mut argv: Vec<String> = [
            "rustup",
            "toolchain",
            "install",
            &channel,
            "--profile",
            &profile,
        ]
        .map(String::from)
        .to_vec();
        if !comps.is_empty() {
            argv.extend(["--component".to_string(), comps.join(",")]);
        }
        if !targets.is_empty() {
            argv.extend(["--target".to_string(), targets.join(",")]);
        }
        argvs.push(argv);
    } else {
        let have_c = rustup_installed("component", &channel);
        let have_t = rustup_installed("target", &channel);
        let miss_c: Vec<_> = comps
            .iter()
            .filter(|c| !listed(&have_c, c))
            .cloned()
            .collect();
        let miss_t: Vec<_> = targets
            .iter()
            .filter(|t| !listed(&have_t, t))
            .cloned()
            .collect();
        found = if miss_c.is_empty() && miss_t.is_empty() {
            format!("{channel} (all)")
        } else {
            format!(
                "{channel}, missing {}",
                miss_c
                    .iter()
                    .chain(&miss_t)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        if !miss_c.is_empty() {
            let mut argv: Vec<String> = ["rustup", "component", "add", "--toolchain", &channel]
                .map(String::from)
                .to_vec();
            argv.extend(miss_c);
            argvs.push(argv);
        }
        if !miss_t.is_empty() {
            let mut argv: Vec<String> = ["rustup", "target", "add", "--toolchain", &channel]
                .map(String::from)
                .to_vec();
            argv.extend(miss_t);
            argvs.push(argv);
        }
    }
    Ok(Step {
        tool: "rust",
        wanted,
        found,
        action: run_all(argvs, "installed", "present"),
    })
}

/// An action that runs each command line in order, or Keep when there are none.
fn run_all(argvs: Vec<Vec<String>>, ok: &'static str, keep: &str) -> Action {
    if argvs.is_empty() {
        return Action::Keep(keep.to_string());
    }
    let plan = argvs.iter().map(|a| a.join(" ")).collect();
    Action::Do {
        plan,
        work: Box::new(move |_| {
            for argv in &argvs {
                run_argv(argv)?;
            }
            Ok(ok.to_string())
        }),
    }
}

fn plan_nightly(ctx: &Ctx) -> Result<Step> {
    let tc = ctx.nightly()?;
    let comps = ctx.manifest.list("nightly.components");
    let wanted = format!("{tc} +{}", comps.join(","));
    if !on_path("rustup") {
        return Ok(Step {
            tool: "nightly",
            wanted,
            found: "no rustup".into(),
            action: Action::Cannot(
                "install rustup from https://rustup.rs, then re-run setup".into(),
            ),
        });
    }
    let (found, argvs) = if !toolchain_installed(&rustup_toolchains(), &tc) {
        let mut argv: Vec<String> = [
            "rustup",
            "toolchain",
            "install",
            &tc,
            "--profile",
            "minimal",
        ]
        .map(String::from)
        .to_vec();
        if !comps.is_empty() {
            argv.extend(["--component".to_string(), comps.join(",")]);
        }
        ("not installed".to_string(), vec![argv])
    } else {
        let have = rustup_installed("component", &tc);
        let miss: Vec<_> = comps
            .iter()
            .filter(|c| !listed(&have, c))
            .cloned()
            .collect();
        if miss.is_empty() {
            (format!("{tc} (all)"), vec![])
        } else {
            let mut argv: Vec<String> = ["rustup", "component", "add", "--toolchain", &tc]
                .map(String::from)
                .to_vec();
            argv.extend(miss.iter().cloned());
            (format!("{tc}, missing {}", miss.join(",")), vec![argv])
        }
    };
    Ok(Step {
        tool: "nightly",
        wanted,
        found,
        action: run_all(argvs, "installed (host builds only)", "present"),
    })
}

/// gcc >= 12 or clang: the driver that passes -fuse-ld=mold.
fn plan_cc(ctx: &Ctx) -> Result<Step> {
    let min = ctx
        .manifest
        .str("cc.gcc-min-version")
        .unwrap_or("12")
        .to_string();
    let wanted = format!("gcc>={min} or clang");
    if !ctx.platform.is_linux() {
        return Ok(Step {
            tool: "cc",
            wanted,
            found: "-".into(),
            action: Action::Keep("not needed here (no mold)".into()),
        });
    }
    let gcc = on_path("gcc")
        .then(|| read(&["gcc", "-dumpfullversion"]).or_else(|| read(&["gcc", "-dumpversion"])))
        .flatten();
    let clang = on_path("clang").then(|| tool_version("clang")).flatten();
    let found = [
        gcc.as_ref().map(|v| format!("gcc {}", v.trim())),
        clang.as_ref().map(|v| format!("clang {v}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let found = if found.is_empty() {
        "none".to_string()
    } else {
        found
    };
    if clang.is_some()
        || gcc
            .as_deref()
            .is_some_and(|v| version_at_least(v.trim(), &min))
    {
        return Ok(Step {
            tool: "cc",
            wanted,
            found,
            action: Action::Keep("present".into()),
        });
    }
    Ok(Step {
        tool: "cc",
        wanted,
        found,
        action: pkg_action(ctx, "cc"),
    })
}

/// Any C compiler as `cc` (or `$CC`): the bundled SQLite and cargo's host linking need one.
fn plan_c_compiler(ctx: &Ctx) -> Result<Step> {
    let wanted = "a C compiler (cc)".to_string();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = [cc.as_str(), "cc", "gcc", "clang"]
        .into_iter()
        .find(|c| on_path(c))
        .map(String::from);
    let (found, action) = match found {
        Some(c) => (c, Action::Keep("present".into())),
        None => ("none".to_string(), pkg_action(ctx, "c-compiler")),
    };
    Ok(Step {
        tool: "c-compiler",
        wanted,
        found,
        action,
    })
}

fn pkg_action(ctx: &Ctx, tool: &'static str) -> Action {
    match ctx.pkg_plan(tool) {
        Some((pm, pkg)) if ctx.platform.can_install_packages() => Action::Do {
            plan: vec![ctx.pkg_argv(pm, &pkg).join(" ")],
            work: Box::new(move |ctx| {
                ctx.pkg_install(pm, &pkg)
                    .map(|()| format!("installed {pkg}"))
            }),
        },
        Some((pm, pkg)) => Action::Cannot(format!(
            "needs root: run `sudo {}` yourself, then re-run",
            pm.install_argv(&pkg).join(" ")
        )),
        None => Action::Cannot(format!(
            "no package manager xtask knows ({}): install {tool} yourself, then re-run",
            ctx.platform.pm.map(Pm::key).unwrap_or("none found")
        )),
    }
}

/// Where a mold from the release tarball lives.
fn user_dirs(ctx: &Ctx) -> (PathBuf, PathBuf) {
    (ctx.home.join(".local/opt"), ctx.home.join(".local/bin"))
}

/// The mold to use: on PATH, or setup's own copy in ~/.local/bin.
pub fn find_mold(home: &Path) -> Option<(PathBuf, String)> {
    if on_path("mold") {
        return tool_version("mold").map(|v| (PathBuf::from("mold"), v));
    }
    let own = home.join(".local/bin/mold");
    own.is_file()
        .then(|| tool_version(&own.to_string_lossy()).map(|v| (own, v)))
        .flatten()
}

fn mold_release(ctx: &Ctx) -> Result<download::Release> {
    let m = &ctx.manifest;
    let version = m.req("mold.release.version")?;
    let arch = ctx.platform.arch.as_str();
    let fill = |s: &str| s.replace("{version}", version).replace("{arch}", arch);
    Ok(download::Release {
        url: fill(m.req("mold.release.url")?),
        sha256: m
            .str(&format!("mold.release.sha256-{arch}"))
            .unwrap_or("")
            .to_string(),
        binary: fill(m.req("mold.release.binary")?),
        name: "mold".into(),
        sha256_url: String::new(),
    })
}

fn plan_mold(ctx: &Ctx) -> Result<Step> {
    let min = ctx.manifest.req("mold.min-version")?.to_string();
    let rel_version = ctx.manifest.req("mold.release.version")?.to_string();
    let wanted = format!(">={min} (pkg) or {rel_version} (tarball)");
    if ctx.platform.os == "macos" {
        return Ok(Step {
            tool: "mold",
            wanted,
            found: "-".into(),
            action: Action::Keep("skipped on macOS: mold no longer supports Mach-O, and Apple's default linker (ld-prime) is already fast".into()),
        });
    }
    if !ctx.platform.is_linux() {
        return Ok(Step {
            tool: "mold",
            wanted,
            found: "-".into(),
            action: Action::Keep(format!("skipped: not supported on {}", ctx.platform.os)),
        });
    }
    let found = find_mold(&ctx.home);
    let found_s = found
        .as_ref()
        .map(|(p, v)| format!("{v} ({})", p.display()))
        .unwrap_or_else(|| "missing".into());
    if let Some((_, v)) = &found
        && version_at_least(v, &min)
    {
        return Ok(Step {
            tool: "mold",
            wanted,
            found: found_s,
            action: Action::Keep("present".into()),
        });
    }
    let pkg = ctx
        .pkg_plan("mold")
        .filter(|_| ctx.platform.can_install_packages());
    let rel = mold_release(ctx)?;
    let mut plan = Vec::new();
    if let Some((pm, name)) = &pkg {
        plan.push(ctx.pkg_argv(*pm, name).join(" "));
        plan.push("(if that fails: the pinned release tarball)".into());
    } else {
        plan.push(format!(
            "download {} (sha256 verified) into ~/.local/opt, link ~/.local/bin/mold",
            rel.url
        ));
    }
    let (opt, bin) = user_dirs(ctx);
    let progress = std::io::stderr().is_terminal();
    let work: Work = Box::new(move |ctx| {
        if let Some((pm, name)) = pkg {
            match ctx.pkg_install(pm, &name) {
                Ok(()) => return Ok(format!("installed {name} with {}", pm.key())),
                Err(e) => eprintln!("    {e}; trying the release tarball"),
            }
        }
        let (exe, _) = download::install(&rel, &opt, &bin, progress)?;
        let on_path_note = if on_path("mold") {
            ""
        } else {
            "; add ~/.local/bin to PATH"
        };
        Ok(format!("installed {}{on_path_note}", exe.display()))
    });
    Ok(Step {
        tool: "mold",
        wanted,
        found: found_s,
        action: Action::Do { plan, work },
    })
}

fn plan_qemu(ctx: &Ctx) -> Result<Step> {
    let bin = ctx.manifest.req("qemu.bin")?;
    let min = ctx.manifest.req("qemu.min-version")?;
    let wanted = format!("{bin} >={min}");
    let found = on_path(bin).then(|| tool_version(bin)).flatten();
    let found_s = found.clone().unwrap_or_else(|| "missing".into());
    let action = match found {
        Some(v) if version_at_least(&v, min) => Action::Keep("present".into()),
        _ => pkg_action(ctx, "qemu"),
    };
    Ok(Step {
        tool: "qemu",
        wanted,
        found: found_s,
        action,
    })
}

fn plan_cargo_tool(ctx: &Ctx, tool: &'static str) -> Result<Step> {
    let krate = ctx.manifest.req(&format!("{tool}.crate"))?.to_string();
    let version = ctx.manifest.req(&format!("{tool}.version"))?.to_string();
    let bin = ctx.manifest.req(&format!("{tool}.bin"))?;
    let wanted = format!("{krate} {version}");
    let found = on_path(bin).then(|| tool_version(bin)).flatten();
    let found_s = found.clone().unwrap_or_else(|| "missing".into());
    if found.as_deref() == Some(version.as_str()) {
        return Ok(Step {
            tool,
            wanted,
            found: found_s,
            action: Action::Keep("present".into()),
        });
    }
    if !on_path("cargo") {
        return Ok(Step {
            tool,
            wanted,
            found: found_s,
            action: Action::Cannot(
                "cargo is not on PATH: install rustup (https://rustup.rs), then re-run".into(),
            ),
        });
    }
    let argv = cargo_install_argv(&krate, &version);
    let stable = ctx.stable()?.to_string();
    let prebuilt = prebuilt_for(ctx, tool, &version)?;
    let mut plan = Vec::new();
    if let Some(p) = &prebuilt {
        plan.push(p.describe());
        plan.push(format!("(if that fails: {})", argv.join(" ")));
    } else {
        plan.push(argv.join(" "));
    }
    let bin_dir = cargo_bin_dir(&ctx.home);
    let opt_dir = user_dirs(ctx).0;
    let build_dir = tools_build_dir(&ctx.home);
    let bin = bin.to_string();
    let work: Work = Box::new(move |_| {
        let mut why_source = String::new();
        if let Some(p) = prebuilt {
            let r = match &p {
                Prebuilt::Archive(rel) => download::install(rel, &opt_dir, &bin_dir, false),
                Prebuilt::Wheel(w) => download::install_wheel(w, &bin_dir),
            };
            match r.and_then(|(exe, checked)| {
                let v = tool_version(&exe.to_string_lossy()).unwrap_or_default();
                if v == version {
                    Ok(checked)
                } else {
                    let _ = std::fs::remove_file(&exe);
                    Err(Error(format!(
                        "{} --version says `{v}`, not {version}",
                        exe.display()
                    )))
                }
            }) {
                Ok(checked) => {
                    return Ok(format!(
                        "installed prebuilt {krate} {version} from {} ({})",
                        p.channel(),
                        checked.describe()
                    ));
                }
                Err(e) => {
                    eprintln!("    prebuilt {bin} not installed ({e}): building from source");
                    why_source = format!(" (prebuilt failed: {e})");
                }
            }
        }
        cmd(&argv[0])
            .args(&argv[1..])
            .dir(std::env::temp_dir())
            .env("RUSTUP_TOOLCHAIN", &stable)
            // One build dir shared by every tool setup builds (they share tokio, clap,
            // serde ...), removed after the last one; never a project's target dir.
            .env("CARGO_TARGET_DIR", &build_dir)
            // A tool's own release profile may ask for LTO and one codegen unit (just does):
            // minutes of build for a few percent of speed in a command-line tool.
            .env("CARGO_PROFILE_RELEASE_LTO", "false")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .run()
            .map_err(|e| {
                Error(format!(
                    "{e}; re-run `{}` to see the full error",
                    argv.join(" ")
                ))
            })?;
        Ok(format!(
            "built {krate} {version} from source with cargo install{why_source}"
        ))
    });
    Ok(Step {
        tool,
        wanted,
        found: found_s,
        action: Action::Do { plan, work },
    })
}

/// A prebuilt channel for a tool, from its manifest section.
enum Prebuilt {
    /// A release archive (cargo-dist layout) with a published `.sha256`.
    Archive(download::Release),
    /// The release binary inside a PyPI wheel.
    Wheel(download::Wheel),
}

impl Prebuilt {
    fn channel(&self) -> &'static str {
        match self {
            Prebuilt::Archive(_) => "its release archive",
            Prebuilt::Wheel(_) => "PyPI",
        }
    }

    fn describe(&self) -> String {
        match self {
            Prebuilt::Archive(r) => format!("download {} (sha256 verified)", r.url),
            Prebuilt::Wheel(w) => format!(
                "pip download {}=={} (the release binary in a wheel; sha256 verified)",
                w.project, w.version
            ),
        }
    }
}

/// `[<tool>.release]` (an archive) or `[<tool>.pypi]` (a wheel), when the manifest has one for
/// this platform. `XTASK_NO_PREBUILT=1` skips them (always build from source).
fn prebuilt_for(ctx: &Ctx, tool: &str, version: &str) -> Result<Option<Prebuilt>> {
    if std::env::var_os("XTASK_NO_PREBUILT").is_some_and(|v| v == "1") {
        return Ok(None);
    }
    let m = &ctx.manifest;
    let triple = host_triple(&ctx.platform);
    let arch = ctx.platform.arch.as_str();
    let fill = |s: &str| {
        s.replace("{version}", version)
            .replace("{triple}", &triple)
            .replace("{arch}", arch)
    };
    let key = format!("{}-{}", ctx.platform.os, arch);
    if let Some(project) = m.str(&format!("{tool}.pypi.project")) {
        return Ok(Some(Prebuilt::Wheel(download::Wheel {
            project: project.to_string(),
            version: version.to_string(),
            member: fill(m.req(&format!("{tool}.pypi.member"))?),
            sha256: m
                .str(&format!("{tool}.pypi.sha256-{key}"))
                .unwrap_or("")
                .to_string(),
            name: m.req(&format!("{tool}.bin"))?.to_string(),
        })));
    }
    if let Some(url) = m.str(&format!("{tool}.release.url")) {
        let url = fill(url);
        return Ok(Some(Prebuilt::Archive(download::Release {
            sha256_url: format!("{url}.sha256"),
            sha256: m
                .str(&format!("{tool}.release.sha256-{key}"))
                .unwrap_or("")
                .to_string(),
            binary: fill(m.req(&format!("{tool}.release.binary"))?),
            name: m.req(&format!("{tool}.bin"))?.to_string(),
            url,
        })));
    }
    Ok(None)
}

/// cargo's bin dir (`$CARGO_HOME/bin`, default `~/.cargo/bin`): on PATH wherever rustup is.
fn cargo_bin_dir(home: &Path) -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cargo"))
        .join("bin")
}

/// Where setup builds tools from source (shared by all of them; removed after the run).
fn tools_build_dir(home: &Path) -> PathBuf {
    home.join(".cache/beacon-xtask/tools-build")
}

/// udev rules for the common debug probes (ST-Link, J-Link, CMSIS-DAP/DAPLink, Raspberry Pi
/// Debug Probe, ESP USB-JTAG, FTDI): members of `plugdev` and the logged-in user get access.
const UDEV_RULES: &str = "\
# Written by `cargo xtask setup --udev`: debug probes usable without root (probe-rs).
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3748\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374b\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374e\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374f\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3753\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3754\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"1366\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0d28\", ATTRS{idProduct}==\"0204\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"2e8a\", ATTRS{idProduct}==\"000c\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"303a\", ATTRS{idProduct}==\"1001\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0403\", ATTRS{idProduct}==\"6010\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0403\", ATTRS{idProduct}==\"6014\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
";

fn plan_udev(ctx: &Ctx) -> Result<Step> {
    let dir = std::env::var("XTASK_UDEV_DIR").unwrap_or_else(|_| "/etc/udev/rules.d".into());
    let dest = format!("{dir}/69-probe-rs.rules");
    let wanted = "probe rules (--udev)".to_string();
    if !ctx.platform.is_linux() {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: "-".into(),
            action: Action::Keep("not needed on this OS".into()),
        });
    }
    if std::fs::read_to_string(&dest).is_ok_and(|t| t == UDEV_RULES) {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: dest,
            action: Action::Keep("present".into()),
        });
    }
    if !ctx.platform.root && !ctx.platform.sudo {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: "missing".into(),
            action: Action::Cannot(format!("needs root: copy the rules to {dest} as root")),
        });
    }
    let sudo: Vec<String> = if ctx.platform.root {
        vec![]
    } else {
        vec!["sudo".into()]
    };
    let staged = std::env::temp_dir().join(format!("xtask-probe-rs-{}.rules", std::process::id()));
    let argvs: Vec<Vec<String>> = vec![
        [
            &sudo[..],
            &[
                "install".into(),
                "-m".into(),
                "0644".into(),
                staged.display().to_string(),
                dest.clone(),
            ],
        ]
        .concat(),
        [
            &sudo[..],
            &["udevadm".into(), "control".into(), "--reload-rules".into()],
        ]
        .concat(),
        [&sudo[..], &["udevadm".into(), "trigger".into()]].concat(),
    ];
    let plan = argvs.iter().map(|a| a.join(" ")).collect();
    let work: Work = Box::new(move |_| {
        std::fs::write(&staged, UDEV_RULES)?;
        let r = argvs.iter().try_for_each(|a| run_argv(a));
        let _ = std::fs::remove_file(&staged);
        r.map(|()| "installed; re-plug the probe (and join the plugdev group)".to_string())
    });
    Ok(Step {
        tool: "udev",
        wanted,
        found: "missing".into(),
        action: Action::Do { plan, work },
    })
}

fn plan_ferrocene(ctx: &Ctx) -> Result<Step> {
    let manifest = ctx.root.join(ctx.manifest.req("ferrocene.manifest")?);
    let bin = ctx.manifest.req("ferrocene.bin")?.to_string();
    let wanted = format!(
        "toolchains/{}",
        manifest.file_name().unwrap_or_default().to_string_lossy()
    );
    if !on_path(&bin) {
        return Ok(Step {
            tool: "ferrocene",
            wanted,
            found: format!("no {bin}"),
            action: Action::Cannot(format!(
                "{bin} not found: install it (https://criticalup.ferrocene.dev), run `{bin} auth set` with your token, then re-run with --ferrocene"
            )),
        });
    }
    let m = manifest.display().to_string();
    let installed = std::process::Command::new(&bin)
        .args(["which", "rustc", "--project", &m])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(Step {
            tool: "ferrocene",
            wanted,
            found: "installed".into(),
            action: Action::Keep("present".into()),
        });
    }
    let argv = vec![bin.clone(), "install".into(), "--project".into(), m];
    let plan = vec![argv.join(" ")];
    let work: Work = Box::new(move |_| {
        run_argv(&argv).map_err(|e| Error(format!("{e}; if it says unauthenticated, run `{bin} auth set` with a token from customers.ferrocene.dev")))?;
        Ok("installed (use it with `criticalup run cargo build`)".into())
    });
    Ok(Step {
        tool: "ferrocene",
        wanted,
        found: "not installed".into(),
        action: Action::Do { plan, work },
    })
}

// ---- the machine-local cargo config ----

pub fn local_toml(root: &Path) -> PathBuf {
    root.join(".cargo/local.toml")
}

pub fn fast_toml(root: &Path) -> PathBuf {
    root.join(".cargo/fast.toml")
}

/// Which linker the last bench-build measured faster, with its ratio (mold / LLD).
pub fn bench_link_choice(root: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(root.join("target/bench-build.json")).ok()?;
    let winner =
        crate::json::find_field(&text, "link_winner").filter(|w| w == "mold" || w == "lld")?;
    let ratio = crate::json::find_field(&text, "link_mold_over_lld").unwrap_or_else(|| "?".into());
    Some((winner, ratio))
}

const LOCAL_HEADER: &str =
    "Machine-local cargo config, written by `cargo xtask setup`; git-ignored; read by every
cargo command in this project (stable included), through the include in config.toml.
Edit it freely: setup then leaves it alone (it checks the sha256 below).
`cargo xtask setup --undo` removes it.";

const FAST_HEADER: &str =
    "The Cranelift fast loop, written by `cargo xtask setup`; git-ignored. Read ONLY when passed
explicitly, by `cargo xtask fast <cargo command>`, which runs
  cargo +<pinned nightly> --config .cargo/fast.toml <command> --profile fast ...
Stable cargo never reads this file, so `cargo build` keeps working; the firmware never gets it
(Cranelift has no 32-bit ARM backend). `cargo xtask setup --undo` removes it.";

/// The host target triple, from what we know about the platform.
pub fn host_triple(p: &Platform) -> String {
    match p.os.as_str() {
        "macos" => format!("{}-apple-darwin", p.arch),
        "windows" => format!("{}-pc-windows-msvc", p.arch),
        _ => format!("{}-unknown-linux-gnu", p.arch),
    }
}

/// The bodies of local.toml and fast.toml, and a one-line description of the linker choice.
pub fn local_config_bodies(ctx: &Ctx) -> Result<(String, String, String)> {
    let nightly = ctx.nightly()?;
    let mold = if ctx.platform.is_linux() {
        find_mold(&ctx.home)
    } else {
        None
    };
    let choice = bench_link_choice(&ctx.root);
    let mut local = String::new();
    let why;
    match (&mold, &choice) {
        (Some((path, _)), Some((winner, ratio))) if winner == "mold" => {
            why = format!("mold (bench-build: mold link {ratio}x of LLD)");
            local.push_str(&format!(
                "# Linker: mold, measured faster than the default LLD here (mold/LLD = {ratio}).\n"
            ));
            local.push_str(&format!("[target.{}]\n", host_triple(&ctx.platform)));
            let arg = if path == Path::new("mold") {
                "link-arg=-fuse-ld=mold".to_string()
            } else {
                format!("link-arg=--ld-path={}", path.display())
            };
            if on_path("clang") {
                local.push_str("linker = \"clang\"\n");
            }
            local.push_str(&format!("rustflags = [\"-C\", \"{arg}\"]\n"));
        }
        (Some(_), Some((_, ratio))) => {
            why = format!("LLD (bench-build: mold {ratio}x of LLD, not clearly faster)");
            let verdict = std::fs::read_to_string(ctx.root.join("target/bench-build.json"))
                .ok()
                .and_then(|t| crate::json::find_field(&t, "link_verdict"))
                .unwrap_or_else(|| format!("mold/LLD rebuild time = {ratio}"));
            local.push_str(&format!("# Linker: the default (rustc's bundled LLD). mold is installed, but bench-build did not\n# measure it clearly faster here, so it is not used:\n#   {verdict}\n# Re-measure with `cargo xtask bench-build`, then `cargo xtask setup --only local-config`.\n"));
        }
        (Some(_), None) => {
            why = "LLD (mold not measured yet: run `cargo xtask bench-build`)".into();
            local.push_str("# Linker: the default (rustc's bundled LLD). mold is installed but not measured yet on this\n# machine: `cargo xtask bench-build`, then `cargo xtask setup --only local-config` switches to it\n# only if it links faster.\n");
        }
        (None, _) => {
            why = "default (mold not installed)".into();
            local.push_str("# Linker: the platform default (mold is not installed).\n");
        }
    }
    local.push_str(
        "# Debug info: the workspace's Cargo.toml already keeps line tables only for workspace crates and\n# none for dependencies (dev profile), the largest lever on link time; nothing to add here.\n",
    );
    // The devdeps dylib (localcfg::with_dev_loop) is NOT switched on by setup: measured by
    // bench-build only. Builds of the same crates with different features (the service with
    // and without `console`, the gateway with `rtt`) each write target/debug/libbeacon_devdeps.so
    // under one unhashed name, and a binary from the other build then fails at start with
    // "undefined symbol" (seen in `cargo xtask test`'s end-to-end step). docs/compile-times.md.
    let fast = format!(
        "# Pinned nightly: {nightly} (toolchains/manifest.toml).\n\
[unstable]\n\
codegen-backend = true\n\
\n\
[profile.fast]\n\
inherits = \"dev\"\n\
codegen-backend = \"cranelift\"\n\
debug = \"line-tables-only\"\n\
\n\
# Dependencies stay on LLVM: they rarely change, and Cranelift-built code cannot unwind\n\
# (catch_unwind and tokio's task panic isolation) and traps on some SIMD intrinsics.\n\
[profile.fast.package.\"*\"]\n\
codegen-backend = \"llvm\"\n\
debug = false\n"
    );
    Ok((local, fast, why))
}

fn plan_local_config(ctx: &Ctx, force: bool) -> Result<Step> {
    let (local, fast, why) = local_config_bodies(ctx)?;
    let files = [
        (local_toml(&ctx.root), LOCAL_HEADER, local),
        (fast_toml(&ctx.root), FAST_HEADER, fast),
    ];
    let states: Vec<_> = files
        .iter()
        .map(|(p, _, b)| localcfg::inspect(p, b))
        .collect();
    let found = states
        .iter()
        .zip(&files)
        .map(|(s, (p, ..))| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            match s {
                localcfg::State::Absent => format!("{name}: none"),
                localcfg::State::Managed(true) => format!("{name}: current"),
                localcfg::State::Managed(false) => format!("{name}: outdated"),
                localcfg::State::Edited => format!("{name}: edited"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let wanted = format!("linker {why}");
    let needs = |s: &localcfg::State| {
        !matches!(s, localcfg::State::Managed(true)) && (force || *s != localcfg::State::Edited)
    };
    if !states.iter().any(needs) {
        let kept = states.contains(&localcfg::State::Edited);
        let msg = if kept {
            "kept your edited file(s); --force replaces them (with a .bak)"
        } else {
            "current"
        };
        if kept {
            for (p, h, b) in &files {
                if localcfg::inspect(p, b) == localcfg::State::Edited {
                    localcfg::apply(p, h, b, false)?; // only shows the diff
                }
            }
        }
        return Ok(Step {
            tool: "local-config",
            wanted,
            found,
            action: Action::Keep(msg.into()),
        });
    }
    let plan = files
        .iter()
        .zip(&states)
        .filter(|(_, s)| needs(s))
        .map(|((p, ..), _)| format!("write {}", p.strip_prefix(&ctx.root).unwrap_or(p).display()))
        .collect();
    let work: Work = Box::new(move |_| {
        let mut msgs = Vec::new();
        for (p, h, b) in &files {
            msgs.push(localcfg::apply(p, h, b, force)?);
        }
        Ok(msgs.join("; "))
    });
    Ok(Step {
        tool: "local-config",
        wanted,
        found,
        action: Action::Do { plan, work },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            version_in("mold 1.10.1 (compatible with GNU ld)").as_deref(),
            Some("1.10.1")
        );
        assert_eq!(
            version_in("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)").as_deref(),
            Some("7.2.19")
        );
        assert_eq!(
            version_in("probe-rs 0.32.0 (git commit: crates.io)").as_deref(),
            Some("0.32.0")
        );
        assert!(version_at_least("1.10.1", "1.10"));
        assert!(version_at_least("12.2.0", "12"));
        assert!(!version_at_least("11.4", "12"));
        assert!(!version_at_least("1.9", "1.10"));
    }

    #[test]
    fn rustup_lists() {
        let list = vec![
            "1.95.0-x86_64-unknown-linux-gnu".to_string(),
            "nightly-2026-10-29-x86_64-unknown-linux-gnu".to_string(),
        ];
        assert!(toolchain_installed(&list, "1.95.0"));
        assert!(toolchain_installed(&list, "nightly-2026-10-29"));
        assert!(!toolchain_installed(&list, "nightly-2026-10-2"));
        let installed =
            "cargo-x86_64-unknown-linux-gnu\nllvm-tools-x86_64-unknown-linux-gnu\nrust-src\n";
        assert!(listed(installed, "llvm-tools"));
        assert!(listed(installed, "rust-src"));
        assert!(!listed(installed, "rust"));
        assert!(!listed(installed, "clippy"));
        let cl = "rustc-codegen-cranelift-x86_64-unknown-linux-gnu\n";
        assert!(listed(cl, "rustc-codegen-cranelift-preview"));
    }
}

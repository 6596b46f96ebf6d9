//! `cargo xtask setup`: the one command a person runs on a fresh machine.
//!
//! Detects the machine, plans one step per tool from toolchains/manifest.toml (each step
//! skips what is already right), asks once, runs the steps (a failed step does not stop the
//! others), and ends with a summary table. Writes the machine-local cargo config
//! (`.cargo/local.toml`, read by every cargo; `.cargo/fast.toml`, read only by the Cranelift
//! fast loop, `cargo xtask fast ...`). `--undo` removes what it wrote to the project.

mod cargo_config;
mod cargo_tool;
pub mod download;
pub mod ensure;
mod ferrocene;
pub mod localcfg;
mod mold;
pub mod platform;
mod rust;
mod system;
mod udev;

use cargo_config::plan_local_config;
pub use cargo_config::{host_triple, local_config_bodies};
use cargo_tool::plan_cargo_tool;
use cargo_tool::tools_build_dir;
use ferrocene::plan_ferrocene;
pub use mold::find_mold;
use mold::plan_mold;
use rust::{plan_nightly, plan_rust};
// template:service:begin
use system::plan_postgres;
// template:service:end
use system::{plan_c_compiler, plan_cc, plan_qemu};
use udev::plan_udev;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cmd::{Error, Result, cmd, elapsed, in_ci, on_path, read_argv as read, run_argv};
use crate::project::{bench_link_choice, fast_toml, local_toml};
use crate::toml_lite::Doc;
use crate::tools::{
    listed, rustup_installed, rustup_toolchains, tool_version, toolchain_installed,
    version_at_least,
};
use platform::{Platform, Pm};

/// Every tool name `--only` / `--skip` accept, in the order setup runs them.
pub const TOOLS: &[&str] = &[
    "rust",
    "nightly",
    "cc",
    "mold",
    "qemu",
    // template:service:begin
    "postgres",
    // template:service:end
    "probe-rs",
    "tokio-console",
    "just",
    "udev",
    "ferrocene",
    "local-config",
];

#[derive(Debug, Default)]
pub struct Args {
    pub dry_run: bool,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub yes: bool,
    pub udev: bool,
    pub ferrocene: bool,
    pub bench: bool,
    pub force: bool,
    pub undo: bool,
}

/// `cargo xtask setup --help`.
pub const HELP: &str = "\
Install and configure every tool the project uses (toolchains/manifest.toml): rustup components,
the Cranelift nightly, mold, QEMU, probe-rs, tokio-console, just; write .cargo/local.toml and
.cargo/fast.toml for this machine. Idempotent: a re-run with everything present changes nothing.

Usage: cargo xtask setup [OPTIONS]

Options:
      --dry-run      Print the plan and change nothing
      --only <TOOL>  Only these tools (comma-separated or repeated): rust, nightly, cc, mold, qemu,
                     postgres (opt-in: only when named here), probe-rs, tokio-console, just, udev,
                     ferrocene, local-config
      --skip <TOOL>  Leave these tools alone (same names as --only)
  -y, --yes          Do not ask before changing anything (implied when CI=true)
      --udev         Linux: also install udev rules so debug probes work without root (needs root
                     or sudo)
      --ferrocene    Install the qualified toolchain (Ferrocene) with criticalup from
                     toolchains/criticalup.toml; needs criticalup installed and authenticated
      --bench        Run `cargo xtask bench-build` first, so the linker choice is measured (takes
                     minutes)
      --force        Replace a machine-local config file that was edited by hand (yours is kept
                     as .bak)
      --undo         Remove what setup wrote to the project (.cargo/local.toml, .cargo/fast.toml)
                     and put back any file it had replaced; installed tools stay
  -h, --help         Print help
";

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> Result<Self, crate::args::Usage> {
        Ok(Args {
            dry_run: a.flag("--dry-run", None)?,
            only: a.values("--only")?,
            skip: a.values("--skip")?,
            yes: a.flag("--yes", Some('y'))?,
            udev: a.flag("--udev", None)?,
            ferrocene: a.flag("--ferrocene", None)?,
            bench: a.flag("--bench", None)?,
            force: a.flag("--force", None)?,
            undo: a.flag("--undo", None)?,
        })
    }
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
        let root = crate::project::root();
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
        Ok(self.toolchain.req("toolchain.channel")?)
    }

    pub fn nightly(&self) -> Result<String> {
        Ok(format!("nightly-{}", self.manifest.req("nightly.date")?))
    }

    /// The command line to install a system package, with sudo when needed; `allow_remove` as
    /// in [`Pm::install_argv`].
    fn pkg_argv(&self, pm: Pm, pkg: &str, allow_remove: bool) -> Vec<String> {
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
        argv.extend(pm.install_argv(pkg, allow_remove));
        argv
    }

    /// Installs `pkg` with the package manager (runs `apt-get update` once first on apt).
    /// `removal_agreed`: the plan the user said yes to (or `--yes`) already showed that apt
    /// removes packages of the same family ([`same_family_removals`]).
    fn pkg_install(&self, pm: Pm, pkg: &str, removal_agreed: bool) -> Result {
        if pm == Pm::Apt && !self.apt_updated.swap(true, Ordering::SeqCst) {
            let mut argv = self.pkg_argv(pm, "", false);
            argv.truncate(argv.iter().position(|a| a == "apt-get").unwrap_or(0) + 1);
            argv.push("update".into());
            run_argv(&argv)?;
        }
        let Err(e) = run_argv(&self.pkg_argv(pm, pkg, removal_agreed)) else {
            return Ok(());
        };
        if pm != Pm::Apt || removal_agreed {
            return Err(e);
        }
        // apt refused (`--no-remove`) or failed otherwise (the plan's simulation saw nothing,
        // e.g. no package lists before `apt-get update`): ask it again what the install would
        // remove. Removing is allowed only with consent (--yes, CI, or a yes on a terminal)
        // and only for packages of the same family as the one asked for (seen here: Debian's
        // qemu-system-arm 7.2 cannot sit beside a backported qemu-utils 10.0, which the project
        // does not use); anything else stays the user's decision.
        let removals = apt_removals(pkg);
        let same_family = is_same_family(pkg, &removals);
        let list = removals.join(", ");
        if same_family
            && (self.yes
                || ask(
                    &format!(
                        "apt must remove {list} (the same package family; the project does not \
                         use it) to install {pkg}: let it?"
                    ),
                    true,
                )?)
        {
            eprintln!(
                "note: apt must remove {list} to install {pkg} (the same package family; the \
                 project does not use it): removing it; reinstall it later if you need it"
            );
            return run_argv(&self.pkg_argv(pm, pkg, true));
        }
        let why = if removals.is_empty() {
            format!(
                "apt could not install `{pkg}`: resolve what apt printed above, e.g. by \
                 installing a matching version, then re-run"
            )
        } else if same_family {
            format!(
                "apt would have to remove {list}, of the same family: re-run with --yes to let \
                 it, or remove it yourself, then re-run"
            )
        } else {
            format!(
                "apt would have to remove {list}: xtask never removes unrelated packages; \
                 resolve what apt printed above, then re-run"
            )
        };
        Err(crate::cmd::Error(format!("{e}\n  ({why})")))
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

/// What `apt-get install <pkg>` would remove, from a simulation (`-s`, no root needed, changes
/// nothing): the names on its `Remv` lines; empty when it would remove nothing or cannot say
/// (no package lists yet, no apt-get).
fn apt_removals(pkg: &str) -> Vec<String> {
    let mut argv = vec!["apt-get", "-s", "install", "--no-install-recommends"];
    argv.extend(pkg.split_whitespace());
    crate::cmd::read_argv(&argv)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// Whether every package apt would remove is of the family (`qemu-*`) of one asked for.
fn is_same_family(pkg: &str, removals: &[String]) -> bool {
    let family = |name: &str| name.split('-').next().unwrap_or(name).to_string();
    !removals.is_empty()
        && removals
            .iter()
            .all(|r| pkg.split_whitespace().any(|p| family(p) == family(r)))
}

/// At plan time: the packages of the same family that apt says it must remove to install
/// `pkg`, so the one question (or `--dry-run`) shows them; `None` when it removes nothing,
/// cannot say, or would remove something unrelated (then `--no-remove` stays and refuses).
pub(super) fn same_family_removals(pkg: &str) -> Option<Vec<String>> {
    let removals = apt_removals(pkg);
    is_same_family(pkg, &removals).then_some(removals)
}

/// One yes/no question on the terminal (`[Y/n]` when `default` is yes, else `[y/N]`; an
/// empty answer takes the default); `false` with no terminal.
pub(super) fn ask(question: &str, default: bool) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} {} ", if default { "[Y/n]" } else { "[y/N]" });
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(match answer.trim() {
        "" => default,
        a => matches!(a, "y" | "Y" | "yes"),
    })
}

/// `cargo install` runs from a neutral directory so the project's config does not apply to
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
    let steps = plan_all(&ctx, &args);
    let (proceed, total) = show_plan_and_ask(&ctx, &args, &steps)?;
    let rows = execute(&ctx, &args, steps, proceed, total);
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

/// One step per wanted tool, planned in parallel (detection is mostly waiting on `--version`
/// and rustup). A planner that fails becomes a step that says why.
fn plan_all(ctx: &Ctx, args: &Args) -> Vec<Step> {
    let wanted = |t: &str| {
        (args.only.is_empty() || args.only.iter().any(|o| o == t))
            && !args.skip.iter().any(|s| s == t)
    };
    // Detection is mostly waiting on `--version` and rustup: plan every tool at once.
    let ctx_ref = ctx;
    let plan_one = |tool: &'static str| -> Option<Result<Step>> {
        Some(match tool {
            "rust" => plan_rust(ctx_ref),
            "nightly" => plan_nightly(ctx_ref),
            "cc" => plan_cc(ctx_ref),
            "mold" => plan_mold(ctx_ref),
            "qemu" => plan_qemu(ctx_ref),
            // template:service:begin
            // Opt-in: a server most template users never need.
            "postgres" if args.only.iter().any(|o| o == "postgres") => plan_postgres(ctx_ref),
            "postgres" => return None,
            // template:service:end
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

    steps
}

/// Prints what would change and decides whether to go ahead (`--yes`, CI, a terminal's
/// answer; no terminal and no `--yes` is an error). Returns the decision and the number of
/// steps with work.
fn show_plan_and_ask(ctx: &Ctx, args: &Args, steps: &[Step]) -> Result<(bool, usize)> {
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
        ask("proceed?", false)?
    } else {
        crate::bail!(
            "setup would change this machine and cannot ask: re-run with --yes (CI=true implies it), or --dry-run to only see the plan"
        );
    };

    Ok((proceed, todo.len()))
}

/// Runs the steps (a failed step does not stop the others); one summary row each.
fn execute(ctx: &Ctx, args: &Args, steps: Vec<Step>, proceed: bool, total: usize) -> Vec<Row> {
    let mut done = 0;
    let mut rows = Vec::new();
    for mut step in steps {
        // The machine-local config depends on what the steps before it installed (mold):
        // decide it again now.
        if step.tool == "local-config"
            && proceed
            && let Ok(again) = plan_local_config(ctx, args.force)
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
                let r = with_heartbeat(step.tool, || work(ctx));
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
    rows
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

/// Where tools from release archives live (`~/.local/opt`) and are linked (`~/.local/bin`).
fn user_dirs(ctx: &Ctx) -> (PathBuf, PathBuf) {
    (ctx.home.join(".local/opt"), ctx.home.join(".local/bin"))
}

//! What `cargo xtask demo` and `cargo xtask test` need before they build, checked and repaired
//! with setup's own planners and installers (one code path, not two):
//!
//! - the targets and components `rust-toolchain.toml` lists (rustup adds them only when it
//!   installs a toolchain, never to one that is already there): `rustup target add` /
//!   `rustup component add` into the user's own toolchain, without asking;
//! - QEMU, a C compiler and (for `--db postgres`) the PostgreSQL server, through the system
//!   package manager: without asking under `--yes` or `CI=true`; on a terminal after one
//!   question that shows the exact command; with no terminal and no `--yes`, a one-line error
//!   with that command (exit code 1).
//!
//! Each step says what it does before doing it, and how long it took.

use std::io::IsTerminal;
use std::time::Instant;

use super::{
    Action, Ctx, ask, elapsed, in_ci, plan_c_compiler, plan_qemu, plan_rust, with_heartbeat,
};
use crate::cmd::{Result, on_path};

/// One thing a command needs, and what for (said in every message about it).
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub tool: &'static str,
    pub why: &'static str,
    /// When it is needed: to build, or only to run what was built (QEMU, the PostgreSQL
    /// server), whose install can go beside the build ([`Plan::install`]).
    pub when: When,
}

/// The pinned toolchain's targets and components (the thumb target builds the firmware).
pub const RUST: Need = Need {
    tool: "rust",
    why: "the firmware and the protocol crate build for thumbv7em-none-eabihf",
    when: When::Build,
};

/// A C compiler (the bundled SQLite is compiled from C; cargo links through it).
pub const C_COMPILER: Need = Need {
    tool: "c-compiler",
    why: "the service's bundled SQLite is C, and cargo links host binaries through cc",
    when: When::Build,
};

// template:service:begin
// template:firmware:begin
/// The PostgreSQL server (`cargo xtask demo --db postgres` starts a throwaway cluster with it).
pub const POSTGRES: Need = Need {
    tool: "postgres",
    why: "--db postgres starts a throwaway local cluster with its initdb and pg_ctl",
    when: When::Run,
};
// template:firmware:end
// template:service:end

// template:firmware:begin
/// `what` says who needs QEMU (`the demo`, `the firmware and end-to-end tests`).
pub fn qemu(what: &'static str) -> Need {
    Need {
        tool: "qemu",
        why: what,
        when: When::Run,
    }
}
// template:firmware:end

/// Which installs [`Plan::install`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// What the build needs (targets, a C compiler): before it starts.
    Build,
    /// What only running needs (QEMU, PostgreSQL): may go beside the build.
    Run,
}

/// What is missing, checked and agreed to (every question asked up front, before anything
/// takes time), and not installed yet.
pub struct Plan {
    ctx: Ctx,
    installs: Vec<Install>,
}

struct Install {
    need: Need,
    /// The commands, joined with `' then '`.
    commands: String,
    /// The plan's notes (`(apt removes ...)`), each with a leading space.
    notes: String,
    work: super::Work,
}

impl Plan {
    // template:service:begin
    // template:firmware:begin
    /// Whether anything of `when` is left to install.
    pub fn has(&self, when: When) -> bool {
        self.installs.iter().any(|i| i.need.when == when)
    }
    // template:firmware:end
    // template:service:end

    /// Installs what `when` covers, in order, each step said before it runs and timed.
    pub fn install(&mut self, when: When) -> Result {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.installs)
            .into_iter()
            .partition(|i| i.need.when == when);
        self.installs = later;
        for Install {
            need,
            commands,
            notes,
            work,
        } in now
        {
            eprintln!("==> {}: {commands}{notes} ({})", need.tool, need.why);
            let t0 = Instant::now();
            let r = with_heartbeat(need.tool, || work(&self.ctx));
            let took = elapsed(t0.elapsed().as_secs_f64());
            match r {
                Ok(msg) => eprintln!("    {}: {msg} in {took}", need.tool),
                Err(e) => crate::bail!(
                    "{} failed after {took}: {e}; run '{commands}' yourself, then re-run",
                    need.tool
                ),
            }
        }
        Ok(())
    }
}

/// Checks each need and repairs what is missing, in order; `yes` as `--yes`.
pub fn ensure(command: &str, needs: &[Need], yes: bool) -> Result {
    let mut plan = check(command, needs, yes)?;
    plan.install(When::Build)?;
    plan.install(When::Run)
}

/// Checks each need in order and asks (on a terminal, unless `yes`) for what must be
/// installed; installs nothing: [`Plan::install`] does.
pub fn check(command: &str, needs: &[Need], yes: bool) -> Result<Plan> {
    let mut ctx = Ctx::load()?;
    ctx.yes = yes || in_ci();
    let mut installs = Vec::new();
    for need in needs {
        if need.tool == "rust" && !on_path("rustup") {
            eprintln!(
                "check: rustup not found: assuming your Rust toolchain has what \
                 rust-toolchain.toml lists (targets, components)"
            );
            continue;
        }
        let step = match need.tool {
            "rust" => plan_rust(&ctx)?,
            "qemu" => plan_qemu(&ctx)?,
            "c-compiler" => plan_c_compiler(&ctx)?,
            // template:service:begin
            "postgres" => super::plan_postgres(&ctx)?,
            // template:service:end
            other => unreachable!("no planner for {other}"),
        };
        match step.action {
            Action::Keep(_) => eprintln!("check: {} {} ok", need.tool, step.found),
            Action::Cannot(what) => crate::bail!(
                "{} is missing ({}: {}): {what}",
                step.wanted,
                need.why,
                step.found
            ),
            Action::Do { plan, work } => {
                let system = need.tool != "rust";
                // The commands, and the plan's notes (`(apt removes ...)`) said beside them.
                let is_note = |l: &&String| l.starts_with('(');
                let commands: Vec<&str> = plan
                    .iter()
                    .filter(|l| !is_note(l))
                    .map(String::as_str)
                    .collect();
                let commands = commands.join("' then '");
                let notes: String = plan
                    .iter()
                    .filter(is_note)
                    .map(|n| format!(" {n}"))
                    .collect();
                if system && !ctx.yes {
                    let pkg = ctx
                        .pkg_plan(need.tool)
                        .map(|(_, pkg)| pkg)
                        .unwrap_or_else(|| need.tool.to_string());
                    if !std::io::stdin().is_terminal() {
                        crate::bail!(
                            "{pkg} is not installed ({} needs it: {}): run '{commands}'{notes}, \
                             or re-run `cargo xtask {command} --yes` to let xtask run it",
                            command,
                            need.why
                        );
                    }
                    if !ask(&format!("install {pkg} with '{commands}'{notes}?"), true)? {
                        crate::bail!(
                            "{pkg} is needed ({}): install it with '{commands}', then re-run",
                            need.why
                        );
                    }
                }
                installs.push(Install {
                    need: *need,
                    commands,
                    notes,
                    work,
                });
            }
        }
    }
    Ok(Plan { ctx, installs })
}

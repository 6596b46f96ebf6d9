//! Steps that go through the system package manager: `cc` (a C compiler and libc headers),
//! `qemu` and (opt-in) `postgres`.

use super::*;

/// gcc >= 12 or clang: the driver that passes -fuse-ld=mold.
pub(super) fn plan_cc(ctx: &Ctx) -> Result<Step> {
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
pub(super) fn plan_c_compiler(ctx: &Ctx) -> Result<Step> {
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

pub(super) fn pkg_action(ctx: &Ctx, tool: &'static str) -> Action {
    match ctx.pkg_plan(tool) {
        Some((pm, pkg)) if ctx.platform.can_install_packages() => {
            // apt: ask it first (a simulation: no root, changes nothing) whether the install
            // must remove a package of the same family, so the one question shows it.
            let removes = (pm == Pm::Apt)
                .then(|| super::same_family_removals(&pkg))
                .flatten();
            let agreed = removes.is_some();
            let mut plan = vec![ctx.pkg_argv(pm, &pkg, agreed).join(" ")];
            plan.extend(removes.map(|r| {
                format!(
                    "(apt removes {}, of the same family: the project does not use it)",
                    r.join(", ")
                )
            }));
            Action::Do {
                plan,
                work: Box::new(move |ctx| {
                    ctx.pkg_install(pm, &pkg, agreed)
                        .map(|()| format!("installed {pkg}"))
                }),
            }
        }
        Some((pm, pkg)) => Action::Cannot(format!(
            "needs root: run `sudo {}` yourself, then re-run",
            pm.install_argv(&pkg, false).join(" ")
        )),
        None => Action::Cannot(format!(
            "no package manager xtask knows ({}): install {tool} yourself, then re-run",
            ctx.platform.pm.map(Pm::key).unwrap_or("none found")
        )),
    }
}

pub(super) fn plan_qemu(ctx: &Ctx) -> Result<Step> {
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

// template:service:begin
/// The PostgreSQL server's tools the throwaway clusters run (initdb, pg_ctl), where
/// beacon-pgtemp looks for them: `pg_config --bindir`, the newest /usr/lib/postgresql/*/bin
/// (Debian keeps them off PATH), PATH. Its `initdb --version`, if found.
fn postgres_found() -> Option<String> {
    let version = |dir: Option<&std::path::Path>| {
        let initdb = dir.map_or_else(|| "initdb".into(), |d| d.join("initdb"));
        let has = dir.map_or_else(
            || on_path("initdb") && on_path("pg_ctl"),
            |d| initdb.is_file() && d.join("pg_ctl").is_file(),
        );
        has.then(|| tool_version(&initdb.to_string_lossy()))
            .flatten()
    };
    let from_pg_config = read(&["pg_config", "--bindir"]).map(|d| PathBuf::from(d.trim()));
    // XTASK_PG_LIB: a test hook (the stand-in tests' machine has none).
    let lib = std::env::var("XTASK_PG_LIB").unwrap_or_else(|_| "/usr/lib/postgresql".into());
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort();
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev().map(|(_, d)| d))
        .find_map(|d| version(Some(&d)))
        .or_else(|| version(None))
}

/// `postgres` (opt-in: `--only postgres`): the server from the system package manager.
pub(super) fn plan_postgres(ctx: &Ctx) -> Result<Step> {
    let wanted = "PostgreSQL server (initdb, pg_ctl)".to_string();
    let (found, action) = match postgres_found() {
        Some(v) => (format!("PostgreSQL {v}"), Action::Keep("present".into())),
        None => ("missing".to_string(), pkg_action(ctx, "postgres")),
    };
    Ok(Step {
        tool: "postgres",
        wanted,
        found,
        action,
    })
}
// template:service:end

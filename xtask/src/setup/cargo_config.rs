//! Step `local-config`: what `.cargo/local.toml` and `.cargo/fast.toml` say on this machine
//! (the linker bench-build measured faster, the Cranelift fast loop). How the files are
//! written (checksums, backups) is [`super::localcfg`].

use super::*;

pub(super) const LOCAL_HEADER: &str =
    "Machine-local cargo config, written by `cargo xtask setup`; git-ignored; read by every
cargo command in this project (stable included), through the include in config.toml.
Edit it freely: setup then leaves it alone (it checks the sha256 below).
`cargo xtask setup --undo` removes it.";

pub(super) const FAST_HEADER: &str =
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
                .and_then(|t| crate::json::Json::parse(&t).ok())
                .and_then(|j| j.get("link_verdict")?.as_str().map(String::from))
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
    // The dev-loop dylib (services/devdeps, Linux only): `--cfg beacon_dylib -C rpath` in the
    // host table. Safe to switch on because services/devdeps asks for the union of every
    // build's features, so every build resolves the one library identically (cargo names a
    // dylib without a hash: two feature sets would overwrite each other). docs/compile-times.md.
    // Not in CI (CI=true): CI builds each thing once, where the dylib is one more link and no
    // edit-rebuild loop pays it back, and CI is where the suite must pass without the fast
    // loop (a fresh clone's dependencies).
    let local = if in_ci() {
        local
            + "# Dev loop dylib (services/devdeps): off in CI (CI=true): CI builds once; `cargo xtask setup` on a workstation turns it on.\n"
    } else {
        localcfg::with_dev_loop(&local, &host_triple(&ctx.platform), &ctx.root)
    };
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

pub(super) fn plan_local_config(ctx: &Ctx, force: bool) -> Result<Step> {
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

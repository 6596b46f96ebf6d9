//! Steps `probe-rs`, `tokio-console`, `just`: a prebuilt binary where one is published (checked
//! against its published SHA-256), else `cargo install` with the pinned stable.

use super::*;

/// the tools, with the pinned stable toolchain.
pub(super) fn cargo_install_argv(krate: &str, version: &str) -> Vec<String> {
    ["cargo", "install", "--locked", "--version", version, krate]
        .map(String::from)
        .to_vec()
}

pub(super) fn plan_cargo_tool(ctx: &Ctx, tool: &'static str) -> Result<Step> {
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
            // opt-level 1, not 3: probe-rs-tools from a cold start on 2 cores took 5 min 47 s
            // instead of 6 min 46 s (measured here, 2026-12-02); a flasher and a TUI spend
            // their time waiting on USB and sockets, not in their own code. (Building two
            // tools at once in separate target dirs gained nothing: 7 min 17 s for both,
            // the same CPU work on the same 2 cores, and no shared dependencies.)
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
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
pub(super) enum Prebuilt {
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
pub(super) fn prebuilt_for(ctx: &Ctx, tool: &str, version: &str) -> Result<Option<Prebuilt>> {
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
pub(super) fn cargo_bin_dir(home: &Path) -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cargo"))
        .join("bin")
}

/// Where setup builds tools from source (shared by all of them; removed after the run).
pub(super) fn tools_build_dir(home: &Path) -> PathBuf {
    home.join(".cache/beacon-xtask/tools-build")
}

//! Step `mold`: the linker, from its release archive (checksum from the manifest) or the
//! package manager.

use super::*;

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

pub(super) fn mold_release(ctx: &Ctx) -> Result<download::Release> {
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

pub(super) fn plan_mold(ctx: &Ctx) -> Result<Step> {
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
        plan.push(ctx.pkg_argv(*pm, name, false).join(" "));
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
            match ctx.pkg_install(pm, &name, false) {
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

//! bench-build's scratch trees: copies of the sources (the working tree as git lists it, or an
//! older commit's tree), the variants built from them ([`prepare`]), and the seeding of a
//! lever's target dir from the configured tree's ([`seed`]).

use std::path::Path;
use std::process::Command;

use super::{Args, LOOPS, Variant, levers};
use crate::cmd::{Error, Result, on_path};
use crate::setup::{self, Ctx};

/// Copies the sources git knows about (tracked + untracked, not ignored) to `dest`.
pub(super) fn copy_sources(root: &Path, dest: &Path) -> Result {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| {
            Error(format!(
                "could not run git: {e}; bench-build copies the sources git lists"
            ))
        })?;
    if !out.status.success() {
        crate::bail!(
            "git ls-files failed in {}; bench-build needs a git checkout",
            root.display()
        );
    }
    if dest.exists() {
        crate::fs::remove_dir_all(dest)?;
    }
    for rel in out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = String::from_utf8_lossy(rel);
        // The firmware is its own workspace, and the machine-local config must not leak into
        // "stock": the fast variant passes it explicitly.
        if rel.starts_with("firmware/")
            || rel.starts_with(".cargo/local")
            || rel.starts_with(".cargo/fast")
        {
            continue;
        }
        let from = root.join(rel.as_ref());
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dest.join(rel.as_ref());
        if let Some(d) = to.parent() {
            crate::fs::create_dir_all(d)?;
        }
        crate::fs::copy(&from, &to)?;
    }
    Ok(())
}

/// The tree of an older commit (`git archive`), without the firmware workspace.
pub(super) fn copy_commit(root: &Path, commit: &str, dest: &Path) -> Result {
    if dest.exists() {
        crate::fs::remove_dir_all(dest)?;
    }
    crate::fs::create_dir_all(dest)?;
    let archive = Command::new("git")
        .args(["archive", "--format=tar", commit])
        .current_dir(root)
        .output()
        .map_err(|e| Error(format!("could not run git archive: {e}")))?;
    if !archive.status.success() {
        crate::bail!(
            "git archive {commit} failed: {}; pass --baseline <a commit of this repository> or --baseline ''",
            String::from_utf8_lossy(&archive.stderr).trim()
        );
    }
    let tar = dest.join(".baseline.tar");
    crate::fs::write(&tar, &archive.stdout)?;
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .args(["--exclude", "firmware"])
        .current_dir(dest)
        .status()?;
    crate::fs::remove_file(&tar)?;
    if !st.success() {
        crate::bail!("could not unpack the {commit} tree into {}", dest.display());
    }
    Ok(())
}

/// Copies the trees to compare (stock, configured, and the optional baseline, Cranelift and
/// mold variants) into the work directory. Returns them, the configured local.toml, and
/// whether mold is raced.
pub(super) fn prepare(ctx: &Ctx, args: &Args, host: &str) -> Result<(Vec<Variant>, String, bool)> {
    let root = ctx.root.clone();
    let stable = ctx.stable()?.to_string();
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("beacon-bench-build"));
    crate::fs::create_dir_all(&work)?;
    if !root.join("services/service/Cargo.toml").is_file() {
        crate::bail!(
            "bench-build measures the service loops (services/service): this project has none"
        );
    }

    // The configured tree's local.toml: what setup writes (linker part + dev-loop levers).
    let (local_body, fast_body, _) = setup::local_config_bodies(ctx)?;
    let local_body = setup::localcfg::with_dev_loop(&local_body, host, &root);

    eprintln!("bench-build: copying sources to {}", work.display());
    let src_stock = work.join("src-stock");
    let src_conf = work.join("src-configured");
    copy_sources(&root, &src_stock)?;
    copy_sources(&root, &src_conf)?;
    crate::fs::write(src_conf.join(".cargo/local.toml"), &local_body)?;
    let mut variants = vec![
        variant("stock", &src_stock, &stable, &work),
        variant("configured", &src_conf, &stable, &work),
    ];
    if !args.baseline.is_empty() {
        let src = work.join("src-baseline");
        copy_commit(&root, &args.baseline, &src)?;
        variants.push(variant("baseline", &src, &stable, &work));
    }
    if args.cranelift {
        let src = work.join("src-cranelift");
        copy_sources(&root, &src)?;
        crate::fs::write(src.join(".cargo/local.toml"), &local_body)?;
        // The fast profile's settings, applied to the dev profile plain cargo uses.
        let dev = fast_body
            .replace("[profile.fast]\ninherits = \"dev\"\n", "[profile.dev]\n")
            .replace("[profile.fast.", "[profile.dev.");
        crate::fs::write(work.join("cranelift.toml"), dev)?;
        variants.push(Variant {
            configs: vec![work.join("cranelift.toml").display().to_string()],
            ..variant("cranelift", &src, &ctx.nightly()?, &work)
        });
    }
    let mold_on = args.link && ctx.platform.is_linux() && on_path("mold");
    if mold_on {
        variants.push(Variant {
            configs: vec![format!(
                "target.{host}.rustflags=[\"-C\",\"link-arg=-fuse-ld=mold\"]"
            )],
            loops: 1,
            ..variant("mold", &src_stock, &stable, &work)
        });
    } else if args.link {
        eprintln!("bench-build: mold not on PATH (or not Linux): LLD stays, not raced");
    }
    if args.levers {
        variants.extend(lever_variants(ctx, args, host, &work, &src_conf)?);
    }

    Ok((variants, local_body, mold_on))
}

/// A variant that builds `src` with `toolchain` and nothing else, in `<work>/t-<name>`, on
/// every loop.
fn variant(name: &'static str, src: &Path, toolchain: &str, work: &Path) -> Variant {
    Variant {
        name,
        src: src.to_path_buf(),
        toolchain: toolchain.to_string(),
        configs: vec![],
        profile: None,
        target_dir: work.join(format!("t-{name}")),
        loops: LOOPS.len(),
        seeded: false,
    }
}

/// `--levers`: one variant per lever (levers.rs), on the configured tree's sources, raced on
/// L1 and L2 from a target dir seeded with the configured tree's.
fn lever_variants(
    ctx: &Ctx,
    args: &Args,
    host: &str,
    work: &Path,
    src_conf: &Path,
) -> Result<Vec<Variant>> {
    let stable = ctx.stable()?.to_string();
    let wild = args
        .wild
        .clone()
        .or_else(|| crate::cmd::find_on_path("wild"))
        .map(|w| std::fs::canonicalize(&w).unwrap_or(w));
    let wild_dir = match &wild {
        Some(w) if ctx.platform.is_linux() => Some(levers::wild_dir(work, w)?),
        _ => {
            eprintln!("bench-build: wild not on PATH (--wild <path>): not raced");
            None
        }
    };
    let members = crate::devdeps::workspace_members(&ctx.root)?;
    let mut out = Vec::new();
    for lever in levers::levers(&members, host, wild_dir.as_deref()) {
        eprintln!("bench-build: lever {}: {}", lever.name, lever.what);
        out.push(Variant {
            configs: lever.configs,
            loops: 2,
            seeded: true,
            ..variant(lever.name, src_conf, &stable, work)
        });
    }
    Ok(out)
}

/// Replaces `to` with a copy of the target dir `from` (`cp -a`: timestamps kept, so cargo
/// finds the copied units fresh).
pub(super) fn seed(from: &Path, to: &Path) -> Result {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .map_err(|e| Error(format!("could not run cp: {e}")))?;
    if !st.success() {
        crate::bail!(
            "could not copy {} to {}; free disk space, or run without --levers",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

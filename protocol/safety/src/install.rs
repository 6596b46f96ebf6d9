//! `--install`: the nightly components, cargo-llvm-cov and cargo-mutants the sections need;
//! and how a section runs cargo on a pinned toolchain.

use super::*;

pub(super) fn install_missing(ctx: &Ctx, fast: bool) -> Result {
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
        run_status(cmd, "install the nightly components")?;
        // Miri builds its own sysroot on first use (a few minutes); do it now, not mid-report.
        if wanted.contains(&"miri") {
            let mut cmd = Command::new("cargo");
            cmd.arg(format!("+{}", ctx.nightly))
                .args(["miri", "setup"])
                .env_remove("RUSTUP_TOOLCHAIN");
            run_status(cmd, "prepare Miri's sysroot")?;
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
        run_status(cmd, "install llvm-tools for the pinned stable")?;
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
        run_status(cmd, &format!("install {name}"))?;
        eprintln!(
            "installed {name} {version} in {:.0}s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub(super) fn cargo(ctx: &Ctx, toolchain: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}")).current_dir(&ctx.root);
    // The toolchain is chosen explicitly above; a RUSTUP_TOOLCHAIN inherited from the
    // `cargo xtask` invocation must not override it.
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

// ---------------------------------------------------------------------------------------------

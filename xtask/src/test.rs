//! `cargo xtask test`: every test in the repository, in the order that fails fastest.

use crate::cmd::{Result, cmd};
use crate::project::root as project_root;
use crate::setup::ensure;

#[derive(Debug)]
pub struct Args {
    /// Only the host workspace tests (skip firmware, QEMU and end-to-end).
    pub host_only: bool,
    /// Install what is missing (QEMU, a C compiler) without asking (implied when CI=true).
    pub yes: bool,
}

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        Ok(Args {
            host_only: a.flag("--host-only", None)?,
            yes: a.flag("--yes", Some('y'))?,
        })
    }
}

/// `cargo xtask test --help`.
pub const HELP: &str = "\
Run every test in the repository: the host workspace, the protocol crate built for the firmware
target, the firmware's host tests and QEMU boot, and the end-to-end tests. First checks and
repairs what they need (the toolchain's targets, QEMU, a C compiler), asking before it installs.

Usage: cargo xtask test [OPTIONS]

Options:
      --host-only  Only the host workspace tests (skip firmware, QEMU and end-to-end)
  -y, --yes        Install what is missing (QEMU, a C compiler) without asking (implied when
                   CI=true)
  -h, --help       Print help
";

pub fn run(args: Args) -> Result {
    let root = project_root();
    // Check (and repair) what the steps below need in the first second, not after ten
    // minutes of host tests: the thumb target, a C compiler, QEMU.
    #[allow(unused_mut, reason = "a project without firmware pushes nothing")]
    let mut needs = vec![ensure::RUST, ensure::C_COMPILER];
    // template:firmware:begin
    if !args.host_only {
        needs.push(ensure::qemu(
            "the firmware and end-to-end tests boot the firmware in it",
        ));
    }
    // template:firmware:end
    ensure::ensure("test", &needs, args.yes)?;
    // 1. The protocol crate must build for the firmware target with default features off: it
    //    is what proves it stays no_std and allocation-free.
    cmd("cargo")
        .args([
            "build",
            "-p",
            "beacon-protocol",
            "--no-default-features",
            "--features",
            "defmt",
        ])
        .args(["--target", "thumbv7em-none-eabihf"])
        .dir(&root)
        .run()?;
    // 1b. The protocol crate with the qualified compiler's Rust version (its `rust-version`,
    //     held to the Ferrocene release in toolchains/criticalup.toml), when that toolchain
    //     is installed: a feature newer than the qualified compiler fails here, not at
    //     certification time.
    protocol_msrv(&root)?;
    // 2. The host workspace: unit, property, integration and end-to-end tests.
    cmd("cargo")
        .args(["test", "--workspace", "--all-targets"])
        .dir(&root)
        .run()?;
    cmd("cargo")
        .args(["test", "--workspace", "--doc"])
        .dir(&root)
        .run()?;
    // template:service:begin
    service_steps(&root)?;
    // template:service:end
    if args.host_only {
        return Ok(());
    }
    // template:firmware:begin
    // 3. The firmware: both boards built (release) and size-checked, linted, the application
    //    logic's host tests, and the QEMU build booted and checked over its UART.
    crate::firmware::test()?;
    // template:firmware:end
    // template:service:begin
    // The contract: a bounded schemathesis run (PyPI, installed into a venv under target/)
    // against the real service's /openapi.json on 127.0.0.1, 0 failures of any check
    // (xtask/src/contract.rs). Needs python3 with venv; skipped by --host-only.
    crate::contract::run()?;
    // template:service:end
    // template:service:begin
    // template:firmware:begin
    // 4. End to end: the real service, gateway and QEMU devices, including the fault tests
    //    (kill -9 the service, kill and restart the gateway, a device reboot, and the four
    //    faults of `cargo xtask demo --faults` in one run with a 10 s link cut).
    //    services/demo/tests/e2e.rs.
    crate::demo::e2e()?;
    // template:firmware:end
    // template:service:end
    // 5. The template itself: `cargo xtask new` generates projects under other names (full,
    //    --no-firmware, --no-service) and builds and tests each (xtask/tests/new_project.rs).
    cmd("cargo")
        .args([
            "test",
            "-p",
            "xtask",
            "--test",
            "new_project",
            "--",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .dir(&root)
        .run()?;
    Ok(())
}

/// `cargo +<rust-version>.0 check -p beacon-protocol` (lib, host and firmware-shaped
/// features), skipped with the command to run when that toolchain is not installed.
fn protocol_msrv(root: &std::path::Path) -> Result {
    let path = root.join("protocol/Cargo.toml");
    if !path.exists() {
        eprintln!(
            "skipping the protocol crate's rust-version check: no {}",
            path.display()
        );
        return Ok(());
    }
    // One line of [package], read as a line: toml_lite reads the project's own simple files,
    // not Cargo.toml's inline tables.
    let text = crate::fs::read_to_string(&path)?;
    let Some(version) = text.lines().find_map(|l| {
        let v = l
            .trim()
            .strip_prefix("rust-version")?
            .trim()
            .strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_owned())
    }) else {
        crate::bail!(
            "{} has no rust-version: give it the qualified compiler's (docs/certification.md)",
            path.display()
        );
    };
    let toolchain = if version.matches('.').count() == 1 {
        format!("{version}.0")
    } else {
        version
    };
    if !crate::tools::toolchain_installed(&crate::tools::rustup_toolchains(), &toolchain) {
        eprintln!(
            "skipping the protocol crate's rust-version check: toolchain {toolchain} is not installed (`rustup toolchain install {toolchain} --profile minimal`)"
        );
        return Ok(());
    }
    let target = crate::project::target_dir(root).join("msrv");
    for features in [&["--features", "std"][..], &["--no-default-features"][..]] {
        cmd("cargo")
            .arg(format!("+{toolchain}"))
            .args(["check", "-p", "beacon-protocol", "--lib"])
            .args(features)
            .arg("--target-dir")
            .arg(&target)
            .dir(root)
            .run()?;
    }
    Ok(())
}

// template:service:begin
/// The service's steps outside `cargo test --workspace`: the console feature's test, the
/// dashboard in Chromium, the full-disk test (root only).
fn service_steps(root: &std::path::Path) -> Result {
    // The service's tokio-console support is behind a cargo feature (the default build does
    // not pull console-subscriber): its gRPC client test runs in its own step.
    cmd("cargo")
        .args([
            "test",
            "-p",
            "beacon-service",
            "--features",
            "console",
            "--test",
            "console",
        ])
        .dir(root)
        .run()?;
    // The SQLite-only build (`--no-default-features`: what `cargo xtask demo` builds without
    // `--db postgres`): it compiles, its tests pass, and it refuses a postgres:// URL naming
    // the feature. (Later steps that need PostgreSQL build the default binary again.)
    cmd("cargo")
        .args([
            "test",
            "-p",
            "beacon-service",
            "--no-default-features",
            "--test",
            "it",
        ])
        .dir(root)
        .run()?;
    // The dashboard in headless Chromium (services/service/tests/it/browser.rs); `#[ignore]`d for a
    // plain `cargo test`. Needs `apt-get install -y chromium chromium-driver`: it fails saying so.
    let ignored = |filter: &str| {
        cmd("cargo")
            .args(["test", "-p", "beacon-service", "--test", "it", filter])
            .args(["--", "--ignored"])
            .dir(root)
            .run()
    };
    ignored("browser::")?;
    // A full disk under the service (a 1 MiB tmpfs: needs root to mount, as in CI);
    // `#[ignore]`d for a plain `cargo test`. Skipped, saying so, when not root.
    let is_root = cmd("id")
        .arg("-u")
        .read()
        .is_ok_and(|uid| uid.trim() == "0");
    if is_root {
        ignored("hostile::needs_root_")?;
    } else {
        eprintln!(
            "skipping hostile::needs_root_* (SIGTERM on a full disk): mounting its 1 MiB tmpfs needs root; run `sudo cargo test -p beacon-service --test it hostile::needs_root_ -- --ignored`"
        );
    }
    Ok(())
}
// template:service:end

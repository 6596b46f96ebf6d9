//! `cargo xtask test`: every test in the repository, in the order that fails fastest.

use crate::bail;
use crate::cmd::{Result, cmd, on_path, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the host workspace tests (skip firmware, QEMU and end-to-end).
    #[arg(long)]
    pub host_only: bool,
}

pub fn run(args: Args) -> Result {
    let root = project_root();
    // Fail in the first second, not after ten minutes of host tests, when a tool is missing.
    // template:firmware:begin
    if !args.host_only {
        require_qemu()?;
    }
    // template:firmware:end
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
        .dir(&root)
        .run()?;
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
    // template:firmware:begin
    // 4. End to end: the real service, gateway and QEMU devices, including the fault tests
    //    (kill -9 the service, kill and restart the gateway). services/demo/tests/e2e.rs.
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

/// QEMU boots the firmware in the firmware and end-to-end tests: say how to get it if missing.
pub fn require_qemu() -> Result {
    if on_path("qemu-system-arm") {
        return Ok(());
    }
    let how = if cfg!(target_os = "macos") {
        "brew install qemu"
    } else if on_path("apt-get") {
        "sudo apt-get install qemu-system-arm"
    } else if on_path("dnf") {
        "sudo dnf install qemu-system-arm"
    } else if on_path("pacman") {
        "sudo pacman -S qemu-system-arm"
    } else {
        "install QEMU's ARM system emulator with your package manager"
    };
    bail!(
        "qemu-system-arm is not installed (the firmware and end-to-end tests boot the firmware \
         in it): run `{how}` or `cargo xtask setup --only qemu`; `cargo xtask test --host-only` \
         runs the host tests without it"
    )
}

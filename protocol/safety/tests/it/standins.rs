//! `beacon-safety` (what `cargo xtask safety` runs) against stand-in `rustup` and `cargo`
//! programs (shell scripts on a private PATH that log their arguments): what it installs with `--install`, and how it
//! reports tools that are missing. The real tools and a real run are the committed report,
//! docs/safety-report.md (`cargo xtask safety`); these tests check the paths a fresh machine
//! takes, which this machine (tools installed) cannot take for real.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private directory with stand-in `rustup` and `cargo`. `rustup_components` is what
/// `rustup component list --installed` prints for every toolchain; `nightly_installed: false`
/// makes it fail for nightly toolchains ("toolchain not installed").
fn standins(name: &str, rustup_components: &str, nightly_installed: bool) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("beacon-safety-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    let rustup = format!(
        r#"#!/bin/sh
echo "rustup $*" >> "{log}"
case "$*" in
  "component list --installed --toolchain nightly"*)
    {nightly}
    printf '{rustup_components}' ;;
  "component list"*) printf '{rustup_components}' ;;
esac
exit 0
"#,
        log = log.display(),
        nightly = if nightly_installed { ":" } else { "exit 1" },
    );
    // `cargo install X` leaves a program named X on PATH, as the real one does.
    let cargo = format!(
        r#"#!/bin/sh
echo "cargo $*" >> "{log}"
if [ "$2" = install ]; then
  for a in "$@"; do case "$a" in cargo-*) printf '#!/bin/sh\nexit 0\n' > "{bin}/$a"; chmod +x "{bin}/$a";; esac; done
fi
exit 0
"#,
        log = log.display(),
        bin = bin.display(),
    );
    for (file, text) in [("rustup", rustup), ("cargo", cargo)] {
        let path = bin.join(file);
        std::fs::write(&path, text).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }
    (dir, log)
}

fn safety(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_beacon-safety"))
        .args(args)
        .arg("--out")
        .arg(dir.join("out"))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", dir.join("bin").display()),
        )
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap_or_default();
    (out.status.success(), report)
}

#[test]
fn safety_install_standin_installs_the_pinned_tools_and_nothing_else() {
    let (dir, log) = standins("install", "rust-src\\n", true);
    let (_, report) = safety(&dir, &["--fast", "--install"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    // The pinned nightly (toolchains/manifest.toml) gets Miri, its sources and llvm-tools;
    // Miri's sysroot is prepared during the install, not in the middle of the report.
    assert!(
        calls.contains("rustup component add --toolchain nightly-2026-10-29 miri llvm-tools"),
        "{calls}"
    );
    assert!(
        calls.contains("cargo +nightly-2026-10-29 miri setup"),
        "{calls}"
    );
    // The pinned stable gets llvm-tools; cargo-llvm-cov at the pinned version, locked.
    let toolchain = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rust-toolchain.toml"),
    )
    .unwrap();
    let stable = toolchain
        .lines()
        .find(|l| l.starts_with("channel"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap();
    assert!(
        calls.contains(&format!(
            "rustup component add llvm-tools --toolchain {stable}"
        )),
        "{calls}"
    );
    assert!(
        calls.contains(&format!(
            "cargo +{stable} install --locked cargo-llvm-cov --version 0.9.1"
        )),
        "{calls}"
    );
    // --fast needs no mutation testing: cargo-mutants is not installed.
    assert!(!calls.contains("cargo-mutants"), "{calls}");
    assert!(
        report.contains("| check | result | summary | time |"),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn safety_reports_missing_tools_as_not_run_with_the_install_command() {
    let (dir, log) = standins("missing", "", false);
    let (ok, report) = safety(&dir, &["--fast"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    // Nothing is installed without --install.
    assert!(!calls.contains(" install"), "{calls}");
    assert!(!calls.contains("component add"), "{calls}");
    assert!(
        report.contains(
            "not run: toolchain nightly-2026-10-29 missing, install with `rustup toolchain \
             install nightly-2026-10-29"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "not run: cargo-llvm-cov missing, install with `cargo install cargo-llvm-cov \
             --locked --version 0.9.1`"
        ),
        "{report}"
    );
    // The stand-in cargo runs no tests, so traceability has no results: the command fails
    // rather than passing on missing evidence.
    assert!(!ok);
    assert!(report.contains("| Traceability"), "{report}");
    assert!(report.contains("FAIL"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

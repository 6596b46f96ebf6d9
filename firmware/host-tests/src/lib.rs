//! Helpers shared by the host-side tests in `tests/`: where the firmware is, and building it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The firmware workspace (the parent of host-tests/).
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-tests is inside firmware/")
        .to_path_buf()
}

/// Builds the firmware (release) with `selection` (e.g. `["--workspace"]` or `["-p",
/// "beacon-qemu"]`) into firmware/target and returns the directory of the ELFs. A no-op when
/// `cargo xtask test` has built them already. An exported CARGO_TARGET_DIR or
/// CARGO_BUILD_TARGET is ignored, so the ELFs are always where the tests look.
pub fn build_release(selection: &[&str], what: &str) -> PathBuf {
    let fw = firmware_dir();
    let target_dir = fw.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release"])
        .args(selection)
        .args(["--bins", "--target-dir"])
        .arg(&target_dir)
        .current_dir(&fw)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build {what}: {e}"));
    assert!(
        status.success(),
        "building {what} failed ({status}); see the output above"
    );
    target_dir.join("thumbv7em-none-eabihf").join("release")
}

/// A fresh boot id for one QEMU launch, from the host's random source: what every runner
/// passes as `boot-id=N` (the emulated board has no RNG; protocol/SPEC.md 3.1). Never 0.
pub fn random_boot_id() -> u32 {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("cannot read /dev/urandom for a boot id: {e}"));
    u32::from_le_bytes(bytes).max(1)
}

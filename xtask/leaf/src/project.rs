//! Where the project's files are: one project root for every command (it honours
//! `XTASK_PROJECT_ROOT`), cargo's target directory, and the pins in rust-toolchain.toml and
//! toolchains/manifest.toml.

use std::path::{Path, PathBuf};

use crate::toml_lite::Doc;
use crate::{Error, Result};

/// The file that marks the repository root (every tool's pin lives in it).
const MARKER: &str = "toolchains/manifest.toml";

/// The repository root.
///
/// `XTASK_PROJECT_ROOT` first: the stand-in tests point xtask at a scratch copy. Then the
/// nearest ancestor of the running package's `CARGO_MANIFEST_DIR` that holds
/// toolchains/manifest.toml (read at run time: `cargo run`, so `cargo xtask`, sets it for the
/// program too, and with a `CARGO_TARGET_DIR` shared between two checkouts cargo may reuse a
/// binary built from the other checkout, whose compile-time path points there). Last, this
/// crate's own place (xtask/leaf, two levels below the root).
pub fn root() -> PathBuf {
    if let Some(root) = std::env::var_os("XTASK_PROJECT_ROOT") {
        return PathBuf::from(root);
    }
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|dir| {
        Path::new(&dir)
            .ancestors()
            .find(|a| a.join(MARKER).is_file())
            .map(Path::to_path_buf)
    });
    runtime.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    })
}

/// cargo's target directory for the host workspace (`CARGO_TARGET_DIR`, relative to the root
/// when relative).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// toolchains/manifest.toml: every tool's pinned version and where it comes from.
pub fn manifest(root: &Path) -> PathBuf {
    root.join(MARKER)
}

/// The string at `key` (dotted) of `path`; the error names the file, the table and the key.
fn pinned(path: &Path, table: &str, key: &str, example: &str) -> Result<String> {
    Doc::read(path)?
        .str(&format!("{table}.{key}"))
        .map(String::from)
        .ok_or_else(|| {
            Error(format!(
                "{} has no `{key}` under [{table}]; pin one (e.g. {key} = \"{example}\")",
                path.display()
            ))
        })
}

/// `[toolchain] channel` from rust-toolchain.toml: the pinned stable.
pub fn pinned_stable(root: &Path) -> Result<String> {
    pinned(
        &root.join("rust-toolchain.toml"),
        "toolchain",
        "channel",
        "1.98.0",
    )
}

/// `nightly-<date>` from `[nightly] date` in toolchains/manifest.toml.
pub fn pinned_nightly(root: &Path) -> Result<String> {
    pinned(&manifest(root), "nightly", "date", "2026-10-29").map(|d| format!("nightly-{d}"))
}

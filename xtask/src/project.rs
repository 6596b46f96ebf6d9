//! Leaf module: where the project's files are. One project root for every command (it honours
//! `XTASK_PROJECT_ROOT`), cargo's target directory, the machine-local config files setup
//! writes, and the linker bench-build chose. Imports only the other leaves.

use std::path::{Path, PathBuf};

use crate::json::Json;

/// The repository root (the parent of xtask/).
///
/// Read at run time first (`cargo run`, so `cargo xtask`, sets `CARGO_MANIFEST_DIR` for the
/// program too): with a `CARGO_TARGET_DIR` shared between two checkouts, cargo may reuse an
/// xtask binary built from the other checkout, whose compile-time path points there.
///
/// `XTASK_PROJECT_ROOT` overrides both: the stand-in tests point xtask at a scratch copy.
pub fn root() -> PathBuf {
    if let Some(root) = std::env::var_os("XTASK_PROJECT_ROOT") {
        return PathBuf::from(root);
    }
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("src/main.rs").is_file() && dir.ends_with("xtask"));
    runtime
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// cargo's target directory for the host workspace (`CARGO_TARGET_DIR`, relative to the root
/// when relative).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// The machine-local cargo config setup writes (git-ignored, included by config.toml).
pub fn local_toml(root: &Path) -> PathBuf {
    root.join(".cargo/local.toml")
}

/// The Cranelift fast-loop config setup writes (git-ignored, read only by `cargo fast`).
pub fn fast_toml(root: &Path) -> PathBuf {
    root.join(".cargo/fast.toml")
}

/// Which linker the last bench-build measured faster, with its ratio (mold / LLD), from
/// target/bench-build.json.
pub fn bench_link_choice(root: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(root.join("target/bench-build.json")).ok()?;
    let json = Json::parse(&text).ok()?;
    let winner = json
        .get("link_winner")?
        .as_str()
        .filter(|w| *w == "mold" || *w == "lld")?
        .to_string();
    let ratio = match json.get("link_mold_over_lld") {
        Some(Json::Num(n)) => format!("{n:.4}"),
        Some(Json::Str(s)) => s.clone(),
        _ => "?".into(),
    };
    Some((winner, ratio))
}

//! Leaf module: where the project's files are. The root, the target directory and the pins come
//! from the shared leaf crate (xtask/leaf, also read by beacon-safety); here: the
//! machine-local config files setup writes, and the linker bench-build chose. Imports only the
//! other leaves.

use std::path::{Path, PathBuf};

use crate::json::Json;

pub use xtask_leaf::project::{root, target_dir};

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

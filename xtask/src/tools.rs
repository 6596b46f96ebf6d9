//! Leaf module: versions of installed programs and what rustup has installed. Imports nothing
//! of xtask but [`crate::cmd`]'s runner, so every command may use it without a cycle.
//!
//! The one rule for rustup's names ([`listed`]) lives in the shared leaf crate (xtask/leaf), so
//! setup, doctor, the demo/test checks and the safety report (`beacon-safety`) cannot disagree
//! about what is installed; it is re-exported here.

use crate::cmd::read_argv;
pub use xtask_leaf::rustup::{listed, rustup_installed};

/// The first `x.y[.z]` in `text`.
pub fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|t| t.contains('.') && t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| t.trim_end_matches('.').to_string())
}

/// `a >= b` for dotted versions.
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (mut a, mut b) = (parse(a), parse(b));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

/// `program --version`, first version found in its output (stdout or stderr).
pub fn tool_version(program: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    version_in(&text).or_else(|| out.status.success().then(|| "unknown".to_string()))
}

/// Installed rustup toolchains (names as rustup prints them, without `(default)` etc).
pub fn rustup_toolchains() -> Vec<String> {
    read_argv(&["rustup", "toolchain", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Is toolchain `name` (`1.98.0`, `nightly-2026-10-29`) in `list` (which names them with the
/// host triple appended)?
pub fn toolchain_installed(list: &[String], name: &str) -> bool {
    list.iter()
        .any(|t| t == name || t.strip_prefix(name).is_some_and(|r| r.starts_with('-')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            version_in("mold 2.40.4 (compatible)").as_deref(),
            Some("2.40.4")
        );
        assert!(version_at_least("1.98.0", "1.98"));
        assert!(!version_at_least("1.9.10", "1.10"));
        assert!(toolchain_installed(
            &["1.98.0-x86_64-unknown-linux-gnu".into()],
            "1.98.0"
        ));
        assert!(!toolchain_installed(
            &["1.98.0-x86_64-unknown-linux-gnu".into()],
            "1.98"
        ));
    }
}

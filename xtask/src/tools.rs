//! Leaf module: versions of installed programs and what rustup has installed. Imports nothing
//! of xtask but [`crate::cmd`]'s runner, so every command may use it without a cycle.
//!
//! One rule for rustup's names lives here ([`listed`]): setup, doctor and the demo/test checks
//! all ask through it, so they cannot disagree about what is installed. (`beacon-safety`,
//! protocol/safety, asks rustup itself: it never imports xtask.)

use crate::cmd::read_argv;

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

/// rustup's `component`/`target` (`kind`) `list --installed` output for `toolchain`; empty
/// when the toolchain is not installed.
pub fn rustup_installed(kind: &str, toolchain: &str) -> String {
    read_argv(&[
        "rustup",
        kind,
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ])
    .unwrap_or_default()
}

/// Is component or target `c` in rustup's `--installed` output? rustup lists most components
/// with the host triple appended (`llvm-tools` is `llvm-tools-x86_64-unknown-linux-gnu`), some
/// without (`rust-src`), and installs `<name>-preview` as `<name>-<triple>`
/// (`rustc-codegen-cranelift-preview`). A name is never matched by a prefix that is not
/// followed by a triple (`llvm` does not match `llvm-tools-...`).
pub fn listed(installed: &str, c: &str) -> bool {
    installed.lines().map(str::trim).any(|l| is_component(l, c))
}

/// [`listed`] for one line of rustup's output.
pub fn is_component(installed: &str, c: &str) -> bool {
    const ARCHES: [&str; 11] = [
        "x86_64",
        "aarch64",
        "i686",
        "i586",
        "arm",
        "thumb",
        "riscv",
        "powerpc",
        "s390x",
        "loongarch",
        "wasm",
    ];
    let names = [c, c.strip_suffix("-preview").unwrap_or(c)];
    names.iter().any(|c| {
        installed == *c
            || installed
                .strip_prefix(c)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|triple| ARCHES.iter().any(|a| triple.starts_with(a)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_with_and_without_triples() {
        assert!(is_component(
            "llvm-tools-x86_64-unknown-linux-gnu",
            "llvm-tools"
        ));
        assert!(is_component("rust-src", "rust-src"));
        assert!(is_component("miri-x86_64-unknown-linux-gnu", "miri"));
        assert!(is_component(
            "rustc-codegen-cranelift-x86_64-unknown-linux-gnu",
            "rustc-codegen-cranelift-preview"
        ));
        assert!(is_component(
            "thumbv7em-none-eabihf",
            "thumbv7em-none-eabihf"
        ));
        assert!(!is_component(
            "rust-std-x86_64-unknown-linux-gnu",
            "rust-src"
        ));
        assert!(!is_component("llvm-tools-preview", "llvm"));
        assert!(!is_component("llvm-tools-x86_64-unknown-linux-gnu", "llvm"));
        assert!(listed(
            "rust-src\nllvm-tools-aarch64-unknown-linux-gnu\n",
            "llvm-tools"
        ));
    }

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

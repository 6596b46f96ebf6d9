//! What rustup has installed, and the one rule for matching its names: xtask's setup, doctor
//! and demo/test checks and the safety report all ask through [`listed`], so they cannot
//! disagree about what is installed.

use std::process::Command;

/// rustup's `component`/`target` (`kind`) `list --installed` output for `toolchain`; `None`
/// when the toolchain is not installed (or rustup is missing).
pub fn installed(kind: &str, toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args([kind, "list", "--installed", "--toolchain", toolchain])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Does `toolchain` have component `c` installed?
pub fn has_component(toolchain: &str, c: &str) -> bool {
    installed("component", toolchain).is_some_and(|list| listed(&list, c))
}

/// rustup's `component`/`target` (`kind`) `list --installed` output for `toolchain`; empty
/// when the toolchain is not installed.
pub fn rustup_installed(kind: &str, toolchain: &str) -> String {
    installed(kind, toolchain).unwrap_or_default()
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
}

//! `cargo xtask doctor` for real on this machine: it builds its probe crate with the project's
//! own cargo config and reads the results from the binaries. Tool presence depends on the
//! machine, so this asserts the checks that the repository itself guarantees: the stable pin
//! and the thumb target, `--cfg tokio_unstable` reaching host builds, a linker named from the
//! `.comment` section, and that an exported RUSTFLAGS is caught.

use std::process::Command;

fn doctor(extra_env: &[(&str, &str)]) -> (String, bool) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["doctor", "--json"]);
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// The status of check `name` in doctor's JSON (one field per line, as xtask writes it).
fn status(json: &str, name: &str) -> String {
    let mut lines = json.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("\"name\": \"{name}\",") {
            let s = lines.next().unwrap().trim();
            return s
                .trim_start_matches("\"status\": \"")
                .trim_end_matches("\",")
                .to_string();
        }
    }
    panic!("no check `{name}` in:\n{json}")
}

#[test]
fn doctor_proves_settings_from_built_binaries_and_catches_rustflags() {
    let (json, _) = doctor(&[]);
    assert!(
        json.trim_start().starts_with('{') && json.contains("\"checks\""),
        "{json}"
    );
    assert_eq!(status(&json, "stable"), "ok", "{json}");
    assert_eq!(status(&json, "thumb target"), "ok", "{json}");
    assert_eq!(status(&json, "tokio_unstable"), "ok", "{json}");
    assert_eq!(status(&json, "linker"), "ok", "{json}");
    assert_eq!(status(&json, "firmware llvm"), "ok", "{json}");
    assert!(
        json.contains("\"detail\": \"LLD") || json.contains("\"detail\": \"mold"),
        "linker named: {json}"
    );

    // RUSTFLAGS replaces the config's rustflags: doctor warns, and the probe proves the cfg is
    // gone, which fails the run.
    let (json, ok) = doctor(&[("RUSTFLAGS", "-C debuginfo=0")]);
    assert!(!ok, "doctor must fail when tokio_unstable is lost: {json}");
    assert_eq!(status(&json, "rustflags env"), "warn", "{json}");
    assert_eq!(status(&json, "tokio_unstable"), "fail", "{json}");
    // With setup's dev-loop dylib configured, the export removes it too, and doctor says so.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = std::fs::read_to_string(root.join(".cargo/local.toml")).unwrap_or_default();
    if local.contains("beacon_dylib") {
        assert_eq!(status(&json, "devdeps dylib"), "fail", "{json}");
        assert!(
            json.contains("the dependency dylib (--cfg beacon_dylib"),
            "the RUSTFLAGS warning names the dylib: {json}"
        );
    }
}

/// With setup's dev-loop dylib configured (`--cfg beacon_dylib` in .cargo/local.toml), doctor
/// checks every build resolves the library identically, and, once target/debug/beacon-service
/// exists, that it needs libbeacon_devdeps.so and loads it at start (glibc's LD_DEBUG trace).
#[test]
fn doctor_proves_the_devdeps_dylib_is_loaded_when_configured() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = std::fs::read_to_string(root.join(".cargo/local.toml")).unwrap_or_default();
    if !local.contains("beacon_dylib") {
        eprintln!("skipped: .cargo/local.toml has no --cfg beacon_dylib (run `cargo xtask setup`)");
        return;
    }
    let (json, _) = doctor(&[]);
    assert_eq!(status(&json, "devdeps features"), "ok", "{json}");
    let dylib = status(&json, "devdeps dylib");
    if root.join("target/debug/beacon-service").is_file() && dylib == "ok" {
        assert!(
            json.contains("loads it at start (/") || json.contains("reaches builds (no target"),
            "{json}"
        );
    } else {
        // Built before setup (or with RUSTFLAGS): a warning that says how to rebuild it.
        assert_eq!(dylib, "warn", "{json}");
    }
}

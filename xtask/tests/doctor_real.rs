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
}

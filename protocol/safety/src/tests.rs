//! Unit tests of the report's parsers and of what it reads from the machine.

use super::coverage::{parse_lcov, ranges, test_module_start};
use super::lint::{findings, finished, lint_flags};
use super::mutants::mutant_key;
use super::traceability::{spec_requirements, traced_tests};
use super::*;

#[test]
fn parses_libtest_output_per_binary() {
    let out = "     Running unittests src/lib.rs (target/debug/deps/x)\n\
               test cobs::tests::known_encodings ... ok\n\
               \x20    Running tests/properties.rs (target/debug/deps/p)\n\
               test chunking_does_not_matter ... FAILED\n\
               test slow ... ignored, takes long\n\
               \x20  Doc-tests beacon_protocol\n\
               test protocol/src/lib.rs - (line 24) ... ok\n";
    let r = parse_libtest(out);
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].binary, "unittests src/lib.rs");
    assert_eq!(r[1].binary, "tests/properties.rs");
    assert_eq!(r[1].outcome, "FAILED");
    assert_eq!(r[2].outcome, "ignored");
    assert_eq!(r[3].binary, "doctests");
    assert_eq!(test_counts(&r), (2, 1, 1));
}

#[test]
fn finds_requirement_ids() {
    assert_eq!(
        requirement_ids("Checks: R-SAFE-1, R-DEC-3 (x) R-x-1 AR-B-2 R-ENC-"),
        ["R-SAFE-1", "R-DEC-3"]
    );
    let spec = "**R-WIRE-2.** `CRC` is CRC-32. More.\n**Limits.** no\n**R-DEC-1.** Chunks.\n";
    let reqs = spec_requirements(spec);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0], ("R-WIRE-2".into(), "`CRC` is CRC-32".into()));
}

#[test]
fn traced_tests_come_from_checks_comments() {
    let dir = std::env::temp_dir().join(format!("xtask-safety-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("protocol/tests")).unwrap();
    std::fs::write(
        dir.join("protocol/tests/a.rs"),
        "/// Checks: R-DEC-1, R-DEC-2: words R-NOT-1.\n#[test]\nfn one() {}\n\n\
         /// Not traced.\n#[test]\nfn two() {}\n    /// Checks: R-SAFE-1\n    #[test]\n    \
         fn three(x in any()) {}\n",
    )
    .unwrap();
    let t = traced_tests(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!((t[0].name.as_str(), t[0].requirements.len()), ("one", 2));
    assert_eq!(
        (t[1].name.as_str(), t[1].file.as_str()),
        ("three", "tests/a.rs")
    );
}

#[test]
fn lcov_lines_branches_and_test_modules() {
    let root = Path::new("/r");
    let lcov = "SF:/r/protocol/src/a.rs\nDA:1,3\nDA:2,0\nDA:3,0\nDA:5,1\nDA:9,0\n\
                BRDA:5,0,0,1\nBRDA:5,0,1,0\nend_of_record\n";
    let files = parse_lcov(lcov, root);
    let a = &files["protocol/src/a.rs"];
    assert_eq!(a.lines.len(), 5);
    assert_eq!((a.branches_found, a.branches_hit), (2, 1));
    assert_eq!(a.branch_lines.iter().copied().collect::<Vec<_>>(), [5]);
    assert_eq!(ranges(&[2, 3, 5, 7, 8, 9]), "2-3, 5, 7-9");
    let src = "fn a() {}\n\n#[cfg(test)]\nmod tests {\n}\n";
    assert_eq!(test_module_start(src), Some(3));
}

#[test]
fn table_cells_escape_pipes() {
    assert_eq!(md_cell("`COBS(raw) || 0x00`"), "`COBS(raw) \\|\\| 0x00`");
}

#[test]
fn mutant_keys_drop_line_and_column() {
    assert_eq!(
        mutant_key("protocol/src/crc.rs:20:9: replace < with <= in make_table"),
        "protocol/src/crc.rs: replace < with <= in make_table"
    );
}

#[test]
fn clippy_json_findings() {
    // Field order as cargo 1.95 writes it: children (with their own levels) first.
    let line = r#"{"reason":"compiler-message","message":{"rendered":"error: used `unwrap()`\n","$message_type":"diagnostic","children":[{"code":null,"level":"help","spans":[]}],"level":"error","spans":[{"file_name":"src/a.rs","line_start":7,"is_primary":true}],"code":{"code":"clippy::unwrap_used","explanation":null}}}"#;
    let f = findings(line);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].level, "error");
    assert_eq!(f[0].lint, "clippy::unwrap_used");
    assert_eq!(f[0].place, "src/a.rs:7");
    assert!(finished(r#"{"reason":"build-finished","success":true}"#));
    assert!(!finished(r#"{"reason":"build-finished","success":false}"#));
    assert!(lint_flags('D').contains(&"-Funsafe_code".to_string()));
    assert!(lint_flags('W').contains(&"-Wclippy::panic".to_string()));
}

#[test]
fn reads_pins_and_names_the_file_when_one_is_missing() {
    let dir = std::env::temp_dir().join(format!("beacon-safety-pins-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("toolchains")).unwrap();
    std::fs::write(
        dir.join("rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.95.0\" # pinned\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("toolchains/manifest.toml"),
        "[nightly]\nchannel = \"x\"\n",
    )
    .unwrap();
    assert_eq!(host::pinned_stable(&dir).unwrap(), "1.95.0");
    let e = host::pinned_nightly(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("toolchains/manifest.toml has no `date` under [nightly]"),
        "{e}"
    );
    // The project's own files.
    let root = host::root();
    assert!(host::pinned_stable(&root).unwrap().starts_with("1."));
    assert!(
        host::pinned_nightly(&root)
            .unwrap()
            .starts_with("nightly-20")
    );
}

#[test]
fn rustup_component_lines() {
    let arch = std::env::consts::ARCH;
    let llvm = format!("llvm-tools-{arch}-unknown-linux-gnu");
    assert!(xtask_leaf::rustup::is_component(&llvm, "llvm-tools"));
    assert!(xtask_leaf::rustup::is_component(
        &format!("miri-{arch}-apple-darwin"),
        "miri"
    ));
    assert!(xtask_leaf::rustup::is_component("rust-src", "rust-src"));
    assert!(!xtask_leaf::rustup::is_component(
        "llvm-tools-preview",
        "llvm-tools"
    ));
    assert!(!xtask_leaf::rustup::is_component(
        &format!("rust-std-{arch}-unknown-linux-gnu"),
        "rust-src"
    ));
    assert!(!xtask_leaf::rustup::is_component(&llvm, "llvm"));
}

#[test]
fn report_json_numbers() {
    assert_eq!(num(3.0).to_string(), "3");
    assert_eq!(num(96.551_724).to_string(), "96.5517");
    assert_eq!(num(f64::NAN), Value::Null);
}

//! The test layout that keeps the dev loop short (docs/compile-times.md, "Fewer link steps")
//! must not lose tests. Targets marked `test = false` / `doctest = false` in a Cargo.toml are
//! never built by `cargo test`, so a test someone adds there later would silently never run;
//! and a crate whose integration tests are one binary (`tests/it/main.rs`) would silently get
//! a second one from a new `tests/<name>.rs`. This test fails in both cases and says what to do.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One `[lib]`, `[[bin]]` or `[[test]]` table of a manifest: its kind and its `key = value`s.
#[derive(Debug)]
struct Target {
    kind: String,
    keys: Vec<(String, String)>,
}

impl Target {
    fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn targets(manifest: &str) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut current: Option<Target> = None;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            out.extend(current.take());
            let kind = t.trim_matches(|c| c == '[' || c == ']').to_string();
            if matches!(kind.as_str(), "lib" | "bin" | "test") {
                current = Some(Target {
                    kind,
                    keys: Vec::new(),
                });
            }
            continue;
        }
        if let (Some(c), Some((k, v))) = (current.as_mut(), t.split_once('=')) {
            c.keys
                .push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
        }
    }
    out.extend(current);
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn has_tests(src: &str) -> bool {
    src.contains("#[test]") || src.contains("#[cfg(test)]") || src.contains("tokio::test")
}

/// A doc comment's code block that rustdoc would compile as a doctest (```, ```rust,
/// ```no_run, ...; not ```text / ```json / ```sh).
fn has_doctest(src: &str) -> bool {
    let mut open = false;
    for line in src.lines() {
        let t = line.trim_start();
        let Some(doc) = t.strip_prefix("//!").or_else(|| t.strip_prefix("///")) else {
            continue;
        };
        let Some(lang) = doc.trim().strip_prefix("```") else {
            continue;
        };
        if open {
            open = false;
            continue;
        }
        open = true;
        let rust = lang.split(',').all(|a| {
            matches!(
                a.trim(),
                "" | "rust" | "no_run" | "should_panic" | "ignore" | "compile_fail"
            ) || a.trim().starts_with("edition")
        });
        if rust {
            return true;
        }
    }
    false
}

fn crates() -> Vec<PathBuf> {
    let r = root();
    let mut dirs = vec![
        r.join("xtask"),
        r.join("protocol"),
        r.join("protocol/safety"),
    ];
    if let Ok(entries) = std::fs::read_dir(r.join("services")) {
        let mut more: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        more.sort();
        dirs.extend(more);
    }
    dirs.retain(|d| d.join("Cargo.toml").is_file());
    dirs
}

#[test]
fn targets_cargo_test_skips_have_no_tests_and_one_integration_binary_stays_one() {
    let mut problems = Vec::new();
    for dir in crates() {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let ts = targets(&manifest);
        for t in &ts {
            let files: Vec<PathBuf> = if t.kind == "lib" {
                let mut v = Vec::new();
                rust_files(&dir.join("src"), &mut v);
                v.retain(|p| !p.ends_with("src/main.rs") && !p.starts_with(dir.join("src/bin")));
                v
            } else if t.kind == "bin" {
                vec![dir.join(t.get("path").unwrap_or("src/main.rs"))]
            } else {
                continue;
            };
            for f in &files {
                let src = std::fs::read_to_string(f).unwrap_or_default();
                let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
                if t.get("test") == Some("false") && has_tests(&src) {
                    problems.push(format!(
                        "{rel} has tests, but its [{}] target in {name}/Cargo.toml says \
                         `test = false`, so they never run: move them to tests/it/ or remove \
                         that line",
                        t.kind
                    ));
                }
                if t.get("doctest") == Some("false") && has_doctest(&src) {
                    problems.push(format!(
                        "{rel} has a Rust code block in its docs, but {name}/Cargo.toml says \
                         `doctest = false`, so it is never compiled: mark the block ```text, \
                         or remove that line"
                    ));
                }
            }
        }
        if dir.join("tests/it/main.rs").is_file() {
            let separate: Vec<String> = ts
                .iter()
                .filter(|t| t.kind == "test" && t.get("required-features").is_some())
                .filter_map(|t| t.get("path").map(String::from))
                .collect();
            for e in std::fs::read_dir(dir.join("tests")).unwrap() {
                let p = e.unwrap().path();
                let rel = format!("tests/{}", p.file_name().unwrap().to_string_lossy());
                if p.extension().is_some_and(|x| x == "rs") && !separate.contains(&rel) {
                    problems.push(format!(
                        "{name}/{rel} is a second integration-test binary (one more link on \
                         every edit): move it to {name}/tests/it/ and add `mod` for it in \
                         tests/it/main.rs"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "test layout problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layout_checks_catch_what_they_claim() {
    assert!(has_tests("#[cfg(test)]\nmod tests {}"));
    assert!(!has_tests("fn main() {}"));
    assert!(has_doctest("//! ```\n//! let x = 1;\n//! ```\n"));
    assert!(has_doctest("/// ```no_run\n/// x();\n/// ```\n"));
    assert!(!has_doctest("//! ```text\n//! a -> b\n//! ```\n"));
    assert!(!has_doctest("//! ```json\n//! {}\n//! ```\n"));
    let ts = targets(
        "[package]\nname = \"a\"\n[lib]\ntest = false\n[[bin]]\nname = \"b\"\npath = \"src/b.rs\"\ntest = false\n[dependencies]\nx = \"1\"\n",
    );
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!(ts[0].get("test"), Some("false"));
    assert_eq!(ts[1].get("path"), Some("src/b.rs"));
}

/// xtask's modules that any command may import. Each imports only other leaves, so a leaf
/// can never pull a command into a cycle (rust-analyzer's rule for its xtask).
const XTASK_LEAVES: &[&str] = &[
    "args", "cmd", "elf", "fs", "json", "project", "sha256", "tools",
];

/// The shared leaf crate's modules (xtask/leaf), `use`d at xtask's crate root: a separate
/// crate, so it cannot import xtask; every module may name them.
const SHARED_LEAVES: &[&str] = &["toml_lite"];

/// `crate::<name>` references in xtask/src, per top-level module (a file or a folder).
fn xtask_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = root().join("xtask/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::bail!` is cmd's macro (exported at the crate root).
            let name = if name == "bail" {
                "cmd".to_string()
            } else {
                name
            };
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn xtask_leaf_modules_import_only_leaves_and_no_modules_import_in_a_circle() {
    let graph = xtask_imports();
    for &leaf in XTASK_LEAVES {
        let deps = graph
            .get(leaf)
            .unwrap_or_else(|| panic!("xtask/src/{leaf}.rs is gone; update XTASK_LEAVES"));
        let bad: Vec<_> = deps
            .iter()
            .filter(|d| !XTASK_LEAVES.contains(&d.as_str()) && !SHARED_LEAVES.contains(&d.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "xtask's leaf module `{leaf}` imports {bad:?}: leaves may import only other leaves \
             ({XTASK_LEAVES:?}); move what it needs into a leaf, or make `{leaf}` a command module"
        );
    }
    // Depth-first search for a back edge; the error shows the cycle.
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(pos) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(m.to_string());
            panic!(
                "xtask modules import each other in a circle: {}; move the shared part into a \
                 leaf module (cmd, project, tools, ...) or compose the two in main.rs",
                cycle.join(" -> ")
            );
        }
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, stack, done);
        }
        stack.pop();
        done.insert(m.to_string());
    }
    let mut done = std::collections::BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.len() > XTASK_LEAVES.len(), "found only {graph:?}");
}

/// The `[dependencies]` table of a manifest: the crate names, in order.
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            out.push(name.to_string());
        }
    }
    out
}

/// ARCHITECTURE.md's invariant: xtask compiles first on every fresh machine, so it depends on
/// std and the std-only xtask-leaf alone (clap was 7 of the 12.5 s its cold build took; a new
/// dependency must be argued for here, in this list).
#[test]
fn xtask_depends_on_xtask_leaf_alone_and_the_leaf_on_nothing() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    assert_eq!(
        dependency_names(&read("xtask/Cargo.toml")),
        ["xtask-leaf"],
        "xtask/Cargo.toml: xtask's dependencies are paid before any command can run"
    );
    assert!(
        dependency_names(&read("xtask/leaf/Cargo.toml")).is_empty(),
        "xtask/leaf/Cargo.toml must depend on nothing"
    );
    // The parser itself, so the check can fail.
    assert_eq!(
        dependency_names(
            "[package]\nname = \"x\"\n[dependencies]\n# c\nclap = \"4\"\nxtask-leaf.workspace = true\n[dev-dependencies]\ny = \"1\"\n"
        ),
        ["clap", "xtask-leaf"]
    );
}

//! Every command shown on a docs/ page is checked by a named test, or listed as manual with
//! a reason. This test keeps the pages honest: a command added without a row, or a row naming
//! a test that does not exist (renamed, deleted), fails here.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Commands in ```sh blocks, without trailing `# comments`.
fn commands(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in page.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && (t == "```sh" || t == "```console");
            continue;
        }
        if in_sh && !t.is_empty() && !t.starts_with('#') {
            let cmd = t.split(" #").next().unwrap().trim();
            out.push(cmd.to_string());
        }
    }
    out
}

/// Rows of the "Commands on this page" table: (command, checked by).
fn table(page: &str) -> Vec<(String, String)> {
    let Some(start) = page.find("## Commands on this page") else {
        return Vec::new();
    };
    page[start..]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            (cells.len() == 2).then(|| {
                (
                    cells[0].trim().trim_matches('`').to_string(),
                    cells[1].trim().to_string(),
                )
            })
        })
        .collect()
}

/// Every `fn name` in the repository's Rust sources (tests included).
fn all_fn_names() -> String {
    let mut names = String::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rs") {
                names.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    names
}

#[test]
fn every_docs_command_is_checked_by_a_named_test_or_marked_manual() {
    let sources = all_fn_names();
    let mut problems = Vec::new();
    let mut pages = 0;
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md")
            || path.ends_with("README.md")
            || path.ends_with("safety-report.md")
        {
            continue;
        }
        pages += 1;
        let page = std::fs::read_to_string(&path).unwrap();
        let rows = table(&page);
        let page_name = path.file_name().unwrap().to_string_lossy().to_string();
        for cmd in commands(&page) {
            if !rows.iter().any(|(c, _)| *c == cmd) {
                problems.push(format!(
                    "{page_name}: `{cmd}` has no row in \"Commands on this page\""
                ));
            }
        }
        for (cmd, checked_by) in &rows {
            if let Some(reason) = checked_by.strip_prefix("manual:") {
                if reason.trim().len() < 10 {
                    problems.push(format!("{page_name}: `{cmd}` is manual without a reason"));
                }
                continue;
            }
            let tests: Vec<&str> = checked_by.split('`').skip(1).step_by(2).collect();
            if tests.is_empty() {
                problems.push(format!("{page_name}: `{cmd}` names no test"));
            }
            for t in tests {
                let is_fn = t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if is_fn && !sources.contains(&format!("fn {t}(")) {
                    problems.push(format!(
                        "{page_name}: `{cmd}` cites test `{t}`, which does not exist"
                    ));
                }
            }
        }
    }
    // A project made with `cargo xtask new --no-service` / `--no-firmware` has no async.md /
    // embedded.md: those pages go with their part.
    let expected = 2
        + usize::from(root().join("services").is_dir())
        + usize::from(root().join("firmware").is_dir());
    assert!(
        pages >= expected,
        "expected {expected} friction pages, found {pages}"
    );
    assert!(
        problems.is_empty(),
        "docs problems:\n{}",
        problems.join("\n")
    );
}

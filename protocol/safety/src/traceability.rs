//! Section 6, traceability: each requirement id in protocol/SPEC.md, the tests whose doc
//! comment says `Checks: R-...`, and their results in this run.

use super::*;

/// `R-XXX-N` ids in `text`, in order.
pub(super) fn requirement_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == 'R' && bytes[i + 1] == '-' && (i == 0 || !bytes[i - 1].is_alphanumeric()) {
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_uppercase() {
                j += 1;
            }
            if j > i + 2 && j < bytes.len() && bytes[j] == '-' {
                let mut k = j + 1;
                while k < bytes.len() && bytes[k].is_ascii_digit() {
                    k += 1;
                }
                if k > j + 1 {
                    ids.push(bytes[i..k].iter().collect());
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    ids
}

/// Requirements defined in SPEC.md: `**R-XXX-N.** text` -> (id, first sentence).
pub(super) fn spec_requirements(spec: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in spec.lines() {
        let Some(rest) = line.strip_prefix("**") else {
            continue;
        };
        let Some((id, text)) = rest.split_once(".**") else {
            continue;
        };
        if requirement_ids(id).len() != 1 {
            continue;
        }
        let first = text
            .trim()
            .split(". ")
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        out.push((id.to_string(), first.to_string()));
    }
    out
}

/// A test that says which requirements it checks.
#[derive(Debug)]
pub(super) struct TracedTest {
    /// tests/properties.rs or src/cobs.rs
    pub(super) file: String,
    pub(super) name: String,
    pub(super) requirements: Vec<String>,
}

/// Doc comments `/// Checks: R-...` in protocol/tests/*.rs and protocol/src/*.rs, with the name
/// of the `fn` they document.
pub(super) fn traced_tests(root: &Path) -> Vec<TracedTest> {
    let mut files: Vec<PathBuf> = Vec::new();
    // One level of subfolders too: the integration tests are one binary, tests/it/main.rs.
    let mut dirs: Vec<PathBuf> = vec![root.join("protocol/tests"), root.join("protocol/src")];
    while let Some(dir) = dirs.pop() {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && p.parent() == Some(root.join("protocol/tests").as_path()) {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let rel = path
            .strip_prefix(root.join("protocol"))
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut pending: Vec<String> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(doc) = line.strip_prefix("///") {
                if let Some((_, ids)) = doc.split_once("Checks:") {
                    let ids = ids.split(": ").next().unwrap_or(ids);
                    pending.extend(requirement_ids(ids));
                }
            } else if let Some(pos) = line.find("fn ") {
                if !pending.is_empty() {
                    let name = line[pos + 3..]
                        .split(['(', '<'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    out.push(TracedTest {
                        file: rel.clone(),
                        name,
                        requirements: std::mem::take(&mut pending),
                    });
                }
            } else if !line.starts_with("#[") && !line.is_empty() {
                pending.clear();
            }
        }
    }
    out
}

/// The result of a traced test in this run's libtest output.
pub(super) fn result_of<'a>(t: &TracedTest, results: &'a [TestResult]) -> Option<&'a TestResult> {
    results.iter().find(|r| {
        let same_binary = if let Some(rest) = t.file.strip_prefix("tests/") {
            // A module of a one-binary test folder runs in that folder's main.rs.
            match rest.split_once('/') {
                Some((dir, _)) => r.binary == format!("tests/{dir}/main.rs"),
                None => r.binary == t.file,
            }
        } else {
            r.binary.starts_with("unittests")
        };
        same_binary && (r.name == t.name || r.name.ends_with(&format!("::{}", t.name)))
    })
}

pub(super) fn traceability(ctx: &Ctx, coverage_log: Option<&str>) -> Section {
    let mut s = Section::new(
        "traceability",
        "Traceability: requirement -> tests -> result",
    );
    let spec = std::fs::read_to_string(ctx.root.join("protocol/SPEC.md")).unwrap_or_default();
    let reqs = spec_requirements(&spec);
    let tests = traced_tests(&ctx.root);
    let (output, source) = match coverage_log {
        Some(log) => (log.to_string(), "the coverage run above"),
        None => {
            let mut cmd = cargo(ctx, &ctx.stable);
            cmd.args(["test", "-p", "beacon-protocol"]);
            let ran = run_logged(cmd, &ctx.log("tests"));
            (ran.output, "`cargo test -p beacon-protocol`")
        }
    };
    let results = parse_libtest(&output);
    let (passed, failed, ignored) = test_counts(&results);
    let harnesses = kani_harnesses(&ctx.root);

    let mut body = format!(
        "Requirements: the `**R-...**` paragraphs of protocol/SPEC.md. Tests: every test whose \
         doc comment says `Checks: R-...` (protocol/tests/*.rs, protocol/src/*.rs). Results: \
         this run's test output ({source}: {passed} passed, {failed} failed, {ignored} \
         ignored). Kani harnesses are listed for completeness; they count only when Kani ran.\n\n\
         | requirement | tests | result |\n|---|---|---|\n"
    );
    let mut failed_reqs = Vec::new();
    let mut json_reqs = Vec::new();
    for (id, text) in &reqs {
        let mine: Vec<&TracedTest> = tests
            .iter()
            .filter(|t| t.requirements.iter().any(|r| r == id))
            .collect();
        let mut cells = Vec::new();
        let mut json_tests = Vec::new();
        let mut all_ok = !mine.is_empty();
        for t in &mine {
            let outcome = result_of(t, &results).map_or("not run", |r| r.outcome.as_str());
            all_ok &= outcome == "ok";
            cells.push(format!("`{}::{}` {}", t.file, t.name, outcome));
            json_tests.push(json!({ "file": t.file, "test": t.name, "result": outcome }));
        }
        let proofs: Vec<&str> = harnesses
            .iter()
            .filter(|(_, r)| r.iter().any(|x| x == id))
            .map(|(n, _)| n.as_str())
            .collect();
        for p in &proofs {
            cells.push(format!("Kani `{p}` (see Kani section)"));
        }
        let verdict = if mine.is_empty() {
            "**no test**"
        } else if all_ok {
            "pass"
        } else {
            "**FAIL**"
        };
        if !all_ok {
            failed_reqs.push(id.clone());
        }
        let _ = writeln!(
            body,
            "| **{id}** {} | {} | {verdict} |",
            md_cell(text),
            md_cell(&cells.join("<br>"))
        );
        json_reqs.push(json!({
            "id": id,
            "text": text,
            "tests": json_tests,
            "kani_harnesses": proofs,
            "result": verdict.trim_matches('*'),
        }));
    }
    // Ids used by tests but not defined in SPEC.md: a typo or a stale reference.
    let defined: BTreeSet<&str> = reqs.iter().map(|(id, _)| id.as_str()).collect();
    let unknown: BTreeSet<&str> = tests
        .iter()
        .flat_map(|t| t.requirements.iter().map(String::as_str))
        .filter(|id| !defined.contains(id))
        .collect();
    if !unknown.is_empty() {
        let _ = writeln!(
            body,
            "\nReferenced by tests but not defined in SPEC.md: {}",
            unknown.iter().copied().collect::<Vec<_>>().join(", ")
        );
    }
    let ok = !reqs.is_empty() && failed_reqs.is_empty() && unknown.is_empty() && failed == 0;
    s.status = if ok { Status::Pass } else { Status::Fail };
    s.summary = format!(
        "{}/{} requirements have passing tests ({} traced tests){}",
        reqs.len() - failed_reqs.len(),
        reqs.len(),
        tests.len(),
        if failed_reqs.is_empty() {
            String::new()
        } else {
            format!("; failing or untested: {}", failed_reqs.join(", "))
        }
    );
    s.body = body;
    s.put("requirements", Value::Array(json_reqs));
    s.put("tests_passed", json!(passed));
    s.put("tests_failed", json!(failed));
    s
}

// ---------------------------------------------------------------------------------------------

//! libtest's human output, read back: one result per test, grouped by test binary.

/// One test result from libtest's output.
#[derive(Debug, Clone)]
pub(super) struct TestResult {
    /// "unittests src/lib.rs", "tests/properties.rs", "doctests".
    pub(super) binary: String,
    pub(super) name: String,
    pub(super) outcome: String,
}

/// Parses `Running ...` headers and `test NAME ... ok|FAILED|ignored` lines.
pub(super) fn parse_libtest(output: &str) -> Vec<TestResult> {
    let mut binary = String::from("?");
    let mut out = Vec::new();
    for line in output.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Running ") {
            // "Running tests/properties.rs (target/...)" or "Running unittests src/lib.rs (...)"
            binary = rest.split(" (").next().unwrap_or(rest).to_string();
        } else if t.starts_with("Doc-tests ") {
            binary = "doctests".into();
        } else if let Some(rest) = t.strip_prefix("test ")
            && let Some((name, outcome)) = rest.rsplit_once(" ... ")
        {
            let outcome = outcome.split([' ', ',']).next().unwrap_or("").to_string();
            if matches!(outcome.as_str(), "ok" | "FAILED" | "ignored") {
                out.push(TestResult {
                    binary: binary.clone(),
                    name: name.trim().to_string(),
                    outcome,
                });
            }
        }
    }
    out
}

pub(super) fn test_counts(results: &[TestResult]) -> (usize, usize, usize) {
    let n = |o: &str| results.iter().filter(|r| r.outcome == o).count();
    (n("ok"), n("FAILED"), n("ignored"))
}

// ---------------------------------------------------------------------------------------------

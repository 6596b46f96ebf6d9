//! Section 4, mutation testing of the decoder (cargo-mutants; full run only).

use super::*;

pub(super) fn mutants(ctx: &Ctx, iterate: bool) -> Section {
    let mut s = Section::new("mutants", "Mutation testing (decoder)");
    if !on_path("cargo-mutants") {
        return s.not_run(format!(
            "cargo-mutants missing, install with `cargo install cargo-mutants --locked \
             --version {MUTANTS_VERSION}` (or `cargo xtask safety --install`)"
        ));
    }
    let Outcomes {
        caught,
        missed,
        timeout,
        unviable,
        earlier,
    } = run_mutants(ctx, iterate);
    if caught.is_empty() && earlier.is_empty() && missed.is_empty() && timeout.is_empty() {
        s.status = Status::Fail;
        s.summary = "cargo mutants did not produce results".into();
        s.body = format!(
            "cargo mutants did not produce results (baseline build or tests failed?); see `{}`.\n",
            ctx.shown("mutants")
        );
        return s;
    }
    let killed = caught.len() + earlier.len() + timeout.len();
    let score = pct(killed, killed + missed.len());
    let explained = explained_mutants(&ctx.root);
    let explanation = |m: &str| {
        explained
            .iter()
            .find(|(key, _)| mutant_key(m) == *key)
            .map(|(_, why)| why.clone())
    };
    let mut body = format!(
        "`cargo mutants -p beacon-protocol -j 1 --cargo-test-arg=--tests{}` on {} with \
         `PROPTEST_CASES={MUTANTS_PROPTEST_CASES}`.\n\n\
         | caught | missed | timeout | unviable | score |\n|---:|---:|---:|---:|---:|\n\
         | {}{} | {} | {} | {} | {score:.1} % |\n\n\
         Score = killed / (killed + missed), where killed = caught + timeout (the mutant made a \
         test hang); an unviable mutant did not compile, so no test was needed.\n",
        if iterate { " --iterate" } else { "" },
        DECODER_FILES.join(", "),
        caught.len() + earlier.len(),
        if iterate {
            format!(
                " ({} in this run, {} in the previous run: `--iterate` did not re-test them)",
                caught.len(),
                earlier.len()
            )
        } else {
            String::new()
        },
        missed.len(),
        timeout.len(),
        unviable.len(),
    );
    let mut unexplained = Vec::new();
    if missed.is_empty() {
        body.push_str("\nNo missed mutant.\n");
    } else {
        body.push_str("\nMissed mutants and why they survive:\n\n");
        for m in &missed {
            match explanation(m) {
                Some(why) => {
                    let _ = writeln!(body, "- `{m}`\n  - explained: {why}");
                }
                None => {
                    unexplained.push(m.clone());
                    let _ = writeln!(
                        body,
                        "- `{m}`\n  - **not explained**: kill it with a test, or explain it in \
                         protocol/mutants-explained.txt"
                    );
                }
            }
        }
    }
    body.push_str("\nRaw results: `mutants/mutants.out/` next to report.md.\n");
    s.status = if unexplained.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    s.summary = format!(
        "{} caught, {} missed ({} explained), {} timeout, {} unviable; score {score:.1} %",
        caught.len() + earlier.len(),
        missed.len(),
        missed.len() - unexplained.len(),
        timeout.len(),
        unviable.len(),
    );
    s.body = body;
    s.put("caught", caught.len() + earlier.len());
    s.put("caught_in_earlier_run", json!(earlier.len()));
    s.put("missed", json!(missed.len()));
    s.put("timeout", json!(timeout.len()));
    s.put("unviable", json!(unviable.len()));
    s.put("score_percent", num(score));
    s.put(
        "missed_mutants",
        missed
            .iter()
            .map(|m| json!({ "mutant": m, "explanation": explanation(m) }))
            .collect::<Value>(),
    );
    s
}

/// Non-empty lines of a file (none when it does not exist).
pub(super) fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `protocol/src/x.rs:12:5: replace a with b` -> `protocol/src/x.rs: replace a with b`: the key
/// without line and column, so explanations survive edits elsewhere in the file.
pub(super) fn mutant_key(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    let file = parts.next().unwrap_or("");
    let _line = parts.next();
    let _col = parts.next();
    let rest = parts.next().unwrap_or("").trim();
    format!("{file}: {rest}")
}

/// protocol/mutants-explained.txt: `<key>` line, then `  why: <explanation>` line(s).
pub(super) fn explained_mutants(root: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root.join("protocol/mutants-explained.txt")).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(why) = line.trim_start().strip_prefix("why:") {
            if let Some((_, w)) = out.last_mut() {
                if !w.is_empty() {
                    w.push(' ');
                }
                w.push_str(why.trim());
            }
        } else if !line.starts_with(' ') {
            out.push((line.trim().to_string(), String::new()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------

/// What cargo-mutants found, by outcome (one mutant per line, as it names them).
struct Outcomes {
    caught: Vec<String>,
    missed: Vec<String>,
    timeout: Vec<String>,
    unviable: Vec<String>,
    /// `--iterate`: caught by an earlier run, not re-tested.
    earlier: Vec<String>,
}

/// Runs cargo-mutants on the decoder files and reads its result files back.
fn run_mutants(ctx: &Ctx, iterate: bool) -> Outcomes {
    let out = ctx.out.join("mutants");
    let _ = std::fs::create_dir_all(&out);
    let mut cmd = cargo(ctx, &ctx.stable);
    // `--tests`: unit and integration tests, not the doctest (an example, slow to build).
    cmd.args(["mutants", "-p", "beacon-protocol", "-j", "1"])
        .arg("--cargo-test-arg=--tests");
    for f in DECODER_FILES {
        cmd.args(["-f", &format!("protocol/src/{f}")]);
    }
    // `--iterate` lists earlier unviable mutants with the caught ones ("previously caught"),
    // and the new run's unviable.txt replaces the old: keep the union of every run's unviable
    // list so the report can tell the two apart.
    let dir = out.join("mutants.out");
    let earlier_unviable_path = out.join("unviable-earlier.txt");
    if iterate {
        cmd.arg("--iterate");
        let mut known: BTreeSet<String> = read_lines(&earlier_unviable_path).into_iter().collect();
        known.extend(read_lines(&dir.join("unviable.txt")));
        let _ = std::fs::write(
            &earlier_unviable_path,
            known.into_iter().map(|l| l + "\n").collect::<String>(),
        );
    } else {
        let _ = std::fs::remove_file(&earlier_unviable_path);
    }
    cmd.arg("--output").arg(&out);
    cmd.env("PROPTEST_CASES", MUTANTS_PROPTEST_CASES);
    // Mutants build in their own copy of the tree; keep them out of the shared target dir.
    cmd.env("CARGO_TARGET_DIR", ctx.target_dir.join("mutants-build"));
    // cargo-mutants exits non-zero whenever a mutant is missed: judge by its result files.
    let _ran = run_logged(cmd, &ctx.log("mutants"));
    let read = |name: &str| read_lines(&dir.join(name));
    let caught = read("caught.txt");
    let missed = read("missed.txt");
    let timeout = read("timeout.txt");
    let mut unviable = read("unviable.txt");
    let mut earlier = Vec::new();
    if iterate {
        let earlier_unviable: BTreeSet<String> =
            read_lines(&earlier_unviable_path).into_iter().collect();
        for m in read("previously_caught.txt") {
            if earlier_unviable.contains(&m) {
                unviable.push(m);
            } else {
                earlier.push(m);
            }
        }
    }
    Outcomes {
        caught,
        missed,
        timeout,
        unviable,
        earlier,
    }
}

//! Section 1, the strict lint profile: clippy with the panicking-construct denials.

use super::*;

/// clippy's arguments for the profile at `level` (`D` deny, `W` warn).
pub(super) fn lint_flags(level: char) -> Vec<String> {
    LINTS
        .iter()
        .map(|(lint, lvl, _)| {
            let l = if *lvl == "forbid" { 'F' } else { level };
            format!("-{l}{lint}")
        })
        .collect()
}

/// A finding: lint, level, `file:line`.
#[derive(Debug)]
pub(super) struct Finding {
    pub(super) lint: String,
    pub(super) level: String,
    pub(super) place: String,
}

/// Findings in cargo's `--message-format=json` output: top-level diagnostics with a code,
/// at their primary span.
pub(super) fn findings(json_lines: &str) -> Vec<Finding> {
    messages(json_lines)
        .filter(|m| m["reason"] == "compiler-message")
        .filter_map(|m| {
            let msg = &m["message"];
            let code = msg["code"]["code"].as_str()?;
            let level = msg["level"].as_str().unwrap_or("?");
            let spans = msg["spans"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let span = spans
                .iter()
                .find(|s| s["is_primary"] == true)
                .or(spans.first());
            let file = span.and_then(|s| s["file_name"].as_str()).unwrap_or("?");
            let line = span
                .and_then(|s| s["line_start"].as_u64())
                .map_or_else(|| "?".to_string(), |n| n.to_string());
            Some(Finding {
                lint: code.to_string(),
                level: level.to_string(),
                place: format!("{file}:{line}"),
            })
        })
        .collect()
}

/// Did cargo report a finished, successful build (`--message-format=json`)?
pub(super) fn finished(json_lines: &str) -> bool {
    messages(json_lines).any(|m| m["reason"] == "build-finished" && m["success"] == true)
}

/// The JSON messages among cargo's output lines (the echoed human lines are skipped).
fn messages(json_lines: &str) -> impl Iterator<Item = Value> + '_ {
    json_lines
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
}

pub(super) fn lint(ctx: &Ctx) -> Section {
    let mut s = Section::new("lint", "Strict lint profile");
    let mut body = String::new();
    body.push_str(
        "Clippy on the library code (tests may unwrap), with the profile below passed on the \
         command line, so the profile holds even if the crate's own `#![deny(...)]` list \
         (protocol/src/lib.rs) is weakened. Protocol findings fail the check; firmware \
         findings are reported (advisory) until the firmware logic adopts the profile.\n\n",
    );
    body.push_str("| lint | level | guideline it serves |\n|---|---|---|\n");
    for (lint, level, why) in LINTS {
        let _ = writeln!(body, "| `{lint}` | {level} | {why} |");
    }
    body.push('\n');

    let mut failed = false;
    let mut runs = Vec::new();
    // The protocol crate: host build with std, and the firmware target without it.
    let protocol_runs: [(&str, Vec<&str>); 2] = [
        (
            "protocol (host, std)",
            vec!["-p", "beacon-protocol", "--lib"],
        ),
        (
            "protocol (thumbv7em-none-eabihf, no_std)",
            vec![
                "-p",
                "beacon-protocol",
                "--lib",
                "--no-default-features",
                "--target",
                "thumbv7em-none-eabihf",
            ],
        ),
    ];
    for (i, (name, args)) in protocol_runs.iter().enumerate() {
        let mut cmd = cargo(ctx, &ctx.stable);
        cmd.arg("clippy")
            .args(args)
            .args(["--message-format=json", "--", "-Dwarnings"])
            .args(lint_flags('D'));
        let ran = run_logged(cmd, &ctx.log(&format!("lint-protocol-{i}")));
        let found = findings(&ran.output);
        // A positive signal that clippy really ran, not just a command that exited 0.
        let ok = ran.ok && found.is_empty() && finished(&ran.output);
        failed |= !ok;
        let _ = writeln!(
            body,
            "- **{name}**: {} ({} findings)",
            if ok { "clean" } else { "FAILED" },
            found.len()
        );
        for f in &found {
            let _ = writeln!(body, "  - `{}` ({}) at {}", f.lint, f.level, f.place);
        }
        if !ok && found.is_empty() {
            let _ = writeln!(
                body,
                "  - clippy did not complete; see {}",
                ctx.shown(&format!("lint-protocol-{i}"))
            );
        }
        runs.push(json!({
            "name": name,
            "gating": true,
            "passed": ok,
            "findings": findings_json(&found),
        }));
    }

    // The firmware's application logic (its own workspace): advisory.
    if let Some(run) = lint_firmware(ctx, &mut body) {
        runs.push(run);
    }
    s.status = if failed { Status::Fail } else { Status::Pass };
    s.summary = if failed {
        "protocol crate has findings under the strict profile".into()
    } else {
        "protocol crate clean under the strict profile (host and thumbv7em)".into()
    };
    s.body = body;
    s.put(
        "profile",
        LINTS
            .iter()
            .map(|(l, lvl, why)| json!({ "lint": l, "level": lvl, "guideline": why }))
            .collect::<Value>(),
    );
    s.put("runs", Value::Array(runs));
    s
}

pub(super) fn findings_json(found: &[Finding]) -> Value {
    found
        .iter()
        .map(|f| json!({ "lint": f.lint, "level": f.level, "at": f.place }))
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// The firmware app under the same profile, as warnings: findings are counted, not gating.
fn lint_firmware(ctx: &Ctx, body: &mut String) -> Option<Value> {
    let fw = ctx.root.join("firmware");
    if fw.join("app/Cargo.toml").is_file() {
        let mut cmd = cargo(ctx, &ctx.stable);
        cmd.current_dir(&fw)
            .args(["clippy", "-p", "beacon-firmware", "--lib"])
            .args(["--message-format=json", "--"])
            .args(lint_flags('W'));
        let ran = run_logged(cmd, &ctx.log("lint-firmware"));
        let found: Vec<Finding> = findings(&ran.output)
            .into_iter()
            .filter(|f| LINTS.iter().any(|(l, _, _)| *l == f.lint))
            .collect();
        let mut per_lint: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &found {
            *per_lint.entry(f.lint.as_str()).or_default() += 1;
        }
        if ran.ok && finished(&ran.output) {
            let counts: Vec<String> = per_lint.iter().map(|(l, n)| format!("`{l}` {n}")).collect();
            let _ = writeln!(
                body,
                "- **firmware app (beacon-firmware, thumbv7em), advisory**: {} findings{}",
                found.len(),
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(": {}", counts.join(", "))
                }
            );
            for f in found.iter().take(40) {
                let _ = writeln!(body, "  - `{}` at {}", f.lint, f.place);
            }
            if found.len() > 40 {
                let _ = writeln!(body, "  - ... {} more in the log", found.len() - 40);
            }
        } else {
            let _ = writeln!(
                body,
                "- **firmware app, advisory**: clippy did not complete (the firmware does not \
                 build right now); see {}",
                ctx.shown("lint-firmware")
            );
        }
        Some(json!({
            "name": "firmware app (advisory)",
            "gating": false,
            "completed": ran.ok,
            "findings": findings_json(&found),
        }))
    } else {
        body.push_str("- firmware app: not present (firmware/app/Cargo.toml missing)\n");
        None
    }
}

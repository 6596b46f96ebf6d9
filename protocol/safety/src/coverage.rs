//! Section 3, coverage (cargo-llvm-cov): line and region figures on the pinned stable, branch
//! figures on the pinned nightly, the uncovered decoder lines, and the gate.

use super::*;

/// Line and branch data of one source file, from an lcov file.
#[derive(Debug, Default)]
pub(super) struct FileCov {
    /// line -> hit count (only instrumented lines).
    pub(super) lines: BTreeMap<u32, u64>,
    pub(super) branches_found: u64,
    pub(super) branches_hit: u64,
    /// lines with a branch never taken.
    pub(super) branch_lines: BTreeSet<u32>,
}

/// Parses lcov into per-file data, keyed by path relative to the project root.
pub(super) fn parse_lcov(text: &str, root: &Path) -> BTreeMap<String, FileCov> {
    let root = format!("{}/", root.display());
    let mut files = BTreeMap::new();
    let mut current: Option<(String, FileCov)> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("SF:") {
            let rel = path.strip_prefix(root.as_str()).unwrap_or(path).to_string();
            current = Some((rel, FileCov::default()));
        } else if let Some(da) = line.strip_prefix("DA:") {
            if let Some((_, f)) = current.as_mut() {
                let mut it = da.split(',');
                if let (Some(Ok(n)), Some(Ok(c))) = (
                    it.next().map(str::parse::<u32>),
                    it.next().map(str::parse::<u64>),
                ) {
                    let e = f.lines.entry(n).or_default();
                    *e = (*e).max(c);
                }
            }
        } else if let Some(brda) = line.strip_prefix("BRDA:") {
            if let Some((_, f)) = current.as_mut() {
                let parts: Vec<&str> = brda.split(',').collect();
                if let [line_no, _, _, taken] = parts.as_slice() {
                    f.branches_found += 1;
                    if taken.parse::<u64>().unwrap_or(0) > 0 {
                        f.branches_hit += 1;
                    } else if let Ok(n) = line_no.parse() {
                        f.branch_lines.insert(n);
                    }
                }
            }
        } else if line == "end_of_record"
            && let Some((name, f)) = current.take()
        {
            files.insert(name, f);
        }
    }
    files
}

/// First line of the `#[cfg(test)]` module of a source file (unit tests sit at the end).
pub(super) fn test_module_start(source: &str) -> Option<u32> {
    let lines: Vec<&str> = source.lines().collect();
    lines.windows(2).enumerate().find_map(|(i, w)| {
        (w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
            .then(|| u32::try_from(i + 1).unwrap_or(u32::MAX))
    })
}

/// `1, 4-6, 9` from a sorted list of line numbers.
pub(super) fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// Per-file line figures for protocol/src, test modules excluded.
#[derive(Debug)]
pub(super) struct LineFig {
    pub(super) file: String,
    pub(super) covered: usize,
    pub(super) total: usize,
    pub(super) uncovered: Vec<u32>,
}

pub(super) fn line_figures(ctx: &Ctx, lcov: &BTreeMap<String, FileCov>) -> Vec<LineFig> {
    let mut figs = Vec::new();
    for (file, cov) in lcov {
        if !file.starts_with("protocol/src/") {
            continue;
        }
        let source = std::fs::read_to_string(ctx.root.join(file)).unwrap_or_default();
        let end = test_module_start(&source).unwrap_or(u32::MAX);
        let lines: Vec<(u32, u64)> = cov
            .lines
            .iter()
            .filter(|(n, _)| **n < end)
            .map(|(n, c)| (*n, *c))
            .collect();
        figs.push(LineFig {
            file: file.clone(),
            covered: lines.iter().filter(|(_, c)| *c > 0).count(),
            total: lines.len(),
            uncovered: lines
                .iter()
                .filter(|(_, c)| *c == 0)
                .map(|(n, _)| *n)
                .collect(),
        });
    }
    figs
}

pub(super) fn pct(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

/// Region/function/line totals from `cargo llvm-cov report`'s text table, for protocol/src.
pub(super) fn region_totals(table: &str) -> Option<(u64, u64)> {
    let mut regions = 0u64;
    let mut missed = 0u64;
    let mut any = false;
    for line in table.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = cols.first() else { continue };
        // `cargo llvm-cov report -p beacon-protocol` lists that crate's sources by file name
        // (relative to protocol/src); the TOTAL row and separators are skipped.
        if !name.ends_with(".rs") || cols.len() < 3 {
            continue;
        }
        if let (Ok(r), Ok(m)) = (cols[1].parse::<u64>(), cols[2].parse::<u64>()) {
            regions += r;
            missed += m;
            any = true;
        }
    }
    any.then_some((regions, missed))
}

/// Returns the section and the libtest output of the (stable) coverage run, which the
/// traceability section reuses as the test results.
pub(super) fn coverage(ctx: &Ctx) -> (Section, Option<String>) {
    let mut s = Section::new("coverage", "Coverage of the protocol crate");
    if !on_path("cargo-llvm-cov") {
        return (
            s.not_run(format!(
                "cargo-llvm-cov missing, install with `cargo install cargo-llvm-cov --locked \
                 --version {LLVM_COV_VERSION}` (or `cargo xtask safety --install`)"
            )),
            None,
        );
    }
    if !has_component(&ctx.stable, "llvm-tools") {
        return (
            s.not_run(format!(
                "llvm-tools missing, install with `rustup component add llvm-tools --toolchain {}`",
                ctx.stable
            )),
            None,
        );
    }
    let lcov_path = ctx.out.join("lcov.info");
    let ran = llvm_cov(ctx, &ctx.stable, &[], &lcov_path, "coverage");
    let test_output = ran.output.clone();
    if !ran.ok {
        s.status = Status::Fail;
        s.summary = "the tests failed under coverage instrumentation".into();
        s.body = format!(
            "`cargo llvm-cov` failed; see `{}`.\n",
            ctx.shown("coverage")
        );
        return (s, Some(test_output));
    }
    // Region figures: the text summary of the same profile data.
    let mut cmd = cargo(ctx, &ctx.stable);
    cmd.args(["llvm-cov", "report", "-p", "beacon-protocol"]);
    let table = run_logged(cmd, &ctx.log("coverage-summary"));
    let regions = table.ok.then(|| region_totals(&table.output)).flatten();

    let lcov = parse_lcov(
        &std::fs::read_to_string(&lcov_path).unwrap_or_default(),
        &ctx.root,
    );
    let figs = line_figures(ctx, &lcov);
    let is_decoder = |f: &LineFig| DECODER_FILES.iter().any(|d| f.file.ends_with(d));
    let (dc, dt) = figs
        .iter()
        .filter(|f| is_decoder(f))
        .fold((0, 0), |(c, t), f| (c + f.covered, t + f.total));
    let (ac, at) = figs
        .iter()
        .fold((0, 0), |(c, t), f| (c + f.covered, t + f.total));
    let decoder_pct = pct(dc, dt);

    // Branch coverage needs nightly (`-Z coverage-options=branch`).
    let branch = branch_coverage(ctx);

    let mut body = format!(
        "`cargo +{} llvm-cov -p beacon-protocol` (all unit, property, vector and doc tests; \
         proptest at its default 2000 cases). Line figures exclude the `#[cfg(test)]` modules \
         at the end of each source file.\n\n",
        ctx.stable
    );
    body.push_str(&files_table(&figs, is_decoder));
    let _ = writeln!(
        body,
        "\n- **decoder lines** ({}): **{dc}/{dt} = {decoder_pct:.1} %** (gate: >= {COVERAGE_GATE} %)",
        DECODER_FILES.join(", ")
    );
    let _ = writeln!(
        body,
        "- all protocol/src lines: {ac}/{at} = {:.1} %",
        pct(ac, at)
    );
    region_and_branch_lines(&mut body, regions, &branch);
    // Show the uncovered decoder lines themselves, so a reader can judge them.
    // A line the stable counters report as never run, while the nightly run (same tests, same
    // sources) counts executions on it, is a counter-mapping artifact of the stable compiler
    // (seen on `x = x.saturating_add(1);` after a `?`, and on format-string lines). Say so
    // per line; the gate still uses the stable figure.
    let nightly_lines = branch.as_ref().ok().map(|b| &b.3);
    let (listing, artifacts) = uncovered_listing(ctx, &figs, nightly_lines);
    if !listing.is_empty() {
        let _ = write!(
            body,
            "\nUncovered lines (per the stable run; {artifacts} of them were executed according to \
             the nightly run's counters, which points to a counter-mapping artifact of the stable \
             compiler on those lines, not to untested code):\n\n```text\n{listing}```\n"
        );
    }
    let pass = decoder_pct >= COVERAGE_GATE;
    s.status = if pass { Status::Pass } else { Status::Fail };
    s.summary = format!(
        "decoder lines {decoder_pct:.1} % (gate {COVERAGE_GATE} %), all lines {:.1} %{}",
        pct(ac, at),
        match &branch {
            Ok((h, f, _, _)) => format!(", branches {:.1} %", pct(*h, *f)),
            Err(_) => ", branches not measured".into(),
        }
    );
    s.body = body;
    put_figures(&mut s, [(dc, dt), (ac, at)], artifacts, regions, &branch);
    s.put("files", files_json(&figs));
    (s, Some(test_output))
}

/// The section's machine-readable figures: `lines` is (covered, total) for the decoder files
/// and for all of protocol/src; `artifacts` the uncovered lines the nightly counters saw run.
fn put_figures(
    s: &mut Section,
    lines: [(usize, usize); 2],
    artifacts: usize,
    regions: Option<(u64, u64)>,
    branch: &std::result::Result<Branches, String>,
) {
    let [(dc, dt), (ac, at)] = lines;
    s.put("decoder_lines_covered", dc);
    s.put("decoder_lines_total", dt);
    s.put("decoder_line_percent", num(pct(dc, dt)));
    s.put("all_line_percent", num(pct(ac, at)));
    s.put("gate_percent", num(COVERAGE_GATE));
    s.put("uncovered_lines_executed_on_nightly", artifacts);
    if let Some((r, m)) = regions {
        s.put("regions_total", r);
        s.put("regions_missed", m);
    }
    match branch {
        Ok((hit, found, _, _)) => {
            s.put("branches_hit", *hit);
            s.put("branches_total", *found);
        }
        Err(why) => s.put("branches", format!("not measured: {why}")),
    }
}

/// The region and branch figures, as report lines.
fn region_and_branch_lines(
    body: &mut String,
    regions: Option<(u64, u64)>,
    branch: &std::result::Result<Branches, String>,
) {
    match regions {
        Some((r, m)) => {
            let _ = writeln!(
                body,
                "- regions (llvm-cov, protocol/src, test modules included): {}/{r} = {:.1} %",
                r - m,
                pct(
                    usize::try_from(r - m).unwrap_or(0),
                    usize::try_from(r).unwrap_or(0)
                )
            );
        }
        None => body.push_str("- regions: the summary table could not be read\n"),
    }
    match branch {
        Ok((hit, found, lines, _)) => {
            let _ = writeln!(
                body,
                "- **branches** (nightly `--branch`, protocol/src, test modules excluded): \
                 {hit}/{found} = {:.1} %. These are the conditions rustc's \
                 `-Z coverage-options=branch` instruments (`if`, `while`, `&&`, `||`); `match` \
                 arms and other paths show in the region figure.",
                pct(*hit, *found)
            );
            for (file, ls) in lines {
                let _ = writeln!(body, "  - branch not taken on {file}: {}", ranges(ls));
            }
        }
        Err(why) => {
            let _ = writeln!(body, "- branches: not measured: {why}");
        }
    }
}

/// The uncovered lines' text, one per line, each marked when the nightly run's counters say
/// it ran; and how many were so marked.
fn uncovered_listing(
    ctx: &Ctx,
    figs: &[LineFig],
    nightly_lines: Option<&BTreeMap<String, FileCov>>,
) -> (String, usize) {
    let mut artifacts = 0usize;
    let mut listing = String::new();
    for f in figs.iter().filter(|f| !f.uncovered.is_empty()) {
        let source = std::fs::read_to_string(ctx.root.join(&f.file)).unwrap_or_default();
        let lines: Vec<&str> = source.lines().collect();
        for n in &f.uncovered {
            let text = usize::try_from(*n)
                .ok()
                .and_then(|i| lines.get(i.saturating_sub(1)))
                .copied()
                .unwrap_or("")
                .trim();
            let ran_on_nightly = nightly_lines
                .and_then(|m| m.get(&f.file))
                .and_then(|c| c.lines.get(n))
                .is_some_and(|count| *count > 0);
            artifacts += usize::from(ran_on_nightly);
            let _ = writeln!(
                listing,
                "{}:{n}: {text}{}",
                f.file,
                if ran_on_nightly {
                    "    [executed per the nightly run's counters]"
                } else {
                    ""
                }
            );
        }
    }
    (listing, artifacts)
}

/// Per-file line figures as JSON.
fn files_json(figs: &[LineFig]) -> Value {
    figs.iter()
        .map(|f| {
            json!({
                "file": f.file,
                "covered": f.covered,
                "total": f.total,
                "uncovered": f.uncovered,
            })
        })
        .collect()
}

/// The per-file Markdown table.
fn files_table(figs: &[LineFig], is_decoder: impl Fn(&LineFig) -> bool) -> String {
    let mut body = String::new();
    body.push_str("| file | lines covered | line % | uncovered lines |\n|---|---:|---:|---|\n");
    for f in figs {
        let _ = writeln!(
            body,
            "| {}{} | {}/{} | {:.1} | {} |",
            f.file,
            if is_decoder(f) { " (decoder)" } else { "" },
            f.covered,
            f.total,
            pct(f.covered, f.total),
            if f.uncovered.is_empty() {
                "-".to_string()
            } else {
                ranges(&f.uncovered)
            }
        );
    }
    body
}

/// Branch coverage on the pinned nightly: (hit, found, lines with an untaken branch per file).
/// Also returns the nightly run's line data, to cross-check the stable line counters.
type Branches = (
    usize,
    usize,
    Vec<(String, Vec<u32>)>,
    BTreeMap<String, FileCov>,
);

/// `cargo llvm-cov -p beacon-protocol <extra> --lcov --output-path <lcov>` on `toolchain`,
/// logged as `log`.
fn llvm_cov(
    ctx: &Ctx,
    toolchain: &str,
    extra: &[&str],
    lcov: &Path,
    log: &str,
) -> crate::host::Ran {
    let mut cmd = cargo(ctx, toolchain);
    cmd.args(["llvm-cov", "-p", "beacon-protocol"])
        .args(extra)
        .args(["--lcov", "--output-path"])
        .arg(lcov);
    run_logged(cmd, &ctx.log(log))
}

pub(super) fn branch_coverage(ctx: &Ctx) -> std::result::Result<Branches, String> {
    if !has_component(&ctx.nightly, "llvm-tools") {
        return Err(format!(
            "branch coverage needs nightly; install llvm-tools for it with `rustup component add \
             llvm-tools --toolchain {}` (stable has no branch coverage)",
            ctx.nightly
        ));
    }
    let path = ctx.out.join("lcov-branch.info");
    let ran = llvm_cov(ctx, &ctx.nightly, &["--branch"], &path, "coverage-branch");
    if !ran.ok {
        return Err(format!(
            "the nightly branch-coverage run failed; see {}",
            ctx.shown("coverage-branch")
        ));
    }
    let lcov = parse_lcov(
        &std::fs::read_to_string(&path).unwrap_or_default(),
        &ctx.root,
    );
    let mut hit = 0;
    let mut found = 0;
    let mut lines = Vec::new();
    for (file, cov) in &lcov {
        if !file.starts_with("protocol/src/") {
            continue;
        }
        let source = std::fs::read_to_string(ctx.root.join(file)).unwrap_or_default();
        let end = test_module_start(&source).unwrap_or(u32::MAX);
        hit += usize::try_from(cov.branches_hit).unwrap_or(0);
        found += usize::try_from(cov.branches_found).unwrap_or(0);
        let untaken: Vec<u32> = cov
            .branch_lines
            .iter()
            .copied()
            .filter(|n| *n < end)
            .collect();
        if !untaken.is_empty() {
            lines.push((file.clone(), untaken));
        }
    }
    if found == 0 {
        return Err("the nightly run produced no branch data".into());
    }
    Ok((hit, found, lines, lcov))
}

// ---------------------------------------------------------------------------------------------

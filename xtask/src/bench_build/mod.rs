//! `cargo xtask bench-build`: measures the dev loop people run instead of claiming it got faster.
//!
//! Works on copies of the repository's sources (tracked and untracked, not ignored) in a
//! scratch directory outside the project, so no edit touches the real tree:
//! - "stock": the current tree as a fresh clone sees it (stable cargo, committed config only);
//! - "configured": the same tree plus the `.cargo/local.toml` setup writes (dev-loop levers);
//! - "baseline": an older commit (`--baseline`, default 876272a, before the layout work) with
//!   stock cargo, so the gain from the repository's own structure shows too;
//! - "cranelift" (`--cranelift`, opt-in): configured plus Cranelift for workspace crates on the
//!   pinned nightly, measured but not what setup configures (docs/compile-times.md says why).
//!
//! The loops, each after a one-line edit that forces codegen, interleaved A B C A B C, medians:
//! L1 `cargo build -p beacon-service --bin beacon-service` (edit services/service/src/api/mod.rs),
//! L2 `cargo test -p beacon-service --no-run` (same edit), L3 `cargo test --workspace --no-run`
//! (edit protocol/src/lib.rs), L4 a clean `cargo build --workspace` (`--no-clean` skips it).
//! Then a breakdown for the configured tree: cargo's own overhead (a no-op build) and the units
//! each loop rebuilt (`--timings`). Writes `target/bench-build.json`; setup reads its linker
//! fields (`--link` races mold against LLD as before).
//!
//! Here: the arguments, the variants and loops, the measuring and the run. `trees.rs`: the
//! scratch trees (source copies, an older commit's tree) and the variants built from them;
//! `report.rs`: the printed tables and their JSON; `levers.rs`: the `--levers` variants.

mod levers;
mod report;
mod trees;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd::{Error, Result};
use crate::json::Json;
use crate::setup::{self, Ctx};
use report::{breakdown_report, levers_report, loops_report, nums};
use trees::{prepare, seed};

#[derive(Debug, Clone)]
pub struct Args {
    /// Clean builds per variant (L4; each is minutes on 2 cores).
    pub runs: usize,
    /// Timed rebuilds per variant and loop (L1-L3).
    pub incr_runs: usize,
    /// Skip L4 (the clean builds).
    pub no_clean: bool,
    /// Also race mold against LLD on L1 (needs mold on PATH); setup picks the linker from it.
    pub link: bool,
    /// The older commit measured with stock cargo as "baseline" (empty: skip).
    pub baseline: String,
    /// Also measure Cranelift for the workspace crates (pinned nightly), on L1-L3.
    pub cranelift: bool,
    /// Also race the smaller levers against the configured tree on L1 and L2.
    pub levers: bool,
    /// The wild linker's binary for `--levers` (default: `wild` on PATH; none: not raced).
    pub wild: Option<PathBuf>,
    /// Scratch directory (default: <tmp>/beacon-bench-build).
    pub work_dir: Option<PathBuf>,
    /// Where to write the JSON (default: target/bench-build.json, which setup reads).
    pub out: Option<PathBuf>,
}

/// `cargo xtask bench-build --help`.
pub const HELP: &str = "\
Measure stock stable vs the fast loop (clean and incremental builds, L1-L4) and mold vs LLD;
writes target/bench-build.json, which setup chooses from.

Usage: cargo xtask bench-build [OPTIONS]

Options:
      --runs <N>          Clean builds per variant (L4; each is minutes on 2 cores) [default: 2]
      --incr-runs <N>     Timed rebuilds per variant and loop (L1-L3) [default: 5]
      --no-clean          Skip L4 (the clean builds)
      --link              Also race mold against LLD on L1 (needs mold on PATH); setup picks the
                          linker from it
      --baseline <REV>    The older commit measured with stock cargo as \"baseline\" (empty:
                          skip) [default: 876272a]
      --cranelift         Also measure Cranelift for the workspace crates (pinned nightly), on
                          L1-L3
      --levers            Also race the smaller levers against the configured tree on L1 and L2:
                          debug info off, split debug info, 16 codegen units, and the wild linker
                          (src/bench_build/levers.rs)
      --wild <PATH>       The wild linker's binary for `--levers` (default: `wild` on PATH; none:
                          not raced)
      --work-dir <DIR>    Scratch directory (default: <tmp>/beacon-bench-build)
      --out <FILE>        Where to write the JSON (default: target/bench-build.json, which setup
                          reads)
  -h, --help              Print help
";

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        Ok(Args {
            runs: a.value("--runs")?.unwrap_or(2),
            incr_runs: a.value("--incr-runs")?.unwrap_or(5),
            no_clean: a.flag("--no-clean", None)?,
            link: a.flag("--link", None)?,
            baseline: a.value("--baseline")?.unwrap_or_else(|| "876272a".into()),
            cranelift: a.flag("--cranelift", None)?,
            levers: a.flag("--levers", None)?,
            wild: a.value("--wild")?,
            work_dir: a.value("--work-dir")?,
            out: a.value("--out")?,
        })
    }
}

impl Default for Args {
    fn default() -> Self {
        Args {
            runs: 2,
            incr_runs: 5,
            no_clean: false,
            link: true,
            baseline: "876272a".into(),
            cranelift: false,
            levers: false,
            wild: None,
            work_dir: None,
            out: None,
        }
    }
}

/// One way of building: which toolchain, which extra config, which target dir.
#[derive(Debug)]
struct Variant {
    name: &'static str,
    src: PathBuf,
    toolchain: String,
    configs: Vec<String>,
    profile: Option<&'static str>,
    target_dir: PathBuf,
    /// Measured on the first `loops` loops only (mold: L1; levers: L1 and L2).
    loops: usize,
    /// Before each loop's warm-up, its target dir is replaced by a copy of the configured
    /// tree's (the levers: only the units the lever changes rebuild).
    seeded: bool,
}

impl Variant {
    fn command(&self, cargo_args: &[&str]) -> Command {
        let src = &self.src;
        let mut c = Command::new("rustup");
        c.args(["run", &self.toolchain, "cargo"]);
        for cfg in &self.configs {
            c.arg("--config").arg(cfg);
        }
        c.args(&cargo_args[..1]);
        if let Some(p) = self.profile {
            c.args(["--profile", p]);
        }
        c.args(&cargo_args[1..]);
        c.current_dir(src).env("CARGO_TARGET_DIR", &self.target_dir);
        for v in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "CARGO_INCREMENTAL",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// Runs cargo, returns the wall time in seconds.
    fn time(&self, cargo_args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        let out = self
            .command(cargo_args)
            .output()
            .map_err(|e| Error(format!("could not run rustup: {e}")))?;
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<_> = err
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            crate::bail!(
                "{} build failed ({}):\n{}",
                self.name,
                out.status,
                tail.join("\n")
            );
        }
        Ok(secs)
    }

    fn bin_dir(&self) -> PathBuf {
        self.target_dir.join(self.profile.unwrap_or("debug"))
    }
}

pub fn median(v: &[f64]) -> f64 {
    levers::middle(v)
}

/// Which linker to use from the incremental rebuild times with LLD and with mold, and why.
/// mold wins only when it is clearly faster: median at most 0.95x of LLD's, and below LLD's
/// best run (so the difference is bigger than the run-to-run noise of a busy machine).
pub fn link_verdict(lld: &[f64], mold: &[f64]) -> (&'static str, String) {
    if lld.is_empty() || mold.is_empty() {
        return ("lld", "LLD (mold not measured)".into());
    }
    let r = ratio(median(mold), median(lld));
    let lld_best = lld.iter().copied().fold(f64::INFINITY, f64::min);
    if r <= 0.95 && median(mold) < lld_best {
        (
            "mold",
            format!(
                "mold wins: rebuild {r:.2}x of LLD ({:.0}% faster)",
                (1.0 - r) * 100.0
            ),
        )
    } else if r <= 0.95 {
        (
            "lld",
            format!(
                "LLD stays: mold {r:.2}x of LLD, but within the noise (mold median {:.1}s vs LLD best {lld_best:.1}s); re-run with more --incr-runs on a quiet machine",
                median(mold)
            ),
        )
    } else {
        (
            "lld",
            format!("LLD stays: mold is {r:.2}x of LLD, not faster here"),
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// (unit, seconds) from a `--timings` report.
type Units = Vec<(String, f64)>;

/// One dev loop: the file its edit goes into and the cargo command it times.
#[derive(Debug)]
struct Loop {
    id: &'static str,
    what: &'static str,
    edit: &'static str,
    args: &'static [&'static str],
}

const LOOPS: [Loop; 3] = [
    Loop {
        id: "L1",
        what: "run: edit a service handler, build its binary",
        edit: "services/service/src/api/mod.rs",
        args: &[
            "build",
            "-p",
            "beacon-service",
            "--bin",
            "beacon-service",
            "--offline",
        ],
    },
    Loop {
        id: "L2",
        what: "test: edit the service, build its tests",
        edit: "services/service/src/api/mod.rs",
        args: &["test", "-p", "beacon-service", "--no-run", "--offline"],
    },
    Loop {
        id: "L3",
        what: "deep edit: edit the protocol, build every test",
        edit: "protocol/src/lib.rs",
        args: &["test", "--workspace", "--no-run", "--offline"],
    },
];

/// The file a loop edits in the tree `src`: `rel`, or for an older tree (the baseline) where
/// the module was still one file, `a/b.rs` for `a/b/mod.rs`.
fn edit_path(src: &Path, rel: &str) -> PathBuf {
    let p = src.join(rel);
    match rel.strip_suffix("/mod.rs") {
        Some(dir) if !p.is_file() => src.join(format!("{dir}.rs")),
        _ => p,
    }
}

/// Appends one codegen-forcing public function (its body changes with `n`) to `original`.
pub fn edit_append(original: &str, n: usize) -> String {
    format!(
        "{original}\n#[doc(hidden)]\npub fn bench_build_edit() -> u64 {{\n    core::hint::black_box({n})\n}}\n"
    )
}

/// Unit name, target and seconds from a `cargo --timings` report (its UNIT_DATA table), the
/// slowest first.
pub fn timing_units(html: &str) -> Units {
    let Some(start) = html.find("UNIT_DATA = [") else {
        return Vec::new();
    };
    let data = &html[start..];
    let data = &data[..data.find("];").unwrap_or(data.len())];
    let field = |obj: &str, key: &str| -> Option<String> {
        let at = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
        let rest = obj[at..].trim_start();
        let end = if let Some(r) = rest.strip_prefix('"') {
            return Some(r[..r.find('"')?].to_string());
        } else {
            rest.find([',', '\n', '}']).unwrap_or(rest.len())
        };
        Some(rest[..end].trim().to_string())
    };
    let mut units: Vec<(String, f64)> = data
        .split("\"i\":")
        .skip(1)
        .filter_map(|obj| {
            let name = field(obj, "name")?;
            let target = field(obj, "target").unwrap_or_default();
            let mode = field(obj, "mode").unwrap_or_default();
            let d: f64 = field(obj, "duration")?.parse().ok()?;
            let label = format!("{name}{} {}", target.trim_end(), mode)
                .trim_end()
                .replace(" todo", "");
            (d > 0.0).then_some((label, d))
        })
        .collect();
    units.sort_by(|a, b| b.1.total_cmp(&a.1));
    units
}

pub fn run(args: Args) -> Result {
    let ctx = Ctx::load()?;
    let root = ctx.root.clone();
    let stable = ctx.stable()?.to_string();
    let host = setup::host_triple(&ctx.platform);
    let (variants, local_body, mold_on) = prepare(&ctx, &args, &host)?;
    eprintln!("bench-build: fetching dependencies (not timed)");
    for v in &variants {
        v.time(&["fetch"])?;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "bench-build: {cores} cores, load {}; stock/configured/baseline = {stable}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let clean = measure_clean(&args, &variants)?;
    let (incr, breakdown) = measure_loops(&args, &variants)?;
    // Proof, from the binaries, of what linked them.
    let comment = |v: &Variant| {
        crate::elf::elf_comment(&v.bin_dir().join("beacon-service"))
            .unwrap_or_default()
            .join(" | ")
    };
    let conf_dylib = crate::elf::elf_needs(
        &variants[1].bin_dir().join("beacon-service"),
        "libbeacon_devdeps",
    );
    if !crate::setup::localcfg::dev_loop_rustflags(&host, &root).is_empty() && !conf_dylib {
        eprintln!(
            "warning: the configured beacon-service does not load libbeacon_devdeps.so: the dylib lever was not in effect"
        );
    }

    let loops_json = loops_report(&args, &variants, &incr, cores, &load);
    let (cs, cc) = (median(&clean[0]), median(&clean[1]));
    if !args.no_clean {
        println!(
            "  {:<4} {:<48} {cs:>8.1} {cc:>10.1} {:>9.2}x",
            "L4",
            "clean: cargo build --workspace",
            ratio(cc, cs)
        );
    }
    if args.cranelift {
        for (l, lp) in LOOPS.iter().enumerate() {
            let (c, cl) = (
                med(&variants, &incr, l, "configured"),
                med(&variants, &incr, l, "cranelift"),
            );
            println!(
                "  {} with Cranelift for workspace crates (nightly): {cl:.2}s = {:.2}x of configured",
                lp.id,
                ratio(cl, c)
            );
        }
    }
    let levers_json = levers_report(&variants, &incr);
    let bd_json = breakdown_report(&breakdown);

    // mold vs LLD, on L1 (stock tree), for setup's linker choice.
    let mk = variants.iter().position(|v| v.name == "mold");
    let lld = &incr[0][0];
    let mold_runs: &[f64] = mk.map(|k| incr[0][k].as_slice()).unwrap_or(&[]);
    let (winner, verdict) = link_verdict(lld, mold_runs);
    let link_ratio = ratio(median(mold_runs), median(lld));
    if mold_on {
        println!("  linker: {verdict}");
    }
    let json = Json::obj([
        ("cores", Json::Num(cores as f64)),
        ("loadavg_at_start", Json::str(load.trim())),
        (
            "loadavg_at_end",
            Json::str(
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim(),
            ),
        ),
        ("stable", Json::str(&stable)),
        ("baseline_commit", Json::str(&args.baseline)),
        ("local_toml", Json::str(&local_body)),
        ("configured_loads_devdeps_dylib", Json::Bool(conf_dylib)),
        ("incr_runs", Json::Num(args.incr_runs as f64)),
        ("loops", Json::Arr(loops_json)),
        ("clean_stock_s", nums(&clean[0])),
        ("clean_configured_s", nums(&clean[1])),
        ("clean_stock_median_s", Json::Num(cs)),
        ("clean_configured_median_s", Json::Num(cc)),
        ("clean_configured_over_stock", Json::Num(ratio(cc, cs))),
        ("breakdown", Json::Arr(bd_json)),
        ("levers", Json::Arr(levers_json)),
        ("link_mold_over_lld", Json::Num(link_ratio)),
        (
            "link_winner",
            Json::str(if mold_on { winner } else { "unmeasured" }),
        ),
        ("link_verdict", Json::str(&verdict)),
        ("comment_stock", Json::str(comment(&variants[0]))),
        ("comment_configured", Json::str(comment(&variants[1]))),
    ]);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/bench-build.json"));
    if let Some(dir) = out.parent() {
        crate::fs::create_dir_all(dir)?;
    }
    crate::fs::write(&out, json.pretty())?;
    println!("  written to {}", out.display());
    Ok(())
}

/// Median of the runs of loop `l` for the variant called `name` (NaN when it did not run).
fn med(variants: &[Variant], incr: &[Vec<Vec<f64>>], l: usize, name: &str) -> f64 {
    variants
        .iter()
        .position(|v| v.name == name)
        .map(|k| median(&incr[l][k]))
        .unwrap_or(f64::NAN)
}

/// L4: clean builds of stock and configured, interleaved; seconds per run, per variant.
fn measure_clean(args: &Args, variants: &[Variant]) -> Result<Vec<Vec<f64>>> {
    let mut clean: Vec<Vec<f64>> = vec![Vec::new(); 2];
    if !args.no_clean {
        for i in 0..args.runs {
            for (k, v) in variants.iter().take(2).enumerate() {
                let _ = std::fs::remove_dir_all(&v.target_dir);
                eprintln!(
                    "  L4 {:<10} run {}: clean build of the workspace ...",
                    v.name,
                    i + 1
                );
                let s = v.time(&["build", "--workspace", "--offline"])?;
                eprintln!(
                    "  L4 {:<10} run {}: {}",
                    v.name,
                    i + 1,
                    crate::cmd::elapsed(s)
                );
                clean[k].push(s);
            }
        }
    }

    Ok(clean)
}

/// A loop's no-op build time and its rebuilt units (cargo --timings), for the configured tree.
type Breakdown = Vec<(String, f64, Units)>;

/// L1-L3: each variant warmed on the loop (untimed, with an edit), then the timed runs
/// interleaved; seconds per loop, per variant, per run; and the configured tree's breakdown.
fn measure_loops(args: &Args, variants: &[Variant]) -> Result<(Vec<Vec<Vec<f64>>>, Breakdown)> {
    let mut edit = 0;
    let mut incr: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); variants.len()]; LOOPS.len()];
    let mut breakdown: Vec<(String, f64, Units)> = Vec::new();
    for (l, lp) in LOOPS.iter().enumerate() {
        let paths: Vec<PathBuf> = variants
            .iter()
            .map(|v| edit_path(&v.src, lp.edit))
            .collect();
        let originals: Vec<String> = paths
            .iter()
            .map(std::fs::read_to_string)
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error(format!("{}: cannot read {}: {e}", lp.id, lp.edit)))?;
        let mut build = |v: &Variant, k: usize, extra: &[&str]| -> Result<f64> {
            edit += 1;
            crate::fs::write(&paths[k], edit_append(&originals[k], edit))?;
            let mut a: Vec<&str> = lp.args.to_vec();
            a.extend_from_slice(extra);
            v.time(&a)
        };
        for (k, v) in variants.iter().enumerate() {
            if l >= v.loops {
                continue;
            }
            if v.seeded {
                seed(&variants[1].target_dir, &v.target_dir)?;
            }
            eprintln!("  {} {:<10} warming up (untimed)", lp.id, v.name);
            build(v, k, &[])?;
            build(v, k, &[])?;
        }
        for i in 0..args.incr_runs {
            for (k, v) in variants.iter().enumerate() {
                if l >= v.loops {
                    continue; // mold is raced on L1 only, the levers on L1 and L2
                }
                let s = build(v, k, &[])?;
                eprintln!("  {} {:<10} run {}: {s:.2}s", lp.id, v.name, i + 1);
                incr[l][k].push(s);
            }
        }
        // Breakdown for the configured tree: a no-op build (cargo's own overhead), then one
        // more edit with --timings.
        let conf = &variants[1];
        let noop = conf.time(lp.args)?;
        let _ = build(conf, 1, &["--timings"]);
        let html = std::fs::read_to_string(conf.src.join("target/cargo-timings/cargo-timing.html"))
            .or_else(|_| {
                std::fs::read_to_string(conf.target_dir.join("cargo-timings/cargo-timing.html"))
            })
            .unwrap_or_default();
        breakdown.push((lp.id.to_string(), noop, timing_units(&html)));
        for (k, p) in paths.iter().enumerate() {
            crate::fs::write(p, &originals[k])?;
        }
    }

    Ok((incr, breakdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_the_edit() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        // The figures measured here under load: mold's median was not below LLD's best run.
        let (w, why) = link_verdict(&[18.07, 13.28, 18.02], &[15.95, 16.05, 13.77]);
        assert_eq!(w, "lld", "{why}");
        assert!(why.contains("noise"), "{why}");
        assert_eq!(
            link_verdict(&[18.0, 17.5, 18.2], &[12.0, 12.5, 12.2]).0,
            "mold"
        );
        assert_eq!(link_verdict(&[10.0, 10.2], &[10.5, 10.9]).0, "lld");
        let e = edit_append("pub mod api;\n", 3);
        assert!(
            e.starts_with("pub mod api;\n") && e.contains("black_box(3)"),
            "{e}"
        );
        assert_ne!(edit_append("x", 4), e);
        let html = "const UNIT_DATA = [\n  {\n    \"i\": 3,\n    \"name\": \"beacon-service\",\n    \"version\": \"0.1.0\",\n    \"mode\": \"todo\",\n    \"target\": \" lib\",\n    \"start\": 0.1,\n    \"duration\": 0.43\n  },\n  {\n    \"i\": 4,\n    \"name\": \"tokio\",\n    \"mode\": \"todo\",\n    \"target\": \"\",\n    \"duration\": 0.0\n  },\n  {\n    \"i\": 5,\n    \"name\": \"beacon-service\",\n    \"mode\": \"test\",\n    \"target\": \" test \\\"it\\\"\",\n    \"duration\": 0.9\n  }\n];";
        let u = timing_units(html);
        assert_eq!(u.len(), 2, "{u:?}");
        assert_eq!(u[1], ("beacon-service lib".to_string(), 0.43));
    }
}

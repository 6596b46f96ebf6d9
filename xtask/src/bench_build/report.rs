//! bench-build's results: the tables it prints (loops, levers, where the time goes) and the
//! same figures as JSON for target/bench-build.json.

use super::{Args, Breakdown, LOOPS, Variant, levers, med, median, ratio};
use crate::json::Json;

pub(super) fn nums(v: &[f64]) -> Json {
    Json::Arr(
        v.iter()
            .map(|x| Json::Num((x * 100.0).round() / 100.0))
            .collect(),
    )
}

/// Prints the L1-L3 table (medians and ratios); the same as JSON, with every run.
pub(super) fn loops_report(
    args: &Args,
    variants: &[Variant],
    incr: &[Vec<Vec<f64>>],
    cores: usize,
    load: &str,
) -> Vec<Json> {
    let med = |l: usize, name: &str| med(variants, incr, l, name);
    println!(
        "\nbench-build ({cores} cores, load at start {}; medians of {} runs, seconds; configured = stock + .cargo/local.toml from setup)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.incr_runs
    );
    println!(
        "  {:<4} {:<48} {:>8} {:>10} {:>10}  {:>10} {:>10}",
        "loop", "command", "stock", "configured", "conf/stock", "baseline", "conf/base"
    );
    let mut loops_json = Vec::new();
    for (l, lp) in LOOPS.iter().enumerate() {
        let (s, c, b) = (med(l, "stock"), med(l, "configured"), med(l, "baseline"));
        println!(
            "  {:<4} {:<48} {s:>8.2} {c:>10.2} {:>9.2}x  {b:>10.2} {:>9.2}x",
            lp.id,
            lp.args[..lp.args.len() - 1].join(" "),
            ratio(c, s),
            ratio(c, b)
        );
        let mut fields = vec![
            ("id", Json::str(lp.id)),
            ("what", Json::str(lp.what)),
            ("edit", Json::str(lp.edit)),
            ("command", Json::str(format!("cargo {}", lp.args.join(" ")))),
        ];
        for (k, v) in variants.iter().enumerate() {
            if l >= v.loops {
                continue;
            }
            fields.push((v.name, nums(&incr[l][k])));
        }
        fields.push(("stock_median_s", Json::Num(s)));
        fields.push(("configured_median_s", Json::Num(c)));
        fields.push(("baseline_median_s", Json::Num(b)));
        fields.push(("configured_over_stock", Json::Num(ratio(c, s))));
        fields.push(("stock_over_baseline", Json::Num(ratio(s, b))));
        fields.push(("configured_over_baseline", Json::Num(ratio(c, b))));
        if args.cranelift {
            let cl = med(l, "cranelift");
            fields.push(("cranelift_median_s", Json::Num(cl)));
            fields.push(("cranelift_over_configured", Json::Num(ratio(cl, c))));
        }
        loops_json.push(Json::obj(fields));
    }
    loops_json
}

/// Prints each lever's L1/L2 medians against the configured tree's (and which linker its
/// binary names in `.comment`); the same as JSON.
pub(super) fn levers_report(variants: &[Variant], incr: &[Vec<Vec<f64>>]) -> Vec<Json> {
    let mut out = Vec::new();
    for (k, v) in variants.iter().enumerate().filter(|(_, v)| v.seeded) {
        let comment =
            crate::elf::elf_comment(&v.bin_dir().join("beacon-service")).unwrap_or_default();
        let linker = crate::elf::linker_of(&comment);
        let mut fields: Vec<(String, Json)> = vec![
            ("lever".into(), Json::str(v.name)),
            (
                "configs".into(),
                Json::Arr(v.configs.iter().map(Json::str).collect()),
            ),
            ("linker".into(), Json::str(&linker)),
        ];
        let mut line = Vec::new();
        for (l, lp) in LOOPS.iter().enumerate().take(v.loops) {
            let (c, x) = (median(&incr[l][1]), median(&incr[l][k]));
            let won = levers::wins(&incr[l][1], &incr[l][k]);
            let verdict = if won { "wins" } else { "no clear win" };
            line.push(format!(
                "{} {x:.2}s = {:.2}x of configured ({verdict})",
                lp.id,
                ratio(x, c)
            ));
            fields.push((format!("{}_s", lp.id), nums(&incr[l][k])));
            fields.push((format!("{}_over_configured", lp.id), Json::Num(ratio(x, c))));
            fields.push((format!("{}_wins", lp.id), Json::Bool(won)));
        }
        println!("  lever {:<7} {} [{linker}]", v.name, line.join("; "));
        out.push(Json::obj(fields));
    }
    out
}

/// Prints where each configured loop's time goes; the same as JSON.
pub(super) fn breakdown_report(breakdown: &Breakdown) -> Vec<Json> {
    println!("\n  where the configured loops' time goes (cargo --timings, one extra run each):");
    let mut bd_json = Vec::new();
    for (id, noop, units) in breakdown {
        let top: Vec<String> = units
            .iter()
            .take(8)
            .map(|(n, d)| format!("{n} {d:.2}s"))
            .collect();
        let sum: f64 = units.iter().map(|(_, d)| d).sum();
        println!(
            "  {id}: no-op build (cargo's own overhead) {noop:.2}s; {} units rebuilt, {sum:.2}s of unit time: {}",
            units.len(),
            top.join(", ")
        );
        bd_json.push(Json::obj([
            ("loop", Json::str(id.as_str())),
            ("noop_s", Json::Num((noop * 100.0).round() / 100.0)),
            ("unit_time_s", Json::Num((sum * 100.0).round() / 100.0)),
            (
                "units",
                Json::Arr(
                    units
                        .iter()
                        .map(|(n, d)| {
                            Json::obj([
                                ("unit", Json::str(n.as_str())),
                                ("s", Json::Num((d * 100.0).round() / 100.0)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]));
    }

    bd_json
}

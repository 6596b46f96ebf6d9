//! Steps `rust` and `nightly`: the pinned stable's targets and components, and the pinned
//! Cranelift nightly for the fast loop.

use super::*;

pub(super) fn plan_rust(ctx: &Ctx) -> Result<Step> {
    let channel = ctx.stable()?.to_string();
    let comps = ctx.toolchain.list("toolchain.components");
    let targets = ctx.toolchain.list("toolchain.targets");
    let profile = ctx
        .toolchain
        .str("toolchain.profile")
        .unwrap_or("minimal")
        .to_string();
    let wanted = format!(
        "{channel} +{}",
        comps
            .iter()
            .chain(&targets)
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    if !on_path("rustup") {
        return Ok(Step {
            tool: "rust",
            wanted,
            found: "no rustup".into(),
            action: Action::Cannot(
                "install rustup from https://rustup.rs, then re-run setup".into(),
            ),
        });
    }
    let mut argvs: Vec<Vec<String>> = Vec::new();
    let found;
    if !toolchain_installed(&rustup_toolchains(), &channel) {
        found = "not installed".to_string();
        let mut argv: Vec<String> = [
            "rustup",
            "toolchain",
            "install",
            &channel,
            "--profile",
            &profile,
        ]
        .map(String::from)
        .to_vec();
        if !comps.is_empty() {
            argv.extend(["--component".to_string(), comps.join(",")]);
        }
        if !targets.is_empty() {
            argv.extend(["--target".to_string(), targets.join(",")]);
        }
        argvs.push(argv);
    } else {
        let have_c = rustup_installed("component", &channel);
        let have_t = rustup_installed("target", &channel);
        let miss_c: Vec<_> = comps
            .iter()
            .filter(|c| !listed(&have_c, c))
            .cloned()
            .collect();
        let miss_t: Vec<_> = targets
            .iter()
            .filter(|t| !listed(&have_t, t))
            .cloned()
            .collect();
        found = if miss_c.is_empty() && miss_t.is_empty() {
            format!("{channel} (all)")
        } else {
            format!(
                "{channel}, missing {}",
                miss_c
                    .iter()
                    .chain(&miss_t)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        if !miss_c.is_empty() {
            let mut argv: Vec<String> = ["rustup", "component", "add", "--toolchain", &channel]
                .map(String::from)
                .to_vec();
            argv.extend(miss_c);
            argvs.push(argv);
        }
        if !miss_t.is_empty() {
            let mut argv: Vec<String> = ["rustup", "target", "add", "--toolchain", &channel]
                .map(String::from)
                .to_vec();
            argv.extend(miss_t);
            argvs.push(argv);
        }
    }
    Ok(Step {
        tool: "rust",
        wanted,
        found,
        action: run_all(argvs, "installed", "present"),
    })
}

/// An action that runs each command line in order, or Keep when there are none.
pub(super) fn run_all(argvs: Vec<Vec<String>>, ok: &'static str, keep: &str) -> Action {
    if argvs.is_empty() {
        return Action::Keep(keep.to_string());
    }
    let plan = argvs.iter().map(|a| a.join(" ")).collect();
    Action::Do {
        plan,
        work: Box::new(move |_| {
            for argv in &argvs {
                run_argv(argv)?;
            }
            Ok(ok.to_string())
        }),
    }
}

pub(super) fn plan_nightly(ctx: &Ctx) -> Result<Step> {
    let tc = ctx.nightly()?;
    let comps = ctx.manifest.list("nightly.components");
    let wanted = format!("{tc} +{}", comps.join(","));
    if !on_path("rustup") {
        return Ok(Step {
            tool: "nightly",
            wanted,
            found: "no rustup".into(),
            action: Action::Cannot(
                "install rustup from https://rustup.rs, then re-run setup".into(),
            ),
        });
    }
    let (found, argvs) = if !toolchain_installed(&rustup_toolchains(), &tc) {
        let mut argv: Vec<String> = [
            "rustup",
            "toolchain",
            "install",
            &tc,
            "--profile",
            "minimal",
        ]
        .map(String::from)
        .to_vec();
        if !comps.is_empty() {
            argv.extend(["--component".to_string(), comps.join(",")]);
        }
        ("not installed".to_string(), vec![argv])
    } else {
        let have = rustup_installed("component", &tc);
        let miss: Vec<_> = comps
            .iter()
            .filter(|c| !listed(&have, c))
            .cloned()
            .collect();
        if miss.is_empty() {
            (format!("{tc} (all)"), vec![])
        } else {
            let mut argv: Vec<String> = ["rustup", "component", "add", "--toolchain", &tc]
                .map(String::from)
                .to_vec();
            argv.extend(miss.iter().cloned());
            (format!("{tc}, missing {}", miss.join(",")), vec![argv])
        }
    };
    Ok(Step {
        tool: "nightly",
        wanted,
        found,
        action: run_all(argvs, "installed (host builds only)", "present"),
    })
}

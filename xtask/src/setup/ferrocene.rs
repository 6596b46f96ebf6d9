//! Step `ferrocene`: the qualified toolchain slot (reported, never installed silently).

use super::*;

pub(super) fn plan_ferrocene(ctx: &Ctx) -> Result<Step> {
    let manifest = ctx.root.join(ctx.manifest.req("ferrocene.manifest")?);
    let bin = ctx.manifest.req("ferrocene.bin")?.to_string();
    let wanted = format!(
        "toolchains/{}",
        manifest.file_name().unwrap_or_default().to_string_lossy()
    );
    if !on_path(&bin) {
        return Ok(Step {
            tool: "ferrocene",
            wanted,
            found: format!("no {bin}"),
            action: Action::Cannot(format!(
                "{bin} not found: install it (https://criticalup.ferrocene.dev), run `{bin} auth set` with your token, then re-run with --ferrocene"
            )),
        });
    }
    let m = manifest.display().to_string();
    let installed = std::process::Command::new(&bin)
        .args(["which", "rustc", "--project", &m])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(Step {
            tool: "ferrocene",
            wanted,
            found: "installed".into(),
            action: Action::Keep("present".into()),
        });
    }
    let argv = vec![bin.clone(), "install".into(), "--project".into(), m];
    let plan = vec![argv.join(" ")];
    let work: Work = Box::new(move |_| {
        run_argv(&argv).map_err(|e| Error(format!("{e}; if it says unauthenticated, run `{bin} auth set` with a token from customers.ferrocene.dev")))?;
        Ok("installed (use it with `criticalup run cargo build`)".into())
    });
    Ok(Step {
        tool: "ferrocene",
        wanted,
        found: "not installed".into(),
        action: Action::Do { plan, work },
    })
}

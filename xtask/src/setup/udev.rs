//! Step `udev`: the rules that let a non-root user open a debug probe (Linux only).

use super::*;

/// udev rules for the common debug probes (ST-Link, J-Link, CMSIS-DAP/DAPLink, Raspberry Pi
/// Debug Probe, ESP USB-JTAG, FTDI): members of `plugdev` and the logged-in user get access.
pub(super) const UDEV_RULES: &str = "\
# Written by `cargo xtask setup --udev`: debug probes usable without root (probe-rs).
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3748\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374b\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374e\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"374f\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3753\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"3754\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"1366\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0d28\", ATTRS{idProduct}==\"0204\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"2e8a\", ATTRS{idProduct}==\"000c\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"303a\", ATTRS{idProduct}==\"1001\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0403\", ATTRS{idProduct}==\"6010\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
ATTRS{idVendor}==\"0403\", ATTRS{idProduct}==\"6014\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"
";

pub(super) fn plan_udev(ctx: &Ctx) -> Result<Step> {
    let dir = std::env::var("XTASK_UDEV_DIR").unwrap_or_else(|_| "/etc/udev/rules.d".into());
    let dest = format!("{dir}/69-probe-rs.rules");
    let wanted = "probe rules (--udev)".to_string();
    if !ctx.platform.is_linux() {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: "-".into(),
            action: Action::Keep("not needed on this OS".into()),
        });
    }
    if std::fs::read_to_string(&dest).is_ok_and(|t| t == UDEV_RULES) {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: dest,
            action: Action::Keep("present".into()),
        });
    }
    if !ctx.platform.root && !ctx.platform.sudo {
        return Ok(Step {
            tool: "udev",
            wanted,
            found: "missing".into(),
            action: Action::Cannot(format!("needs root: copy the rules to {dest} as root")),
        });
    }
    let sudo: Vec<String> = if ctx.platform.root {
        vec![]
    } else {
        vec!["sudo".into()]
    };
    let staged = std::env::temp_dir().join(format!("xtask-probe-rs-{}.rules", std::process::id()));
    let argvs: Vec<Vec<String>> = vec![
        [
            &sudo[..],
            &[
                "install".into(),
                "-m".into(),
                "0644".into(),
                staged.display().to_string(),
                dest.clone(),
            ],
        ]
        .concat(),
        [
            &sudo[..],
            &["udevadm".into(), "control".into(), "--reload-rules".into()],
        ]
        .concat(),
        [&sudo[..], &["udevadm".into(), "trigger".into()]].concat(),
    ];
    let plan = argvs.iter().map(|a| a.join(" ")).collect();
    let work: Work = Box::new(move |_| {
        crate::fs::write(&staged, UDEV_RULES)?;
        let r = argvs.iter().try_for_each(|a| run_argv(a));
        let _ = std::fs::remove_file(&staged);
        r.map(|()| "installed; re-plug the probe (and join the plugdev group)".to_string())
    });
    Ok(Step {
        tool: "udev",
        wanted,
        found: "missing".into(),
        action: Action::Do { plan, work },
    })
}

//! `cargo xtask doctor`: checks this machine against toolchains/manifest.toml and proves the
//! dev-loop settings are really in effect, from freshly built binaries rather than from config
//! files: the linker and the code generator each leave their name in the ELF `.comment`
//! section, and a probe program reports whether `--cfg tokio_unstable` reached it.
//!
//! Exit code 1 when something the project needs is missing or wrong; warnings do not fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{Error, Result, on_path};
use crate::elf::{elf_comment, elf_needs, linker_of};
use crate::json::Json;
use crate::project::{bench_link_choice, fast_toml, local_toml};
use crate::setup::{self, Ctx};
use crate::tools::{listed, rustup_installed, tool_version, version_at_least};

#[derive(Debug)]
pub struct Args {
    /// Print the result as JSON on stdout.
    pub json: bool,
}

impl Args {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        Ok(Args {
            json: a.flag("--json", None)?,
        })
    }
}

/// `cargo xtask doctor --help`.
pub const HELP: &str = "\
Check this machine: tools vs pins, and proof from built binaries that the chosen linker,
Cranelift (host fast loop), the dependency dylib and --cfg tokio_unstable are really in effect.
Exit code 1 when something the project needs is missing or wrong; warnings do not fail.

Usage: cargo xtask doctor [OPTIONS]

Options:
      --json  Print the result as JSON on stdout
  -h, --help  Print help
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

const PROBE_MAIN: &str = r#"fn main() {
    println!("tokio_unstable={}", cfg!(tokio_unstable));
    println!("beacon_dylib={}", cfg!(beacon_dylib));
}
"#;

/// A tiny crate under the project's target/ so cargo applies the project's own config.
fn probe_crate(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/xtask-doctor/probe");
    crate::fs::create_dir_all(dir.join("src"))?;
    let manifest = "[package]\nname = \"doctor-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n[lints.rust]\nunexpected_cfgs = { level = \"allow\" }\n";
    for (p, text) in [
        (dir.join("Cargo.toml"), manifest),
        (dir.join("src/main.rs"), PROBE_MAIN),
    ] {
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text) {
            crate::fs::write(&p, text)?;
        }
    }
    Ok(dir)
}

/// Builds the probe (fresh link each time) and returns the binary's path.
fn build_probe(dir: &Path, mut c: Command, profile: &str) -> Result<PathBuf> {
    // Touch main.rs so the binary is really re-linked with the current settings.
    let main = dir.join("src/main.rs");
    crate::fs::write(
        &main,
        format!("{PROBE_MAIN}// {:?}\n", std::time::SystemTime::now()),
    )?;
    let out = c
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .map_err(|e| Error(format!("could not run cargo: {e}")))?;
    if !out.status.success() {
        crate::bail!(
            "probe build failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(dir.join("target").join(profile).join("doctor-probe"))
}

pub fn run(args: Args) -> Result {
    let ctx = Ctx::load()?;
    let checks = checks(&ctx);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        let items = checks
            .iter()
            .map(|c| {
                let s = match c.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "fail",
                };
                Json::obj([
                    ("name", Json::str(c.name)),
                    ("status", Json::str(s)),
                    ("detail", Json::str(&c.detail)),
                ])
            })
            .collect();
        print!(
            "{}",
            Json::obj([
                ("ok", Json::Bool(failed == 0)),
                ("checks", Json::Arr(items))
            ])
            .pretty()
        );
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {:<16} {}", c.name, c.detail);
        }
    }
    if failed > 0 {
        crate::bail!("{failed} check(s) failed; `cargo xtask setup` fixes most of them");
    }
    Ok(())
}

fn checks(ctx: &Ctx) -> Vec<Check> {
    let mut out = Vec::new();
    let stable = ctx.stable().unwrap_or("?").to_string();
    let nightly = ctx.nightly().unwrap_or_else(|_| "?".into());
    let cranelift = toolchain_checks(ctx, &stable, &nightly, &mut out);
    let mold_chosen = tool_checks(ctx, &mut out);
    env_checks(ctx, &mut out);
    built_binary_checks(ctx, &nightly, cranelift, mold_chosen, &mut out);
    out.push(firmware_backend(ctx, &stable));
    out
}

/// The pinned stable with its components and targets, the nightly with Cranelift. Returns
/// whether Cranelift is installed.
fn toolchain_checks(ctx: &Ctx, stable: &str, nightly: &str, out: &mut Vec<Check>) -> bool {
    let rustup = on_path("rustup");
    let comps = |kind: &str, tc: &str| {
        if rustup {
            rustup_installed(kind, tc)
        } else {
            String::new()
        }
    };
    let have_c = comps("component", stable);
    if !rustup {
        out.push(check(
            "stable",
            Status::Fail,
            "rustup not found: install it from https://rustup.rs",
        ));
    } else if have_c.is_empty() {
        out.push(check(
            "stable",
            Status::Fail,
            format!("{stable} not installed: run `cargo xtask setup --only rust`"),
        ));
    } else {
        let miss: Vec<_> = ctx
            .toolchain
            .list("toolchain.components")
            .into_iter()
            .filter(|c| !listed(&have_c, c))
            .collect();
        if miss.is_empty() {
            out.push(check(
                "stable",
                Status::Ok,
                format!("{stable} with its components"),
            ));
        } else {
            out.push(check(
                "stable",
                Status::Fail,
                format!(
                    "{stable} lacks {}: run `cargo xtask setup --only rust`",
                    miss.join(",")
                ),
            ));
        }
    }
    let have_t = comps("target", stable);
    for t in ctx.toolchain.list("toolchain.targets") {
        if listed(&have_t, &t) {
            out.push(check(
                "thumb target",
                Status::Ok,
                format!("{t} installed for {stable}"),
            ));
        } else {
            out.push(check(
                "thumb target",
                Status::Fail,
                format!("{t} missing: run `rustup target add --toolchain {stable} {t}`"),
            ));
        }
    }
    let fast_cfg = fast_toml(&ctx.root);
    let fast_set_up = fast_cfg.is_file();
    let have_n = comps("component", nightly);
    let cl = listed(&have_n, "rustc-codegen-cranelift-preview");
    out.push(match (cl, fast_set_up) {
        (true, _) => check("nightly", Status::Ok, format!("{nightly} with Cranelift")),
        (false, true) => check("nightly", Status::Fail, format!("{nightly} with Cranelift missing but .cargo/fast.toml uses it: run `cargo xtask setup --only nightly`")),
        (false, false) => check("nightly", Status::Warn, format!("{nightly} with Cranelift not installed (fast loop off): run `cargo xtask setup`")),
    });

    cl
}

/// mold, QEMU, probe-rs, tokio-console and just against their pins. Returns whether
/// local.toml selects mold.
fn tool_checks(ctx: &Ctx, out: &mut Vec<Check>) -> bool {
    let local = std::fs::read_to_string(local_toml(&ctx.root)).unwrap_or_default();
    let mold_chosen = local
        .lines()
        .any(|l| l.contains("fuse-ld=mold") || (l.contains("--ld-path=") && l.contains("mold")));
    match setup::find_mold(&ctx.home) {
        Some((p, v)) => out.push(check(
            "mold",
            Status::Ok,
            format!(
                "{v} ({}); {}",
                p.display(),
                if mold_chosen {
                    "in use (local.toml)"
                } else {
                    "installed, not selected"
                }
            ),
        )),
        None if mold_chosen => out.push(check(
            "mold",
            Status::Fail,
            "local.toml selects mold but it is not installed: run `cargo xtask setup --only mold`",
        )),
        None if ctx.platform.is_linux() => out.push(check(
            "mold",
            Status::Warn,
            "not installed (optional; LLD is the default): `cargo xtask setup --only mold`",
        )),
        None => out.push(check("mold", Status::Ok, "not used on this OS")),
    }
    let qbin = ctx.manifest.str("qemu.bin").unwrap_or("qemu-system-arm");
    let qmin = ctx.manifest.str("qemu.min-version").unwrap_or("0");
    out.push(match on_path(qbin).then(|| tool_version(qbin)).flatten() {
        Some(v) if version_at_least(&v, qmin) => check("qemu", Status::Ok, format!("{qbin} {v}")),
        Some(v) => check(
            "qemu",
            Status::Fail,
            format!("{qbin} {v} is older than {qmin}: upgrade it"),
        ),
        None => check(
            "qemu",
            Status::Fail,
            format!(
                "{qbin} missing (the firmware tests run on it): `cargo xtask setup --only qemu`"
            ),
        ),
    });
    for (tool, name) in [
        ("probe-rs", "probe-rs"),
        ("tokio-console", "tokio-console"),
        ("just", "just"),
    ] {
        let bin = ctx.manifest.str(&format!("{tool}.bin")).unwrap_or(tool);
        let want = ctx.manifest.str(&format!("{tool}.version")).unwrap_or("?");
        out.push(match on_path(bin).then(|| tool_version(bin)).flatten() {
            Some(v) if v == want => check(name, Status::Ok, format!("{v} (pinned {want})")),
            Some(v) => check(
                name,
                Status::Warn,
                format!("{v}, pinned {want}: `cargo xtask setup --only {tool}`"),
            ),
            None => check(
                name,
                Status::Fail,
                format!("missing (pinned {want}): `cargo xtask setup --only {tool}`"),
            ),
        });
    }
    if on_path("probe-rs") {
        let (stdout, warnings) = Command::new("probe-rs")
            .arg("list")
            .output()
            .map(|o| {
                // probe-rs prints its log warnings (colored) among the results: keep them apart.
                let all = format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                let (warn, rest): (Vec<&str>, Vec<&str>) = all
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .partition(|l| l.contains("WARN"));
                (rest.join("\n"), warn.len())
            })
            .unwrap_or_default();
        let mut detail = format!("probe-rs list: {}", stdout.trim().replace('\n', "; "));
        if warnings > 0 {
            detail.push_str(&format!(
                " ({warnings} warnings, e.g. no USB access; run `probe-rs list` to read them)"
            ));
        }
        out.push(check("probes", Status::Ok, detail));
    }

    mold_chosen
}

/// Rustflags in the environment that silently replace the config's.
fn env_checks(ctx: &Ctx, out: &mut Vec<Check>) {
    let local = std::fs::read_to_string(local_toml(&ctx.root)).unwrap_or_default();
    let dylib = if local.contains("beacon_dylib") {
        " and the dependency dylib (--cfg beacon_dylib: every binary links its dependencies \
         statically again, the slower loop)"
    } else {
        ""
    };
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        if let Ok(v) = std::env::var(var) {
            out.push(check("rustflags env", Status::Warn, format!("{var}={v:?} replaces every rustflags entry from .cargo config: it removes tokio_unstable, the linker flags{dylib}; unset it, or add `--cfg tokio_unstable` to it")));
        }
    }
}

/// Proof from freshly built binaries: the linker, the dylib, tokio_unstable, Cranelift.
fn built_binary_checks(
    ctx: &Ctx,
    nightly: &str,
    cranelift: bool,
    mold_chosen: bool,
    out: &mut Vec<Check>,
) {
    let fast_cfg = fast_toml(&ctx.root);
    let fast_set_up = fast_cfg.is_file();
    let cl = cranelift;
    let bench = bench_link_choice(&ctx.root);
    match probe_crate(&ctx.root) {
        Err(e) => out.push(check(
            "probe build",
            Status::Fail,
            format!("could not create the probe crate: {e}"),
        )),
        Ok(dir) => {
            let mut c = Command::new("cargo");
            c.args(["build", "--quiet"]);
            match build_probe(&dir, c, "debug") {
                Err(e) => out.push(check(
                    "linker",
                    Status::Fail,
                    format!("stable probe build failed: {e}"),
                )),
                Ok(bin) => {
                    let comment = elf_comment(&bin).unwrap_or_default();
                    let linker = linker_of(&comment);
                    let uses_mold = linker.contains("mold");
                    out.push(match (mold_chosen, uses_mold) {
                        (true, true) | (false, false) => {
                            let why = match &bench {
                                Some((w, r)) => format!("bench-build chose {w}, mold/LLD {r}"),
                                None => "not measured yet: `cargo xtask bench-build`".into(),
                            };
                            check("linker", Status::Ok, format!("{linker} ({why})"))
                        }
                        (true, false) => check("linker", Status::Fail, format!("local.toml selects mold but the binary was linked by {linker}: check RUSTFLAGS and .cargo/local.toml")),
                        (false, true) => check("linker", Status::Warn, format!("linked by {linker} though setup did not choose it (set elsewhere?)")),
                    });
                    let cfg = Command::new(&bin)
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    // The dev-loop dylib (services/devdeps): the flag reaches builds, and the
                    // service binary last built really needs and loads the library.
                    let local = std::fs::read_to_string(local_toml(&ctx.root)).unwrap_or_default();
                    if local.contains("beacon_dylib") {
                        out.push(dylib_check(ctx, cfg.contains("beacon_dylib=true")));
                        out.push(unified_check(ctx));
                    }
                    out.push(if cfg.contains("tokio_unstable=true") {
                        check("tokio_unstable", Status::Ok, "--cfg tokio_unstable reaches host builds")
                    } else {
                        check("tokio_unstable", Status::Fail, "--cfg tokio_unstable is NOT in effect (a RUSTFLAGS export replaces the config's flags?): tokio-console cannot attach")
                    });
                }
            }
            if fast_set_up && cl {
                let mut c = Command::new("rustup");
                c.args(["run", nightly, "cargo", "--config"])
                    .arg(&fast_cfg)
                    .args(["build", "--quiet", "--profile", "fast"]);
                out.push(match build_probe(&dir, c, "fast") {
                    Err(e) => check("cranelift", Status::Fail, format!("fast-loop probe build failed: {e}")),
                    Ok(bin) => {
                        let comment = elf_comment(&bin).unwrap_or_default();
                        if comment.iter().any(|c| c.contains("cranelift")) {
                            check("cranelift", Status::Ok, format!("host fast builds use Cranelift ({})", comment.iter().find(|c| c.contains("cranelift")).cloned().unwrap_or_default()))
                        } else {
                            check("cranelift", Status::Fail, format!("the fast-loop binary was not built by Cranelift (.comment: {})", comment.join(" | ")))
                        }
                    }
                });
            } else if !fast_set_up {
                out.push(check(
                    "cranelift",
                    Status::Warn,
                    "fast loop not set up (.cargo/fast.toml missing): run `cargo xtask setup`",
                ));
            }
        }
    }
}

/// The dylib lever, from the artifact: `--cfg beacon_dylib` reaches builds (`in_effect`, from
/// the probe), and target/debug/beacon-service NEEDs libbeacon_devdeps.so and loads it.
fn dylib_check(ctx: &Ctx, in_effect: bool) -> Check {
    let svc = ctx.root.join("target/debug/beacon-service");
    if !in_effect {
        return check(
            "devdeps dylib",
            Status::Fail,
            "local.toml sets --cfg beacon_dylib but it does NOT reach builds (an exported RUSTFLAGS, \
             or another [target] rustflags?): the dependencies link statically, the slower loop; \
             unset RUSTFLAGS",
        );
    }
    if !svc.is_file() {
        return check(
            "devdeps dylib",
            Status::Ok,
            "--cfg beacon_dylib reaches builds (no target/debug/beacon-service yet to check the \
             library is loaded: `cargo build -p beacon-service`)",
        );
    }
    if !elf_needs(&svc, "libbeacon_devdeps") {
        return check(
            "devdeps dylib",
            Status::Warn,
            "--cfg beacon_dylib reaches builds, but target/debug/beacon-service does not need \
             libbeacon_devdeps.so: it was built without the flag (before setup, or with RUSTFLAGS \
             exported); rebuild it: `cargo build -p beacon-service`",
        );
    }
    match loaded_library(&svc, "libbeacon_devdeps.so") {
        Ok(path) => check(
            "devdeps dylib",
            Status::Ok,
            format!(
                "target/debug/beacon-service needs libbeacon_devdeps.so and loads it at start \
                 ({path}): dependencies linked once, as one shared library"
            ),
        ),
        Err(why) => check(
            "devdeps dylib",
            Status::Fail,
            format!(
                "target/debug/beacon-service needs libbeacon_devdeps.so but does not start with it: \
                 {why}; rebuild it (`cargo build -p beacon-service`), and run `cargo xtask doctor` \
                 again: the \"devdeps features\" check names a build that resolves it differently"
            ),
        ),
    }
}

/// Runs `bin --help` with glibc's loader trace (`LD_DEBUG=libs`): the path of the `name` it
/// initialised, or why it did not (the loader's error, e.g. an undefined symbol).
fn loaded_library(bin: &Path, name: &str) -> std::result::Result<String, String> {
    let out = Command::new(bin)
        .arg("--help")
        .env("LD_DEBUG", "libs")
        .output()
        .map_err(|e| format!("could not run it: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let why = err
            .lines()
            .rfind(|l| l.contains("error"))
            .unwrap_or("no error message");
        return Err(format!("it exited with {} ({})", out.status, why.trim()));
    }
    err.lines()
        .filter_map(|l| l.split_once("calling init: ").map(|(_, p)| p.trim()))
        .find(|p| p.ends_with(name))
        .map(str::to_string)
        .ok_or_else(|| format!("the loader never initialised {name} (LD_DEBUG=libs)"))
}

/// Every build the repository makes resolves the dylib's closure identically (see
/// [`crate::devdeps`]): otherwise two builds overwrite each other's libbeacon_devdeps.so.
fn unified_check(ctx: &Ctx) -> Check {
    let host = setup::host_triple(&ctx.platform);
    match crate::devdeps::differences(&ctx.root, &host) {
        Ok(d) if d.is_empty() => check(
            "devdeps features",
            Status::Ok,
            "every build of the workspace (build/test, each member, console, rtt, the demo) \
             resolves libbeacon_devdeps.so's dependencies identically: one library for all",
        ),
        Ok(d) => check(
            "devdeps features",
            Status::Fail,
            format!(
                "builds resolve libbeacon_devdeps.so's dependencies differently and will overwrite \
                 each other's library (binaries then fail: undefined symbol); add these to \
                 services/devdeps/Cargo.toml: {}",
                d.join(" | ")
            ),
        ),
        Err(e) => check(
            "devdeps features",
            Status::Warn,
            format!("not checked: {e}"),
        ),
    }
}

/// The firmware must stay on LLVM: it builds with the pinned stable (which has no Cranelift),
/// never with the fast config; a built firmware ELF's `.comment` confirms it.
fn firmware_backend(ctx: &Ctx, stable: &str) -> Check {
    let fw = ctx.root.join("firmware");
    for f in [
        fw.join(".cargo/config.toml"),
        fw.join("Cargo.toml"),
        fw.join("rust-toolchain.toml"),
    ] {
        if std::fs::read_to_string(&f).is_ok_and(|t| {
            t.lines().any(|l| {
                !l.trim_start().starts_with('#')
                    && (l.contains("cranelift") || l.contains("nightly"))
            })
        }) {
            return check(
                "firmware llvm",
                Status::Fail,
                format!(
                    "{} mentions cranelift/nightly: the firmware must build with LLVM on {stable}",
                    f.display()
                ),
            );
        }
    }
    let mut elves = Vec::new();
    for profile in ["debug", "release"] {
        let dir = fw.join("target/thumbv7em-none-eabihf").join(profile);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_file() && p.extension().is_none() && elf_comment(&p).is_some() {
                    elves.push(p);
                }
            }
        }
    }
    for elf in &elves {
        if elf_comment(elf)
            .unwrap_or_default()
            .iter()
            .any(|c| c.contains("cranelift"))
        {
            return check(
                "firmware llvm",
                Status::Fail,
                format!("{} was built by Cranelift", elf.display()),
            );
        }
    }
    let proof = if elves.is_empty() {
        "no firmware ELF built yet to inspect".to_string()
    } else {
        format!("{} firmware ELF(s) checked: LLVM", elves.len())
    };
    check(
        "firmware llvm",
        Status::Ok,
        format!(
            "firmware builds with {stable} (no Cranelift there; fast.toml is host-only); {proof}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_comment_of_a_real_binary() {
        // The test binary itself: built by rustc, so its .comment names rustc and a linker.
        let me = std::env::current_exe().unwrap();
        let comment = elf_comment(&me).expect("an ELF with a readable section table");
        assert!(
            comment.iter().any(|c| c.starts_with("rustc version")),
            "{comment:?}"
        );
        assert!(!linker_of(&comment).is_empty());
        assert!(elf_comment(Path::new("Cargo.toml")).is_none());
    }

    #[test]
    fn names_the_linker() {
        let lld = vec![
            "rustc version 1.95.0".into(),
            "Linker: LLD 22.1.0 (/checkout/src/llvm-project/llvm abc)".into(),
        ];
        assert_eq!(linker_of(&lld), "LLD 22.1.0");
        let mold = vec![
            "GCC: (Debian 12.2.0-14) 12.2.0".into(),
            "mold 1.10.1 (compatible with GNU ld)".into(),
        ];
        assert_eq!(linker_of(&mold), "mold 1.10.1");
    }
}

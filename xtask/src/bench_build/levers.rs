//! `cargo xtask bench-build --levers`: the smaller dev-loop levers, each raced against the
//! configured tree on L1 and L2 (same sources, the lever added with `--config`, its own target
//! dir seeded from the configured one so only the units the lever changes rebuild):
//! - `debug0`: no debug info for the workspace crates either (`[profile.dev] debug = 0`; the
//!   dependencies already have none);
//! - `split`: `split-debuginfo = "unpacked"` for the workspace crates (debug info in .dwo files,
//!   left out of the link);
//! - `cgu16`: `codegen-units = 16` for the workspace crates (the incremental default is 256:
//!   fewer, larger object files to link, more to recompile per edit);
//! - `wild`: the wild linker (crates.io `wild-linker`), when `--wild <path>` names its binary.
//!
//! A lever "wins" by the rule mold had to meet: median at most 0.95x of the configured tree's,
//! and below its best run (more than the run-to-run noise of a shared machine).

use std::path::Path;

use crate::cmd::Result;

/// One lever: its name (also its variant's), what it changes, the `--config` values.
#[derive(Debug, Clone)]
pub struct Lever {
    pub name: &'static str,
    pub what: &'static str,
    pub configs: Vec<String>,
}

/// `profile.dev.package.<member>.<key>=<value>` for every workspace member, so that only the
/// workspace's own units change (the dependencies stay fresh in the seeded target dir).
fn per_member(members: &[String], key: &str, value: &str) -> Vec<String> {
    members
        .iter()
        .map(|m| format!("profile.dev.package.{m}.{key}={value}"))
        .collect()
}

/// The levers to race. `wild_dir` holds an `ld.bfd` that is the wild linker (see [`wild_dir`]).
pub fn levers(members: &[String], host: &str, wild_dir: Option<&Path>) -> Vec<Lever> {
    let mut out = vec![
        Lever {
            name: "debug0",
            what: "no debug info for workspace crates (dev profile debug = 0)",
            configs: vec!["profile.dev.debug=0".into()],
        },
        Lever {
            name: "split",
            what: "split-debuginfo = \"unpacked\" for workspace crates",
            configs: per_member(members, "split-debuginfo", "\"unpacked\""),
        },
        Lever {
            name: "cgu16",
            what: "codegen-units = 16 for workspace crates (incremental default: 256)",
            configs: per_member(members, "codegen-units", "16"),
        },
    ];
    if let Some(dir) = wild_dir {
        out.push(Lever {
            name: "wild",
            what: "the wild linker (gcc -fuse-ld=bfd -B<dir with ld.bfd = wild>)",
            configs: vec![format!(
                "target.{host}.rustflags=[\"-C\",\"link-arg=-fuse-ld=bfd\",\"-C\",\"link-arg=-B{}\"]",
                dir.display()
            )],
        });
    }
    out
}

/// A directory under `work` whose `ld.bfd` is the wild binary, for gcc's `-B`: rustc drives the
/// link through `cc`, and gcc has no `-fuse-ld=wild`.
pub fn wild_dir(work: &Path, wild: &Path) -> Result<std::path::PathBuf> {
    let dir = work.join("wild-ld");
    crate::fs::create_dir_all(&dir)?;
    let link = dir.join("ld.bfd");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(wild, &link).map_err(|e| {
        crate::cmd::Error(format!(
            "cannot link {} to {}: {e}; pass --wild the wild binary's path",
            link.display(),
            wild.display()
        ))
    })?;
    Ok(dir)
}

/// Whether `cand` is clearly faster than `base`: median at most 0.95x, and below base's best.
pub fn wins(base: &[f64], cand: &[f64]) -> bool {
    if base.is_empty() || cand.is_empty() {
        return false;
    }
    let best = base.iter().copied().fold(f64::INFINITY, f64::min);
    let m = middle(cand);
    m <= 0.95 * middle(base) && m < best
}

/// The median (the two middle values' mean for an even count).
pub fn middle(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levers_touch_only_workspace_crates_and_win_only_beyond_the_noise() {
        let m = vec!["beacon-service".to_string(), "beacon-protocol".to_string()];
        let l = levers(&m, "x86_64-unknown-linux-gnu", None);
        assert_eq!(l.len(), 3);
        assert_eq!(
            l[2].configs,
            [
                "profile.dev.package.beacon-service.codegen-units=16",
                "profile.dev.package.beacon-protocol.codegen-units=16"
            ]
        );
        let w = levers(&m, "h", Some(Path::new("/w")));
        assert!(w[3].configs[0].contains("link-arg=-B/w"), "{:?}", w[3]);
        assert!(wins(&[2.0, 2.1, 2.2], &[1.5, 1.6, 1.7]));
        assert!(!wins(&[2.0, 2.1, 2.2], &[2.05, 2.0, 2.1]), "within noise");
        assert!(
            !wins(&[1.0, 3.0, 3.0], &[2.0, 2.0, 2.0]),
            "not below the best"
        );
        assert!(!wins(&[], &[1.0]));
    }
}

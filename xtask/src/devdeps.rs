//! The dev-loop dependency dylib (services/devdeps) must be ONE artifact for every build the
//! repository makes: cargo names a Rust dylib without a hash (`libbeacon_devdeps.so`), so two
//! builds that resolve a crate below it with different features write two different libraries
//! under one name, and a binary linked against the first then fails at start (`undefined
//! symbol`). services/devdeps/Cargo.toml asks for the union of the features; this checks, with
//! `cargo tree`, that every build resolves the library's whole closure identically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::cmd::{Error, Result};

/// The builds that put the dylib in target/debug: cargo-tree arguments (edges select whether
/// dev-dependencies count, as for `cargo build` vs `cargo test`). No build-dependency edges:
/// `cargo tree` prints a crate built for the host by a build script exactly like the same crate
/// built for the target, so a probe-rs build script's indexmap would merge into the dylib's
/// (a false difference); the proc-macros' host crates are told apart in [`closure_of`].
fn builds(members: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (what, edges) in [("build", "normal"), ("test", "normal,dev")] {
        out.push((
            format!("cargo {what} --workspace"),
            owned(&["--workspace", "-e", edges]),
        ));
        for m in members {
            out.push((
                format!("cargo {what} -p {m}"),
                owned(&["-p", m, "-e", edges]),
            ));
        }
    }
    for (what, args) in [
        (
            "cargo test --workspace --all-features",
            &["--workspace", "--all-features", "-e", "normal,dev"][..],
        ),
        (
            "cargo test -p beacon-service --features console",
            &[
                "-p",
                "beacon-service",
                "--features",
                "console",
                "-e",
                "normal,dev",
            ],
        ),
        (
            "cargo build -p beacon-gateway --features rtt",
            &["-p", "beacon-gateway", "--features", "rtt", "-e", "normal"],
        ),
    ] {
        out.push((what.to_string(), owned(args)));
    }
    // template:service:begin
    // template:firmware:begin
    let demo: Vec<&str> = crate::demo::BUILD
        .iter()
        .copied()
        .chain(["-e", "normal"])
        .collect();
    out.push((
        "the demo's build (service with console, gateway, demo)".into(),
        owned(&demo),
    ));
    // template:firmware:end
    // template:service:end
    out
}

/// Every package (with its resolved features) reachable from `beacon-devdeps` in a
/// `cargo tree --prefix depth -f '{p} {f}'` listing; empty when the build does not use it.
pub fn closure_of(tree: &str) -> BTreeSet<String> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // (label, built for the host): below a proc-macro, crates are host artifacts, resolved
    // with their own features; "host " keeps them apart from the same crate built for the
    // target when the two happen to print the same features.
    let mut stack: Vec<(String, bool)> = Vec::new();
    for line in tree.lines() {
        let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let text = line[digits..].replace(" (*)", "").trim().to_string();
        stack.truncate(depth);
        let host = stack
            .last()
            .is_some_and(|(l, h)| *h || l.contains("(proc-macro)"));
        let label = if host { format!("host {text}") } else { text };
        if let Some((parent, _)) = stack.last() {
            edges
                .entry(parent.clone())
                .or_default()
                .insert(label.clone());
        }
        edges.entry(label.clone()).or_default();
        stack.push((label, host));
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = edges
        .keys()
        .filter(|l| l.starts_with("beacon-devdeps "))
        .cloned()
        .collect();
    while let Some(n) = todo.pop() {
        if let Some(children) = edges.get(&n) {
            todo.extend(children.iter().filter(|c| !seen.contains(*c)).cloned());
        }
        seen.insert(n);
    }
    seen
}

/// "name vX.Y.Z" of a closure entry (the label without its features).
fn package_of(label: &str) -> String {
    label.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// The packages whose features differ between builds, one line each naming the builds; empty
/// when every build resolves the dylib identically. `host` is the target triple whose rustflags
/// get `--cfg beacon_dylib` (cargo evaluates the Cargo.toml `cfg(beacon_dylib)` tables with it).
pub fn differences(root: &Path, host: &str) -> Result<Vec<String>> {
    if !root.join("services/devdeps/Cargo.toml").is_file() {
        return Ok(Vec::new());
    }
    let members = workspace_members(root)?;
    let cfg = format!("target.{host}.rustflags=[\"--cfg\",\"beacon_dylib\"]");
    let mut closures: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (what, args) in builds(&members) {
        let out = Command::new("cargo")
            .args(["tree", "--config", &cfg, "--target", host])
            .args(["-f", "{p} {f}", "--prefix", "depth"])
            .args(&args)
            .current_dir(root)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .map_err(|e| Error(format!("could not run cargo tree: {e}")))?;
        if !out.status.success() {
            crate::bail!(
                "cargo tree {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let c = closure_of(&String::from_utf8_lossy(&out.stdout));
        if !c.is_empty() {
            closures.push((what, c));
        }
    }
    Ok(compare(&closures))
}

/// One line per package that some builds resolve differently: "pkg: features in builds ...".
pub fn compare(closures: &[(String, BTreeSet<String>)]) -> Vec<String> {
    let all: BTreeSet<&String> = closures.iter().flat_map(|(_, c)| c.iter()).collect();
    let mut by_pkg: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for l in &all {
        by_pkg.entry(package_of(l)).or_default().push(l);
    }
    let mut diffs = Vec::new();
    for (pkg, labels) in by_pkg {
        if closures
            .iter()
            .all(|(_, c)| labels.iter().all(|l| c.contains(*l)))
        {
            continue;
        }
        let variants: Vec<String> = labels
            .iter()
            .map(|l| {
                let feats = l.splitn(3, ' ').nth(2).unwrap_or("").trim();
                let feats = if feats.is_empty() {
                    "(no features)"
                } else {
                    feats
                };
                let who: Vec<&str> = closures
                    .iter()
                    .filter(|(_, c)| c.contains(*l))
                    .map(|(w, _)| w.as_str())
                    .collect();
                format!("[{feats}] in {}", who.join(", "))
            })
            .collect();
        diffs.push(format!("{pkg}: {}", variants.join("; ")));
    }
    diffs
}

/// The workspace members' package names (`cargo metadata --no-deps`).
pub fn workspace_members(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| Error(format!("could not run cargo metadata: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = crate::json::Json::parse(&text).map_err(|e| {
        Error(format!(
            "cargo metadata printed no JSON ({e}); run `cargo metadata --no-deps` in {}",
            root.display()
        ))
    })?;
    let pkgs = json.get("packages").map(|p| p.as_array()).unwrap_or(&[]);
    Ok(pkgs
        .iter()
        .filter_map(|p| Some(p.get("name")?.as_str()?.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_follows_edges_printed_once() {
        // tokio appears first under the service (expanded), then under devdeps as `(*)`.
        let tree = "0beacon-service v0.1.0 (/r/services/service) \n1tokio v1.0.0 rt,test-util\n2libc v0.2.0 std\n1beacon-devdeps v0.1.0 (/r/services/devdeps) \n2tokio v1.0.0 rt,test-util (*)\n1rusqlite v0.1.0 bundled\n";
        let c = closure_of(tree);
        assert!(c.contains("libc v0.2.0 std"), "{c:?}");
        assert!(c.contains("tokio v1.0.0 rt,test-util"), "{c:?}");
        assert!(!c.iter().any(|l| l.starts_with("rusqlite")), "{c:?}");
        assert!(closure_of("0beacon-protocol v0.1.0\n1serde v1 std\n").is_empty());
        // Below a proc-macro, the same crate and features are a different (host) artifact.
        let pm =
            "0beacon-devdeps v0.1.0\n1serde_derive v1 (proc-macro) \n2syn v2 full\n1syn v2 full\n";
        let c = closure_of(pm);
        assert!(
            c.contains("host syn v2 full") && c.contains("syn v2 full"),
            "{c:?}"
        );

        let a = ("cargo build".to_string(), closure_of(tree));
        let b = (
            "cargo test".to_string(),
            closure_of(&tree.replace("rt,test-util", "rt")),
        );
        let d = compare(&[a.clone(), b]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].starts_with("tokio v1.0.0: [rt] in cargo test; [rt,test-util] in cargo build"),
            "{d:?}"
        );
        assert!(compare(&[a.clone(), a]).is_empty());
    }

    // template:service:begin
    /// The real repository: every build it makes resolves the dylib's closure identically
    /// (services/devdeps/Cargo.toml lists the union of the features). When this fails, it names
    /// the crate and the features each build wants: add them there.
    #[test]
    fn every_build_of_this_repository_resolves_the_dylib_identically() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let diffs = differences(root, "x86_64-unknown-linux-gnu").unwrap();
        assert!(
            diffs.is_empty(),
            "services/devdeps/Cargo.toml must ask for these features too, or the builds \
             overwrite each other's libbeacon_devdeps.so:\n{}",
            diffs.join("\n")
        );
    }
    // template:service:end
}

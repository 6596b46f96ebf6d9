//! Files setup writes into the project (`.cargo/local.toml`, `.cargo/fast.toml`).
//!
//! Each starts with a marker line that records the SHA-256 of the rest of the file. Setup
//! rewrites a file only while that checksum still matches (nobody edited it); an edited file is
//! left alone, with a diff of what setup would have written, unless `--force`, which first
//! keeps the edited file as `<name>.bak`. `--undo` removes the files setup wrote and puts such a
//! backup back.

use crate::fs;
use std::path::{Path, PathBuf};

use crate::cmd::Result;
use crate::sha256;

const MARKER: &str = "# xtask-managed: sha256=";

/// What is on disk compared with what setup wants there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Absent,
    /// Written by setup and untouched since; `true` when it already has the wanted content.
    Managed(bool),
    /// No marker, or the checksum no longer matches: a person's file.
    Edited,
}

/// The full file text for `body`: header, marker with checksum, body.
pub fn render(header: &str, body: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(MARKER);
    out.push_str(&sha256::hex(body.as_bytes()));
    out.push('\n');
    out.push_str(body);
    out
}

/// The body of a file setup wrote, if its checksum still matches.
pub fn managed_body(text: &str) -> Option<&str> {
    let start = text.find(MARKER)?;
    let rest = &text[start + MARKER.len()..];
    let (sum, body) = rest.split_once('\n')?;
    (sha256::hex(body.as_bytes()) == sum.trim()).then_some(body)
}

pub fn inspect(path: &Path, body: &str) -> State {
    match fs::read_to_string(path) {
        Err(_) => State::Absent,
        Ok(text) => match managed_body(&text) {
            Some(current) => State::Managed(current == body),
            None => State::Edited,
        },
    }
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

/// Writes `text` next to `path` and renames it over, so a reader never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Writes the managed file. Returns what happened, for the summary.
pub fn apply(path: &Path, header: &str, body: &str, force: bool) -> Result<String> {
    let text = render(header, body);
    match inspect(path, body) {
        State::Managed(true) => Ok("unchanged".into()),
        State::Absent => {
            write_atomic(path, &text)?;
            Ok(format!("wrote {}", path.display()))
        }
        State::Managed(false) => {
            write_atomic(path, &text)?;
            Ok(format!("updated {}", path.display()))
        }
        State::Edited if force => {
            let bak = backup_path(path);
            fs::copy(path, &bak)?;
            write_atomic(path, &text)?;
            Ok(format!(
                "replaced {} (your version is in {})",
                path.display(),
                bak.display()
            ))
        }
        State::Edited => {
            show_diff(path, &text);
            Ok(format!(
                "kept {}: edited by hand; the diff above is what setup would write. Merge it, \
                 or re-run with --force (keeps yours as {})",
                path.display(),
                backup_path(path).display()
            ))
        }
    }
}

/// Removes a managed file (and restores the backup `--force` kept). An edited file stays.
pub fn undo(path: &Path) -> Result<String> {
    let bak = backup_path(path);
    let text = match fs::read_to_string(path) {
        Err(_) if bak.exists() => {
            fs::rename(&bak, path)?;
            return Ok(format!("restored {}", path.display()));
        }
        Err(_) => return Ok("nothing to undo".into()),
        Ok(t) => t,
    };
    if managed_body(&text).is_none() {
        return Ok(format!(
            "left {} in place: edited by hand (or not written by setup); delete it yourself if \
             you want it gone",
            path.display()
        ));
    }
    fs::remove_file(path)?;
    if bak.exists() {
        fs::rename(&bak, path)?;
        return Ok(format!(
            "removed setup's version, restored yours from {}",
            bak.display()
        ));
    }
    Ok(format!("removed {}", path.display()))
}

fn show_diff(path: &Path, text: &str) {
    let proposed = std::env::temp_dir().join(format!("xtask-proposed-{}.toml", std::process::id()));
    if fs::write(&proposed, text).is_ok() {
        let shown = std::process::Command::new("diff")
            .arg("-u")
            .arg(path)
            .arg(&proposed)
            .stdout(std::io::stderr())
            .status()
            .map(|s| s.code() == Some(1))
            .unwrap_or(false);
        let _ = fs::remove_file(&proposed);
        if shown {
            return;
        }
    }
    eprintln!(
        "--- what setup would write to {} ---\n{text}---",
        path.display()
    );
}

/// The dev-loop levers setup adds to `.cargo/local.toml` (docs/compile-times.md), as rustflags
/// for the host target: `--cfg beacon_dylib` links the services' heavy dependencies from one
/// shared library (services/devdeps) in dev builds; [`DEV_RPATH`] lets the binaries find it
/// and libstd-*.so outside cargo too. Linux only (measured there); empty elsewhere.
pub fn dev_loop_rustflags(host: &str, root: &Path) -> Vec<&'static str> {
    if !host.contains("linux") || !root.join("services/devdeps/Cargo.toml").is_file() {
        return Vec::new();
    }
    vec!["--cfg", "beacon_dylib"]
}

/// The rpath for dev builds only (the profile's `rpath`, not `-C rpath` in rustflags, which
/// would also put a RUNPATH into the toolchain's directory in every release binary): the debug
/// binaries find libbeacon_devdeps.so (`$ORIGIN`) and libstd-*.so outside cargo too.
pub const DEV_RPATH: &str = "[profile.dev]\nrpath = true\n";

/// `local` (the linker part setup wrote) with the dev-loop rustflags merged in: into the
/// `[target.<host>]` table's `rustflags` when there is one (TOML allows one table of a name,
/// and cargo takes rustflags from one place), else as a new table.
pub fn with_dev_loop(local: &str, host: &str, root: &Path) -> String {
    let flags = dev_loop_rustflags(host, root);
    // Idempotent: setup's body and bench-build may both pass the text through here.
    if flags.is_empty() || local.contains("\"beacon_dylib\"") {
        return local.to_string();
    }
    let quoted: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    let why = "# Dev loop: dependencies from one shared library (services/devdeps; dev builds only, a\n\
               # release binary stays static). Release builds and a fresh clone never use it.\n";
    let table = format!("[target.{host}]");
    let mut out = String::new();
    let mut in_table = false;
    let mut merged = false;
    for line in local.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_table = t == table;
        }
        if in_table && !merged && t.starts_with("rustflags = [") {
            out.push_str(why);
            out.push_str(&t.replacen(
                "rustflags = [",
                &format!("rustflags = [{}, ", quoted.join(", ")),
                1,
            ));
            out.push('\n');
            merged = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !merged {
        if !local.contains(&table) {
            out.push_str(why);
            out.push_str(&table);
            out.push('\n');
            out.push_str(&format!("rustflags = [{}]\n", quoted.join(", ")));
        } else {
            // The table exists without rustflags: add the key right after its header.
            let at = out.find(&table).unwrap_or(0) + table.len();
            out.insert_str(at, &format!("\n{why}rustflags = [{}]", quoted.join(", ")));
        }
    }
    out.push_str(
        "# Dev builds find libbeacon_devdeps.so and libstd-*.so outside cargo too (an rpath).\n",
    );
    out.push_str(DEV_RPATH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-localcfg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn idempotent_write_then_undo() {
        let d = tmpdir("idem");
        let p = d.join("local.toml");
        assert!(
            apply(&p, "h", "a = 1\n", false)
                .unwrap()
                .starts_with("wrote")
        );
        let first = fs::read_to_string(&p).unwrap();
        assert_eq!(apply(&p, "h", "a = 1\n", false).unwrap(), "unchanged");
        assert_eq!(fs::read_to_string(&p).unwrap(), first);
        assert!(
            apply(&p, "h", "a = 2\n", false)
                .unwrap()
                .starts_with("updated")
        );
        assert!(undo(&p).unwrap().starts_with("removed"));
        assert!(!p.exists());
        assert_eq!(undo(&p).unwrap(), "nothing to undo");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_to_clobber_an_edited_file_and_force_keeps_a_backup() {
        let d = tmpdir("edited");
        let p = d.join("local.toml");
        apply(&p, "h", "a = 1\n", false).unwrap();
        let edited = fs::read_to_string(&p).unwrap() + "b = 2 # mine\n";
        fs::write(&p, &edited).unwrap();
        assert_eq!(inspect(&p, "a = 1\n"), State::Edited);
        let kept = apply(&p, "h", "a = 3\n", false).unwrap();
        assert!(
            kept.starts_with("kept") && kept.contains("--force"),
            "{kept}"
        );
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            edited,
            "edited file must be untouched"
        );
        assert!(
            undo(&p).unwrap().starts_with("left"),
            "undo must not delete an edited file"
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), edited);

        apply(&p, "h", "a = 3\n", true).unwrap();
        assert_eq!(
            fs::read_to_string(d.join("local.toml.bak")).unwrap(),
            edited
        );
        assert!(undo(&p).unwrap().contains("restored"));
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            edited,
            "undo puts the person's file back"
        );
        assert!(!d.join("local.toml.bak").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_without_marker_is_a_persons_file() {
        let d = tmpdir("nomarker");
        let p = d.join("local.toml");
        fs::write(&p, "[build]\njobs = 1\n").unwrap();
        assert_eq!(inspect(&p, "x"), State::Edited);
        assert!(apply(&p, "h", "x", false).unwrap().starts_with("kept"));
        assert_eq!(fs::read_to_string(&p).unwrap(), "[build]\njobs = 1\n");
        fs::remove_dir_all(&d).unwrap();
    }
    #[test]
    fn dev_loop_flags_merge_into_the_one_host_table() {
        let d = tmpdir("devloop");
        fs::create_dir_all(d.join("services/devdeps")).unwrap();
        fs::write(d.join("services/devdeps/Cargo.toml"), "").unwrap();
        let host = "x86_64-unknown-linux-gnu";
        let plain = with_dev_loop("# Linker: LLD\n", host, &d);
        assert!(
            plain.contains(
                "[target.x86_64-unknown-linux-gnu]\nrustflags = [\"--cfg\", \"beacon_dylib\"]"
            ) && plain.ends_with("[profile.dev]\nrpath = true\n"),
            "{plain}"
        );
        let mold = "[target.x86_64-unknown-linux-gnu]\nlinker = \"clang\"\nrustflags = [\"-C\", \"link-arg=-fuse-ld=mold\"]\n";
        let merged = with_dev_loop(mold, host, &d);
        assert_eq!(
            merged.matches("[target.x86_64-unknown-linux-gnu]").count(),
            1,
            "{merged}"
        );
        assert!(
            merged.contains(
                "rustflags = [\"--cfg\", \"beacon_dylib\", \"-C\", \"link-arg=-fuse-ld=mold\"]"
            ),
            "{merged}"
        );
        assert_eq!(
            with_dev_loop(&merged, host, &d),
            merged,
            "applying twice changes nothing"
        );
        assert_eq!(with_dev_loop("x\n", "aarch64-apple-darwin", &d), "x\n");
        fs::remove_dir_all(&d).unwrap();
        assert_eq!(
            with_dev_loop("x\n", host, &d),
            "x\n",
            "no devdeps crate: nothing to link"
        );
    }
}

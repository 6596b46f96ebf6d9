//! The machine the report runs on: the project root and cargo's target directory, the pinned
//! toolchains, what rustup has installed, what is on PATH, and the two ways a section runs a
//! program ([`run_status`] for an install step, [`run_logged`] for a tool whose output is
//! evidence). Errors are a message for a person that names the file or command that failed.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A message for a person: what failed (naming the file or command) and what to do.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The repository root (two levels above this crate's folder, protocol/safety).
///
/// Read at run time first (`cargo run`, so `cargo xtask safety`, sets `CARGO_MANIFEST_DIR` for
/// the program too): with a `CARGO_TARGET_DIR` shared between two checkouts, cargo may reuse a
/// binary built from the other checkout, whose compile-time path points there.
pub fn root() -> PathBuf {
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.ends_with("protocol/safety"));
    let dir = runtime.unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// cargo's target directory for the host workspace: `CARGO_TARGET_DIR` (relative to the root
/// when relative: `join` keeps an absolute one as it is), else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// The string at `table.key` of the TOML file `path`; the error names the file and the key.
fn toml_str(path: &Path, table: &str, key: &str, example: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse {} as TOML: {e}", path.display()))?;
    doc.get(table)
        .and_then(|t| t.get(key))
        .and_then(toml::Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            format!(
                "{} has no `{key}` under [{table}]; pin one (e.g. {key} = \"{example}\")",
                path.display()
            )
        })
}

/// `[toolchain] channel` from rust-toolchain.toml: the pinned stable.
pub fn pinned_stable(root: &Path) -> Result<String> {
    toml_str(
        &root.join("rust-toolchain.toml"),
        "toolchain",
        "channel",
        "1.98.0",
    )
}

/// `nightly-<date>` from `[nightly] date` in toolchains/manifest.toml.
pub fn pinned_nightly(root: &Path) -> Result<String> {
    let path = root.join("toolchains/manifest.toml");
    toml_str(&path, "nightly", "date", "2026-10-29").map(|d| format!("nightly-{d}"))
}

/// Installed components of a toolchain, as `rustup component list --installed` prints them
/// (`None`: the toolchain itself is not installed, or rustup is missing).
pub fn components(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Does `toolchain` have component `c` installed?
pub fn has_component(toolchain: &str, c: &str) -> bool {
    components(toolchain).is_some_and(|installed| installed.lines().any(|l| names(l.trim(), c)))
}

/// Does a line of rustup's `--installed` list name component `c`? rustup prints some
/// components bare (`rust-src`) and most with the host's target triple appended
/// (`llvm-tools-x86_64-unknown-linux-gnu`). The host triple begins with the architecture this
/// program was built for (`x86_64`, `aarch64`), so neither `llvm-tools-preview` nor a shorter
/// name (`llvm` in `llvm-tools-...`) counts.
pub fn names(line: &str, c: &str) -> bool {
    line == c
        || line
            .strip_prefix(c)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|triple| triple.strip_prefix(std::env::consts::ARCH))
            .is_some_and(|rest| rest.starts_with('-'))
}

/// Is `program` on PATH?
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Writes a report file; the error names it.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs a prepared [`Command`] with inherited stdio; `what` says what it was for ("install
/// the nightly components") in the error.
pub fn run_status(mut cmd: Command, what: &str) -> Result {
    eprintln!("$ {}", show(&cmd));
    let status = cmd.status().map_err(|e| {
        format!(
            "could not {what}: `{}`: {e}; is it installed and on PATH?",
            show(&cmd)
        )
    })?;
    if !status.success() {
        return Err(format!(
            "could not {what}: `{}` exited with {status}; its output is above",
            show(&cmd)
        ));
    }
    Ok(())
}

/// The result of a command whose output was captured.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    /// stdout and stderr, interleaved as they were written.
    pub output: String,
}

/// Runs `cmd` with stdout and stderr merged into one pipe, echoing each line to our stderr
/// (so CI logs show progress; cargo's JSON messages are kept but not echoed) and saving
/// everything to `log`.
pub fn run_logged(mut cmd: Command, log: &Path) -> Ran {
    eprintln!("$ {}", show(&cmd));
    let fail = |e: String| {
        let _ = std::fs::write(log, &e);
        Ran {
            ok: false,
            output: e,
        }
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot clone a pipe: {e}")),
    };
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("could not start `{}`: {e}", show(&cmd))),
    };
    // Drop our copies of the write ends (held by `cmd`) so the reader sees EOF.
    drop(cmd);
    let mut output = String::new();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        if !line.starts_with("{\"reason\"") {
            eprintln!("  | {line}");
        }
        output.push_str(&line);
        output.push('\n');
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    if let Err(e) = std::fs::write(log, &output) {
        eprintln!("warning: cannot write the log {}: {e}", log.display());
    }
    Ran { ok, output }
}

/// A [`Command`] as a shell line (environment assignments first).
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

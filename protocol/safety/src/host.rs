//! The machine the report runs on: the project root and cargo's target directory, the pinned
//! toolchains and what rustup has installed (all from xtask's shared leaf crate, xtask/leaf, so
//! the report and setup cannot disagree), what is on PATH, and the two ways a section runs a
//! program ([`run_status`] for an install step, [`run_logged`] for a tool whose output is
//! evidence). Errors are a message for a person that names the file or command that failed.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// A message for a person: what failed (naming the file or command) and what to do.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The root, the target directory and the pins, one source with xtask (xtask/leaf); the
/// leaf's errors become this crate's messages.
pub use xtask_leaf::project::{root, target_dir};
pub use xtask_leaf::rustup::{has_component, installed};

/// `[toolchain] channel` from rust-toolchain.toml: the pinned stable.
pub fn pinned_stable(root: &Path) -> Result<String> {
    xtask_leaf::project::pinned_stable(root).map_err(|e| e.0)
}

/// `nightly-<date>` from `[nightly] date` in toolchains/manifest.toml.
pub fn pinned_nightly(root: &Path) -> Result<String> {
    xtask_leaf::project::pinned_nightly(root).map_err(|e| e.0)
}

/// Installed components of a toolchain (`None`: the toolchain itself is not installed, or
/// rustup is missing).
pub fn components(toolchain: &str) -> Option<String> {
    installed("component", toolchain)
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

//! Small xshell-style helpers: run a program, show the command line, turn failures into
//! messages that say what ran and what to do. Std only, on purpose (see Cargo.toml).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The error type of every xtask command: a message for a person.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// `bail!("...")`: return an [`Error`] built with `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::cmd::Error(format!($($arg)*))) };
}

/// The repository root (the parent of xtask/).
///
/// Read at run time first (`cargo run`, so `cargo xtask`, sets `CARGO_MANIFEST_DIR` for the
/// program too): with a `CARGO_TARGET_DIR` shared between two checkouts, cargo may reuse an
/// xtask binary built from the other checkout, whose compile-time path points there.
///
/// `XTASK_PROJECT_ROOT` overrides both: the stand-in tests point xtask at a scratch copy.
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("XTASK_PROJECT_ROOT") {
        return PathBuf::from(root);
    }
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("src/main.rs").is_file() && dir.ends_with("xtask"));
    runtime
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A command to run, printed before it runs.
#[derive(Debug)]
pub struct Cmd {
    inner: Command,
    display: String,
}

/// Starts building a command: `cmd("cargo").args(["test"]).dir(root).run()?`.
pub fn cmd(program: impl AsRef<OsStr>) -> Cmd {
    let program = program.as_ref();
    Cmd {
        inner: Command::new(program),
        display: program.to_string_lossy().into_owned(),
    }
}

impl Cmd {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        self.display.push(' ');
        self.display.push_str(&arg.to_string_lossy());
        self.inner.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.inner.env_remove(key);
        self
    }

    /// Runs the command with inherited stdio; fails unless it exits 0.
    pub fn run(mut self) -> Result {
        eprintln!("$ {}", self.display);
        let started = Instant::now();
        let status = self.inner.status().map_err(|e| {
            Error(format!(
                "could not start `{}`: {e}; is it installed and on PATH?",
                self.display
            ))
        })?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}) after {:.1}s; its output is above",
                self.display,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Runs the command and returns its stdout; fails unless it exits 0.
    pub fn read(mut self) -> Result<String> {
        let out = self.inner.output().map_err(|e| {
            Error(format!(
                "could not start `{}`: {e}; is it installed and on PATH?",
                self.display
            ))
        })?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.display,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Is `program` on PATH?
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

//! Leaf module: the one way xtask runs a program. [`cmd`] builds a command that is printed
//! before it runs and whose failure says what ran and what to do; [`read_argv`] asks a program
//! a question. Also the error type every command returns. Std only, on purpose (see Cargo.toml). Imports nothing
//! of xtask.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
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

    // template:firmware:begin
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.inner.env_remove(key);
        self
    }
    // template:firmware:end

    fn start_error(&self, e: std::io::Error) -> Error {
        Error(format!(
            "could not start `{}`: {e}; is it installed and on PATH?",
            self.display
        ))
    }

    /// Runs the command with inherited stdio; fails unless it exits 0.
    pub fn run(mut self) -> Result {
        eprintln!("$ {}", self.display);
        let started = Instant::now();
        let status = self.inner.status().map_err(|e| self.start_error(e))?;
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
        let out = self.inner.output().map_err(|e| self.start_error(e))?;
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

    // template:service:begin
    // template:firmware:begin
    /// Starts the command in the background with its output kept in a file, so it can run
    /// beside `beside` (a build or an install whose output is live): [`Background::wait`]
    /// shows that output only on failure, [`Background::follow`] from then on.
    pub fn spawn_beside(mut self, what: &str, beside: &str) -> Result<Background> {
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let log = std::env::temp_dir().join(format!("xtask-{}-{name}.log", std::process::id()));
        let file = std::fs::File::create(&log)
            .map_err(|e| Error(format!("cannot create {}: {e}", log.display())))?;
        eprintln!("$ {} ({what}, beside {beside})", self.display);
        let child = self
            .inner
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| self.start_error(e))?;
        Ok(Background {
            child: Some(child),
            display: self.display,
            what: what.to_string(),
            beside: beside.to_string(),
            log,
            started: Instant::now(),
        })
    }
    // template:firmware:end
    // template:service:end
}

// template:service:begin
// template:firmware:begin
/// A command started by [`Cmd::spawn_beside`]; killed if dropped before it was waited for.
pub struct Background {
    child: Option<std::process::Child>,
    display: String,
    what: String,
    beside: String,
    log: std::path::PathBuf,
    started: Instant,
}

impl Background {
    /// Waits for it; says how long it took, or fails with its output.
    pub fn wait(mut self) -> Result {
        let mut child = self.child.take().expect("waited once: wait takes self");
        let status = child.wait()?;
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        // When it finished, near enough: its last write to the log (cargo's `Finished`).
        let took = std::fs::metadata(&self.log)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(self.started.elapsed(), |since| {
                self.started.elapsed().saturating_sub(since)
            })
            .as_secs_f64();
        if !status.success() {
            eprintln!("{output}");
        }
        self.finish(status, took)
    }

    /// Shows its output so far, then live until it ends (the person watches it from here
    /// on); says how long it took, or fails pointing at that output.
    pub fn follow(mut self) -> Result {
        use std::io::{Read as _, Write as _};
        // The child stays in `self` until it ended: an early return kills it (Drop).
        let mut log = std::fs::File::open(&self.log)?;
        let mut chunk = Vec::new();
        let mut show = |log: &mut std::fs::File| -> Result {
            chunk.clear();
            log.read_to_end(&mut chunk)?;
            std::io::stderr().write_all(&chunk)?;
            Ok(())
        };
        let status = loop {
            let child = self
                .child
                .as_mut()
                .expect("followed once: follow takes self");
            let done = child.try_wait()?;
            show(&mut log)?;
            if let Some(status) = done {
                self.child = None;
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let took = self.started.elapsed().as_secs_f64();
        self.finish(status, took)
    }

    fn finish(&self, status: std::process::ExitStatus, took: f64) -> Result {
        let _ = std::fs::remove_file(&self.log);
        if status.success() {
            eprintln!(
                "    {}: done in {took:.1}s (beside {})",
                self.what, self.beside
            );
            return Ok(());
        }
        bail!(
            "`{}` ({}) failed ({status}) after {took:.1}s; its output is above",
            self.display,
            self.what
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
// template:firmware:end
// template:service:end

/// Is `program` on PATH?
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

/// Where `program` is on PATH (the first match), if anywhere.
pub fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `argv` (apt-get non-interactively) with inherited stdio; fails unless it exits 0.
pub fn run_argv(argv: &[String]) -> Result {
    let Some((program, args)) = argv.split_first() else {
        bail!("internal error: an empty command line");
    };
    let mut c = cmd(program).args(args);
    if argv.iter().any(|a| a == "apt-get") {
        c = c.env("DEBIAN_FRONTEND", "noninteractive");
    }
    c.run()
}

/// The stdout of `argv` when it starts and exits 0, else `None` (for questions such as
/// "which version is installed?", where a missing program is an answer, not an error).
pub fn read_argv(argv: &[&str]) -> Option<String> {
    let (program, args) = argv.split_first()?;
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `CI=true` (or `1`): never ask, as with `--yes`.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// `12.3s` or `4m05s`.
pub fn elapsed(secs: f64) -> String {
    if secs >= 60.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{secs:.1}s")
    }
}

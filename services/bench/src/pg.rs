//! A throwaway local PostgreSQL cluster for `bench-service --db postgres` (the same recipe as the
//! service's tests): `initdb` into a directory under
//! target/, `pg_ctl` on a free loopback port with the socket in that directory, as the
//! `postgres` user when run as root; stopped (`-m immediate`) and removed on drop.

use crate::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A command to run; `read` runs it and returns its stdout, or an error naming it and
/// showing its stderr.
struct Cmd(Command, String);

fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Cmd {
    let p = program.as_ref();
    Cmd(Command::new(p), p.to_string_lossy().into_owned())
}

impl Cmd {
    fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.1.push(' ');
        self.1.push_str(&a.as_ref().to_string_lossy());
        self.0.arg(a);
        self
    }

    fn args<A: AsRef<std::ffi::OsStr>>(self, args: impl IntoIterator<Item = A>) -> Self {
        args.into_iter().fold(self, Self::arg)
    }

    fn read(mut self) -> Result<String> {
        let out = self
            .0
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", self.1))?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.1,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    user: Option<&'static str>,
}

fn bindir() -> Result<PathBuf> {
    let has = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Ok(out) = cmd("pg_config").arg("--bindir").read() {
        let d = PathBuf::from(out.trim());
        if has(&d) {
            return Ok(d);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    found.sort();
    match found.pop() {
        Some(d) => Ok(d),
        None => bail!(
            "PostgreSQL is not installed (no initdb/pg_ctl in `pg_config --bindir` or \
             /usr/lib/postgresql/*/bin): install it with `apt-get install -y postgresql`"
        ),
    }
}

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

impl Cluster {
    /// initdb + start in `dir` (emptied first).
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = bindir()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let user = if is_root() {
            let user = if cmd("id").arg("postgres").read().is_ok() {
                "postgres"
            } else {
                "nobody"
            };
            cmd("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(dir)
                .read()?;
            Some(user)
        } else {
            None
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            dir: dir.to_path_buf(),
            bin,
            port,
            user,
        };
        let data = dir.join("data");
        cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "beacon", "-E", "UTF8", "--no-sync"])
            .read()?;
        let opts = format!(
            "-k {} -c listen_addresses=127.0.0.1 -p {port} -c max_connections=200 -c max_wal_size=2GB",
            dir.display()
        );
        cluster
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "120", "-o", &opts, "start"])
            .read()?;
        Ok(cluster)
    }

    fn tool(&self, name: &str) -> Cmd {
        let exe = self.bin.join(name);
        match self.user {
            Some(u) => cmd("runuser").args(["-u", u, "--"]).arg(exe),
            None => cmd(exe),
        }
    }

    /// A new database; its URL.
    pub fn create_db(&self, name: &str) -> Result<String> {
        cmd(self.bin.join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "beacon", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .read()?;
        Ok(format!("postgres://beacon@127.0.0.1:{}/{name}", self.port))
    }

    /// CPU seconds (user + system) used so far by the server: the postmaster and its children.
    pub fn cpu_secs(&self, ticks: f64) -> f64 {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_default();
        crate::proc::cpu_secs_with_children(&pid, ticks)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .read();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

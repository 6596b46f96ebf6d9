//! A throwaway local PostgreSQL cluster: `initdb` into a directory (a new temporary one, or one
//! you name, e.g. under target/), the server on a free loopback port with its socket in that
//! directory, run as the unprivileged `postgres` user (else `nobody`) when the caller is root,
//! because PostgreSQL refuses to run as root. Stopped (`pg_ctl stop -m immediate`) and removed
//! on drop; [`Cluster::remove_when_gone`] also removes it once this process has exited, however
//! it exits (a `kill -9`, a panic in a static, Ctrl-C).
//!
//! Used by the service's tests (one [`shared`] cluster per test process), `beacon-demo --db
//! postgres` and the benchmarks. std only: it runs the server's own tools (`initdb`, `pg_ctl`,
//! `psql`), found through `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`,
//! else `PATH`.
#![warn(missing_docs)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// What to do when PostgreSQL is missing (the end of every "not installed" error).
pub const INSTALL_HINT: &str = "install it with `cargo xtask setup --only postgres` \
     (Debian/Ubuntu: `apt-get install -y postgresql`)";

/// A running cluster, stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    user: Option<&'static str>,
    stop_on_drop: bool,
}

/// How to start a [`Cluster`]: [`Cluster::builder`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    dir: Option<PathBuf>,
    settings: Vec<(String, String)>,
    files: Vec<(String, PathBuf)>,
    tls_only: bool,
}

impl Builder {
    /// Put the cluster in `dir` (emptied first) instead of a new temporary directory. When the
    /// caller is root, the unprivileged server user must be able to reach it.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// A `postgresql.conf` setting, e.g. `("max_wal_size", "2GB")`; quoted as a string.
    pub fn setting(mut self, name: &str, value: impl Into<String>) -> Self {
        self.settings.push((name.to_owned(), value.into()));
        self
    }

    /// TLS on (`ssl = on`) with this certificate chain and private key (PEM files), copied into
    /// the data directory as `server.crt` / `server.key`, owned by the server user, mode 0600;
    /// and TCP connections without TLS refused (`hostssl` only in `pg_hba.conf`), so a client
    /// that connects is known to use TLS.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.files.push(("server.crt".into(), cert.into()));
        self.files.push(("server.key".into(), key.into()));
        self.tls_only = true;
        self.setting("ssl", "on")
    }

    /// initdb, then start the server (it accepts connections when this returns).
    pub fn start(self) -> Result<Cluster, String> {
        let bin = bindir()?;
        let dir = match &self.dir {
            Some(d) => {
                let _ = std::fs::remove_dir_all(d);
                std::fs::create_dir_all(d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                // Absolute: the server's tools run as another user, and `pg_ctl` changes
                // directory; a relative `dir` would name another place for them.
                std::path::absolute(d)
                    .map_err(|e| format!("cannot make {} absolute: {e}", d.display()))?
            }
            None => temp_dir()?,
        };
        let user = if is_root() {
            Some(hand_over(&dir)?)
        } else {
            None
        };
        let cluster = Cluster {
            dir,
            bin,
            port: free_port()?,
            user,
            stop_on_drop: true,
        };
        cluster.run(
            cluster
                .tool("initdb")
                .arg("-D")
                .arg(cluster.data_dir())
                .args(["-A", "trust", "-U", "beacon", "-E", "UTF8", "--no-sync"]),
            "initdb",
        )?;
        cluster.configure(&self)?;
        cluster.pg_start()?;
        Ok(cluster)
    }
}

/// Where `initdb`, `pg_ctl` and `psql` are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`.
pub fn bindir() -> Result<PathBuf, String> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return Ok(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    found.sort();
    if let Some((_, d)) = found.pop() {
        return Ok(d);
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has(&d) {
            return Ok(d);
        }
    }
    Err(format!(
        "PostgreSQL is not installed (no initdb/pg_ctl in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH): {INSTALL_HINT}"
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// A new, empty directory under the system's temporary directory.
fn temp_dir() -> Result<PathBuf, String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..100 {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("beacon-pg-{}-{n}-{nanos:x}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err("cannot create a temporary directory for PostgreSQL".into())
}

/// As root: gives `dir` to `postgres` (or `nobody`) and checks that user can reach it.
fn hand_over(dir: &Path) -> Result<&'static str, String> {
    let exists = |u: &str| {
        Command::new("id")
            .arg(u)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let user = if exists("postgres") {
        "postgres"
    } else {
        "nobody"
    };
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!("cannot chown {} to {user}", dir.display()));
    }
    let reachable = Command::new("runuser")
        .args(["-u", user, "--", "test", "-w"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        return Err(format!(
            "PostgreSQL runs as `{user}` (it refuses root), and {user} cannot write {}: a \
             parent directory is closed to it; use a directory under {} instead",
            dir.display(),
            std::env::temp_dir().display()
        ));
    }
    Ok(user)
}

impl Cluster {
    /// A cluster in a new temporary directory with the default settings.
    pub fn start() -> Result<Self, String> {
        Self::builder().start()
    }

    /// Settings first: [`Builder::start`] starts it.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The loopback TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (its data directory, log and socket are inside).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Where the tools are (`pg_ctl`, `psql`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The postmaster's process id while the server runs (its `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The settings every cluster gets, then the builder's, appended to `postgresql.conf`;
    /// the builder's files copied into the data directory.
    fn configure(&self, b: &Builder) -> Result<(), String> {
        let mut conf = format!(
            "\n# beacon-pgtemp\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n",
            self.port,
            self.dir.display()
        );
        for (k, v) in &b.settings {
            conf.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        let path = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        text.push_str(&conf);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if b.tls_only {
            let hba = self.data_dir().join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .map_err(|e| format!("cannot write {}: {e}", hba.display()))?;
        }
        for (name, src) in &b.files {
            let dst = self.data_dir().join(name);
            std::fs::copy(src, &dst)
                .map_err(|e| format!("cannot copy {} into the cluster: {e}", src.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot chmod {}: {e}", dst.display()))?;
            if let Some(user) = self.user {
                let ok = Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(&dst)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!("cannot chown {} to {user}", dst.display()));
                }
            }
        }
        Ok(())
    }

    /// Starts (again) the server of this cluster's data directory.
    pub fn pg_start(&self) -> Result<(), String> {
        let mut c = self.tool("pg_ctl");
        c.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "120", "start"])
            // Its own process group: a terminal's Ctrl-C reaches the caller (which stops its
            // clients, then this server), not the server first.
            .process_group(0);
        self.run(&mut c, "pg_ctl start")
    }

    /// Stops the server at once (`-m immediate`: like a crash; committed data survives).
    pub fn pg_stop(&self) -> Result<(), String> {
        self.run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "stop"]),
            "pg_ctl stop",
        )
    }

    /// One of the server's tools, run as the server user when we are root.
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, c: &mut Command, what: &str) -> Result<(), String> {
        let out = c
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {what} ({:?}): {e}", c.get_program()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{what} failed ({}): {}{}; server log {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log_path().display(),
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        ))
    }

    /// A new, empty database `name`; its `postgres://` URL.
    pub fn create_db(&self, name: &str) -> Result<String, String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// A new, empty database with a name of its own; its URL.
    pub fn fresh_db(&self) -> Result<String, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.create_db(&format!("t{}_{n}", std::process::id()))
    }

    /// The URL of database `name` (user `beacon`, no password: the cluster trusts loopback).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://beacon@127.0.0.1:{}/{name}", self.port)
    }

    /// The database name of a URL from [`Cluster::url`].
    pub fn db_name(url: &str) -> &str {
        let path = url.rsplit('/').next().unwrap_or(url);
        path.split('?').next().unwrap_or(path)
    }

    /// Runs SQL in database `db` with `psql`; its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "beacon",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts a watchdog (a shell in its own session) that waits for this process to exit,
    /// then stops the server and deletes the directory: the cluster goes even if this process
    /// is killed with SIGKILL. Harmless when the drop got there first.
    pub fn remove_when_gone(&self) -> Result<(), String> {
        let stop = match self.user {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = quote(&self.bin.join("pg_ctl")),
            data = quote(&self.data_dir()),
            dir = quote(&self.dir),
        );
        // Deliberately never waited for: it outlives this process (that is its job).
        let watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog (setsid sh): {e}"))?;
        std::mem::forget(watchdog);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = self
                .tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One cluster for the whole process (each test takes its own database in it with
/// [`Cluster::fresh_db`]), removed by [`Cluster::remove_when_gone`] once the process exits.
pub fn shared() -> Result<&'static Cluster, String> {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut c = Cluster::start()?;
            // A static is never dropped: the watchdog removes it.
            c.stop_on_drop = false;
            c.remove_when_gone()?;
            Ok(c)
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_creates_a_database_answers_and_is_removed_on_drop() {
        let c = Cluster::builder()
            .setting("cluster_name", "it's quoted")
            .start()
            .unwrap();
        let url = c.fresh_db().unwrap();
        let db = Cluster::db_name(&url);
        assert_eq!(c.psql(db, "SELECT 1 + 1").unwrap(), "2");
        assert_eq!(c.psql(db, "SHOW cluster_name").unwrap(), "it's quoted");
        assert!(c.postmaster_pid().is_some());
        c.pg_stop().unwrap();
        assert!(c.psql(db, "SELECT 1").is_err());
        c.pg_start().unwrap();
        assert_eq!(c.psql(db, "SELECT 1").unwrap(), "1");
        let dir = c.dir().to_owned();
        drop(c);
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
}

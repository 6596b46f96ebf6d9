//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary directory, `pg_ctl`
//! on a free loopback port with the socket in that directory, run as the unprivileged
//! `postgres` user when the tests run as root. Removed afterwards: a [`Cluster`] stops
//! (`pg_ctl stop -m immediate`) and deletes itself on drop; the one [`shared`] cluster (a
//! static, never dropped) is removed by a watchdog process once the test process has exited,
//! however it exits.
//!
//! No PostgreSQL installed: the tests that need it fail, saying `apt-get install -y postgresql`
//! (CI installs it in `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The loopback TCP port.
    pub port: u16,
    user: Option<&'static str>,
    stop_on_drop: bool,
}

/// Where `initdb`, `pg_ctl` and `psql` are: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/*/bin, else PATH.
fn bindir() -> PathBuf {
    let has = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return d;
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
    if let Some(d) = found.pop() {
        return d;
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has(&d) {
            return d;
        }
    }
    panic!(
        "PostgreSQL is not installed (no initdb/pg_ctl in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH), and these tests run against a real server: \
         install it with `apt-get install -y postgresql` (Debian/Ubuntu; CI does this in .ci/run)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl Cluster {
    /// Starts a new cluster; stopped and removed when dropped.
    pub fn start() -> Self {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("beacon-pg-")
            .tempdir()
            .expect("cannot create a temp dir for PostgreSQL")
            .keep();
        // PostgreSQL refuses to run as root: hand the directory to an unprivileged user.
        let user = rustix::process::getuid().is_root().then(|| {
            let user = if Command::new("id")
                .arg("postgres")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                "postgres"
            } else {
                "nobody"
            };
            let ok = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot chown {} to {user}", dir.display());
            user
        });
        let port = free_port();
        let cluster = Self {
            dir,
            bin,
            port,
            user,
            stop_on_drop: true,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "beacon".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        cluster.pg_start();
        cluster
    }

    /// Starts (again) the server of this cluster's data directory.
    pub fn pg_start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-k {} -c listen_addresses=127.0.0.1 -p {} -c max_connections=300",
            self.dir.display(),
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: like a crash; committed data survives).
    pub fn pg_stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// A new, empty database; its `postgres://` URL.
    pub fn fresh_db(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://beacon@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement in database `db` and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "beacon",
            ])
            .args(["-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The database name of a URL from [`Cluster::fresh_db`].
    pub fn db_name(url: &str) -> &str {
        url.rsplit('/').next().unwrap_or(url)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let data = self.dir.join("data");
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One cluster for the whole test process (each test takes its own database in it). A
/// watchdog shell waits for this process to exit, then stops the server and deletes it.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut c = Cluster::start();
        c.stop_on_drop = false;
        let stop = match c.user {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop}'{pg_ctl}' -D '{dir}/data' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = c.bin.join("pg_ctl").display(),
            dir = c.dir.display(),
        );
        // Deliberately never waited for: it outlives this process (that is its job).
        let watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster's watchdog (setsid sh)");
        std::mem::forget(watchdog);
        c
    })
}

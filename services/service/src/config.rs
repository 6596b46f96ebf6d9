//! Command-line and environment configuration. Every flag has a `BEACON_*` environment
//! fallback, so a container or a systemd unit configures the service without arguments.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The telemetry service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "beacon-service",
    version,
    about = "The beacon telemetry service: ingest, store, query, stream"
)]
pub struct Config {
    /// Address to listen on. Loopback by default: put a reverse proxy (TLS) in front to expose
    /// it. Port 0 picks a free port; the bound address is printed on stdout.
    #[arg(long, env = "BEACON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The store: a SQLite database file (created when missing; the default), or a
    /// PostgreSQL URL `postgres://user:password@host:port/database` (several replicas may
    /// share one; docs/scale-out.md). The startup log names the backend it opened.
    #[arg(
        long,
        env = "BEACON_DB",
        default_value = "beacon.db",
        hide_env_values = true
    )]
    pub db: PathBuf,

    /// PostgreSQL only: connections in the read pool (queries, latest, token checks); the
    /// writers (`--db-writers`) have their own, the live stream's listener one more.
    #[arg(long, env = "BEACON_DB_POOL", default_value_t = 8)]
    pub db_pool: usize,

    /// PostgreSQL only: writer connections, each group-committing queued ingests in turn (a
    /// PostgreSQL backend runs one statement on one core; two keep a second core busy).
    #[arg(long, env = "BEACON_DB_WRITERS", default_value_t = 2)]
    pub db_writers: usize,

    /// PostgreSQL only: seconds a replica may trust a device token it read from the database.
    /// A token changed or deleted in the database stops working on every replica when its
    /// notification arrives (a trigger's NOTIFY, milliseconds); this bound covers a replica
    /// whose listener connection is down (docs/scale-out.md, "Device tokens").
    #[arg(long, env = "BEACON_TOKEN_CACHE_SECS", default_value_t = 2)]
    pub token_cache_secs: u64,

    /// Provisioning token: when set, `POST /api/v1/devices` requires
    /// `Authorization: Bearer <this>`. When unset, registration is open (fine on loopback).
    #[arg(long, env = "BEACON_PROVISIONING_TOKEN", hide_env_values = true)]
    pub provisioning_token: Option<String>,

    /// Read token: when set, the read endpoints (device list, readings, latest, stream) need
    /// `Authorization: Bearer <this>` (or the provisioning token). With only
    /// `--provisioning-token` set, reads need that one; with neither, reads are open (the
    /// loopback default). The startup log says which.
    #[arg(long, env = "BEACON_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    /// Register unknown devices on first ingest, with the bearer token they present
    /// (trust on first use), once the request proved valid. For demos and closed networks;
    /// refused together with --provisioning-token.
    #[arg(long, env = "BEACON_AUTO_REGISTER")]
    pub auto_register: bool,

    /// Largest request body accepted, in bytes; bigger ones get 413.
    #[arg(long, env = "BEACON_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most readings in one ingest request.
    #[arg(long, env = "BEACON_MAX_BATCH", default_value_t = 10_000)]
    pub max_batch: usize,

    /// Per-request timeout in seconds (not applied to the open SSE stream body).
    #[arg(long, env = "BEACON_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a client has to send a complete request head; also the longest a keep-alive
    /// connection may sit idle between requests. Closes slowloris connections.
    #[arg(long, env = "BEACON_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Most client connections open at once; beyond it new ones wait in the kernel's accept
    /// queue. Lowered at start-up to fit the open-file limit (minus 64 for SQLite and logs).
    #[arg(long, env = "BEACON_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Requests without a valid token (open registration and reads, refused ones) one peer
    /// address may have in flight at once; beyond it, 429 + Retry-After. `/healthz`, `/readyz`
    /// and requests with a valid token are not counted. With open reads (no --read-token, no
    /// --provisioning-token) reads count too: a dashboard or script reading from one address
    /// gets 429 past this many at once (a browser holds at most 6 per host). The multi-device
    /// ingest (`POST /api/v1/readings`, tokens in the body) is counted in a pool of its own,
    /// with the same limit: a gateway's ingest requests do not starve its registrations.
    /// TODO(6): fit this to your clients behind one address (a NAT or proxy counts as one).
    #[arg(long, env = "BEACON_MAX_UNAUTHENTICATED_PER_IP", default_value_t = 64)]
    pub max_unauthenticated_per_ip: usize,

    /// Ingest requests that may wait for the storage writer; beyond that, 503 + Retry-After.
    #[arg(long, env = "BEACON_WRITE_QUEUE", default_value_t = 1024)]
    pub write_queue: usize,

    /// Upper bound on the database size in MiB; writes beyond it get 503 (unbounded when unset).
    #[arg(long, env = "BEACON_MAX_DB_MB")]
    pub max_db_mb: Option<u64>,

    /// fsync on every commit (`full`, durable across power loss) or only at checkpoints
    /// (`normal`, durable across a process crash).
    #[arg(long, env = "BEACON_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    pub sync: String,

    /// Seconds to wait for in-flight requests after a shutdown signal before closing anyway.
    #[arg(long, env = "BEACON_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Log filter (tracing EnvFilter syntax). `RUST_LOG` wins when set.
    #[arg(
        long,
        env = "BEACON_LOG",
        default_value = "info,beacon_service=info,tower_http=info"
    )]
    pub log: String,

    /// Serve tokio-console's gRPC API (needs the `console` cargo feature).
    #[arg(long, env = "BEACON_CONSOLE")]
    pub console: bool,

    /// Where the console API listens. Loopback only: it exposes the runtime's internals.
    #[arg(long, env = "BEACON_CONSOLE_ADDR", default_value = "127.0.0.1:6669")]
    pub console_addr: SocketAddr,

    /// How long the console keeps finished tasks, in milliseconds. Each finished task costs
    /// about 50 KB (two latency histograms) until it is dropped (measured with `cargo xtask bench-service`), and every HTTP
    /// connection is a task: under connection churn, memory is about connections/s x
    /// (retention plus publish interval) x 50 KB. console-subscriber's default, one hour, reaches gigabytes
    /// in seconds. A connected console client still receives every task's final state (the
    /// aggregator keeps unsent tasks while a client watches); the client keeps them on screen
    /// for its own retention.
    #[arg(long, env = "BEACON_CONSOLE_RETENTION_MS", default_value_t = 0)]
    pub console_retention_ms: u64,

    /// Capacity of the queue of runtime events waiting for the console aggregator; when it is
    /// full, events are dropped (the console shows a warning) instead of queueing. This is the
    /// real bound on memory under connection churn: each queued task-spawn event holds the
    /// task's ~50 KB of statistics, and a CPU-starved aggregator lets the queue fill
    /// (console-subscriber's default, 102 400 events, measured ~420 MB here).
    #[arg(long, env = "BEACON_CONSOLE_EVENT_BUFFER", default_value_t = 8192)]
    pub console_event_buffer: usize,

    /// How often the console aggregator publishes updates and drops finished tasks, in
    /// milliseconds.
    #[arg(long, env = "BEACON_CONSOLE_PUBLISH_MS", default_value_t = 500)]
    pub console_publish_ms: u64,

    /// Serve the diagnostics endpoints (`GET /debug/tasks`: a dump of every task and where it
    /// waits). Answered to loopback clients only (403 otherwise): they show the runtime's
    /// internals. Off by default.
    #[arg(long, env = "BEACON_DEBUG_ENDPOINTS")]
    pub debug_endpoints: bool,
}

impl Config {
    /// Parses a config from arguments (the first is the program name), as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// Defaults for a database at `db`, as in tests.
    pub fn for_db(db: impl Into<PathBuf>) -> Self {
        let mut c = Self::parse_from(["beacon-service"]);
        c.db = db.into();
        c
    }

    /// Refuses combinations of flags that are unsafe together, saying why and what to do.
    pub fn check(&self) -> Result<(), String> {
        if self.auto_register && self.provisioning_token.is_some() {
            return Err(
                "--auto-register and --provisioning-token are unsafe together: \
                auto-registration trusts whatever token an unknown device presents, so anyone \
                could claim a device id (and lock its owner out) without the provisioning token; \
                drop --auto-register and register devices with POST /api/v1/devices and the \
                provisioning token"
                    .into(),
            );
        }
        Ok(())
    }

    /// The PostgreSQL URL when `--db` is one (`postgres://` or `postgresql://`), else `None`
    /// (a SQLite file).
    pub fn postgres_url(&self) -> Option<&str> {
        self.db
            .to_str()
            .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
    }

    /// `--db` for logs: a URL's password replaced by `***`.
    pub fn db_display(&self) -> String {
        match self.postgres_url() {
            #[cfg(feature = "postgres")]
            Some(url) => crate::store::postgres::redact(url),
            #[cfg(not(feature = "postgres"))]
            Some(_) => "a postgres:// URL".to_string(),
            None => self.db.display().to_string(),
        }
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

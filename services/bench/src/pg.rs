//! The throwaway local PostgreSQL cluster for `bench-service --db postgres`: beacon-pgtemp (the
//! one recipe the service's tests and the demo use too: initdb under target/, a free loopback
//! port, the `postgres` user when run as root, removed on drop and after the process), with
//! the benchmark's settings, and the server's CPU time.

use crate::Result;
pub use beacon_pgtemp::Cluster;
use std::path::Path;

/// initdb + start in `dir` (emptied first), with room for the load: connections for the
/// replicas and the bare clients, WAL for 10 s of ingest between checkpoints.
pub fn start(dir: &Path) -> Result<Cluster> {
    Ok(Cluster::builder()
        .dir(dir)
        .setting("max_connections", "200")
        .setting("max_wal_size", "2GB")
        .start()?)
}

/// CPU seconds (user + system) used so far by the server: the postmaster and its children.
pub fn cpu_secs(cluster: &Cluster, ticks: f64) -> f64 {
    let pid = cluster
        .postmaster_pid()
        .map(|p| p.to_string())
        .unwrap_or_default();
    crate::proc::cpu_secs_with_children(&pid, ticks)
}

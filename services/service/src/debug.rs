//! Async you can debug: named tasks and `GET /debug/tasks`, a dump of every task of the
//! runtime with the backtrace of the `.await` it is parked on (docs/async.md, "When it
//! hangs").
//!
//! - **Opt-in**: the route exists only with `--debug-endpoints`; without it the path is a 404
//!   like any unknown one.
//! - **Loopback only**: a request whose TCP peer is not a loopback address is refused with 403,
//!   like the tokio-console server, which refuses to bind anywhere but loopback: a dump shows
//!   the runtime's internals. The peer comes from the accept loop ([`WithPeer`]); a request
//!   without one (an in-process `oneshot`) is refused too. Reach a remote service through
//!   `ssh -L`.
//! - **Where it works**: tokio's task dumps (`Handle::dump`) need `--cfg tokio_unstable`
//!   (`.cargo/config.toml`) and tokio's `taskdump` cargo feature, which tokio supports only on
//!   Linux on x86_64, aarch64, x86 (i686) and s390x (the services' Cargo.toml turn it on there
//!   only). Elsewhere the endpoint answers 501 saying so.
//! - **Names**: tasks spawned with [`spawn_named`] carry their name into tokio-console
//!   (`tokio::task::Builder::name`) and into the dump: a dump lists task ids only, so a small
//!   registry maps the id of each running named task to its name (a mutex-guarded map insert
//!   when the task starts and a remove when it ends: well under a microsecond per task).
//! - **Cost**: a dump stops every worker for the duration of one poll per task and then
//!   resolves symbols (tens of ms to seconds for thousands of tasks, off the async workers on
//!   the blocking pool); one dump at a time, with a timeout. Nothing but the name registry is
//!   spent when no dump is taken.

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Whether this build can produce task dumps (see the module docs for the platforms).
pub const TASK_DUMPS_SUPPORTED: bool = cfg!(all(
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "x86",
        target_arch = "s390x"
    )
));

/// Longest a dump may take; tokio's own docs advise a timeout (a worker stuck in a blocking
/// call never reaches the point where it can be traced).
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

/// Task id to the name it was spawned with (while the task runs).
static NAMES: Mutex<Option<HashMap<tokio::task::Id, &'static str>>> = Mutex::new(None);
/// One dump at a time.
pub(crate) static DUMPING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

fn names() -> std::sync::MutexGuard<'static, Option<HashMap<tokio::task::Id, &'static str>>> {
    NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the task's name when the task ends (or is dropped).
struct NameGuard(tokio::task::Id);

impl Drop for NameGuard {
    fn drop(&mut self) {
        if let Some(map) = names().as_mut() {
            map.remove(&self.0);
        }
    }
}

/// `tokio::spawn` with a name: shown by tokio-console (under `tokio_unstable`) and in
/// `GET /debug/tasks`.
pub fn spawn_named<F>(name: &'static str, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let named = async move {
        let id = tokio::task::id();
        names().get_or_insert_with(HashMap::new).insert(id, name);
        let _guard = NameGuard(id);
        future.await
    };
    #[cfg(tokio_unstable)]
    {
        match tokio::task::Builder::new().name(name).spawn(named) {
            Ok(handle) => handle,
            // Builder fails only when the runtime is shutting down; so would tokio::spawn.
            Err(e) => panic!("cannot spawn task {name}: {e}"),
        }
    }
    #[cfg(not(tokio_unstable))]
    tokio::spawn(named)
}

/// Puts the connection's peer address into every request as axum's
/// `ConnectInfo<SocketAddr>` (the accept loop wraps the router in it), so handlers such as
/// `/debug/tasks` can tell loopback clients from others.
#[derive(Debug, Clone)]
pub struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S> WithPeer<S> {
    /// `inner`, told that its requests come from `peer`.
    pub fn new(inner: S, peer: SocketAddr) -> Self {
        Self { inner, peer }
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for WithPeer<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.inner.call(req)
    }
}

/// The dump of the current runtime as text: one block per task, `task <id> "<name>"` and the
/// tree of frames down to the tokio leaf future it waits on (`name at file:line:col`).
#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "x86",
        target_arch = "s390x"
    )
))]
pub async fn dump_text() -> Result<String, (StatusCode, String)> {
    let handle = tokio::runtime::Handle::current();
    let dump = tokio::time::timeout(DUMP_TIMEOUT, handle.dump())
        .await
        .map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the task dump did not finish within {DUMP_TIMEOUT:?}: a worker thread is \
                     probably blocked in synchronous code (that is the bug to look for; a thread \
                     dump with `gdb -p PID -batch -ex 'thread apply all bt'` shows where)"
                ),
            )
        })?;
    let named: HashMap<tokio::task::Id, &'static str> = names().clone().unwrap_or_default();
    // Symbol resolution reads debug info: CPU work, off the async workers.
    tokio::task::spawn_blocking(move || {
        use std::fmt::Write as _;
        let tasks: Vec<_> = dump.tasks().iter().collect();
        let mut out = format!("{} tasks\n", tasks.len());
        for task in tasks {
            let id = task.id();
            let name = named.get(&id).copied().unwrap_or("(unnamed)");
            let _ = writeln!(out, "\ntask {id} \"{name}\"\n{}", task.trace());
        }
        out
    })
    .await
    .map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("formatting the task dump failed: {e}"),
        )
    })
}

/// Task dumps are not available in this build (see the module docs).
#[cfg(not(all(
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "x86",
        target_arch = "s390x"
    )
)))]
pub async fn dump_text() -> Result<String, (StatusCode, String)> {
    Err((
        StatusCode::NOT_IMPLEMENTED,
        "task dumps need tokio's `taskdump` feature and `--cfg tokio_unstable`, which tokio \
         supports on Linux on x86_64, aarch64, x86 and s390x only; this build has not got them \
         (was RUSTFLAGS exported? it replaces .cargo/config.toml's flags)"
            .into(),
    ))
}

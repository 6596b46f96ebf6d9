//! `GET /debug/tasks`: the task dump of the real server on 127.0.0.1:0 (in-process, so the test
//! can plant a stuck task in the server's own runtime), and its refusals.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use beacon_service::{Config, debug, open_store};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{Mutex, oneshot};
use tower::ServiceExt as _;

/// The bug on purpose: waits for a lock that its holder never gives back.
#[inline(never)]
async fn wait_for_the_config_lock(lock: Arc<Mutex<()>>, started: oneshot::Sender<()>) {
    let _ = started.send(());
    let _guard = lock.lock().await; // STUCK HERE
}

/// The line of this file with the marker, as the dump must report it.
fn stuck_line() -> usize {
    include_str!("debug.rs")
        .lines()
        .position(|l| l.ends_with("// STUCK HERE"))
        .expect("the marker line is in this file")
        + 1
}

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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_task_shows_up_in_the_dump_with_the_line_where_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_db(dir.path().join("t.db"));
    config.debug_endpoints = true;
    let store = open_store(&config).await.unwrap();
    let server = crate::shared::serve_on(config, Arc::new(store)).await;
    let url = format!("{}/debug/tasks", server.url);

    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().await;
    let (started, running) = oneshot::channel();
    let stuck = debug::spawn_named(
        "stuck-on-purpose",
        wait_for_the_config_lock(Arc::clone(&lock), started),
    );
    running.await.unwrap();

    let client = reqwest::Client::new();
    let want_line = format!("tests/it/debug.rs:{}", stuck_line());
    let mut last = String::new();
    // A task that is being polled at the very moment of the dump is skipped; it parks within
    // microseconds, so a second dump finds it. Bounded: 5 dumps.
    for _ in 0..5 {
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        last = answer.text().await.unwrap();
        if last.contains("\"stuck-on-purpose\"") {
            break;
        }
    }
    let block = last
        .split("\ntask ")
        .find(|b| b.contains("\"stuck-on-purpose\""))
        .unwrap_or_else(|| panic!("no task named stuck-on-purpose in the dump:\n{last}"));
    // What the docs tell a reader to look for: the task's name, its own async fn, and the
    // file:line of the `.await` it is parked on.
    eprintln!("--- the stuck task in GET /debug/tasks ---\ntask {block}");
    assert!(
        block.contains("wait_for_the_config_lock"),
        "the dump names the async fn that waits:\n{block}"
    );
    assert!(
        block.contains(&want_line),
        "the dump points at {want_line}, where the task waits:\n{block}"
    );
    // The server's own tasks are named too.
    assert!(
        last.contains("\"http-connection\""),
        "the connection serving the dump is a named task:\n{last}"
    );

    drop(held);
    stuck.await.unwrap();
    server.stop.send(()).unwrap();
    server.server.await.unwrap().unwrap();
}

async fn get_tasks(debug_endpoints: bool, peer: Option<SocketAddr>) -> (StatusCode, String) {
    let app = crate::app::app_with(|c| c.debug_endpoints = debug_endpoints).await;
    let mut req = Request::get("/debug/tasks").body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        req.extensions_mut().insert(ConnectInfo(peer));
    }
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn debug_tasks_is_refused_to_non_loopback_peers_and_absent_without_the_flag() {
    let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let (status, body) = get_tasks(true, Some(remote)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("loopback clients only"), "{body}");
    assert!(body.contains("192.0.2.7"), "names the refused peer: {body}");

    // No peer address at all (not through the accept loop): refused as well, fail closed.
    let (status, body) = get_tasks(true, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Without --debug-endpoints the path does not exist, whoever asks.
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let (status, body) = get_tasks(false, Some(local)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // IPv6 loopback is loopback.
    let local6: SocketAddr = "[::1]:40000".parse().unwrap();
    let (status, _) = get_tasks(true, Some(local6)).await;
    assert_ne!(status, StatusCode::FORBIDDEN);
}

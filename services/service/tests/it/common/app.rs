//! The real router on the real SQLite store in a temp dir, driven in-process with
//! `tower::ServiceExt::oneshot` (no sockets): one copy for the modules that test handlers
//! (api, hostile). Each module adds its own request helpers in its own `impl App` block.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use beacon_service::store::DynStore;
use beacon_service::{AppState, Config, open_store, router};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt as _;

/// The router, the state behind it and the temp dir that holds its database.
pub struct App {
    pub router: Router,
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
}

/// A response: status, headers, and the body as JSON (a JSON string when it is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// The router on the real SQLite store, configured by `tweak`, built without `Config::check`
/// (so a test can also show what the handlers do with a combination the binary refuses).
pub async fn app_with(tweak: impl FnOnce(&mut Config)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_db(dir.path().join("t.db"));
    tweak(&mut config);
    app_in(config, dir).await
}

/// The router on the real SQLite store that `config` names (a database in `dir`, or one a
/// test wrote there first), keeping `dir` alive.
pub async fn app_in(config: Config, dir: tempfile::TempDir) -> App {
    let store: Arc<dyn DynStore> = Arc::new(open_store(&config).await.unwrap());
    let state = AppState::new(config, store).await.unwrap();
    App::on(state, dir)
}

/// The router with the default configuration.
pub async fn app() -> App {
    app_with(|_| {}).await
}

impl App {
    /// The router over `state` (e.g. on a stand-in store), keeping `dir` alive.
    pub fn on(state: Arc<AppState>, dir: tempfile::TempDir) -> Self {
        Self {
            router: router(Arc::clone(&state)),
            state,
            dir,
        }
    }

    /// One request through the router.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer {
            status,
            headers,
            json,
        }
    }
}

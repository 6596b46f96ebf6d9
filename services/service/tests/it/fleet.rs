//! The service at fleet size: `/api/v1/latest` pages (in-process router, real SQLite).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use beacon_service::store::DynStore;
use beacon_service::{AppState, Config, open_store, router};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt as _;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn latest_pages_by_device_id_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_db(dir.path().join("t.db"));
    let store: Arc<dyn DynStore> = Arc::new(open_store(&config).await.unwrap());
    let app = router(AppState::new(config, store).await.unwrap());
    // 25 devices, registered out of order.
    let ids: Vec<u32> = (1..=25).map(|i| (i * 7) % 26).collect();
    for &id in &ids {
        let token = format!("t{id}");
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/devices",
            None,
            json!({"id": id, "token": token}),
        )
        .await;
        assert!(s.is_success());
        let (s, _) = call(
            &app,
            "POST",
            &format!("/api/v1/devices/{id}/readings"),
            Some(&token),
            json!({"readings": [{"seq": id, "uptime_ms": 1, "values": [{"kind": "counter", "value": id}]}]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }

    let mut seen = Vec::new();
    let mut uri = "/api/v1/latest?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (s, page) = call(&app, "GET", &uri, None, Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        let got: Vec<u64> = page["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["device_id"].as_u64().unwrap())
            .collect();
        assert!(got.len() <= 10);
        seen.extend(got);
        match page.get("next_after_device").and_then(Value::as_u64) {
            Some(next) => uri = format!("/api/v1/latest?limit=10&after_device={next}"),
            None => break,
        }
        assert!(pages < 10, "the cursor must end");
    }
    let mut want: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
    want.sort_unstable();
    assert_eq!(seen, want, "every device once, in id order");
    assert_eq!(pages, 3);

    // Without a limit: every device (the old answer), no cursor.
    let (_, all) = call(&app, "GET", "/api/v1/latest", None, Value::Null).await;
    assert_eq!(all["readings"].as_array().unwrap().len(), 25);
    assert!(all.get("next_after_device").is_none());

    let (s, err) = call(&app, "GET", "/api/v1/latest?limit=0", None, Value::Null).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err["field"], "limit");
}

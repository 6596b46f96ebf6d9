//! The service at fleet size: `/api/v1/latest` pages (in-process router, real SQLite), and a
//! slow live-stream client is bounded (the real server on 127.0.0.1:0).

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

/// A live-stream client that stops reading is bounded: the service keeps at most the
/// broadcast channel's batches for it (64), then skips ahead and tells it how many it missed
/// (`event: lagged`), instead of queueing without end; the stream goes on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_client_gets_lagged_instead_of_an_unbounded_queue() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_db(dir.path().join("t.db"));
    let store = open_store(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(beacon_service::serve(
        config,
        Arc::new(store),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}");
    client
        .post(format!("{url}/api/v1/devices"))
        .json(&json!({"id": 1, "token": "t"}))
        .send()
        .await
        .unwrap();

    // The slow client: a tiny receive window, and it reads nothing while the batches flow.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(b"GET /api/v1/stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = slow.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // 150 batches of 500 readings (~50 KB of JSON each on the stream): far more than the
    // socket buffers and the 64 batches the service keeps for one client.
    for b in 0..150u32 {
        let readings: Vec<Value> = (0..500u32)
            .map(|i| json!({"seq": b * 500 + i, "uptime_ms": 1, "values": [{"kind": "counter", "value": i}]}))
            .collect();
        let resp = client
            .post(format!("{url}/api/v1/devices/1/readings"))
            .bearer_auth("t")
            .json(&json!({ "readings": readings }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // One more after the flood: the stream must still deliver it after the skip.
    let resp = client
        .post(format!("{url}/api/v1/devices/1/readings"))
        .bearer_auth("t")
        .json(&json!({"readings": [{"seq": 999_999, "uptime_ms": 1, "values": [{"kind": "counter", "value": 1}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Now read: somewhere there is `event: lagged` with the number skipped, and the last
    // reading arrives after it. Bounded: at most 64 MB or until the last reading.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut skipped = None;
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut buf))
            .await
            .expect("the stream keeps delivering")
            .unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if skipped.is_none()
            && let Some(at) = text.find("event: lagged\ndata: {\"skipped\":")
        {
            let rest = &text[at + "event: lagged\ndata: {\"skipped\":".len()..];
            skipped = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse::<u64>().ok());
        }
        if text.contains("\"seq\":999999") {
            break;
        }
        assert!(seen.len() < 64 << 20, "read 64 MB without the last reading");
    }
    let skipped = skipped.expect("a slow client is told it lagged");
    assert!(skipped > 0);
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.find("event: lagged").unwrap() < text.find("\"seq\":999999").unwrap(),
        "the stream goes on after the skip"
    );
    eprintln!(
        "slow client: skipped {skipped} batches, read {} KB in all",
        seen.len() / 1024
    );
    drop(slow);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

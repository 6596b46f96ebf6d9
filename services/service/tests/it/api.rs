//! In-process router tests: the real router and the real SQLite store (in a temp dir), driven
//! with `tower::ServiceExt::oneshot`; no sockets. Failure paths that real SQLite cannot be
//! pushed into on demand use small stand-in stores, named as such.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use beacon_protocol::{Frame, MAX_WIRE_LEN, Reading, encode};
use beacon_service::model::{ReadingQuery, Registered, StoredReading};
use beacon_service::store::{DeviceWithToken, Ingested, NewDevice, Store, StoreError};
use beacon_service::{AppState, Config, open_store};
use serde_json::{Value, json};
use std::sync::Arc;

mod common;
use common::Slow;

use crate::app::{Answer, App, app, app_with};

impl App {
    async fn register(&self, id: u32, token: &str) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/devices",
            &[("content-type", "application/json")],
            json!({"id": id, "token": token}).to_string(),
        )
        .await
    }

    async fn post_json(&self, id: u32, token: &str, body: Value) -> Answer {
        let auth = format!("Bearer {token}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        self.call(
            Method::POST,
            &format!("/api/v1/devices/{id}/readings"),
            &headers,
            body.to_string(),
        )
        .await
    }

    async fn post_frames(&self, id: u32, token: &str, body: Vec<u8>) -> Answer {
        let auth = format!("Bearer {token}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/x-beacon-frames"),
        ];
        self.call(
            Method::POST,
            &format!("/api/v1/devices/{id}/readings"),
            &headers,
            body,
        )
        .await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }
}

fn reading(seq: u32) -> Value {
    json!({"seq": seq, "uptime_ms": u64::from(seq) * 1000, "sampled_at_ms": 1_700_000_000_000i64 + i64::from(seq),
           "values": [{"kind": "temperature_c", "value": 21.5}, {"kind": "humidity_pct", "value": 40.25}]})
}

fn batch(seqs: impl IntoIterator<Item = u32>) -> Value {
    json!({"readings": seqs.into_iter().map(reading).collect::<Vec<_>>()})
}

fn frames(device: u32, seqs: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        let frame = Frame::new(device, seq, 500)
            .with(Reading::Temperature {
                centi_celsius: 2150,
            })
            .unwrap()
            .with(Reading::Boot {
                firmware: [1, 2, 3],
                board: 1,
            })
            .unwrap();
        let mut buf = [0u8; MAX_WIRE_LEN];
        let n = encode(&frame, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[tokio::test]
async fn register_is_idempotent_with_the_same_token_and_conflicts_with_another() {
    let app = app().await;
    let first = app.register(7, "tok-7").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.json["created"], true);
    let again = app.register(7, "tok-7").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["created"], false);
    let other = app.register(7, "another").await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert!(
        other.json["error"]
            .as_str()
            .unwrap()
            .contains("another token")
    );
    // Without id and token: the service picks both.
    let auto = app
        .call(Method::POST, "/api/v1/devices", &[], Body::empty())
        .await;
    assert_eq!(auto.status, StatusCode::CREATED);
    assert_eq!(auto.json["id"], 8);
    assert_eq!(auto.json["token"].as_str().unwrap().len(), 64);
    let list = app.get("/api/v1/devices").await;
    let ids: Vec<_> = list.json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 8]);
    assert!(
        !list.json.to_string().contains("tok-7"),
        "the device list must not leak tokens"
    );
}

#[tokio::test]
async fn registration_requires_the_provisioning_token_when_configured() {
    let app = app_with(|c| c.provisioning_token = Some("prov".into())).await;
    assert_eq!(app.register(1, "t").await.status, StatusCode::UNAUTHORIZED);
    let body = json!({"id": 1, "token": "t"}).to_string();
    let ok = app
        .call(
            Method::POST,
            "/api/v1/devices",
            &[
                ("authorization", "Bearer prov"),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

#[tokio::test]
async fn json_ingest_counts_duplicates_and_accepts_out_of_order() {
    let app = app().await;
    app.register(1, "t").await;
    let a = app.post_json(1, "t", batch([5, 3, 4])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json, json!({"accepted": 3, "duplicates": 0}));
    // A retry overlapping the first batch, an older reading, and a repeat inside one request.
    let b = app.post_json(1, "t", batch([4, 5, 1, 2, 2])).await;
    assert_eq!(b.json, json!({"accepted": 2, "duplicates": 3}));
    let q = app.get("/api/v1/devices/1/readings").await;
    let seqs: Vec<_> = q.json["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let r = &q.json["readings"][0];
    assert_eq!(r["device_id"], 1);
    assert_eq!(
        r["values"][1],
        json!({"kind": "humidity_pct", "value": 40.25})
    );
    assert_eq!(r["sampled_at_ms"], 1_700_000_000_001i64);
    assert!(r["received_at_ms"].as_i64().unwrap() > 1_700_000_000_001i64);
}

#[tokio::test]
async fn query_pages_with_after_seq_and_filters_by_time() {
    let app = app().await;
    app.register(1, "t").await;
    app.post_json(1, "t", batch(1..=25)).await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/devices/1/readings?limit=10".to_owned();
    loop {
        let page = app.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(
            page.json["readings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        match page.json["next_after_seq"].as_u64() {
            Some(next) => uri = format!("/api/v1/devices/1/readings?limit=10&after_seq={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    // sampled_at_ms of seq n is 1_700_000_000_000 + n; [from, to) picks 10..=12.
    let q = app
        .get("/api/v1/devices/1/readings?from=1700000000010&to=1700000000013")
        .await;
    assert_eq!(q.json["readings"].as_array().unwrap().len(), 3);
    let bad = app.get("/api/v1/devices/1/readings?limit=abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json["error"].as_str().unwrap().contains("limit"),
        "{}",
        bad.json
    );
    let unknown = app.get("/api/v1/devices/99/readings").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn latest_returns_the_newest_sample_of_each_device() {
    let app = app().await;
    app.register(1, "a").await;
    app.register(2, "b").await;
    app.post_json(1, "a", batch([9, 3])).await;
    app.post_json(2, "b", batch([4])).await;
    let latest = app.get("/api/v1/latest").await;
    let got: Vec<_> = latest.json["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["device_id"].as_u64().unwrap(), r["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [(1, 9), (2, 4)]);
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_field() {
    let app = app().await;
    app.register(1, "t").await;
    let bad_seq = app
        .post_json(
            1,
            "t",
            json!({"readings": [reading(1), {"seq": "x", "uptime_ms": 1, "values": []}]}),
        )
        .await;
    assert_eq!(bad_seq.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_seq.json["field"], "readings[1].seq");
    let bad_kind = app.post_json(1, "t", json!({"readings": [{"seq": 1, "uptime_ms": 1, "values": [{"kind": "volts", "value": 1}]}]})).await;
    assert_eq!(bad_kind.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_kind.json["field"], "readings[0].values[0].kind");
    let fraction = app
        .post_json(1, "t", json!({"readings": [{"seq": 1, "uptime_ms": 1, "values": [{"kind": "counter", "value": 1.5}]}]}))
        .await;
    assert_eq!(fraction.status, StatusCode::BAD_REQUEST);
    assert_eq!(fraction.json["field"], "readings[0].values[0]");
    assert!(
        fraction.json["error"].as_str().unwrap().contains("integer"),
        "{}",
        fraction.json
    );
    let no_value = app
        .post_json(1, "t", json!({"readings": [{"seq": 1, "uptime_ms": 1, "values": [{"kind": "temperature_c"}]}]}))
        .await;
    assert_eq!(no_value.status, StatusCode::BAD_REQUEST);
    assert!(
        no_value.json["error"].as_str().unwrap().contains("value"),
        "{}",
        no_value.json
    );
    let missing = app
        .post_json(1, "t", json!({"readings": [{"seq": 1, "values": []}]}))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.json["error"]
            .as_str()
            .unwrap()
            .contains("uptime_ms"),
        "{}",
        missing.json
    );
    let wrong_device = app.post_json(1, "t", json!({"readings": [reading(1), {"device_id": 2, "seq": 2, "uptime_ms": 1, "values": []}]})).await;
    assert_eq!(wrong_device.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_device.json["field"], "readings[1].device_id");
    let auth = [
        ("authorization", "Bearer t"),
        ("content-type", "application/json"),
    ];
    let garbage = app
        .call(
            Method::POST,
            "/api/v1/devices/1/readings",
            &auth,
            "{\"readings\": [",
        )
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    // Nothing from a rejected request was stored.
    let q = app.get("/api/v1/devices/1/readings").await;
    assert_eq!(q.json["readings"].as_array().unwrap().len(), 0);
    let bad_path = app.post_json(0, "t", batch([1])).await;
    assert_ne!(bad_path.status, StatusCode::OK);
    let not_a_number = app
        .call(Method::POST, "/api/v1/devices/abc/readings", &auth, "{}")
        .await;
    assert_eq!(not_a_number.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_a_number.json["field"], "id");
}

#[tokio::test]
async fn frame_ingest_decodes_and_stores_protocol_frames() {
    let app = app().await;
    app.register(3, "t").await;
    let ok = app.post_frames(3, "t", frames(3, [1, 2, 3])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert_eq!(ok.json, json!({"accepted": 3, "duplicates": 0}));
    let again = app.post_frames(3, "t", frames(3, [3, 4])).await;
    assert_eq!(again.json, json!({"accepted": 1, "duplicates": 1}));
    let q = app.get("/api/v1/devices/3/readings?limit=1").await;
    assert_eq!(
        q.json["readings"][0]["values"],
        json!([{"kind": "temperature_c", "value": 21.5}, {"kind": "boot", "firmware": "1.2.3", "board": 1}])
    );
}

#[tokio::test]
async fn a_bad_frame_is_400_naming_its_byte_offset_and_nothing_is_stored() {
    let app = app().await;
    app.register(3, "t").await;
    let good = frames(3, [1]);
    let mut body = good.clone();
    let mut corrupt = frames(3, [2]);
    corrupt[5] ^= 0x40; // flips a payload bit: CRC mismatch
    body.extend_from_slice(&corrupt);
    let bad = app.post_frames(3, "t", body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json["offset"], good.len());
    assert!(
        bad.json["error"]
            .as_str()
            .unwrap()
            .contains(&format!("byte {}", good.len())),
        "{}",
        bad.json
    );

    let mut mixed = frames(3, [1]);
    mixed.extend(frames(4, [1]));
    let wrong = app.post_frames(3, "t", mixed).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json["offset"], good.len());
    assert!(wrong.json["error"].as_str().unwrap().contains("device 4"));

    let mut truncated = frames(3, [1]);
    truncated.extend_from_slice(&frames(3, [2])[..10]);
    let cut = app.post_frames(3, "t", truncated).await;
    assert_eq!(cut.status, StatusCode::BAD_REQUEST);
    assert_eq!(cut.json["offset"], good.len());

    let q = app.get("/api/v1/devices/3/readings").await;
    assert_eq!(
        q.json["readings"].as_array().unwrap().len(),
        0,
        "a rejected body must store nothing"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = app_with(|c| c.max_body_bytes = 1024).await;
    app.register(1, "t").await;
    let big = app.post_json(1, "t", batch(1..=100)).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        big.json["error"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes"),
        "{}",
        big.json
    );
    let app = app_with(|c| c.max_batch = 10).await;
    app.register(1, "t").await;
    let many = app.post_json(1, "t", batch(1..=11)).await;
    assert_eq!(many.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(many.json["error"].as_str().unwrap().contains("split"));
}

#[tokio::test]
async fn bad_or_missing_token_is_401_and_unknown_device_is_404() {
    let app = app().await;
    app.register(1, "right").await;
    let wrong = app.post_json(1, "wrong", batch([1])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
    let headers = [("content-type", "application/json")];
    let missing = app
        .call(
            Method::POST,
            "/api/v1/devices/1/readings",
            &headers,
            batch([1]).to_string(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let unknown = app.post_json(2, "right", batch([1])).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json["error"].as_str().unwrap().contains("register"));
    let auth = [
        ("authorization", "Bearer right"),
        ("content-type", "text/csv"),
    ];
    let csv = app
        .call(Method::POST, "/api/v1/devices/1/readings", &auth, "1,2")
        .await;
    assert_eq!(csv.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn auto_register_trusts_the_first_token_and_only_that_one() {
    let app = app_with(|c| c.auto_register = true).await;
    assert_eq!(
        app.post_json(5, "first", batch([1])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.post_json(5, "second", batch([2])).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post_json(5, "first", batch([2])).await.json["accepted"],
        1
    );
}

#[tokio::test]
async fn a_full_sqlite_store_answers_503_with_retry_after_and_keeps_serving() {
    // Real SQLite, made "full" by a 1 MiB size cap (PRAGMA max_page_count): the same error
    // path as a full disk.
    let app = app_with(|c| c.max_db_mb = Some(1)).await;
    app.register(1, "t").await;
    let mut full = None;
    for chunk in 0..100u32 {
        let a = app
            .post_json(1, "t", batch(chunk * 1000 + 1..=chunk * 1000 + 1000))
            .await;
        if a.status != StatusCode::OK {
            full = Some((chunk, a));
            break;
        }
    }
    let (chunk, a) = full.expect("a 1 MiB store never filled up");
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.json);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        a.json["error"].as_str().unwrap().contains("full"),
        "{}",
        a.json
    );
    // Every batch accepted before is still there, the failed one left nothing behind.
    let mut stored = 0;
    let mut uri = "/api/v1/devices/1/readings?limit=10000".to_owned();
    loop {
        let page = app.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK);
        stored += page.json["readings"].as_array().unwrap().len();
        match page.json["next_after_seq"].as_u64() {
            Some(n) => uri = format!("/api/v1/devices/1/readings?limit=10000&after_seq={n}"),
            None => break,
        }
    }
    assert_eq!(stored, chunk as usize * 1000);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

/// A stand-in for a store that is down (a database server that cannot be reached): the
/// real SQLite store cannot be made unreachable on demand.
struct DownStore;

fn down() -> StoreError {
    StoreError::Unavailable("stand-in store is down; retry".into())
}

impl Store for DownStore {
    async fn register(&self, _: NewDevice) -> Result<Registered, StoreError> {
        Err(down())
    }
    async fn devices(&self) -> Result<Vec<DeviceWithToken>, StoreError> {
        Ok(vec![DeviceWithToken {
            device: beacon_service::model::Device {
                id: 1,
                name: None,
                registered_at_ms: 0,
            },
            token: beacon_service::store::token_hash("t"),
        }])
    }
    async fn ingest(&self, _: Vec<StoredReading>) -> Result<Ingested, StoreError> {
        Err(down())
    }
    async fn query(&self, _: ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        Err(down())
    }
    async fn latest(&self) -> Result<Vec<StoredReading>, StoreError> {
        Err(down())
    }
    async fn ready(&self) -> Result<(), StoreError> {
        Err(down())
    }
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unavailable_store_is_503_with_retry_after_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(
        Config::for_db(dir.path().join("unused.db")),
        Arc::new(DownStore),
    )
    .await
    .unwrap();
    let app = App::on(state, dir);
    for answer in [
        app.post_json(1, "t", batch([1])).await,
        app.get("/api/v1/latest").await,
        app.get("/api/v1/devices/1/readings").await,
        app.get("/readyz").await,
    ] {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers["retry-after"], "1");
    }
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await;
    assert!(
        metrics
            .json
            .as_str()
            .unwrap()
            .contains("beacon_store_unavailable_total 1")
    );
}

#[tokio::test]
async fn a_closed_sqlite_store_refuses_writes_with_503() {
    let app = app().await;
    app.register(1, "t").await;
    assert_eq!(
        app.post_json(1, "t", batch([1])).await.status,
        StatusCode::OK
    );
    app.state.store.close().await.unwrap();
    let after = app.post_json(1, "t", batch([2])).await;
    assert_eq!(after.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Reopening the file finds the accepted reading.
    let reopened = app_with(|c| c.db = app.dir.path().join("t.db")).await;
    let q = reopened.get("/api/v1/devices/1/readings").await;
    assert_eq!(q.json["readings"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn service_pages_are_served() {
    let app = app().await;
    app.register(1, "t").await;
    app.post_json(1, "t", batch([1, 1])).await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await;
    let text = metrics.json.as_str().unwrap();
    assert!(
        text.contains("beacon_ingest_readings_total{result=\"accepted\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("beacon_ingest_readings_total{result=\"duplicate\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("beacon_store_ingest_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("route=\"/api/v1/devices/{id}/readings\",method=\"POST\",status=\"200\""),
        "{text}"
    );
    let openapi = app.get("/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.json["paths"]["/api/v1/devices/{id}/readings"]["post"].is_object());
    let dashboard = app.get("/").await;
    assert!(dashboard.json.as_str().unwrap().contains("/api/v1/stream"));
    let id = app.get("/healthz").await.headers["x-request-id"].clone();
    assert!(!id.is_empty());
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_db(dir.path().join("t.db"));
    config.request_timeout_secs = 1;
    let store = Slow(
        open_store(&config).await.unwrap(),
        std::time::Duration::from_secs(3),
    );
    let state = AppState::new(config, Arc::new(store)).await.unwrap();
    let app = App::on(state, dir);
    app.register(1, "t").await;
    let slow = app.post_json(1, "t", batch([1])).await;
    assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT);
    assert!(
        slow.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("--request-timeout-secs")),
        "{:?}",
        slow.json
    );
}

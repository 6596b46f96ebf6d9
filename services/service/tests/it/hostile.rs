//! The service on a hostile network (issue 14): clients that are slow, greedy or malicious,
//! and a store whose files disappear. Every test talks to 127.0.0.1 only, to the real router
//! (in-process, `oneshot`), the library's server on `127.0.0.1:0`, or the real binary, with the
//! real SQLite store in a temp dir; each is bounded in time.

use crate::app::{Answer, App, app_in, app_with};
use crate::shared::{post_readings, register};
use crate::spawn;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use beacon_service::Config;
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

// ---------------------------------------------------------------------------------------------
// Harnesses

impl App {
    async fn ingest(&self, id: u32, token: &str, body: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call(
            Method::POST,
            &format!("/api/v1/devices/{id}/readings"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
    }

    async fn register_body(&self, body: Value, auth: Option<&str>) -> Answer {
        let auth = auth.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        self.call(Method::POST, "/api/v1/devices", &headers, body.to_string())
            .await
    }
}

fn one_reading(seq: u32) -> String {
    json!({"readings": [{"seq": seq, "uptime_ms": 1, "values": [{"kind": "counter", "value": 1}]}]})
        .to_string()
}

/// The real binary's command (`crate::spawn`), its stderr piped for `wait_exit` to read.
fn bin_command(db: &Path, extra: &[&str]) -> Command {
    let mut cmd = spawn::command(db, extra);
    cmd.stderr(Stdio::piped());
    cmd
}

/// An ingest body of 500 readings (seqs from `chunk * 500`) with a 40-byte firmware string
/// each: about 40 KB a chunk, to fill a small store.
fn fat_batch(chunk: u32) -> String {
    let readings: Vec<Value> = (0..500u32)
        .map(|i| {
            json!({"seq": chunk * 500 + i, "uptime_ms": 1,
                   "values": [{"kind": "boot", "firmware": "x".repeat(40), "board": 1}]})
        })
        .collect();
    json!({ "readings": readings }).to_string()
}

/// Waits (bounded) for the child to exit; its exit status and stderr.
fn wait_exit(child: &mut Child, bound: Duration) -> (std::process::ExitStatus, String) {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status, err);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not exit within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// (2) --auto-register must not defeat --provisioning-token

#[test]
fn the_binary_refuses_auto_register_with_a_provisioning_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin_command(
        &dir.path().join("t.db"),
        &["--auto-register", "--provisioning-token", "prov"],
    )
    .spawn()
    .unwrap();
    let (status, stderr) = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!status.success(), "started anyway; stderr: {stderr}");
    assert!(
        stderr.contains("--auto-register and --provisioning-token are unsafe together"),
        "{stderr}"
    );
}

#[tokio::test]
async fn auto_register_never_registers_when_a_provisioning_token_is_set() {
    // A state built around `Config::check`: the handler still refuses trust on first use.
    let app = app_with(|c| {
        c.auto_register = true;
        c.provisioning_token = Some("prov".into());
    })
    .await;
    let attacker = app.ingest(55, "attacker", r#"{"readings":[]}"#).await;
    assert_eq!(
        attacker.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        attacker.json
    );
    // The operator's registration is not blocked by the attempt.
    let owner = app
        .register_body(json!({"id": 55, "token": "owner"}), Some("prov"))
        .await;
    assert_eq!(owner.status, StatusCode::CREATED, "{:?}", owner.json);
    assert_eq!(app.ingest(55, "owner", &one_reading(1)).await.status, 200);
}

#[tokio::test]
async fn an_auto_registering_request_whose_body_is_rejected_registers_nothing() {
    let app = app_with(|c| c.auto_register = true).await;
    let bad = app
        .ingest(5, "first", r#"{"readings":[{"seq":"x"}]}"#)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let tooth = app
        .call(
            Method::POST,
            "/api/v1/devices/5/readings",
            &[
                ("authorization", "Bearer first"),
                ("content-type", "text/csv"),
            ],
            "1,2",
        )
        .await;
    assert_eq!(tooth.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Had either registered id 5 with "first", this would be 401.
    let other = app.ingest(5, "second", &one_reading(1)).await;
    assert_eq!(other.status, StatusCode::OK, "{:?}", other.json);
    assert_eq!(other.json["accepted"], 1);
}

// ---------------------------------------------------------------------------------------------
// (4) the token is checked from the headers, before any body is read

/// A body that records whether anyone polled it, and never ends.
fn watched_body(polled: Arc<std::sync::atomic::AtomicBool>) -> Body {
    let stream = futures_util::stream::poll_fn(move |_| {
        polled.store(true, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::<Option<Result<axum::body::Bytes, std::io::Error>>>::Pending
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_request_without_the_right_token_is_refused_before_its_body_is_read() {
    let app = app_with(|c| c.provisioning_token = Some("prov".into())).await;
    let reg = app
        .register_body(json!({"id": 7, "token": "tok-seven"}), Some("prov"))
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let cases: [(&str, &str, Option<&str>, StatusCode); 4] = [
        (
            "ingest, no token",
            "/api/v1/devices/7/readings",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "ingest, wrong token",
            "/api/v1/devices/7/readings",
            Some("Bearer nope"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "ingest, unknown device",
            "/api/v1/devices/8/readings",
            Some("Bearer tok-seven"),
            StatusCode::NOT_FOUND,
        ),
        (
            "register, no provisioning token",
            "/api/v1/devices",
            None,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (what, uri, auth, expected) in cases {
        let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .header("content-length", "4194304");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(watched_body(Arc::clone(&polled))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), app.router.clone().oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer: the service waited for the body"))
            .unwrap();
        assert_eq!(resp.status(), expected, "{what}");
        assert!(
            !polled.load(std::sync::atomic::Ordering::SeqCst),
            "{what}: the body was read before the token was checked"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (3)+(8) durability honesty: a database file that disappears is noticed; readiness follows
// writes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_database_is_503_with_retry_after_and_the_binary_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("x");
    std::fs::create_dir(&sub).unwrap();
    let mut bin = spawn::launch(bin_command(&sub.join("x.db"), &[]));
    let client = reqwest::Client::new();
    register(&client, &bin.url, 7, "tok-seven").await;
    let ok = post_readings(&client, &bin.url, 7, "tok-seven", one_reading(1))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    std::fs::remove_dir_all(&sub).unwrap();
    let lost = post_readings(&client, &bin.url, 7, "tok-seven", one_reading(2))
        .await
        .unwrap();
    assert_eq!(
        lost.status(),
        503,
        "an ingest into a removed database was accepted"
    );
    assert!(lost.headers().contains_key("retry-after"));
    let body: Value = lost.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("was removed"),
        "{body}"
    );
    // It cannot recover: it shuts down on its own and says why.
    let (status, stderr) = wait_exit(&mut bin.child, Duration::from_secs(30));
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("was removed"), "{stderr}");
}

#[tokio::test]
async fn readyz_is_503_once_the_database_is_gone_even_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("x");
    std::fs::create_dir(&sub).unwrap();
    let config = Config::for_db(sub.join("x.db"));
    let app = app_in(config, dir).await;
    let store = Arc::clone(&app.state.store);
    assert_eq!(app.call(Method::GET, "/readyz", &[], "").await.status, 200);
    std::fs::remove_dir_all(&sub).unwrap();
    let ready = app.call(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.headers.contains_key("retry-after"));
    assert!(
        ready.json["error"]
            .as_str()
            .unwrap()
            .contains("was removed")
    );
    let reg = app
        .register_body(json!({"id": 1, "token": "t"}), None)
        .await;
    assert_eq!(
        reg.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reg.json
    );
    // The server side learns it too: the store reports a permanent failure.
    let failed = tokio::time::timeout(Duration::from_secs(5), store.failed()).await;
    assert!(failed.is_ok(), "store.failed() did not complete");
    assert!(store.close().await.is_err(), "closing a lost store said ok");
}

#[tokio::test]
async fn readyz_is_503_while_the_store_is_full() {
    let app = app_with(|c| c.max_db_mb = Some(1)).await;
    app.register_body(json!({"id": 1, "token": "t"}), None)
        .await;
    assert_eq!(app.call(Method::GET, "/readyz", &[], "").await.status, 200);
    let mut full = false;
    for chunk in 0..100u32 {
        let a = app.ingest(1, "t", &fat_batch(chunk)).await;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            full = true;
            break;
        }
        assert_eq!(a.status, StatusCode::OK);
    }
    assert!(full, "the 1 MiB store never filled up");
    let ready = app.call(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json["error"].as_str().unwrap().contains("full"),
        "{:?}",
        ready.json
    );
}

// ---------------------------------------------------------------------------------------------
// (1) slow and idle connections, a low open-file limit

/// Reads until the server closes the connection (EOF or reset), within `bound`.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, bound: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn::launch(bin_command(
        &dir.path().join("t.db"),
        &["--header-read-timeout-secs", "1"],
    ));
    let addr = bin.url.trim_start_matches("http://").to_owned();
    // Slowloris: a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert!(
        closed_by_server(&mut slow, Duration::from_secs(15)).await,
        "a connection that never finished its headers was held open"
    );
    // Keep-alive: one complete request, then silence.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(15)).await,
        "an idle keep-alive connection was held open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_keeps_answering_with_150_slowloris_sockets_under_a_128_fd_limit() {
    use tokio::io::AsyncWriteExt as _;
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("this test needs prlimit (util-linux) to lower the service's open-file limit");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=128", "--"])
        .arg(env!("CARGO_BIN_EXE_beacon-service"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--header-read-timeout-secs",
            "2",
            "--db",
        ])
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let bin = spawn::launch(cmd);
    let addr = bin.url.trim_start_matches("http://").to_owned();
    let mut sockets = Vec::new();
    for _ in 0..150 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        sockets.push(s);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..3 {
        let health = client
            .get(format!("{}/healthz", bin.url))
            .send()
            .await
            .expect("/healthz did not answer while slowloris sockets were open");
        assert_eq!(health.status(), 200);
    }
    drop(sockets);
}

// ---------------------------------------------------------------------------------------------
// (6) integers round-trip; (7) automatic ids cannot be used up by one request

#[tokio::test]
async fn uptime_ms_above_i64_max_reads_back_unchanged_from_json_and_frames() {
    use beacon_protocol::{Frame, MAX_WIRE_LEN, Reading, encode};
    let app = app_with(|_| {}).await;
    app.register_body(json!({"id": 7, "token": "tok-seven"}), None)
        .await;
    let max = u64::MAX;
    let body = json!({"readings": [{"seq": 1, "uptime_ms": max, "values": []},
                                   {"seq": 2, "uptime_ms": (1u64 << 63) + 5, "values": []}]});
    let a = app.ingest(7, "tok-seven", &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let frame = Frame::new(7, 3, max - 1).with(Reading::Counter(1)).unwrap();
    let mut buf = [0u8; MAX_WIRE_LEN];
    let n = encode(&frame, &mut buf).unwrap();
    let f = app
        .call(
            Method::POST,
            "/api/v1/devices/7/readings",
            &[
                ("authorization", "Bearer tok-seven"),
                ("content-type", "application/x-beacon-frames"),
            ],
            buf[..n].to_vec(),
        )
        .await;
    assert_eq!(f.status, 200, "{:?}", f.json);
    let got = app
        .call(Method::GET, "/api/v1/devices/7/readings", &[], "")
        .await;
    let uptimes: Vec<u64> = got.json["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uptime_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(uptimes, [max, (1u64 << 63) + 5, max - 1]);
}

#[tokio::test]
async fn one_registration_of_the_largest_id_does_not_use_up_automatic_ids() {
    let app = app_with(|_| {}).await;
    let top = app
        .register_body(json!({"id": 4294967295u32, "token": "t"}), None)
        .await;
    assert_eq!(top.status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = app.register_body(json!({"name": "auto"}), None).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json);
        ids.push(a.json["id"].as_u64().unwrap());
    }
    assert_eq!(ids, [1, 2, 3]);
    // Gaps are filled: the smallest free id comes next.
    let five = app
        .register_body(json!({"id": 5, "token": "t"}), None)
        .await;
    assert_eq!(five.status, StatusCode::CREATED);
    let next = app.register_body(json!({}), None).await;
    assert_eq!(next.json["id"], 4);
    let after = app.register_body(json!({}), None).await;
    assert_eq!(after.json["id"], 6);
}

// ---------------------------------------------------------------------------------------------
// (5) tokens hashed at rest; reads closed when provisioning is on

fn stored_tokens(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT token FROM devices ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_never_echoed() {
    let app = app_with(|_| {}).await;
    let chosen = app
        .register_body(json!({"id": 7, "token": "tok-seven"}), None)
        .await;
    assert_eq!(chosen.status, StatusCode::CREATED);
    assert!(
        !chosen.json.to_string().contains("tok-seven"),
        "{:?}",
        chosen.json
    );
    let again = app
        .register_body(json!({"id": 7, "token": "tok-seven"}), None)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(!again.json.to_string().contains("tok-seven"));
    // A generated token is handed out once, in the answer that created it.
    let generated = app.register_body(json!({}), None).await;
    let token = generated.json["token"].as_str().unwrap().to_owned();
    let id = generated.json["id"].as_u64().unwrap() as u32;
    assert_eq!(app.ingest(id, &token, &one_reading(1)).await.status, 200);
    assert_eq!(
        app.ingest(7, "tok-seven", &one_reading(1)).await.status,
        200
    );
    let stored = stored_tokens(&app.dir.path().join("t.db"));
    assert_eq!(stored.len(), 2);
    for t in &stored {
        assert!(t.starts_with("sha256:") && t.len() == 71, "{t}");
        assert!(t != "tok-seven" && *t != token);
    }
}

#[tokio::test]
async fn plaintext_tokens_of_an_older_database_are_hashed_in_place_and_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        // The schema as the service wrote it before tokens were hashed.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE devices (id INTEGER PRIMARY KEY, token TEXT NOT NULL, name TEXT,
                                   registered_at_ms INTEGER NOT NULL);
             INSERT INTO devices VALUES (7, 'tok-seven', NULL, 1), (8, 'tok-eight', 'b', 2);",
        )
        .unwrap();
    }
    let config = Config::for_db(&db);
    let app = app_in(config, dir).await;
    let stored = stored_tokens(&db);
    assert!(
        stored.iter().all(|t| t.starts_with("sha256:")),
        "{stored:?}"
    );
    assert_eq!(
        app.ingest(7, "tok-seven", &one_reading(1)).await.status,
        200
    );
    assert_eq!(
        app.ingest(8, "tok-eight", &one_reading(1)).await.status,
        200
    );
    assert_eq!(
        app.ingest(8, "tok-seven", &one_reading(2)).await.status,
        401
    );
    let again = app
        .register_body(json!({"id": 8, "token": "tok-eight"}), None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.json);
}

#[tokio::test]
async fn reads_need_a_token_when_provisioning_is_on() {
    let app = app_with(|c| {
        c.provisioning_token = Some("prov".into());
        c.read_token = Some("reader".into());
    })
    .await;
    app.register_body(json!({"id": 7, "token": "tok-seven"}), Some("prov"))
        .await;
    for uri in [
        "/api/v1/devices",
        "/api/v1/devices/7/readings",
        "/api/v1/latest",
        "/api/v1/stream",
    ] {
        let none = app.call(Method::GET, uri, &[], "").await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{uri}");
        let device = app
            .call(
                Method::GET,
                uri,
                &[("authorization", "Bearer tok-seven")],
                "",
            )
            .await;
        assert_eq!(device.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    for token in ["Bearer reader", "Bearer prov"] {
        let ok = app
            .call(
                Method::GET,
                "/api/v1/latest",
                &[("authorization", token)],
                "",
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{token}");
    }
    // Open reads stay the default without a provisioning or read token.
    let open = app_with(|_| {}).await;
    assert_eq!(
        open.call(Method::GET, "/api/v1/latest", &[], "")
            .await
            .status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// (9)+(10) the contract: JSON errors everywhere, nulls and foreign keys refused, fast 413

#[tokio::test]
async fn unknown_paths_and_methods_answer_the_json_error_shape() {
    let app = app_with(|_| {}).await;
    let missing = app.call(Method::GET, "/nope", &[], "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.json["error"].as_str().unwrap().contains("/nope"),
        "{:?}",
        missing.json
    );
    let method = app.call(Method::DELETE, "/api/v1/devices", &[], "").await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        method.json["error"].as_str().unwrap().contains("DELETE"),
        "{:?}",
        method.json
    );
}

#[tokio::test]
async fn nulls_foreign_kind_keys_and_other_content_types_are_refused_naming_the_field() {
    let app = app_with(|_| {}).await;
    let null_token = app
        .register_body(json!({"id": 3, "token": null}), None)
        .await;
    assert_eq!(null_token.status, StatusCode::BAD_REQUEST);
    assert_eq!(null_token.json["field"], "token");
    let null_id = app.register_body(json!({"id": null}), None).await;
    assert_eq!(null_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(null_id.json["field"], "id");
    let csv = app
        .call(
            Method::POST,
            "/api/v1/devices",
            &[("content-type", "text/csv")],
            "id,token",
        )
        .await;
    assert_eq!(csv.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.register_body(json!({"id": 7, "token": "tok-seven"}), None)
        .await;
    let null_device =
        json!({"readings": [{"device_id": null, "seq": 1, "uptime_ms": 1, "values": []}]});
    let a = app.ingest(7, "tok-seven", &null_device.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json["field"], "readings[0].device_id");
    let foreign = json!({"readings": [{"seq": 1, "uptime_ms": 1,
        "values": [{"kind": "counter", "value": 1, "firmware": "1.2.3"}]}]});
    let f = app.ingest(7, "tok-seven", &foreign.to_string()).await;
    assert_eq!(f.status, StatusCode::BAD_REQUEST, "{:?}", f.json);
    assert!(
        f.json["error"]
            .as_str()
            .unwrap()
            .contains("`firmware` is not a field of kind `counter`"),
        "{:?}",
        f.json
    );
    assert_eq!(f.json["field"], "readings[0].values[0]");
    let q = app
        .call(Method::GET, "/api/v1/devices/7/readings?limit=abc", &[], "")
        .await;
    assert_eq!(q.status, StatusCode::BAD_REQUEST);
    assert_eq!(q.json["field"], "limit", "{:?}", q.json);
    let q = app
        .call(Method::GET, "/api/v1/stream?devise=1", &[], "")
        .await;
    assert_eq!(q.status, StatusCode::BAD_REQUEST);
    assert_eq!(q.json["field"], "devise", "{:?}", q.json);
    // Nothing of the refused requests was stored.
    let stored = app
        .call(Method::GET, "/api/v1/devices/7/readings", &[], "")
        .await;
    assert_eq!(stored.json["readings"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_is_413_at_once_not_a_408_after_the_request_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn::launch(bin_command(&dir.path().join("t.db"), &[]));
    let addr = bin.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/devices/7/readings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t\r\n\
          content-type: application/json\r\ncontent-length: 10000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    // The request timeout is 30 s: an answer within 10 s is not the timeout's 408.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer within 10 s: the service waited for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("--max-body-bytes"), "{head}");
}

// ---------------------------------------------------------------------------------------------
// (4) measured: tokenless large bodies cost the service no memory

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Peak RSS cap for the service under 40 concurrent tokenless 4 MiB ingests. Before the token
/// was checked ahead of the body, the same load took it from ~45 to ~199 MB (issue 14).
const TOKENLESS_PEAK_RSS_CAP_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_tokenless_4_mib_ingests_are_refused_and_peak_rss_stays_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn::launch(bin_command(&dir.path().join("t.db"), &[]));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    register(&client, &bin.url, 7, "tok-seven").await;
    let body = axum::body::Bytes::from(vec![b' '; 4 * 1024 * 1024 - 1]);
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let req = client
                .post(format!("{}/api/v1/devices/7/readings", bin.url))
                .header("content-type", "application/json")
                .body(body.clone());
            tokio::spawn(req.send())
        })
        .collect();
    let mut refused = 0;
    for r in requests {
        match r.await.unwrap() {
            // 429 when more than --max-unauthenticated-per-ip of them are in flight at once.
            Ok(resp) => {
                assert!(
                    [401, 429].contains(&resp.status().as_u16()),
                    "{}",
                    resp.status()
                );
                refused += 1;
            }
            // The service answers 401 and closes without reading the body, so a client still
            // sending may see the connection reset instead of the answer.
            Err(e) => assert!(!e.is_timeout(), "{e}"),
        }
    }
    assert!(refused > 0, "no request got its 401");
    let peak = peak_rss_kib(bin.child.id());
    println!(
        "service peak RSS: {} MiB ({refused}/40 answers read)",
        peak / 1024
    );
    assert!(
        peak < TOKENLESS_PEAK_RSS_CAP_KIB,
        "peak RSS {peak} KiB is over the cap of {TOKENLESS_PEAK_RSS_CAP_KIB} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// (9) the contract: objects are objects, integers are integers however JSON spells them

#[tokio::test]
async fn arrays_in_place_of_objects_are_refused_naming_the_field() {
    let app = app_with(|_| {}).await;
    app.register_body(json!({"id": 7, "token": "tok-seven"}), None)
        .await;
    // serde's derive reads a struct from an array of its fields in order: this batch was
    // stored as one reading before.
    let whole = app.ingest(7, "tok-seven", "[[[null,5,1,null,[]]]]").await;
    assert_eq!(whole.status, StatusCode::BAD_REQUEST, "{:?}", whole.json);
    assert!(
        whole.json["error"].as_str().unwrap().contains("sequence"),
        "{:?}",
        whole.json
    );
    let reading = app
        .ingest(7, "tok-seven", r#"{"readings":[[null,5,1,null,[]]]}"#)
        .await;
    assert_eq!(
        reading.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        reading.json
    );
    assert_eq!(reading.json["field"], "readings[0]");
    let value = app
        .ingest(
            7,
            "tok-seven",
            r#"{"readings":[{"seq":1,"uptime_ms":1,"values":[["counter",1]]}]}"#,
        )
        .await;
    assert_eq!(value.status, StatusCode::BAD_REQUEST, "{:?}", value.json);
    assert_eq!(value.json["field"], "readings[0].values[0]");
    let reg = app.register_body(json!([8, "tok-eight"]), None).await;
    assert_eq!(reg.status, StatusCode::BAD_REQUEST, "{:?}", reg.json);
    let stored = app
        .call(Method::GET, "/api/v1/devices/7/readings", &[], "")
        .await;
    assert_eq!(
        stored.json["readings"],
        json!([]),
        "a refused body was stored"
    );
    let devices = app.call(Method::GET, "/api/v1/devices", &[], "").await;
    assert_eq!(devices.json["devices"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn integral_floats_are_the_same_integers_and_fractions_are_refused() {
    let app = app_with(|_| {}).await;
    // JSON Schema's "integer" admits 338.0: so does the service, everywhere it takes one.
    let reg = app
        .register_body(json!({"id": 7.0, "token": "tok-seven"}), None)
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{:?}", reg.json);
    assert_eq!(reg.json["id"], json!(7));
    let body = r#"{"readings":[{"device_id":7.0,"boot":2.0,"seq":338.0,"uptime_ms":5.0,
        "sampled_at_ms":1000.0,"values":[{"kind":"counter","value":17.0},
        {"kind":"status","value":1.0},{"kind":"boot","firmware":"1.2.3","board":1.0},
        {"kind":"unknown","code":200.0,"len":3.0}]}]}"#;
    let a = app.ingest(7, "tok-seven", body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    assert_eq!(a.json["accepted"], 1);
    let q = app
        .call(
            Method::GET,
            "/api/v1/devices/7/readings?limit=5.0&from=0.0&after_boot=0&after_seq=0.0",
            &[],
            "",
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{:?}", q.json);
    let r = &q.json["readings"][0];
    // Answered as integers, as stored.
    assert_eq!(r["seq"], json!(338));
    assert!(r["seq"].is_u64(), "{r}");
    assert_eq!(r["boot"], json!(2));
    assert_eq!(r["values"][0], json!({"kind": "counter", "value": 17}));
    // A fraction is not an integer, and an integral float past 2^53 cannot say which one.
    for (reading, field) in [
        (
            json!({"seq": 338.5, "uptime_ms": 1, "values": []}),
            "readings[0].seq",
        ),
        (
            json!({"seq": 1, "uptime_ms": 9_007_199_254_740_994.0_f64, "values": []}),
            "readings[0].uptime_ms",
        ),
        (
            json!({"seq": -1.0, "uptime_ms": 1, "values": []}),
            "readings[0].seq",
        ),
        (
            json!({"seq": 1, "uptime_ms": 1, "values": [{"kind": "board", "value": 1}]}),
            "readings[0].values[0].kind",
        ),
    ] {
        let a = app
            .ingest(
                7,
                "tok-seven",
                &json!({ "readings": [reading] }).to_string(),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{reading}: {:?}", a.json);
        assert_eq!(a.json["field"], field, "{reading}: {:?}", a.json);
    }
    for (query, field) in [
        ("limit=2.5", "limit"),
        ("from=x", "from"),
        ("to=1e400", "to"),
    ] {
        let q = app
            .call(
                Method::GET,
                &format!("/api/v1/devices/7/readings?{query}"),
                &[],
                "",
            )
            .await;
        assert_eq!(q.status, StatusCode::BAD_REQUEST, "{query}: {:?}", q.json);
        assert_eq!(q.json["field"], field, "{query}: {:?}", q.json);
    }
}

// ---------------------------------------------------------------------------------------------
// (10) smaller: registration's content type, the WAL under --max-db-mb, SIGTERM on a full disk

#[tokio::test]
async fn registration_enforces_the_content_type_like_ingest() {
    let app = app_with(|_| {}).await;
    let untyped = app
        .call(
            Method::POST,
            "/api/v1/devices",
            &[],
            json!({"id": 1, "token": "t"}).to_string(),
        )
        .await;
    assert_eq!(
        untyped.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{:?}",
        untyped.json
    );
    assert!(
        untyped.json["error"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{:?}",
        untyped.json
    );
    // No body at all: the service picks the id and the token.
    let bare = app.call(Method::POST, "/api/v1/devices", &[], "").await;
    assert_eq!(bare.status, StatusCode::CREATED, "{:?}", bare.json);
    assert!(bare.json["token"].is_string());
}

/// The database file, its -wal and its -shm together.
fn files_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test]
async fn max_db_mb_counts_the_wal_and_shm_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mut config = Config::for_db(&db);
    config.max_db_mb = Some(1);
    let app = app_in(config, dir).await;
    app.register_body(json!({"id": 1, "token": "t"}), None)
        .await;
    let mut full = false;
    let mut peak = 0;
    for chunk in 0..100u32 {
        let a = app.ingest(1, "t", &fat_batch(chunk)).await;
        peak = peak.max(files_bytes(&db));
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            full = true;
            break;
        }
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    }
    assert!(full, "the 1 MiB store never filled up");
    let on_disk = files_bytes(&db);
    println!("db + wal + shm at rest: {on_disk} bytes; largest seen after a commit: {peak}");
    assert!(
        on_disk <= 1024 * 1024,
        "the database, its WAL and -shm take {on_disk} bytes under --max-db-mb 1"
    );
    assert!(
        peak <= 1024 * 1024,
        "after a commit the files took {peak} bytes under --max-db-mb 1"
    );
}

/// A 1 MiB tmpfs, unmounted on drop.
struct Tmpfs {
    at: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("full");
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&at)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "cannot mount a 1 MiB tmpfs at {} (this test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { at, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a 1 MiB tmpfs; cargo xtask test runs it (as root in CI)"]
async fn needs_root_sigterm_on_a_full_disk_exits_0_and_every_accepted_reading_is_kept() {
    let fs = Tmpfs::mount();
    let db = fs.at.join("t.db");
    let mut bin = spawn::launch(bin_command(&db, &[]));
    let client = reqwest::Client::new();
    register(&client, &bin.url, 1, "t").await;
    let mut accepted = 0u64;
    let mut full = false;
    for chunk in 0..200u32 {
        let a = post_readings(&client, &bin.url, 1, "t", fat_batch(chunk))
            .await
            .unwrap();
        if a.status() == 503 {
            full = true;
            break;
        }
        assert_eq!(a.status(), 200);
        let outcome: Value = a.json().await.unwrap();
        accepted += outcome["accepted"].as_u64().unwrap();
    }
    assert!(full, "the 1 MiB disk never filled up");
    assert!(accepted > 0);
    spawn::sigterm(&bin.child);
    let (status, stderr) = wait_exit(&mut bin.child, Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGTERM on a full disk: exit status {status}; stderr: {stderr}"
    );
    // Nothing answered "accepted" was lost: a copy of the files on a disk with room holds them
    // all (SQLite replays the WAL the checkpoint could not fold in).
    let copy = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", db.display());
        if Path::new(&from).exists() {
            std::fs::copy(&from, copy.path().join(format!("t.db{suffix}"))).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.path().join("t.db")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    let stored = u64::try_from(stored).unwrap();
    assert_eq!(stored, accepted, "accepted {accepted}, kept {stored}");
}

// ---------------------------------------------------------------------------------------------
// (9) request heads over the limits; (4) unauthenticated work per address

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_the_limits_get_414_and_431_with_the_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn::launch(bin_command(&dir.path().join("t.db"), &[]));
    let client = reqwest::Client::new();
    let long_uri = format!("{}/healthz?pad={}", bin.url, "a".repeat(9 * 1024));
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..150 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_static("1"),
        );
    }
    let big = "b".repeat(40 * 1024);
    let cases = [
        ("long request target", client.get(&long_uri), 414),
        (
            "150 header fields",
            client.get(format!("{}/healthz", bin.url)).headers(many),
            431,
        ),
        (
            "a 40 KiB header",
            client
                .get(format!("{}/healthz", bin.url))
                .header("x-big", &big),
            431,
        ),
    ];
    for (what, req, expected) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{what}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ct, "application/json", "{what}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("limit"),
            "{what}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_beyond_the_per_address_limit_get_429() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn::launch(bin_command(
        &dir.path().join("t.db"),
        &["--max-unauthenticated-per-ip", "2"],
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    register(&client, &bin.url, 7, "tok-seven").await;
    // Two open registrations whose bodies never come: unauthenticated work in flight.
    let addr = bin.url.trim_start_matches("http://").to_owned();
    let slow_registration = || async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /api/v1/devices HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n",
        )
        .await
        .unwrap();
        s
    };
    let mut slow = vec![slow_registration().await, slow_registration().await];
    let latest = format!("{}/api/v1/latest", bin.url);
    // Bounded wait until the server holds both (no fixed sleep). A probe can take a slot
    // before a slow request is dispatched; that slow one is then answered 429 itself and is
    // replaced by a new one.
    let mut refused = None;
    for _ in 0..200 {
        for s in &mut slow {
            let mut buf = [0u8; 512];
            if !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                *s = slow_registration().await;
            }
        }
        let r = client.get(&latest).send().await.unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("a third unauthenticated request was never refused with 429");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--max-unauthenticated-per-ip"),
        "{body}"
    );
    // A device with its token, and the probes, are not held up.
    let ok = post_readings(&client, &bin.url, 7, "tok-seven", one_reading(1))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let health = client
        .get(format!("{}/healthz", bin.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Once the slow ones are gone, unauthenticated requests are served again.
    drop(slow);
    let mut served = false;
    for _ in 0..200 {
        if client.get(&latest).send().await.unwrap().status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "the slots of closed connections were never given back"
    );
}

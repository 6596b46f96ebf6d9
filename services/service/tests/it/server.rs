//! The library's server on a real socket (127.0.0.1:0), in-process: the SSE stream, and
//! graceful shutdown draining in-flight requests.

use crate::shared::{Running, all_readings, register, serve_on};
use beacon_service::store::Store;
use beacon_service::{Config, open_store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::Slow;

async fn start(config: Config, ingest_delay: Duration) -> Running {
    let store = Slow(open_store(&config).await.unwrap(), ingest_delay);
    serve_on(config, Arc::new(store)).await
}

fn reading(seq: u32) -> serde_json::Value {
    json!({"seq": seq, "uptime_ms": 1, "values": [{"kind": "temperature_c", "value": 20.0 + f64::from(seq)}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_stream_delivers_new_readings_and_ends_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(Config::for_db(dir.path().join("t.db")), Duration::ZERO).await;
    let client = reqwest::Client::new();
    register(&client, &app.url, 1, "t").await;
    let mut stream = client
        .get(format!("{}/api/v1/stream?device_id=1", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let post = client
        .post(format!("{}/api/v1/devices/1/readings", app.url))
        .bearer_auth("t")
        .json(&json!({"readings": [reading(1), reading(2)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("stream ended before the event"),
        ));
    }
    assert!(text.starts_with("event: readings\ndata: "), "{text}");
    let data: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(data.as_array().unwrap().len(), 2);
    assert_eq!(data[1]["seq"], 2);

    // Shutdown ends the open stream instead of waiting on it forever.
    app.stop.send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "the SSE stream did not end on shutdown");
    tokio::time::timeout(Duration::from_secs(5), app.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_ingests_and_every_accepted_reading_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let app = start(Config::for_db(&db), Duration::from_millis(400)).await;
    let client = reqwest::Client::new();
    register(&client, &app.url, 1, "t").await;
    let requests: Vec<_> = (0..20u32)
        .map(|i| {
            let req = client
                .post(format!("{}/api/v1/devices/1/readings", app.url))
                .bearer_auth("t")
                .json(&json!({"readings": [reading(i * 2), reading(i * 2 + 1)]}));
            tokio::spawn(req.send())
        })
        .collect();
    // Shutdown begins while all 20 sit in the slow store.
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.stop.send(()).unwrap();
    for r in requests {
        let resp = r
            .await
            .unwrap()
            .expect("an in-flight request was cut off by shutdown");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap()["accepted"],
            2
        );
    }
    app.server.await.unwrap().unwrap();
    // New connections are refused after shutdown.
    assert!(
        client
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .is_err()
    );

    // Reopen the file: every accepted reading is there.
    let store = open_store(&Config::for_db(&db)).await.unwrap();
    let stored = Store::query(&store, all_readings(1)).await.unwrap();
    assert_eq!(
        stored.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..40).collect::<Vec<_>>()
    );
}

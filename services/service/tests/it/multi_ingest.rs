//! `POST /api/v1/readings`, the multi-device ingest, in-process: the real router and the real
//! SQLite store (in a temp dir), driven with `oneshot`. Each entry is authorised by its own
//! device token and answered on its own; the valid ones are committed.

use crate::app::{App, app_with};
use axum::http::{Method, StatusCode};
use beacon_service::api::MAX_INGEST_ENTRIES;
use serde_json::{Value, json};

impl App {
    async fn call_ct(
        &self,
        method: Method,
        uri: &str,
        ctype: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let a = self
            .call(method, uri, &[("content-type", ctype)], body)
            .await;
        (a.status, a.json)
    }

    async fn register_device(&self, id: u32, token: &str) {
        let body = json!({"id": id, "token": token}).to_string();
        let (status, _) = self
            .call_ct(Method::POST, "/api/v1/devices", "application/json", body)
            .await;
        assert!(status.is_success(), "{status}");
    }

    async fn ingest_many(&self, body: &Value) -> (StatusCode, Value) {
        self.call_ct(
            Method::POST,
            "/api/v1/readings",
            "application/json",
            body.to_string(),
        )
        .await
    }

    async fn stored_seqs(&self, id: u32) -> Vec<u64> {
        let (status, page) = self
            .call_ct(
                Method::GET,
                &format!("/api/v1/devices/{id}/readings"),
                "application/json",
                String::new(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    }
}

fn readings(seqs: impl IntoIterator<Item = u32>) -> Value {
    seqs.into_iter()
        .map(|seq| json!({"seq": seq, "uptime_ms": 10, "values": [{"kind": "counter", "value": seq}]}))
        .collect()
}

fn entry(id: u32, token: &str, seqs: impl IntoIterator<Item = u32>) -> Value {
    json!({"device_id": id, "token": token, "readings": readings(seqs)})
}

#[tokio::test]
async fn each_entry_is_authorised_and_answered_on_its_own_and_the_valid_ones_are_stored() {
    let app = app_with(|_| {}).await;
    app.register_device(1, "token-1").await;
    app.register_device(2, "token-2").await;
    app.register_device(4, "token-4").await;
    let mut wrong_device = entry(4, "token-4", [0]);
    wrong_device["readings"][0]["device_id"] = json!(5);
    let body = json!({"batches": [
        entry(1, "token-1", [0, 1, 2]),
        entry(2, "not-token-2", [0]),
        entry(3, "token-3", [0]),
        wrong_device,
        entry(1, "token-1", [3]),
    ]});
    let (status, answer) = app.ingest_many(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let got: Vec<(u64, u64, Option<&str>)> = results
        .iter()
        .map(|r| {
            (
                r["device_id"].as_u64().unwrap(),
                r["status"].as_u64().unwrap(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, 200, None),
            (2, 401, Some("batches[1].token")),
            (3, 404, Some("batches[2].device_id")),
            (4, 400, Some("batches[3].readings[0].device_id")),
            (1, 400, Some("batches[4].device_id")),
        ]
    );
    assert_eq!(
        (
            results[0]["accepted"].clone(),
            results[0]["duplicates"].clone()
        ),
        (json!(3), json!(0))
    );
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("register it first")
    );
    assert_eq!(app.stored_seqs(1).await, [0, 1, 2]);
    assert!(app.stored_seqs(2).await.is_empty());
    assert!(app.stored_seqs(4).await.is_empty());

    // A retry of the whole request: device 1's readings are duplicates, nothing new stored.
    let (status, answer) = app.ingest_many(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["results"][0]["accepted"], 0);
    assert_eq!(answer["results"][0]["duplicates"], 3);
    assert_eq!(app.stored_seqs(1).await, [0, 1, 2]);
}

#[tokio::test]
async fn the_request_is_bounded_and_refused_as_a_whole_only_when_its_shape_is_wrong() {
    let app = app_with(|c| c.max_batch = 10).await;
    app.register_device(1, "token-1").await;
    let too_many: Vec<Value> = (0..=MAX_INGEST_ENTRIES as u32)
        .map(|id| entry(id, "t", []))
        .collect();
    let (status, e) = app.ingest_many(&json!({ "batches": too_many })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("split the request"),
        "{e}"
    );
    assert_eq!(e["field"], "batches");

    let over = json!({"batches": [entry(1, "token-1", 0..6), entry(2, "t", 0..5)]});
    let (status, e) = app.ingest_many(&over).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(e["error"].as_str().unwrap().contains("--max-batch"), "{e}");

    let (status, e) = app
        .ingest_many(
            &json!({"batches": [{"device_id": 1, "token": "token-1", "readings": [{"seq": -1}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["field"], "batches[0].readings[0].seq");

    let (status, e) = app
        .ingest_many(&json!({"batches": [entry(1, "token-1", [0])], "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");

    let (status, e) = app
        .call_ct(
            Method::POST,
            "/api/v1/readings",
            "application/x-beacon-frames",
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/devices/{id}/readings"),
        "{e}"
    );
    assert!(app.stored_seqs(1).await.is_empty());
}

#[tokio::test]
async fn auto_register_registers_an_unknown_device_of_a_valid_entry_with_its_token() {
    let app = app_with(|c| c.auto_register = true).await;
    let body = json!({"batches": [entry(9, "token-9", [0, 1])]});
    let (status, answer) = app.ingest_many(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["status"], 200);
    assert_eq!(app.stored_seqs(9).await, [0, 1]);
    // Now known: another token for it is refused, its own still works.
    let (_, answer) = app
        .ingest_many(&json!({"batches": [entry(9, "other", [2])]}))
        .await;
    assert_eq!(answer["results"][0]["status"], 401);
    assert_eq!(answer["results"][0]["field"], "batches[0].token");
    let (_, answer) = app
        .ingest_many(&json!({"batches": [entry(9, "token-9", [2])]}))
        .await;
    assert_eq!(answer["results"][0]["accepted"], 1);
    assert_eq!(app.stored_seqs(9).await, [0, 1, 2]);
}

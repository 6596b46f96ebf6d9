//! Protocol v2's boot identity in the service: the dedup key is `(device_id, boot, seq)`, the
//! query API returns and pages by `boot`, and a database written by the first release (schema
//! version 1, dedup on `(device_id, seq)`) migrates in place without losing a row.
//!
//! `tests/data/v1-schema.db` was written by the service binary of the commit before protocol
//! v2 (schema version 1), not by this code: registered devices 3 (`tok-three`, name
//! `kitchen`) and 4 (`tok-four`), then posted device 3 seq 0..=9 as JSON (seq 0 a boot value,
//! the rest temperature, humidity, counter; `sampled_at_ms` 1764600000000 + 100 * seq) and
//! device 4 seq 0..=4 as version 1 wire frames (status 1, counter seq), and stopped it with
//! SIGTERM (WAL checkpointed). The tests copy it; the fixture is never opened in place.

use crate::shared::{Running, all_readings, get_json, register, serve_on};
use beacon_protocol::{Frame, Reading, wire::encode_to_vec};
use beacon_service::model::{StoredReading, Value};
use beacon_service::store::Store;
use beacon_service::store::sqlite::{MIGRATIONS, SCHEMA_VERSION};
use beacon_service::{Config, open_store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1-schema.db");

/// A copy of the v1 fixture in a temp dir.
fn v1_copy(dir: &Path) -> PathBuf {
    let db = dir.join("v1.db");
    std::fs::copy(FIXTURE, &db).expect("copy the v1 fixture");
    db
}

fn user_version(db: &Path) -> u32 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn reading(device_id: u32, boot: u32, seq: u32) -> StoredReading {
    StoredReading {
        device_id,
        boot,
        seq,
        uptime_ms: u64::from(seq) * 100,
        sampled_at_ms: 1_800_000_000_000 + i64::from(seq),
        received_at_ms: 1_800_000_000_000 + i64::from(seq),
        values: vec![Value::Counter { value: seq }],
    }
}

#[test]
fn migrations_are_numbered_one_step_per_version() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1, "step {i}: {}", m.what);
    }
    assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    const { assert!(SCHEMA_VERSION >= 2) };
}

#[tokio::test]
async fn v1_database_from_the_first_release_migrates_in_place_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = v1_copy(dir.path());
    // What the first release left: schema version 1, 15 readings, dedup on (device_id, seq).
    assert_eq!(user_version(&db), 1);
    let before: Vec<(u32, u32, i64, i64, String)> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT device_id, seq, uptime_ms, sampled_at_ms, vals FROM readings ORDER BY device_id, seq")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(before.len(), 15);

    let store = open_store(&Config::for_db(&db)).await.unwrap();
    // Every row is there, field for field, with boot 0.
    let mut after = Store::query(&store, all_readings(3)).await.unwrap();
    after.extend(Store::query(&store, all_readings(4)).await.unwrap());
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.boot, 0, "{new:?}");
        assert_eq!((new.device_id, new.seq), (old.0, old.1));
        assert_eq!((new.uptime_ms as i64, new.sampled_at_ms), (old.2, old.3));
        assert_eq!(serde_json::to_string(&new.values).unwrap(), old.4);
    }
    assert_eq!(
        after[0].values,
        [Value::Boot {
            firmware: "0.1.0".into(),
            board: 1
        }]
    );
    let devices = Store::devices(&store).await.unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.device.id, d.device.name.clone()))
            .collect::<Vec<_>>(),
        [(3, Some("kitchen".to_owned())), (4, None)]
    );

    // The new key: device 3 rebooted (boot 0xB007, seq from 0 again) is new data; a retry of
    // an old row (boot 0) is still a duplicate.
    let rebooted: Vec<_> = (0..10).map(|seq| reading(3, 0xB007, seq)).collect();
    let got = Store::ingest(&store, rebooted.clone()).await.unwrap();
    assert_eq!((got.accepted.len(), got.duplicates), (10, 0));
    let got = Store::ingest(&store, vec![reading(3, 0, 5), reading(3, 0xB007, 5)])
        .await
        .unwrap();
    assert_eq!((got.accepted.len(), got.duplicates), (0, 2));
    assert_eq!(
        Store::query(&store, all_readings(3)).await.unwrap().len(),
        20
    );
    Store::close(&store).await.unwrap();
    drop(store);

    assert_eq!(user_version(&db), SCHEMA_VERSION);
    let pk: Vec<String> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info('readings') WHERE pk > 0 ORDER BY pk")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(pk, ["device_id", "boot", "seq"]);

    // Opening the migrated file again runs nothing and finds the same rows.
    let store = open_store(&Config::for_db(&db)).await.unwrap();
    assert_eq!(
        Store::query(&store, all_readings(3)).await.unwrap().len(),
        20
    );
    assert_eq!(
        Store::query(&store, all_readings(4)).await.unwrap().len(),
        5
    );
    Store::close(&store).await.unwrap();
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let store = open_store(&Config::for_db(&db)).await.unwrap();
    Store::close(&store).await.unwrap();
    drop(store);
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = open_store(&Config::for_db(&db))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
            && err.contains(&SCHEMA_VERSION.to_string()),
        "{err}"
    );
}

/// The in-process server on a database at `db`, with device 5 (token `t5`) registered.
struct App {
    running: Running,
    client: reqwest::Client,
}

async fn start(db: &Path) -> App {
    let config = Config::for_db(db);
    let store = open_store(&config).await.unwrap();
    let running = serve_on(config, Arc::new(store)).await;
    let client = reqwest::Client::new();
    register(&client, &running.url, 5, "t5").await;
    App { running, client }
}

impl App {
    /// Posts `body` (of `content_type`) to device 5's readings: the answer, a success.
    async fn post(&self, content_type: &str, body: impl Into<reqwest::Body>) -> serde_json::Value {
        let r = self
            .client
            .post(format!("{}/api/v1/devices/5/readings", self.running.url))
            .bearer_auth("t5")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap()
    }

    async fn post_frames(&self, body: Vec<u8>) -> serde_json::Value {
        self.post("application/x-beacon-frames", body).await
    }

    async fn post_json(&self, body: serde_json::Value) -> serde_json::Value {
        self.post("application/json", body.to_string()).await
    }

    /// Every reading of device 5 as (boot, seq), paging `limit` at a time with both cursors.
    async fn all_pages(&self, limit: u32) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = get_json(
                &self.client,
                &format!(
                    "{}/api/v1/devices/5/readings?limit={limit}{cursor}",
                    self.running.url
                ),
            )
            .await;
            for r in page["readings"].as_array().unwrap() {
                out.push((r["boot"].as_u64().unwrap(), r["seq"].as_u64().unwrap()));
            }
            match (
                page["next_after_boot"].as_u64(),
                page["next_after_seq"].as_u64(),
            ) {
                (Some(b), Some(s)) => cursor = format!("&after_boot={b}&after_seq={s}"),
                (None, None) => return out,
                other => panic!("half a cursor: {other:?}"),
            }
        }
    }

    async fn stop(self) {
        let _ = self.running.stop.send(());
        self.running.server.await.unwrap().unwrap();
    }
}

fn v2_frames(boot: u32, seqs: std::ops::Range<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        let f = Frame::new(5, seq, u64::from(seq) * 100)
            .with_boot(boot)
            .with(Reading::Counter(seq))
            .unwrap();
        out.extend(encode_to_vec(&f).unwrap());
    }
    out
}

/// The reboot case from the issue: 45 frames, a reboot, 30 more with the same seqs 0..30 and
/// a new boot id: all 75 stored, none counted as a duplicate; replays still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebooted_device_is_stored_not_deduplicated_over_http_frames_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(&dir.path().join("t.db")).await;
    let first = app.post_frames(v2_frames(0xAAAA_0001, 0..45)).await;
    assert_eq!(first, json!({"accepted": 45, "duplicates": 0}));
    let second = app.post_frames(v2_frames(0xBBBB_0002, 0..30)).await;
    assert_eq!(second, json!({"accepted": 30, "duplicates": 0}));
    // A replay of the second boot's last frames: duplicates.
    let replay = app.post_frames(v2_frames(0xBBBB_0002, 20..30)).await;
    assert_eq!(replay, json!({"accepted": 0, "duplicates": 10}));
    // JSON: `boot` is carried; absent means 0 (a third identity for the same seqs).
    let json_boot = app
        .post_json(json!({"readings": [
            {"boot": 0xAAAA_0001u32, "seq": 3, "uptime_ms": 1, "values": []},
            {"boot": 7, "seq": 3, "uptime_ms": 1, "values": []},
            {"seq": 3, "uptime_ms": 1, "values": []},
        ]}))
        .await;
    assert_eq!(json_boot, json!({"accepted": 2, "duplicates": 1}));

    // Paging in (boot, seq) order with pages that end mid-boot: every reading once.
    let got = app.all_pages(7).await;
    let mut expected: Vec<(u64, u64)> = vec![(0, 3), (7, 3)];
    expected.extend((0..45).map(|s| (0xAAAA_0001, s)));
    expected.extend((0..30).map(|s| (0xBBBB_0002, s)));
    assert_eq!(got, expected);
    // The old cursor alone still means boot 0 (what clients from before boots send).
    let old = get_json(
        &app.client,
        &format!(
            "{}/api/v1/devices/5/readings?after_seq=2&limit=1",
            app.running.url
        ),
    )
    .await;
    assert_eq!(
        (
            old["readings"][0]["boot"].as_u64(),
            old["readings"][0]["seq"].as_u64()
        ),
        (Some(0), Some(3))
    );
    // `latest` names the boot of the newest reading too.
    let latest = get_json(&app.client, &format!("{}/api/v1/latest", app.running.url)).await;
    assert!(latest["readings"][0]["boot"].is_u64(), "{latest}");
    app.stop().await;
}

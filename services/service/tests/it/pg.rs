//! Stateless replicas on one PostgreSQL: real `beacon-service` binaries on 127.0.0.1:0 against a
//! throwaway cluster (beacon-pgtemp). Two replicas with one killed (SIGKILL) mid-run lose no
//! acknowledged reading; a device registered on one replica ingests through the other; the live
//! stream of one replica shows what the other stored; `/readyz` follows the database.

use crate::shared::{all_seqs, counter_batch as batch, post_readings, register};
use crate::spawn::{Service, command, launch_logged};
use beacon_pgtemp::Cluster;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A fresh database in this test process's one shared cluster (removed after the process).
pub(crate) fn fresh_db() -> String {
    beacon_pgtemp::shared()
        .and_then(Cluster::fresh_db)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn start(db: &str) -> Service {
    start_with(db, &[])
}

/// A replica on `db`, its stderr (`RUST_LOG=info`) collected for the assertions on its log.
fn start_with(db: &str, extra: &[&str]) -> Service {
    let mut cmd = command(db, extra);
    cmd.env("RUST_LOG", "info,tower_http=warn")
        .env("NO_COLOR", "1");
    launch_logged(cmd)
}

const DEVICES: u32 = 4;
const BATCHES: u32 = 60;
const PER_BATCH: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_run_lose_no_acknowledged_reading() {
    let db = fresh_db();
    let a = start(&db);
    let mut b = start(&db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Registered on A only: B must find the tokens in the database.
    for d in 1..=DEVICES {
        register(&client, &a.url, d, &format!("tok-{d}")).await;
    }
    let b_alive = Arc::new(AtomicBool::new(true));
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let via_b = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=DEVICES)
        .map(|d| {
            let client = client.clone();
            let urls = [a.url.clone(), b.url.clone()];
            let (acked_batches, via_b) = (Arc::clone(&acked_batches), Arc::clone(&via_b));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failovers = 0u32;
                for n in 0..BATCHES {
                    let seqs: Vec<u32> = (n * PER_BATCH..(n + 1) * PER_BATCH).collect();
                    let body = batch(&seqs);
                    // Alternate replicas; on a refusal or a cut connection, the other one.
                    let mut pick = (d + n) as usize % 2;
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries < 200, "device {d} batch {n}: no replica accepted it");
                        let token = format!("tok-{d}");
                        let sent =
                            post_readings(&client, &urls[pick], d, &token, body.to_string()).await;
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap();
                                let got = v["accepted"].as_u64().unwrap()
                                    + v["duplicates"].as_u64().unwrap();
                                assert_eq!(got, u64::from(PER_BATCH));
                                if pick == 1 {
                                    via_b.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            Ok(r) => {
                                let status = r.status();
                                assert!(
                                    status == 503,
                                    "device {d}: unexpected {status}: {}",
                                    r.text().await.unwrap_or_default()
                                );
                            }
                            Err(_) => {}
                        }
                        failovers += 1;
                        pick = 1 - pick;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    acked.extend(seqs);
                    acked_batches.fetch_add(1, Ordering::Relaxed);
                }
                (acked, failovers)
            })
        })
        .collect();
    // Kill B (SIGKILL: no drain, no flush) a third of the way through.
    let total = (DEVICES * BATCHES) as usize;
    let mut waited = 0;
    while acked_batches.load(Ordering::Relaxed) < total / 3 {
        waited += 1;
        assert!(waited < 6000, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    b_alive.store(false, Ordering::Relaxed);
    let killed_at = acked_batches.load(Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut failovers = 0;
    for w in writers {
        let (seqs, f) = w.await.unwrap();
        acked.push(seqs);
        failovers += f;
    }
    let mut lost = 0;
    let mut stored_total = 0;
    for (i, sent) in acked.iter().enumerate() {
        let d = i as u32 + 1;
        let stored = all_seqs(&client, &a.url, d).await;
        stored_total += stored.len();
        let mut sorted = stored.clone();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            stored.len(),
            "device {d}: a reading stored twice"
        );
        lost += sent
            .iter()
            .filter(|s| stored.binary_search(s).is_err())
            .count();
    }
    let acked_total: usize = acked.iter().map(Vec::len).sum();
    eprintln!(
        "two replicas, B killed after {killed_at}/{total} batches: {acked_total} readings \
         acknowledged ({} batches via B), {stored_total} stored, {lost} lost, {failovers} failovers",
        via_b.load(Ordering::Relaxed)
    );
    assert_eq!(lost, 0, "acknowledged readings lost");
    assert_eq!(acked_total, (DEVICES * BATCHES * PER_BATCH) as usize);
    assert_eq!(stored_total, acked_total);
    assert!(
        via_b.load(Ordering::Relaxed) > 0,
        "B took no batch: the test did not exercise two replicas"
    );
    assert!(!b_alive.load(Ordering::Relaxed));
    let log = a.log.lock().unwrap().join("\n");
    assert!(
        log.contains("store: PostgreSQL at postgres://beacon@127.0.0.1"),
        "the startup log does not name the backend:\n{log}"
    );
}

/// Reads SSE chunks from `resp` until one carries a reading of `device`, or `attempts` chunks
/// (or 500 ms waits) went by.
async fn saw_device(resp: &mut reqwest::Response, device: u32) -> bool {
    let needle = format!("\"device_id\":{device}");
    match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
        Ok(Ok(Some(chunk))) => String::from_utf8_lossy(&chunk).contains(&needle),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_the_live_stream_span_replicas() {
    let db = fresh_db();
    let a = start(&db);
    let b = start(&db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Registered on B, used at once on A (A's token map has never seen it).
    register(&client, &b.url, 9, "nine").await;
    let r = post_readings(&client, &a.url, 9, "nine", batch(&[0]).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "A did not accept a device registered on B");
    let wrong = post_readings(&client, &a.url, 9, "not-nine", batch(&[1]).to_string())
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // A's live stream shows what B stores. A's listener connects in the background, so keep
    // ingesting new readings on B until one shows up on A (bounded).
    let mut stream = client
        .get(format!("{}/api/v1/stream?device_id=9", a.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = false;
    for seq in 1..60u32 {
        let r = post_readings(&client, &b.url, 9, "nine", batch(&[seq]).to_string())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if saw_device(&mut stream, 9).await {
            seen = true;
            break;
        }
    }
    assert!(seen, "A's stream never showed a reading stored through B");
    // Both replicas answer queries from the same data.
    let on_a = all_seqs(&client, &a.url, 9).await;
    let on_b = all_seqs(&client, &b.url, 9).await;
    assert_eq!(on_a, on_b);
    assert!(on_a.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_ingest_follow_the_database() {
    // Its own cluster: this test stops the server.
    let cluster = Cluster::start().unwrap();
    let db = cluster.fresh_db().unwrap();
    let svc = start(&db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    register(&client, &svc.url, 1, "one").await;
    let ready = |c: reqwest::Client, url: String| async move {
        c.get(format!("{url}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready(client.clone(), svc.url.clone()).await, 200);

    cluster.pg_stop().unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = ready(client.clone(), svc.url.clone()).await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503, "/readyz must fail while PostgreSQL is down");
    let r = post_readings(&client, &svc.url, 1, "one", batch(&[0]).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    assert!(r.headers().contains_key("retry-after"));

    cluster.pg_start().unwrap();
    for _ in 0..100 {
        status = ready(client.clone(), svc.url.clone()).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "/readyz must recover with the database");
    // The writer reconnects: the next ingest is stored (a first try may still meet the dead
    // connection and answer 503; the client's retry is what the contract promises to take).
    let mut stored = false;
    for _ in 0..20 {
        let r = post_readings(&client, &svc.url, 1, "one", batch(&[0]).to_string())
            .await
            .unwrap();
        if r.status() == 200 {
            stored = true;
            break;
        }
        assert_eq!(r.status(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "ingest did not recover after PostgreSQL came back");
    assert_eq!(
        cluster
            .psql(Cluster::db_name(&db), "SELECT count(*) FROM readings")
            .unwrap(),
        "1"
    );
}

/// The status of one ingest with `token` on `url`.
async fn ingest_status(client: &reqwest::Client, url: &str, id: u32, token: &str, seq: u32) -> u16 {
    post_readings(client, url, id, token, batch(&[seq]).to_string())
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Ingests with `token` on both replicas (new seqs from `seq`) until both answer `want`; how
/// many rounds that took and how long. Bounded: panics after 200 rounds (about 20 s).
async fn until_both(
    client: &reqwest::Client,
    urls: [&str; 2],
    id: u32,
    token: &str,
    want: u16,
    seq: &mut u32,
) -> (u32, Duration) {
    let t0 = std::time::Instant::now();
    for round in 1..=200 {
        let mut got = [0; 2];
        for (g, url) in got.iter_mut().zip(urls) {
            *seq += 1;
            *g = ingest_status(client, url, id, token, *seq).await;
        }
        if got == [want, want] {
            return (round, t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("device {id}: the replicas never both answered {want} for {token:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_changed_or_deleted_in_the_database_stops_working_on_both_replicas_by_notify() {
    let db = fresh_db();
    // A token cache trusted for an hour: only the NOTIFY invalidation can make the change
    // visible within this test's bounds.
    let a = start_with(&db, &["--token-cache-secs", "3600"]);
    let b = start_with(&db, &["--token-cache-secs", "3600"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    register(&client, &a.url, 5, "old-token").await;
    let urls = [a.url.as_str(), b.url.as_str()];
    let mut seq = 0;
    // Both replicas have the old token cached (B read it from the database at its first use).
    // A listener that connects later empties its cache then: the change below is seen either
    // way, by its NOTIFY or by that reconnect; never by the hour-long cache expiring.
    until_both(&client, urls, 5, "old-token", 200, &mut seq).await;

    // An operator rotates the token by hand, straight in the database.
    let hash = beacon_service::store::token_hash("new-token");
    let cluster = beacon_pgtemp::shared().unwrap();
    let name = Cluster::db_name(&db);
    cluster
        .psql(
            name,
            &format!("UPDATE devices SET token = '{hash}' WHERE id = 5"),
        )
        .unwrap();
    let (rounds, took) = until_both(&client, urls, 5, "old-token", 401, &mut seq).await;
    eprintln!(
        "token changed: the old one refused on both replicas after {rounds} round(s), {took:?}"
    );
    until_both(&client, urls, 5, "new-token", 200, &mut seq).await;

    // Revoked: the device row deleted.
    cluster
        .psql(name, "DELETE FROM devices WHERE id = 5")
        .unwrap();
    let (rounds, took) = until_both(&client, urls, 5, "new-token", 404, &mut seq).await;
    eprintln!("device deleted: refused on both replicas after {rounds} round(s), {took:?}");
}

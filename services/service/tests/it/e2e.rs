//! End-to-end: the real `beacon-service` binary on 127.0.0.1:0 with a real SQLite file,
//! stopped with SIGTERM under load and restarted on the same file.

use crate::shared::{all_seqs, counter_batch, post_readings, register};
use crate::spawn::{sigterm, start};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_then_restart_finds_every_accepted_reading() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e2e.db");
    let mut service = start(&db, &[]);
    let client = reqwest::Client::new();
    register(&client, &service.url, 42, "secret").await;

    // Four writers post batches of 50 until the service goes away; each remembers what it was
    // told was accepted.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let (client, url, stop) = (client.clone(), service.url.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                let mut batch_no = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let seqs: Vec<u32> =
                        (0..50).map(|i| w * 1_000_000 + batch_no * 50 + i).collect();
                    batch_no += 1;
                    let body = counter_batch(&seqs).to_string();
                    let sent = post_readings(&client, &url, 42, "secret", body).await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().await.unwrap();
                            assert_eq!(v["accepted"], 50);
                            accepted.extend(seqs);
                        }
                        // Refused (503 while shutting down) or cut off: not accepted, fine.
                        Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigterm(&service.child);
    let status = tokio::task::spawn_blocking(move || {
        let status = service.child.wait().unwrap();
        (status, service)
    });
    let (status, _gone) = tokio::time::timeout(Duration::from_secs(15), status)
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the service did not exit cleanly on SIGTERM: {status}"
    );
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    for w in writers {
        accepted.extend(w.await.unwrap());
    }
    assert!(
        accepted.len() >= 200,
        "too little load before SIGTERM: {} readings",
        accepted.len()
    );

    let service = start(&db, &[]);
    let mut stored = all_seqs(&client, &service.url, 42).await;
    stored.sort_unstable();
    accepted.sort_unstable();
    let missing: Vec<_> = accepted
        .iter()
        .filter(|s| stored.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} accepted readings lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The restarted service still knows the device and its token.
    let again = post_readings(
        &client,
        &service.url,
        42,
        "secret",
        json!({"readings": [{"seq": 7, "uptime_ms": 1, "values": []}]}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 200);
}

#[test]
fn bad_arguments_and_a_busy_port_exit_non_zero_with_a_message() {
    let bin = env!("CARGO_BIN_EXE_beacon-service");
    let out = Command::new(bin)
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(bin)
        .args(["--listen", &addr, "--db"])
        .arg(dir.path().join("x.db"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains("--listen"),
        "{stderr}"
    );
}

//! tokio-console support (feature `console`): a real gRPC client (console-api, the protocol
//! tokio-console itself speaks) connects to the service's console port and sees its tasks.
//! Run with `cargo test -p beacon-service --features console --test console`.
#![cfg(feature = "console")]

use console_api::instrument::InstrumentRequest;
use console_api::instrument::instrument_client::InstrumentClient;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_client_connects_on_loopback_and_sees_the_services_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let console = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_beacon-service"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--console",
            "--console-addr",
            &console,
            "--db",
        ])
        .arg(dir.path().join("c.db"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _service = Kill(child);
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    // Some HTTP traffic so there are connection tasks and a store read task to see.
    let http = reqwest::Client::new();
    assert!(
        http.get(format!("{url}/api/v1/latest"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    let mut client = None;
    for _ in 0..50 {
        match InstrumentClient::connect(format!("http://{console}")).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut client = client.expect("cannot connect to the console port");
    let mut updates = client
        .watch_updates(InstrumentRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut seen = String::new();
    // `Some(true)`: seen; `Some(false)`: the stream ended first; `None`: timed out. Only the
    // first passes (a stream that ends early must not count as seeing the task).
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(update) = updates.message().await.unwrap() {
            if let Some(tasks) = update.task_update {
                seen.push_str(&format!("{:?}", tasks.new_tasks));
                // The storage writer is a named blocking task: the console shows where the
                // blocking work runs.
                if seen.contains("sqlite-writer") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        found.ok(),
        Some(true),
        "no task named sqlite-writer in the console updates (None: timed out after 10 s, \
         Some(false): the update stream ended first): {}",
        &seen[..seen.len().min(2000)]
    );
}

#[test]
fn the_console_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_beacon-service"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--console",
            "--console-addr",
            "0.0.0.0:6669",
            "--db",
        ])
        .arg(dir.path().join("c.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

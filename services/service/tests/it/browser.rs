//! The dashboard in a real headless browser: the real `beacon-service` binary on 127.0.0.1:0
//! with a temporary SQLite file, Debian's `chromium` driven through `chromedriver` (WebDriver)
//! with fantoccini. Checks the device rows (ids, boots, online, frames dropped on the device
//! from its overflow reports), that each chart drew the last
//! 5 minutes of history from the query API, and that a reading ingested after the page loaded
//! appears live (SSE); then, at fleet size (120 devices), that the table shows one page of 50
//! rows, the count of all devices and a working next-page control, and the charts aggregate. `cargo xtask test` runs it with `--ignored`.
//!
//! Set `BEACON_DASHBOARD_SCREENSHOT=/path/file.png` to keep a screenshot of the loaded page.

use crate::shared::register;
use serde_json::{Value, json};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// The bound on every wait below: a condition not met by then fails the test with what was seen.
const WAIT: Duration = Duration::from_secs(30);

/// Kills the child (service, chromedriver) when the test ends, pass or fail.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name` on `PATH` (or the Debian path), or a failure that says what to install.
fn tool(name: &str, debian: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    on_path
        .or_else(|| Some(PathBuf::from(debian)).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("`{name}` not found on PATH nor at {debian}; the dashboard browser test needs Debian's chromium and chromedriver: run `{INSTALL}`")
        })
}

/// chromedriver on a free loopback port, once it accepts connections.
fn start_chromedriver(driver: &Path) -> (Killed, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; run `{INSTALL}`", driver.display()));
    let child = Killed(child);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on 127.0.0.1:{port} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn post(client: &reqwest::Client, url: &str, device: u32, readings: Vec<Value>) {
    let res = client
        .post(format!("{url}/api/v1/devices/{device}/readings"))
        .bearer_auth(format!("token-{device}"))
        .json(&json!({ "readings": readings }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "ingest for device {device}: {body}");
}

fn reading(boot: u32, seq: u32, sampled_at_ms: i64, values: Value) -> Value {
    json!({"boot": boot, "seq": seq, "uptime_ms": seq * 1000, "sampled_at_ms": sampled_at_ms, "values": values})
}

/// What the page shows, read in one script.
const STATE_JS: &str = r##"
return {
  history: document.getElementById("history").dataset.state,
  stream: document.getElementById("status").textContent,
  rows: [...document.querySelectorAll("#devices tr[data-device]")].map(tr => ({
    id: Number(tr.dataset.device),
    online: tr.querySelector("td.online").textContent,
    boots: Number(tr.querySelector("td.boots").textContent),
    dropped: tr.querySelector("td.dropped").textContent,
    seq: tr.querySelector("td.seq").textContent,
  })),
  charts: Object.fromEntries([...document.querySelectorAll("figure.chart")]
    .map(f => [f.dataset.kind, Number(f.dataset.points)])),
  mode: document.getElementById("chart-mode").dataset.mode,
  page: Object.fromEntries(["first", "last", "total"]
    .map(k => [k, Number(document.getElementById("page").dataset[k])])),
};
"##;

/// Polls the page until `ok` holds, for at most [`WAIT`]; fails with the last state seen.
async fn wait_for(browser: &fantoccini::Client, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = browser.execute(STATE_JS, vec![]).await.unwrap();
        if ok(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not show {what} within {WAIT:?}; last state: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver); cargo xtask test runs it with --ignored"]
async fn dashboard_shows_devices_history_and_live_readings() {
    let chromium = tool("chromium", "/usr/bin/chromium");
    let driver = tool("chromedriver", "/usr/bin/chromedriver");
    let dir = tempfile::tempdir().unwrap();
    let service = crate::spawn::start(&dir.path().join("browser.db"), &[]);
    let url = service.url.clone();
    let http = reqwest::Client::new();
    for id in [1u32, 2] {
        register(&http, &url, id, &format!("token-{id}")).await;
    }
    // Device 1: boot 7 (20 readings), rebooted, boot 8 (10 readings); temperature and counter.
    // Device 2: boot 3, one reading 10 minutes old (outside the window), then 15 with
    // temperature and humidity.
    let t0 = now_ms() - 200_000;
    let dev1: Vec<Value> = (0..20)
        .map(|s| (7, s, t0 + i64::from(s) * 1000))
        .chain((0..10).map(|s| (8, s, t0 + 25_000 + i64::from(s) * 1000)))
        .map(|(boot, seq, t)| {
            reading(
                boot,
                seq,
                t,
                json!([
                    {"kind": "temperature_c", "value": 20.0 + f64::from(seq) / 10.0},
                    {"kind": "counter", "value": seq},
                ]),
            )
        })
        .collect::<Vec<_>>();
    // Device 1's outbox overflowed: one report in boot 7 (2 dropped), two in boot 8 (3, then
    // 7 in all since that boot): the page shows 2 + 7. A report's counter is not charted.
    let mut dev1 = dev1;
    for (boot, seq, t, dropped) in [
        (7, 20, t0 + 20_500, 2),
        (8, 10, t0 + 35_000, 3),
        (8, 11, t0 + 36_000, 7),
    ] {
        dev1.push(reading(
            boot,
            seq,
            t,
            json!([{"kind": "status", "value": 3}, {"kind": "counter", "value": dropped}]),
        ));
    }
    post(&http, &url, 1, dev1).await;
    let mut dev2 = vec![reading(
        3,
        0,
        now_ms() - 600_000,
        json!([{"kind": "temperature_c", "value": 5.0}]),
    )];
    dev2.extend((1..=15).map(|s| {
        reading(
            3,
            s,
            t0 + i64::from(s) * 2000,
            json!([
                {"kind": "temperature_c", "value": 24.0 - f64::from(s) / 10.0},
                {"kind": "humidity_pct", "value": 40.0 + f64::from(s)},
            ]),
        )
    }));
    post(&http, &url, 2, dev2).await;

    let (_driver, driver_url) = start_chromedriver(&driver);
    let profile = tempfile::tempdir().unwrap();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,800",
        &format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let browser =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver at {driver_url} could not start {}: {e}",
                    chromium.display()
                )
            });
    browser.goto(&url).await.unwrap();

    // History: 30 + 15 temperature points, 30 counter, 15 humidity (the 10-minute-old one is
    // outside the window); both devices listed, device 1 with 2 boots.
    let state = wait_for(&browser, "the loaded history", |s| {
        s["history"] == "loaded"
            && s["charts"]["temperature_c"] == 45
            && s["rows"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    assert_eq!(
        state["charts"],
        json!({"temperature_c": 45, "counter": 30, "humidity_pct": 15}),
        "{state:#}"
    );
    let rows = &state["rows"];
    assert_eq!(rows[0]["id"], 1, "{state:#}");
    assert_eq!(rows[0]["boots"], 2, "device 1 booted twice: {state:#}");
    assert_eq!(rows[1]["id"], 2, "{state:#}");
    assert_eq!(rows[1]["boots"], 1, "{state:#}");
    for row in rows.as_array().unwrap() {
        // Online means "received within 10 s": the browser start may take longer on a busy
        // machine, so it is checked on the live reading below, not here.
        assert!(
            row["online"] == "online" || row["online"] == "offline",
            "{state:#}"
        );
    }
    // Frames dropped on the device, from its TX_OVERFLOW reports; device 2 reported none.
    assert_eq!(rows[0]["dropped"], "9", "{state:#}");
    assert_eq!(rows[1]["dropped"], "-", "{state:#}");
    wait_for(&browser, "the live stream connected", |s| {
        s["stream"] == "connected"
    })
    .await;

    // Live: one more reading of device 2 after the page loaded appears without a reload.
    post(
        &http,
        &url,
        2,
        vec![reading(
            3,
            16,
            now_ms(),
            json!([
                {"kind": "temperature_c", "value": 30.0},
                {"kind": "humidity_pct", "value": 60.0},
            ]),
        )],
    )
    .await;
    let state = wait_for(&browser, "the live reading", |s| {
        s["charts"]["temperature_c"] == 46 && s["charts"]["humidity_pct"] == 16
    })
    .await;
    assert_eq!(state["rows"][1]["seq"], "16", "{state:#}");
    assert_eq!(
        state["rows"][1]["online"], "online",
        "device 2 just sent: {state:#}"
    );
    assert_eq!(state["charts"]["counter"], 30, "{state:#}");

    assert_eq!(state["mode"], "devices", "{state:#}");
    fleet_page(&browser, &http, &url).await;
    if let Some(path) = std::env::var_os("BEACON_DASHBOARD_SCREENSHOT") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
    }
    browser.close().await.unwrap();
}

/// One multi-device ingest (`POST /api/v1/readings`): one temperature reading per device.
async fn post_many(
    client: &reqwest::Client,
    url: &str,
    devices: std::ops::RangeInclusive<u32>,
    seq: u32,
) {
    let batches: Vec<Value> = devices
        .map(|id| {
            json!({"device_id": id, "token": format!("token-{id}"), "readings": [
                reading(1, seq, now_ms(), json!([{"kind": "temperature_c", "value": f64::from(id) / 10.0}]))
            ]})
        })
        .collect();
    let res = client
        .post(format!("{url}/api/v1/readings"))
        .json(&json!({ "batches": batches }))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["status"], 200, "{body}");
    }
}

/// At fleet size (120 devices, more than the page's 8 of per-device detail): the table shows
/// one page of 50 rows with the count of all devices and pages on, the charts aggregate.
async fn fleet_page(browser: &fantoccini::Client, http: &reqwest::Client, url: &str) {
    for id in 3u32..=120 {
        register(http, url, id, &format!("token-{id}")).await;
    }
    post_many(http, url, 3..=120, 0).await;
    browser.goto(url).await.unwrap();
    // Each device's latest reading: 118 new temperatures, device 2's live one (device 1's
    // newest is an overflow report, not charted).
    let state = wait_for(browser, "the fleet page", |s| {
        s["history"] == "loaded" && s["mode"] == "fleet" && s["page"]["total"] == 120
    })
    .await;
    assert_eq!(state["rows"].as_array().unwrap().len(), 50, "{state:#}");
    assert_eq!(
        state["page"],
        json!({"first": 1, "last": 50, "total": 120}),
        "{state:#}"
    );
    assert_eq!(state["rows"][0]["id"], 1, "{state:#}");
    assert_eq!(state["charts"]["temperature_c"], 119, "{state:#}");
    browser
        .find(fantoccini::Locator::Id("next"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let state = wait_for(browser, "the second page", |s| s["page"]["first"] == 51).await;
    let ids: Vec<u64> = state["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (51..=100).collect::<Vec<u64>>(), "{state:#}");
    wait_for(browser, "the live stream connected", |s| {
        s["stream"] == "connected"
    })
    .await;
    post_many(http, url, 3..=120, 1).await;
    let state = wait_for(browser, "the live fleet readings", |s| {
        s["charts"]["temperature_c"] == 119 + 118
    })
    .await;
    assert_eq!(state["rows"].as_array().unwrap().len(), 50, "{state:#}");
}

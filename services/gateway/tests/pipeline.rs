//! The gateway's pipeline (link -> decoder -> buffer -> poster) against a local stand-in for
//! the service that speaks the same HTTP contract (registration, the multi-device ingest with
//! per-entry device tokens and `(device, boot, seq)` dedup, 503 on demand). The real service, gateway and QEMU run together in
//! services/demo/tests/e2e.rs.
//!
//! The byte stream is a recording of the QEMU firmware's UART0 (device 7, 31 frames, seq
//! 0..=30), tests/data/qemu-device7-uart0.bin, made with:
//! `qemu-system-arm -machine mps2-an386 -nographic -monitor none -semihosting-config
//! enable=on,target=native -serial file:uart0.bin -kernel beacon-qemu -append "device-id=7
//! period-ms=50 samples=30"`. It predates protocol v2, so it is also the gateway's check that
//! version 1 frames still go through (with `boot` 0).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use beacon_gateway::link::{Ctx, LinkEvent, consume, pump_blocking};
use beacon_gateway::metrics::{Metrics, Stats};
use clap::Parser as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

const RECORDING: &[u8] = include_bytes!("data/qemu-device7-uart0.bin");
const FRAMES: u32 = 31;

#[derive(Default)]
struct StandIn {
    tokens: HashMap<u32, String>,
    stored: BTreeMap<(u32, u32, u32), Value>,
    fail_next: usize,
    requests: usize,
    largest_batch: usize,
    /// Devices whose next entry answers 404 (the service lost them): the gateway must
    /// register again, then retry.
    forget: std::collections::HashSet<u32>,
    /// Devices whose entries answer 401 (their token was changed in the service).
    refuse: std::collections::HashSet<u32>,
    /// Registration requests, by device, in order.
    registered: Vec<u32>,
    /// What happened, in order: "503" / "200" when the ingest answered (logged before the
    /// answer leaves), and what a test device read back ("replay", "ack B first..=last").
    events: Vec<String>,
}

type Shared = Arc<Mutex<StandIn>>;

async fn register(State(s): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let id = body["id"].as_u64().unwrap() as u32;
    let token = body["token"].as_str().unwrap().to_owned();
    let mut s = s.lock().unwrap();
    s.registered.push(id);
    match s.tokens.get(&id) {
        Some(t) if *t != token => (
            StatusCode::CONFLICT,
            Json(json!({"error": "token differs"})),
        ),
        Some(_) => (
            StatusCode::OK,
            Json(json!({"id": id, "token": token, "created": false})),
        ),
        None => {
            s.tokens.insert(id, token.clone());
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "token": token, "created": true})),
            )
        }
    }
}

/// The multi-device ingest: one answer per entry, each checked as the per-device endpoint
/// checks its request; `fail_next` answers whole requests with 503.
async fn ingest(State(s): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    s.requests += 1;
    if s.fail_next > 0 {
        s.fail_next -= 1;
        s.events.push("503".to_owned());
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "busy"})),
        );
    }
    let results: Vec<Value> = body["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| ingest_entry(&mut s, entry))
        .collect();
    s.events.push("200".to_owned());
    (StatusCode::OK, Json(json!({ "results": results })))
}

fn ingest_entry(s: &mut StandIn, entry: &Value) -> Value {
    let id = entry["device_id"].as_u64().unwrap() as u32;
    let refused = |status: u16, error: &str| json!({"device_id": id, "status": status, "accepted": 0, "duplicates": 0, "error": error});
    if s.forget.remove(&id) {
        s.tokens.remove(&id);
    }
    if s.refuse.contains(&id) {
        return refused(401, "wrong token");
    }
    match s.tokens.get(&id) {
        None => return refused(404, "unknown device"),
        Some(t) if entry["token"] != *t => return refused(401, "wrong token"),
        Some(_) => {}
    }
    let readings = entry["readings"].as_array().unwrap();
    s.largest_batch = s.largest_batch.max(readings.len());
    let (mut accepted, mut duplicates) = (0, 0);
    for r in readings {
        assert_eq!(r["device_id"], id);
        assert!(
            r["sampled_at_ms"].as_i64().unwrap() > 1_600_000_000_000,
            "{r}"
        );
        let boot = r["boot"].as_u64().expect("every reading names its boot") as u32;
        let key = (id, boot, r["seq"].as_u64().unwrap() as u32);
        if s.stored.insert(key, r.clone()).is_some() {
            duplicates += 1;
        } else {
            accepted += 1;
        }
    }
    json!({"device_id": id, "status": 200, "accepted": accepted, "duplicates": duplicates})
}

async fn stand_in(fail_next: usize) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(StandIn {
        fail_next,
        ..StandIn::default()
    }));
    let app = axum::Router::new()
        .route("/api/v1/devices", post(register))
        .route("/api/v1/readings", post(ingest))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

async fn run_gateway(file: &std::path::Path, service: &str, extra: &[&str]) -> Stats {
    let mut args = vec![
        "beacon-gateway".to_owned(),
        "--link".to_owned(),
        format!("file:{}", file.display()),
        "--service".to_owned(),
        service.to_owned(),
        "--retry-base-ms".to_owned(),
        "10".to_owned(),
        "--retry-max-ms".to_owned(),
        "40".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = beacon_gateway::Config::try_parse_from(args).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        beacon_gateway::run(config, std::future::pending()),
    )
    .await
    .expect("the gateway finished the file in time")
    .map_err(|(e, _)| e)
    .unwrap()
}

fn recording_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

fn seqs(s: &Shared) -> Vec<u32> {
    s.lock()
        .unwrap()
        .stored
        .keys()
        .map(|(_, _, seq)| *seq)
        .collect()
}

#[tokio::test]
async fn file_link_posts_every_recorded_frame_once_to_a_stand_in_service() {
    let (url, state) = stand_in(0).await;
    let file = recording_file(RECORDING);
    let stats = run_gateway(file.path(), &url, &[]).await;
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    assert!(
        state
            .lock()
            .unwrap()
            .stored
            .keys()
            .all(|&(_, boot, _)| boot == 0),
        "version 1 frames are posted with boot 0"
    );
    assert_eq!(stats.frames_in, u64::from(FRAMES));
    assert_eq!(stats.accepted, u64::from(FRAMES));
    assert_eq!((stats.corrupt, stats.dropped, stats.buffered), (0, 0, 0));
    assert_eq!(stats.devices[&7].max_seq, Some(FRAMES - 1));
    assert!(stats.latency_p99_ms.is_some());
    // The token is per device: the default prefix and the id.
    assert_eq!(state.lock().unwrap().tokens[&7], "beacon-device-7");
}

#[tokio::test]
async fn corrupted_frames_are_counted_and_skipped_and_the_rest_delivered() {
    let (url, state) = stand_in(0).await;
    let mut bytes = b"garbage before the first delimiter".to_vec();
    bytes.extend_from_slice(RECORDING);
    // Flip a byte in the middle of the 6th frame (seq 5): its CRC no longer matches.
    let starts: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(|(i, _)| i + 1)
        .collect();
    // starts[0] follows the lone delimiter the firmware sends first: it is seq 0.
    let victim = starts[5] + 5;
    bytes[victim] ^= 0x55;
    let file = recording_file(&bytes);
    let stats = run_gateway(file.path(), &url, &[]).await;
    assert_eq!(stats.corrupt, 2, "the garbage and the flipped frame");
    let got = seqs(&state);
    assert_eq!(got.len(), FRAMES as usize - 1, "{got:?}");
    assert!(!got.contains(&5), "{got:?}");
    assert_eq!(stats.dropped, 0);
}

#[tokio::test]
async fn service_answering_503_is_retried_with_nothing_lost_or_duplicated() {
    let (url, state) = stand_in(4).await;
    let file = recording_file(RECORDING);
    let stats = run_gateway(file.path(), &url, &[]).await;
    assert!(stats.retries >= 4, "{stats:?}");
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    assert_eq!(stats.accepted, u64::from(FRAMES));
    assert_eq!(stats.duplicates, 0);
    assert_eq!(stats.dropped, 0);
}

#[tokio::test]
async fn a_full_buffer_pauses_the_link_instead_of_dropping() {
    // Four readings of buffer and a service that fails at first: the link must wait for
    // room, so no request can ever carry more than four readings, and nothing is lost.
    let (url, state) = stand_in(6).await;
    let file = recording_file(RECORDING);
    let stats = run_gateway(file.path(), &url, &["--buffer", "4"]).await;
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    let largest = state.lock().unwrap().largest_batch;
    assert!(largest <= 4, "a request carried {largest} readings");
    assert_eq!((stats.dropped, stats.buffered), (0, 0));
}

#[tokio::test]
async fn wrong_device_token_keeps_readings_and_says_what_to_do() {
    // The device is already registered with another token: the gateway must not drop the
    // readings (they wait for a person to fix the token); on shutdown they count as dropped.
    let (url, state) = stand_in(0).await;
    state
        .lock()
        .unwrap()
        .tokens
        .insert(7, "someone-else".into());
    let file = recording_file(RECORDING);
    let stats = run_gateway(file.path(), &url, &["--drain-secs", "1"]).await;
    assert!(state.lock().unwrap().stored.is_empty());
    assert_eq!(stats.dropped, u64::from(FRAMES), "{stats:?}");
    assert!(stats.retries > 0);
}

/// The RTT path's byte handling: probe-rs reads an up-channel in whatever amounts the target
/// has written, often nothing. Drive the same pump with the recording cut into such reads.
// Multi-threaded: the recorded "probe" thread blocks on the channel while the consumer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_pump_decodes_a_recorded_stream_read_in_rtt_sized_pieces() {
    let metrics = Arc::new(Metrics::default());
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        metrics: Arc::clone(&metrics),
        buffer: Arc::new(Semaphore::new(1000)),
        frames: frames_tx,
        cancel: CancellationToken::new(),
        replay: false,
    };
    let (tx, rx) = mpsc::channel(4);
    let consumer = tokio::spawn(consume("rtt:recorded".into(), rx, ctx.clone()));
    let cancel = ctx.cancel.clone();
    drop(ctx);
    let reader = std::thread::spawn(move || {
        tx.blocking_send(LinkEvent::Connected).unwrap();
        let mut rest = RECORDING;
        let mut rng = fastrand::Rng::with_seed(7);
        let result = pump_blocking(
            |buf| {
                if rest.is_empty() {
                    return Err(std::io::Error::other("end of the recording"));
                }
                // An RTT read returns 0..=what is buffered, capped by the caller's buffer.
                let n = rng.usize(0..=64).min(rest.len()).min(buf.len());
                let (now, later) = rest.split_at(n);
                buf[..n].copy_from_slice(now);
                rest = later;
                Ok(n)
            },
            &tx,
            &cancel,
            std::time::Duration::ZERO,
        );
        assert_eq!(result, Err("read failed: end of the recording".to_owned()));
    });
    consumer.await.unwrap();
    reader.join().unwrap();
    let mut got = Vec::new();
    while let Ok(p) = frames_rx.try_recv() {
        got.push(p.reading.seq);
    }
    assert_eq!(got, (0..FRAMES).collect::<Vec<_>>());
    assert_eq!(
        metrics.corrupt.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        metrics.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
        RECORDING.len() as u64
    );
}

/// The reboot case: device 5 sends 45 frames, reboots (seq starts again at 0, new boot id) and
/// sends 30 more, all on one link. Every one of the 75 is posted as new, carrying its boot.
#[tokio::test]
async fn frames_of_a_rebooted_device_are_posted_as_new_readings_with_their_boot() {
    use beacon_protocol::{Frame, Reading, wire::encode_to_vec};
    let (url, state) = stand_in(0).await;
    let mut bytes = vec![0u8];
    for (boot, n) in [(0x1111_1111u32, 45u32), (0x2222_2222, 30)] {
        for seq in 0..n {
            let f = Frame::new(5, seq, u64::from(seq) * 100)
                .with_boot(boot)
                .with(Reading::Counter(seq))
                .unwrap();
            bytes.extend(encode_to_vec(&f).unwrap());
        }
    }
    let file = recording_file(&bytes);
    let stats = run_gateway(file.path(), &url, &[]).await;
    assert_eq!(
        (stats.accepted, stats.duplicates),
        (75, 0),
        "{}",
        stats.line()
    );
    let s = state.lock().unwrap();
    let per_boot = |b: u32| s.stored.keys().filter(|k| k.1 == b).count();
    assert_eq!((per_boot(0x1111_1111), per_boot(0x2222_2222)), (45, 30));
    let boots: Vec<(u32, u32)> = stats.devices[&5]
        .boots
        .iter()
        .map(|b| (b.boot, b.max_seq))
        .collect();
    assert_eq!(boots, [(0x1111_1111, 44), (0x2222_2222, 29)]);
}

/// The gateway acks frames to the device over the same TCP connection only after the service
/// answered 2xx for them: two 503s first, then a 200, then the ack. The three frames go in one
/// write, so they are usually one batch and one ack for seq 0..=2; a loaded machine may still
/// split them into two reads (the gateway does not linger), so the test takes any contiguous
/// acks covering 0..=2, each after its own 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_reach_the_device_only_after_the_service_committed_the_frames() {
    use beacon_protocol::{Downlink, DownlinkDecoder, Frame, Reading, wire::encode_to_vec};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (service, state) = stand_in(2).await;
    let device = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = format!("tcp:{}", device.local_addr().unwrap());
    let args = [
        "beacon-gateway",
        "--link",
        &link,
        "--service",
        &service,
        "--retry-base-ms",
        "10",
        "--retry-max-ms",
        "40",
    ];
    let config = beacon_gateway::Config::try_parse_from(args).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(beacon_gateway::run(config, async move {
        let _ = stopped.await;
    }));

    let (mut conn, _) = device.accept().await.unwrap();
    let mut frames = Vec::new();
    for seq in 0..3 {
        let f = Frame::new(9, seq, u64::from(seq) * 100)
            .with_boot(0xB007)
            .with(Reading::Counter(seq))
            .unwrap();
        frames.extend(encode_to_vec(&f).unwrap());
    }
    conn.write_all(&frames).await.unwrap();
    let mut decoder = DownlinkDecoder::new();
    let mut buf = [0u8; 64];
    let read_until_ack = async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed the link");
            for &b in &buf[..n] {
                let event = match decoder.push(b) {
                    Some(Ok(Downlink::Replay)) => "replay".to_owned(),
                    Some(Ok(Downlink::Ack(a))) => {
                        format!("ack {:#x} {}..={}", a.boot, a.first, a.last)
                    }
                    Some(Err(e)) => panic!("the gateway wrote a bad downlink message: {e}"),
                    None => continue,
                };
                let mut s = state.lock().unwrap();
                s.events.push(event.clone());
                if event.starts_with("ack") && event.ends_with("..=2") {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read_until_ack)
        .await
        .expect("an ack within 20 s");
    let _ = stop.send(());
    let stats = gateway.await.unwrap().map_err(|(e, _)| e).unwrap();
    let events = state.lock().unwrap().events.clone();
    let first_ack = events.iter().position(|e| e.starts_with("ack")).unwrap();
    assert_eq!(
        events.iter().filter(|e| *e == "503").count(),
        2,
        "{events:?}"
    );
    // Every ack comes after a 200 of its own: never one for frames the service has not
    // committed.
    let mut acked = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(range) = e.strip_prefix("ack 0xb007 ") {
            acked.push(range.to_owned());
            let oks = events[..i].iter().filter(|e| *e == "200").count();
            assert!(oks >= acked.len(), "an ack before its 200: {events:?}");
        }
    }
    // The acks cover 0..=2 once, in order: "0..=2", or "0..=1" then "2..=2", ...
    let mut next = 0;
    for r in &acked {
        let (first, last) = r.split_once("..=").unwrap();
        assert_eq!(first.parse::<u32>().unwrap(), next, "{events:?}");
        next = last.parse::<u32>().unwrap() + 1;
    }
    assert_eq!(next, 3, "{events:?}");
    assert!(
        events[..first_ack].contains(&"replay".to_owned()),
        "the replay request comes on connect: {events:?}"
    );
    assert_eq!(stats.acks_sent, acked.len() as u64, "{stats:?}");
    assert_eq!(seqs(&state), [0, 1, 2]);
}

/// A corrupted frame on a live link (after a good one) makes the gateway ask the device to
/// re-send what it holds, so the device's outbox front is not stuck until the next reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_frame_on_a_live_link_triggers_a_replay_request() {
    use beacon_protocol::{Downlink, DownlinkDecoder, Frame, Reading, wire::encode_to_vec};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (service, state) = stand_in(0).await;
    let device = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = format!("tcp:{}", device.local_addr().unwrap());
    let args = ["beacon-gateway", "--link", &link, "--service", &service];
    let config = beacon_gateway::Config::try_parse_from(args).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(beacon_gateway::run(config, async move {
        let _ = stopped.await;
    }));
    let (mut conn, _) = device.accept().await.unwrap();
    let frame = |seq: u32| {
        encode_to_vec(
            &Frame::new(9, seq, 0)
                .with_boot(0xB007)
                .with(Reading::Counter(seq))
                .unwrap(),
        )
        .unwrap()
    };
    let mut corrupted = frame(1);
    corrupted[5] ^= 0x40;
    let mut stream = frame(0);
    stream.extend(corrupted);
    stream.extend(frame(2));
    conn.write_all(&stream).await.unwrap();
    let mut decoder = DownlinkDecoder::new();
    let mut replays = 0;
    let mut buf = [0u8; 64];
    let read = async {
        while replays < 2 {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed the link");
            for &b in &buf[..n] {
                if decoder.push(b) == Some(Ok(Downlink::Replay)) {
                    replays += 1;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("a second replay request (after the one on connect) within 20 s");
    let _ = stop.send(());
    let stats = gateway.await.unwrap().map_err(|(e, _)| e).unwrap();
    assert_eq!(stats.corrupt, 1, "{stats:?}");
    assert_eq!(stats.replay_requests, 2, "{stats:?}");
    assert_eq!(seqs(&state), [0, 2]);
}

/// A replica of the stand-in: its own port, the shared state (one store behind several
/// service processes), and a count of the ingests it answered.
async fn replica(state: &Shared) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new()
        .route("/api/v1/devices", post(register))
        .route("/api/v1/readings", post(ingest))
        .with_state(Arc::clone(state))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                if req.uri().path() == "/api/v1/readings" {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                next.run(req)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn batches_are_spread_across_several_service_replicas() {
    let state: Shared = Arc::default();
    let (a, hits_a) = replica(&state).await;
    let (b, hits_b) = replica(&state).await;
    let file = recording_file(RECORDING);
    let stats = run_gateway(
        file.path(),
        &a,
        &["--service", &b, "--batch-max", "2", "--batch-ms", "0"],
    )
    .await;
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    assert_eq!((stats.accepted, stats.duplicates), (u64::from(FRAMES), 0));
    let (ha, hb) = (
        hits_a.load(std::sync::atomic::Ordering::Relaxed),
        hits_b.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(ha > 0 && hb > 0, "batches not spread: {ha} to A, {hb} to B");
    assert!(ha.abs_diff(hb) <= 1, "round robin: {ha} to A, {hb} to B");
}

#[tokio::test]
async fn a_replica_that_is_down_is_failed_over_with_nothing_lost() {
    let state: Shared = Arc::default();
    let (up, hits) = replica(&state).await;
    // A port nobody listens on: connection refused, like a replica that was killed.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let file = recording_file(RECORDING);
    let stats = run_gateway(
        file.path(),
        &down,
        &["--service", &up, "--batch-max", "2", "--batch-ms", "0"],
    )
    .await;
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    assert_eq!(stats.accepted, u64::from(FRAMES));
    assert_eq!((stats.duplicates, stats.dropped), (0, 0));
    assert!(
        stats.retries > 0,
        "the down replica was never tried: {stats:?}"
    );
    assert!(hits.load(std::sync::atomic::Ordering::Relaxed) >= (FRAMES as usize).div_ceil(2));
}

#[tokio::test]
async fn every_replica_busy_backs_off_and_retries_as_with_one() {
    // The shared state answers the first 6 ingests with 503, whichever replica takes them.
    let state: Shared = Arc::new(Mutex::new(StandIn {
        fail_next: 6,
        ..StandIn::default()
    }));
    let (a, _) = replica(&state).await;
    let (b, _) = replica(&state).await;
    let file = recording_file(RECORDING);
    let stats = run_gateway(file.path(), &a, &["--service", &b]).await;
    assert!(stats.retries >= 6, "{stats:?}");
    assert_eq!(seqs(&state), (0..FRAMES).collect::<Vec<_>>());
    assert_eq!((stats.duplicates, stats.dropped), (0, 0));
}

/// Twelve devices on one link: their batches go out together in multi-device requests, and
/// each entry's answer concerns its device only: device 4, which the service lost (404), is
/// registered again and delivered; device 9, whose token the service refuses (401), keeps its
/// readings (dropped only at the end of the drain); the other ten are delivered untouched.
#[tokio::test]
async fn one_request_carries_many_devices_and_each_entry_is_answered_on_its_own() {
    use beacon_protocol::{Frame, Reading, wire::encode_to_vec};
    let (url, state) = stand_in(0).await;
    {
        let mut s = state.lock().unwrap();
        s.forget.insert(4);
        s.refuse.insert(9);
    }
    let mut bytes = vec![0u8];
    for seq in 0..3u32 {
        for id in 1..=12u32 {
            let f = Frame::new(id, seq, u64::from(seq) * 100)
                .with(Reading::Counter(seq))
                .unwrap();
            bytes.extend(encode_to_vec(&f).unwrap());
        }
    }
    let file = recording_file(&bytes);
    // A long linger: the twelve devices' first batches are all ready well within it.
    let stats = run_gateway(
        file.path(),
        &url,
        &["--request-linger-ms", "1000", "--drain-secs", "2"],
    )
    .await;
    let s = state.lock().unwrap();
    for id in (1..=12).filter(|&id| id != 9) {
        let got: Vec<u32> = s.stored.keys().filter(|k| k.0 == id).map(|k| k.2).collect();
        assert_eq!(got, [0, 1, 2], "device {id}: {}", stats.line());
    }
    assert!(!s.stored.keys().any(|k| k.0 == 9));
    assert_eq!(s.registered.iter().filter(|&&id| id == 4).count(), 2);
    assert_eq!((stats.accepted, stats.dropped), (33, 3), "{}", stats.line());
    assert!(
        stats.request_entries > stats.requests,
        "no request carried two devices: {}",
        stats.line()
    );
}

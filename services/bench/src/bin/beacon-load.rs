//! `beacon-load`: a load generator for the service, bounded in time and in requests.
//!
//! Each worker posts batches for its own device (so every reading is new), waits for the
//! answer (= durable commit), and records the latency. Prints one JSON line of results.
//! `cargo xtask bench-service` drives it; it is usable on its own:
//!
//! ```text
//! beacon-load --url http://127.0.0.1:8080 --concurrency 16 --batch 1000 --duration-secs 10
//! ```
//!
//! `--limit-db <sqlite file | postgres:// URL>` measures the floor instead: the same rows
//! written straight into the same schema by a bare client, no HTTP and no service. SQLite: one
//! connection (its single writer), one transaction per batch, the service's pragmas and insert.
//! PostgreSQL: `--concurrency` connections, one `COPY ... FROM STDIN` and one transaction per
//! batch. The schema is created by opening the service's own store first.

use beacon_protocol::{Frame, MAX_WIRE_LEN, Reading, encode};
use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "beacon-load",
    about = "Load generator for beacon-service (bounded in time and count)"
)]
struct Args {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent requests; each worker posts for its own device.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Readings per request.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Body format: `frames` (application/x-beacon-frames) or `json`.
    #[arg(long, default_value = "frames", value_parser = ["frames", "json"])]
    format: String,
    /// Open a new connection for every request (connection churn) instead of keep-alive.
    #[arg(long)]
    churn: bool,
    /// First device id; workers use `first_device .. first_device + concurrency`.
    #[arg(long, default_value_t = 100_000)]
    first_device: u32,
    /// Measure the limit: write the rows straight into this database (a SQLite file or a
    /// `postgres://` URL) with no HTTP and no service (see the module docs).
    #[arg(long)]
    limit_db: Option<String>,
}

struct WorkerResult {
    latencies_us: Vec<u32>,
    readings: u64,
    errors: u64,
    first_error: Option<String>,
}

fn frames_body(device: u32, first_seq: u32, n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize * 40);
    let mut buf = [0u8; MAX_WIRE_LEN];
    for seq in first_seq..first_seq + n {
        let frame = Frame::new(device, seq, u64::from(seq) * 1000)
            .with(Reading::Temperature {
                centi_celsius: 2000 + (seq % 500) as i16,
            })
            .and_then(|f| {
                f.with(Reading::Humidity {
                    centi_percent: 4000 + (seq % 1000) as u16,
                })
            });
        if let Ok(frame) = frame
            && let Ok(len) = encode(&frame, &mut buf)
        {
            out.extend_from_slice(&buf[..len]);
        }
    }
    out
}

fn json_body(first_seq: u32, n: u32, now_ms: i64) -> Vec<u8> {
    // Written by hand rather than through serde_json::Value trees: the load generator shares
    // the machine with the service, so its own CPU use must stay small.
    use std::fmt::Write as _;
    let mut out = String::with_capacity(n as usize * 160);
    out.push_str("{\"readings\":[");
    for seq in first_seq..first_seq + n {
        if seq != first_seq {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"seq\":{seq},\"uptime_ms\":{},\"sampled_at_ms\":{now_ms},\"values\":[{{\"kind\":\"temperature_c\",\"value\":{}}},{{\"kind\":\"humidity_pct\",\"value\":{}}}]}}",
            u64::from(seq) * 1000,
            20.0 + f64::from(seq % 500) / 100.0,
            40.0 + f64::from(seq % 1000) / 100.0
        );
    }
    out.push_str("]}");
    out.into_bytes()
}

fn client(churn: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    let builder = if churn {
        builder.pool_max_idle_per_host(0)
    } else {
        builder
    };
    builder.build().unwrap_or_default()
}

async fn worker(
    args: std::sync::Arc<Args>,
    w: u32,
    deadline: Instant,
    budget: std::sync::Arc<std::sync::atomic::AtomicI64>,
) -> WorkerResult {
    let device = args.first_device + w;
    let token = format!("load-{device}");
    let http = client(args.churn);
    let mut result = WorkerResult {
        latencies_us: Vec::new(),
        readings: 0,
        errors: 0,
        first_error: None,
    };
    let reg = http
        .post(format!("{}/api/v1/devices", args.url))
        .json(&serde_json::json!({"id": device, "token": token}))
        .send()
        .await;
    if let Err(e) = reg.and_then(|r| r.error_for_status()) {
        result.errors += 1;
        result.first_error = Some(format!("register: {e}"));
        return result;
    }
    // Continue after what a previous run stored for this device.
    let mut seq: u32 = 1;
    if let Ok(r) = http.get(format!("{}/api/v1/latest", args.url)).send().await
        && let Ok(v) = r.json::<serde_json::Value>().await
        && let Some(last) = v["readings"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["device_id"] == device))
    {
        seq = last["seq"].as_u64().unwrap_or(0) as u32 + 1;
    }
    let url = format!("{}/api/v1/devices/{device}/readings", args.url);
    let frames = args.format == "frames";
    while Instant::now() < deadline && budget.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0
    {
        let body = if frames {
            frames_body(device, seq, args.batch)
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            json_body(seq, args.batch, now)
        };
        let content_type = if frames {
            "application/x-beacon-frames"
        } else {
            "application/json"
        };
        let started = Instant::now();
        let sent = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        let ok = match sent {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                result
                    .first_error
                    .get_or_insert_with(|| format!("{status}: {text}"));
                false
            }
            Err(e) => {
                result.first_error.get_or_insert_with(|| e.to_string());
                false
            }
        };
        if ok {
            result
                .latencies_us
                .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            result.readings += u64::from(args.batch);
            seq += args.batch;
        } else {
            result.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    result
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn main() -> ExitCode {
    let args = std::sync::Arc::new(Args::parse());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(db) = args.limit_db.clone() {
        return runtime.block_on(limit::run(args, db));
    }
    let results = runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.duration_secs);
        let budget = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            i64::try_from(args.max_requests).unwrap_or(i64::MAX),
        ));
        let handles: Vec<_> = (0..args.concurrency)
            .map(|w| {
                tokio::spawn(worker(
                    std::sync::Arc::clone(&args),
                    w,
                    deadline,
                    std::sync::Arc::clone(&budget),
                ))
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            if let Ok(r) = h.await {
                results.push(r);
            }
        }
        (results, started.elapsed())
    });
    let (results, elapsed) = results;
    summarize(&results, elapsed)
}

fn summarize(results: &[WorkerResult], elapsed: Duration) -> ExitCode {
    let mut latencies: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let readings: u64 = results.iter().map(|r| r.readings).sum();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let secs = elapsed.as_secs_f64();
    let summary = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors,
        "readings": readings,
        "secs": (secs * 1000.0).round() / 1000.0,
        "readings_per_sec": (readings as f64 / secs).round(),
        "requests_per_sec": (latencies.len() as f64 / secs).round(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "first_error": first_error,
    });
    println!("{summary}");
    if readings == 0 {
        eprintln!(
            "error: no request succeeded: {}",
            first_error.unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The floor: the same rows into the same schema, no HTTP, no service.
mod limit {
    use super::{Args, WorkerResult, summarize};
    use beacon_service::model::{StoredReading, Value, now_millis};
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn rows(device: u32, first_seq: u32, n: u32) -> Vec<StoredReading> {
        let now = now_millis();
        (first_seq..first_seq + n)
            .map(|seq| StoredReading {
                device_id: device,
                boot: 0,
                seq,
                uptime_ms: u64::from(seq) * 1000,
                sampled_at_ms: now,
                received_at_ms: now,
                values: vec![
                    Value::TemperatureC {
                        value: 20.0 + f64::from(seq % 500) / 100.0,
                    },
                    Value::HumidityPct {
                        value: 40.0 + f64::from(seq % 1000) / 100.0,
                    },
                ],
            })
            .collect()
    }

    fn vals(r: &StoredReading) -> String {
        serde_json::to_string(&r.values).unwrap_or_default()
    }

    fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
        eprintln!("error: {what}: {e}");
        ExitCode::FAILURE
    }

    pub async fn run(args: Arc<Args>, db: String) -> ExitCode {
        let config = beacon_service::Config::for_db(&db);
        // The service's own open: creates the schema (its migrations) exactly as it would.
        match beacon_service::open_any_store(&config).await {
            Ok(store) => {
                if let Err(e) = store.close().await {
                    return fail("closing the store", e);
                }
            }
            Err(e) => return fail(&format!("opening {db}"), e),
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.duration_secs);
        let results = if config.postgres_url().is_some() {
            let mut handles = Vec::new();
            for w in 0..args.concurrency {
                handles.push(tokio::spawn(postgres(
                    Arc::clone(&args),
                    db.clone(),
                    w,
                    deadline,
                )));
            }
            let mut results = Vec::new();
            for h in handles {
                match h.await {
                    Ok(r) => results.push(r),
                    Err(e) => return fail("a worker failed", e),
                }
            }
            results
        } else {
            let args = Arc::clone(&args);
            match tokio::task::spawn_blocking(move || sqlite(&args, &db, deadline)).await {
                Ok(r) => vec![r],
                Err(e) => return fail("the sqlite worker failed", e),
            }
        };
        summarize(&results, started.elapsed())
    }

    fn empty() -> WorkerResult {
        WorkerResult {
            latencies_us: Vec::new(),
            readings: 0,
            errors: 0,
            first_error: None,
        }
    }

    async fn postgres(args: Arc<Args>, url: String, w: u32, deadline: Instant) -> WorkerResult {
        use futures_util::SinkExt as _;
        let mut result = empty();
        let (mut client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok(c) => c,
            Err(e) => {
                result.errors += 1;
                result.first_error = Some(format!("connect: {e}"));
                return result;
            }
        };
        tokio::spawn(conn);
        let device = args.first_device + w;
        let mut seq = 1;
        while Instant::now() < deadline {
            let batch = rows(device, seq, args.batch);
            let mut text = Vec::with_capacity(batch.len() * 120);
            for r in &batch {
                use std::io::Write as _;
                let _ = writeln!(
                    text,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.device_id,
                    r.boot,
                    r.seq,
                    i64::from_ne_bytes(r.uptime_ms.to_ne_bytes()),
                    r.sampled_at_ms,
                    r.received_at_ms,
                    vals(r)
                );
            }
            let t0 = Instant::now();
            let outcome = async {
                let tx = client.transaction().await?;
                let sink = tx
                    .copy_in(
                        "COPY readings (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals) FROM STDIN",
                    )
                    .await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(std::io::Cursor::new(text)).await?;
                sink.as_mut().finish().await?;
                tx.commit().await
            }
            .await;
            match outcome {
                Ok(()) => {
                    result
                        .latencies_us
                        .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    result.readings += u64::from(args.batch);
                    seq += args.batch;
                }
                Err(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert_with(|| e.to_string());
                    if result.errors > 100 {
                        break;
                    }
                }
            }
        }
        result
    }

    fn sqlite(args: &Args, path: &str, deadline: Instant) -> WorkerResult {
        let mut result = empty();
        let conn = rusqlite::Connection::open(path).and_then(|c| {
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.pragma_update(None, "cache_size", -16_384)?;
            Ok(c)
        });
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                result.errors += 1;
                result.first_error = Some(format!("open: {e}"));
                return result;
            }
        };
        let mut seq = 1;
        let mut w = 0;
        while Instant::now() < deadline {
            // Round robin over the devices, as the service's concurrent requests would be.
            let device = args.first_device + w % args.concurrency.max(1);
            w += 1;
            let batch = rows(device, seq, args.batch);
            let t0 = Instant::now();
            let outcome = (|| {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO readings (device_id, boot, seq, uptime_ms, sampled_at_ms, received_at_ms, vals)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    for r in &batch {
                        insert.execute(rusqlite::params![
                            r.device_id,
                            r.boot,
                            r.seq,
                            i64::from_ne_bytes(r.uptime_ms.to_ne_bytes()),
                            r.sampled_at_ms,
                            r.received_at_ms,
                            vals(r)
                        ])?;
                    }
                }
                tx.commit()
            })();
            match outcome {
                Ok(()) => {
                    result
                        .latencies_us
                        .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    result.readings += u64::from(args.batch);
                    if w % args.concurrency.max(1) == 0 {
                        seq += args.batch;
                    }
                }
                Err(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert_with(|| e.to_string());
                    if result.errors > 100 {
                        break;
                    }
                }
            }
        }
        result
    }
}

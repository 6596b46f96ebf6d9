//! The `Store` contract, one suite, two backends: every case below runs against SQLite (a temp
//! file) and against PostgreSQL (a fresh database in the throwaway cluster of
//! beacon-pgtemp), opened the way the binary opens them (`open_any_store` on a `--db` path or
//! URL). `cargo test -p beacon-service --test it store_contract::postgres::` runs one side.

use crate::shared::all_readings;
use beacon_service::Config;
use beacon_service::model::{StoredReading, Value};
use beacon_service::store::{DynStore, NewDevice, StoreError, token_hash};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// Where a backend keeps its data: a file path or a database URL (and the temp dir to drop).
struct Place {
    db: String,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn place(self) -> Place {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let db = dir.path().join("t.db").display().to_string();
                Place {
                    db,
                    _dir: Some(dir),
                }
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => Place {
                db: crate::pg::fresh_db(),
                _dir: None,
            },
        }
    }
}

async fn open(place: &Place) -> Arc<dyn DynStore> {
    open_with(place, |_| {}).await
}

async fn open_with(place: &Place, tune: impl FnOnce(&mut Config)) -> Arc<dyn DynStore> {
    let mut config = Config::for_db(&place.db);
    tune(&mut config);
    beacon_service::open_any_store(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", place.db))
}

fn reading(device_id: u32, boot: u32, seq: u32) -> StoredReading {
    StoredReading {
        device_id,
        boot,
        seq,
        uptime_ms: u64::from(seq) * 1000,
        sampled_at_ms: 1_000_000 + i64::from(seq),
        received_at_ms: 2_000_000 + i64::from(seq),
        values: vec![
            Value::TemperatureC { value: 21.5 },
            Value::Counter { value: seq },
        ],
    }
}

async fn register(store: &dyn DynStore, id: u32, token: &str) {
    store
        .register(NewDevice {
            id: Some(id),
            token: token_hash(token),
            name: None,
        })
        .await
        .unwrap();
}

/// What was ingested comes back, field for field (u64::MAX uptime included), in (boot, seq)
/// order; `latest` is the newest sample.
async fn round_trip(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    register(&*store, 1, "tok-1").await;
    let mut batch = vec![reading(1, 7, 2), reading(1, 7, 0), reading(1, 7, 1)];
    batch[0].uptime_ms = u64::MAX;
    batch[1].values = vec![
        Value::HumidityPct { value: 45.25 },
        Value::Status { value: 1 },
        Value::Boot {
            firmware: "1.2.3".into(),
            board: 1,
        },
        Value::Unknown { code: 200, len: 3 },
    ];
    let out = store.ingest(batch.clone()).await.unwrap();
    assert_eq!((out.accepted.len(), out.duplicates), (3, 0));
    let mut expected = batch.clone();
    expected.sort_by_key(|r| (r.boot, r.seq));
    assert_eq!(store.query(all_readings(1)).await.unwrap(), expected);
    assert_eq!(store.latest().await.unwrap(), vec![batch[0].clone()]);
    assert!(store.query(all_readings(2)).await.unwrap().is_empty());
    store.ready().await.unwrap();
    store.close().await.unwrap();
}

/// One row per (device, boot, seq): a resent batch is all duplicates, a repeat inside one
/// batch is one duplicate, the same seq with another boot is new.
async fn dedup(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    register(&*store, 1, "tok-1").await;
    let batch: Vec<_> = (0..50).map(|s| reading(1, 1, s)).collect();
    let first = store.ingest(batch.clone()).await.unwrap();
    assert_eq!((first.accepted.len(), first.duplicates), (50, 0));
    let again = store.ingest(batch).await.unwrap();
    assert_eq!((again.accepted.len(), again.duplicates), (0, 50));
    let repeat = store
        .ingest(vec![reading(1, 1, 60), reading(1, 1, 60)])
        .await
        .unwrap();
    assert_eq!((repeat.accepted.len(), repeat.duplicates), (1, 1));
    let reboot = store.ingest(vec![reading(1, 2, 0)]).await.unwrap();
    assert_eq!((reboot.accepted.len(), reboot.duplicates), (1, 0));
    assert_eq!(store.query(all_readings(1)).await.unwrap().len(), 52);
    store.close().await.unwrap();
}

/// Concurrent ingests (the group commit's case), overlapping by half: every one is answered,
/// and each reading is accepted by exactly one of them.
async fn concurrent_group_commit(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    for d in 1..=4 {
        register(&*store, d, "tok").await;
    }
    let mut tasks = Vec::new();
    for i in 0..32u32 {
        let store = Arc::clone(&store);
        let device = i % 4 + 1;
        // Request i covers seqs [i/4 * 50, i/4 * 50 + 100): half shared with the next one.
        let start = (i / 4) * 50;
        let batch: Vec<_> = (start..start + 100)
            .map(|s| reading(device, 1, s))
            .collect();
        tasks.push(tokio::spawn(async move { store.ingest(batch).await }));
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        accepted += out.accepted.len();
        duplicates += out.duplicates;
    }
    // Per device: seqs 0..450 (8 requests, start 0..350 step 50, 100 each).
    assert_eq!(accepted + duplicates, 3200);
    assert_eq!(
        accepted,
        4 * 450,
        "each distinct reading accepted exactly once"
    );
    for d in 1..=4 {
        let seqs: Vec<u32> = store
            .query(all_readings(d))
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (0..450).collect::<Vec<_>>(), "device {d}");
    }
    store.close().await.unwrap();
}

/// Registration: idempotent for the same token, a conflict for another, the next free id when
/// none is given; the store keeps the hash.
async fn registration(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    let new = |id, token: &str| NewDevice {
        id,
        token: token_hash(token),
        name: Some("n".into()),
    };
    let first = store.register(new(Some(5), "a")).await.unwrap();
    assert!(first.created);
    assert_eq!(first.token, None);
    let again = store.register(new(Some(5), "a")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.device, first.device);
    match store.register(new(Some(5), "b")).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("another token"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let auto = store.register(new(None, "c")).await.unwrap();
    assert_eq!(auto.device.id, 6);
    let devices = store.devices().await.unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.device.id, d.token.clone()))
            .collect::<Vec<_>>(),
        vec![(5, token_hash("a")), (6, token_hash("c"))]
    );
    assert_eq!(store.device_token(6).await.unwrap(), Some(token_hash("c")));
    assert_eq!(store.device_token(7).await.unwrap(), None);
    store.close().await.unwrap();
}

/// Paging in (boot, seq) order with the cursor returns every reading once; the time range
/// bounds are inclusive/exclusive.
async fn paging_and_time_range(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    register(&*store, 1, "t").await;
    let mut batch: Vec<_> = (0..13).map(|s| reading(1, 2, s)).collect();
    batch.extend((0..12).map(|s| reading(1, 1, s)));
    store.ingest(batch).await.unwrap();
    let mut seen = Vec::new();
    let mut q = all_readings(1);
    q.limit = 10;
    loop {
        let page = store.query(q).await.unwrap();
        let Some(last) = page.last() else { break };
        q.after_boot = Some(last.boot);
        q.after_seq = Some(last.seq);
        seen.extend(page.iter().map(|r| (r.boot, r.seq)));
    }
    let mut expected: Vec<_> = (0..12).map(|s| (1, s)).collect();
    expected.extend((0..13).map(|s| (2, s)));
    assert_eq!(seen, expected);
    let mut window = all_readings(1);
    window.from_ms = 1_000_003;
    window.to_ms = 1_000_005;
    let got: Vec<_> = store
        .query(window)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.boot, r.seq))
        .collect();
    assert_eq!(got, vec![(1, 3), (1, 4), (2, 3), (2, 4)]);
    store.close().await.unwrap();
}

/// Accepted means committed: after close and reopen (migrations run again, as no-ops) the data
/// is there; a closed store refuses writes with Unavailable (503), never "accepted".
async fn durable_across_reopen(b: Backend) {
    let place = b.place();
    let store = open(&place).await;
    register(&*store, 3, "t").await;
    store
        .ingest((0..100).map(|s| reading(3, 1, s)).collect())
        .await
        .unwrap();
    store.close().await.unwrap();
    match store.ingest(vec![reading(3, 1, 500)]).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("shutting down"), "{m}"),
        other => panic!("a closed store must refuse writes, got {other:?}"),
    }
    drop(store);
    let store = open(&place).await;
    assert_eq!(store.query(all_readings(3)).await.unwrap().len(), 100);
    assert_eq!(store.device_token(3).await.unwrap(), Some(token_hash("t")));
    let again = store
        .ingest((50..150).map(|s| reading(3, 1, s)).collect())
        .await
        .unwrap();
    assert_eq!((again.accepted.len(), again.duplicates), (50, 50));
    store.close().await.unwrap();
}

/// The write queue is bounded: a flood beyond it is refused at once with Unavailable (503 +
/// Retry-After), and a refused ingest stored nothing.
async fn bounded_queue_refuses_instead_of_queueing(b: Backend) {
    let place = b.place();
    let store = open_with(&place, |c| c.write_queue = 1).await;
    register(&*store, 1, "t").await;
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let store = Arc::clone(&store);
            let batch: Vec<_> = (i * 100..(i + 1) * 100).map(|s| reading(1, 1, s)).collect();
            tokio::spawn(async move { store.ingest(batch).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(out) => ok += out.accepted.len(),
            Err(StoreError::Unavailable(m)) => {
                assert!(m.contains("write queue is full"), "{m}");
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(refused > 0, "64 ingests at once never filled a queue of 1");
    assert_eq!(ok + refused * 100, 6400);
    assert_eq!(
        store.query(all_readings(1)).await.unwrap().len(),
        ok,
        "a refused ingest stored rows"
    );
    store.close().await.unwrap();
}

/// The same cases as tests for each backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Sqlite).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

contract!(
    round_trip,
    dedup,
    concurrent_group_commit,
    registration,
    paging_and_time_range,
    durable_across_reopen,
    bounded_queue_refuses_instead_of_queueing,
);

/// The SQLite-only build (`--no-default-features`, what `cargo xtask demo` builds without
/// `--db postgres`) refuses a PostgreSQL URL at open, naming the feature to turn on.
/// `cargo xtask test` runs it: `cargo test -p beacon-service --no-default-features --test it`.
#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn sqlite_only_build_refuses_a_postgres_url_naming_the_feature() {
    let config = Config::for_db("postgres://beacon:secret@127.0.0.1:1/beacon");
    let Err(e) = beacon_service::open_any_store(&config).await else {
        panic!("a SQLite-only build opened a postgres:// URL");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("built without the `postgres` feature")
            && msg.contains("--features postgres")
            && !msg.contains("secret"),
        "{msg}"
    );
}

//! PostgreSQL's LISTEN/NOTIFY, both ways: [`notify`] tells the other replicas of a commit
//! (after it, in a small transaction of its own), and [`listen_loop`] follows theirs, publishing
//! their readings on the live stream and feeding the device changes (migration 2's trigger)
//! into the token cache. `postgres/mod.rs`'s docs say why the notification is not part of the
//! data transaction.

use super::ingest::Writer;
use super::queries::row_to_reading;
use super::{Target, describe, map_err, pool_err};
use crate::store::rows::COLUMNS;
use crate::store::{Events, TokenInvalidate};
use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

/// The channel the writers notify on.
const CHANNEL: &str = "beacon_readings";

/// The channel migration 2's trigger notifies on, with the device id, when a device row is
/// updated or deleted.
const DEVICES_CHANNEL: &str = "beacon_devices";

/// Tells the other replicas' listeners about a committed group: its own transaction, which
/// need not wait for the WAL flush (see `postgres/mod.rs` for why not the data transaction).
pub(super) async fn notify(w: &Writer, payload: &str) {
    let sql = format!(
        "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('{CHANNEL}', '{}'); COMMIT",
        payload.replace('\'', "''")
    );
    if let Err(e) = w.client.batch_execute(&sql).await {
        tracing::warn!(
            "live stream: the other replicas were not told of a commit: {}",
            describe(&e)
        );
        if !w.client.is_closed() {
            let _ = w.client.batch_execute("ROLLBACK").await;
        }
    }
}

/// What the listener serves: the live stream and the token cache.
pub(super) struct Listeners {
    pub(super) me: String,
    pub(super) events: Events,
    pub(super) invalidate: Arc<Mutex<Option<TokenInvalidate>>>,
}

impl Listeners {
    fn invalidate(&self, id: Option<u32>) {
        let f = self.invalidate.lock().ok().and_then(|f| f.clone());
        if let Some(f) = f {
            f(id);
        }
    }
}

/// Follows the other replicas' commits (see `postgres/mod.rs`) and publishes their readings on
/// `events` while anyone is subscribed, and the device changes (migration 2's trigger) into
/// the token cache. Reconnects after a second when the connection drops (commits notified in
/// the gap are not streamed: the stream is live, not a log; the token cache is emptied at
/// every (re)connect, since changes in the gap were missed).
pub(super) async fn listen_loop(target: Target, pool: Pool, to: Listeners) {
    let select = format!(
        "SELECT {COLUMNS} FROM readings WHERE pos BETWEEN $1 AND $2 AND xmin = $3::text::xid ORDER BY pos"
    );
    loop {
        match target.pg.connect(target.tls.clone()).await {
            Ok((client, mut conn)) => {
                let (ntx, mut nrx) = mpsc::channel::<(bool, String)>(1024);
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(|cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                // Full: the readers fell behind; drop (the stream says lagged
                                // to nobody, but it never blocks the connection).
                                let device = n.channel() == DEVICES_CHANNEL;
                                let _ = ntx.try_send((device, n.payload().to_owned()));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("PostgreSQL listener: {}", describe(&e));
                                break;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN {CHANNEL}; LISTEN {DEVICES_CHANNEL}");
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        to.invalidate(None);
                        while let Some((device, payload)) = nrx.recv().await {
                            if device {
                                // An unreadable id: drop everything rather than guess.
                                to.invalidate(payload.parse().ok());
                                continue;
                            }
                            let mut parts = payload.split(':');
                            let (Some(who), Some(lo), Some(hi), Some(xid)) =
                                (parts.next(), parts.next(), parts.next(), parts.next())
                            else {
                                continue;
                            };
                            if who == to.me || to.events.receiver_count() == 0 {
                                continue;
                            }
                            let (Ok(lo), Ok(hi)) = (lo.parse::<i64>(), hi.parse::<i64>()) else {
                                continue;
                            };
                            let rows = match pool.get().await {
                                Ok(c) => c.query(&select, &[&lo, &hi, &xid]).await.map_err(map_err),
                                Err(e) => Err(pool_err(e)),
                            };
                            match rows.and_then(|rows| {
                                rows.iter()
                                    .map(row_to_reading)
                                    .collect::<Result<Vec<_>, _>>()
                            }) {
                                Ok(batch) if !batch.is_empty() => {
                                    let _ = to.events.send(Arc::from(batch));
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(
                                    "live stream: cannot read a commit of another replica: {e}"
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::warn!("PostgreSQL LISTEN failed: {}", describe(&e)),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(
                "PostgreSQL listener cannot connect ({}); retrying in 1 s",
                describe(&e)
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

//! `tcp:` (connect, reconnect with backoff) and `listen:` (accept) links.

use super::backoff::{Backoff, sleep_or_cancel};
use super::consume::Consumer;
use super::event::{Ctx, EventSink, LinkEvent, REPLAY_REQUEST};
use super::pump::{encode_downlink, read_into};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Connects to `addr`, pumps the connection into `tx` (its consumer) to its end, and
/// reconnects with backoff until shutdown.
pub async fn connect_loop(name: &str, addr: &str, tx: &mut impl EventSink, ctx: &Ctx) {
    // Short: a device link is local (QEMU, ser2net on the LAN) and a connect attempt is cheap;
    // every ms without a connection is a ms of frames only the device's replay can recover.
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
    loop {
        let connected = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            r = TcpStream::connect(addr) => r,
        };
        let stream = match connected {
            Ok(s) => s,
            Err(e) => {
                let n = backoff.attempts();
                if n == 0 || n % 50 == 49 {
                    tracing::warn!("link {name}: cannot connect: {e}; retrying");
                }
                if !sleep_or_cancel(backoff.next_delay(), &ctx.cancel).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let _ = stream.set_nodelay(true);
        if !pump_stream(name, stream, tx, ctx).await {
            return;
        }
        if !sleep_or_cancel(Duration::from_millis(50), &ctx.cancel).await {
            return;
        }
    }
}

/// Reads one connection to its end, writing the acks for its frames back on the same
/// connection. `false` when the gateway is shutting down.
async fn pump_stream(name: &str, stream: TcpStream, tx: &mut impl EventSink, ctx: &Ctx) -> bool {
    ctx.metrics.connects.fetch_add(1, Relaxed);
    tracing::info!("link {name}: connected");
    let (mut reader, mut writer) = stream.into_split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    if !tx.send(LinkEvent::Connected).await || !tx.send(LinkEvent::Downlink(ack_tx)).await {
        return false;
    }
    if ctx.replay {
        match writer.write_all(&[REPLAY_REQUEST]).await {
            Ok(()) => {
                ctx.metrics.replay_requests.fetch_add(1, Relaxed);
            }
            Err(e) => tracing::warn!("link {name}: cannot send the replay request: {e}"),
        }
    }
    let write_acks = async {
        while let Some(msg) = ack_rx.recv().await {
            let mut buf = [0u8; beacon_protocol::downlink::MAX_ACK_WIRE_LEN];
            let Some(n) = encode_downlink(&msg, &mut buf, &ctx.metrics) else {
                continue;
            };
            if let Err(e) = writer.write_all(buf.get(..n).unwrap_or_default()).await {
                return format!("cannot write to the device: {e}");
            }
        }
        "the ack channel closed".to_owned()
    };
    let why = tokio::select! {
        why = read_into(&mut reader, tx, &ctx.cancel) => why,
        why = write_acks => Some(why),
    };
    match why {
        Some(why) => {
            tracing::warn!("link {name}: disconnected: {why}; reconnecting");
            tx.send(LinkEvent::Disconnected(why)).await
        }
        None => false,
    }
}

/// Accepts connections on `addr` until shutdown; each is read and decoded in one task of its
/// own (its [`Consumer`] called inline: no channel and no second task per device).
pub async fn listen(name: &str, addr: SocketAddr, ctx: Ctx) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("link {name}: cannot listen on {addr}: {e}; pick a free port"))?;
    tracing::info!("link {name}: listening");
    let mut conns = tokio::task::JoinSet::new();
    // Out of file descriptors (EMFILE) the accept fails at once, again and again: back off
    // instead of spinning, and say what to do.
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let (stream, peer) = tokio::select! {
            () = ctx.cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff.reset();
                    c
                }
                Err(e) => {
                    if backoff.attempts().is_multiple_of(20) {
                        tracing::warn!(
                            "link {name}: accept failed: {e} ({} connections open; out of file \
                             descriptors? raise the hard open-file limit)",
                            conns.len()
                        );
                    }
                    if !sleep_or_cancel(backoff.next_delay(), &ctx.cancel).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn_name = format!("{name} from {peer}");
        let ctx = ctx.clone();
        conns.spawn(async move {
            let mut consumer = Consumer::new(conn_name.clone(), ctx.clone());
            pump_stream(&conn_name, stream, &mut consumer, &ctx).await;
        });
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

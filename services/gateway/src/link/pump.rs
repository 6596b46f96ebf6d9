//! Byte pumps: forwarding a link's bytes to its consumer (async for sockets and files, on a
//! thread for blocking links), and encoding what goes back to the device.

use super::event::{EventSink, LinkEvent, REPLAY_REQUEST};
use crate::metrics::Metrics;
use beacon_protocol::Downlink;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes read at once from a link.
const READ_CHUNK: usize = 4096;

/// Encodes a downlink message into `buf` and counts it; `None` if it cannot be encoded.
pub fn encode_downlink(
    msg: &Downlink,
    buf: &mut [u8; beacon_protocol::downlink::MAX_ACK_WIRE_LEN],
    metrics: &Metrics,
) -> Option<usize> {
    match msg {
        Downlink::Replay => {
            buf[0] = REPLAY_REQUEST;
            metrics.replay_requests.fetch_add(1, Relaxed);
            Some(1)
        }
        Downlink::Ack(ack) => {
            let n = ack.encode(buf).ok()?;
            metrics.acks_sent.fetch_add(1, Relaxed);
            Some(n)
        }
    }
}

/// Forwards bytes until the stream ends (`Some(reason)`) or shutdown / consumer gone (`None`).
pub async fn read_into(
    stream: &mut (impl AsyncRead + Unpin),
    tx: &mut impl EventSink,
    cancel: &CancellationToken,
) -> Option<String> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let read = tokio::select! {
            () = cancel.cancelled() => return None,
            r = stream.read(&mut buf) => r,
        };
        match read {
            Ok(0) => return Some("closed by the device side".to_owned()),
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default().to_vec();
                if !tx.send(LinkEvent::Bytes(chunk)).await {
                    return None;
                }
            }
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// The byte pump of the blocking links (serial, RTT), on their own thread: calls `read` until
/// shutdown, forwarding every non-empty chunk. A read of 0 bytes means "nothing yet" (RTT is
/// polled): the pump waits `idle` and reads again. `Ok` on shutdown or when the consumer is
/// gone; `Err` when `read` fails (the caller reconnects).
pub fn pump_blocking(
    mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    tx: &mpsc::Sender<LinkEvent>,
    cancel: &CancellationToken,
    idle: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; READ_CHUNK];
    while !cancel.is_cancelled() {
        match read(&mut buf) {
            Ok(0) => {
                if !idle.is_zero() {
                    std::thread::sleep(idle);
                }
            }
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default().to_vec();
                if tx.blocking_send(LinkEvent::Bytes(chunk)).is_err() {
                    return Ok(());
                }
            }
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    Ok(())
}

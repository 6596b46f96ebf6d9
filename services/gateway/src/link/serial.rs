//! `serial:` links, read on their own thread.

use super::backoff::Backoff;
use super::event::{LinkEvent, REPLAY_REQUEST};
use super::pump::{encode_downlink, pump_blocking};
use crate::metrics::Metrics;
use beacon_protocol::Downlink;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Opens the port (again after every failure) and pumps it until shutdown.
pub fn serial_thread(
    name: &str,
    path: &std::path::Path,
    baud: u32,
    replay: bool,
    tx: &mpsc::Sender<LinkEvent>,
    cancel: &CancellationToken,
    metrics: &Metrics,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while !cancel.is_cancelled() {
        let port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(100))
            .open();
        let mut port = match port {
            Ok(p) => p,
            Err(e) => {
                if backoff.attempts().is_multiple_of(20) {
                    tracing::warn!(
                        "link {name}: cannot open the port: {e}; retrying (is the board plugged in?)"
                    );
                }
                std::thread::sleep(backoff.next_delay());
                continue;
            }
        };
        backoff.reset();
        tracing::info!("link {name}: open");
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Downlink>();
        if tx.blocking_send(LinkEvent::Connected).is_err()
            || tx.blocking_send(LinkEvent::Downlink(ack_tx)).is_err()
        {
            return;
        }
        if replay && std::io::Write::write_all(&mut port, &[REPLAY_REQUEST]).is_err() {
            tracing::warn!("link {name}: cannot send the replay request");
        }
        let result = pump_blocking(
            |buf| {
                // Acks go out between reads (each read waits at most the port's 100 ms timeout).
                while let Ok(msg) = ack_rx.try_recv() {
                    let mut wire = [0u8; beacon_protocol::downlink::MAX_ACK_WIRE_LEN];
                    if let Some(n) = encode_downlink(&msg, &mut wire, metrics) {
                        std::io::Write::write_all(&mut port, wire.get(..n).unwrap_or_default())?;
                    }
                }
                match std::io::Read::read(&mut port, buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(0),
                    r => r,
                }
            },
            tx,
            cancel,
            Duration::ZERO,
        );
        match result {
            Ok(()) => return,
            Err(why) => {
                tracing::warn!("link {name}: {why}; reopening");
                if tx.blocking_send(LinkEvent::Disconnected(why)).is_err() {
                    return;
                }
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}

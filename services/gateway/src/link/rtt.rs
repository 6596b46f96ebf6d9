//! RTT through the probe-rs library (cargo feature `rtt`): a real board's up-channel, read by a
//! blocking probe-rs `Session` on its own `std::thread`, never on the async runtime. Bytes go
//! to the link's consumer over the same channel as every other link, through
//! [`super::pump::pump_blocking`] (which the tests drive with a recorded byte stream).

use super::event::Ctx;
#[cfg(feature = "rtt")]
use super::{consume::consume, event::LinkEvent, pump::pump_blocking};

/// How long the RTT thread sleeps when the channel was empty. RTT is polled over the probe;
/// 5 ms keeps latency low without saturating the probe's USB link.
#[cfg(feature = "rtt")]
const POLL_IDLE: std::time::Duration = std::time::Duration::from_millis(5);

/// Runs an `rtt:` link.
#[cfg(not(feature = "rtt"))]
pub async fn run(
    name: &str,
    _chip: String,
    _channel: Option<usize>,
    _ctx: Ctx,
) -> Result<(), String> {
    Err(format!(
        "link {name}: this gateway was built without RTT support; rebuild it with `cargo build -p beacon-gateway --features rtt`"
    ))
}

/// Runs an `rtt:` link.
#[cfg(feature = "rtt")]
pub async fn run(name: &str, chip: String, channel: Option<usize>, ctx: Ctx) -> Result<(), String> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let consumer = tokio::spawn(consume(name.to_owned(), rx, ctx.clone()));
    let cancel = ctx.cancel.clone();
    let thread_name = name.to_owned();
    let metrics = std::sync::Arc::clone(&ctx.metrics);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("link {name}"))
        .spawn(move || {
            let result = read_rtt(&thread_name, &chip, channel, &tx, &cancel, &metrics);
            drop(tx);
            let _ = done_tx.send(result);
        })
        .map_err(|e| format!("link {name}: cannot start its thread: {e}"))?;
    let result = done_rx
        .await
        .unwrap_or_else(|_| Err(format!("link {name}: the rtt thread panicked")));
    let _ = consumer.await;
    result
}

#[cfg(feature = "rtt")]
fn read_rtt(
    name: &str,
    chip: &str,
    channel: Option<usize>,
    tx: &tokio::sync::mpsc::Sender<LinkEvent>,
    cancel: &tokio_util::sync::CancellationToken,
    metrics: &crate::metrics::Metrics,
) -> Result<(), String> {
    use probe_rs::Permissions;
    use probe_rs::probe::list::Lister;
    use probe_rs::rtt::Rtt;

    let lister = Lister::new();
    let probes = lister.list_all();
    let Some(info) = probes.first() else {
        return Err(format!(
            "link {name}: no debug probe found; connect the board's debug USB port (`probe-rs list` shows what is visible)"
        ));
    };
    if probes.len() > 1 {
        tracing::warn!(
            "link {name}: {} probes found, using the first: {}",
            probes.len(),
            info.identifier
        );
    }
    let probe = info
        .open()
        .map_err(|e| format!("link {name}: cannot open probe {}: {e}", info.identifier))?;
    let mut session = probe
        .attach(chip, Permissions::default())
        .map_err(|e| format!("link {name}: cannot attach to {chip}: {e}; check the chip name with `probe-rs chip list`"))?;
    let mut core = session
        .core(0)
        .map_err(|e| format!("link {name}: cannot reach core 0: {e}"))?;
    // The firmware sets up its RTT control block at start-up: retry briefly.
    let mut rtt = None;
    for _ in 0..50 {
        match Rtt::attach(&mut core) {
            Ok(r) => {
                rtt = Some(r);
                break;
            }
            Err(_) if !cancel.is_cancelled() => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => return Err(format!("link {name}: rtt: {e}")),
        }
    }
    let Some(mut rtt) = rtt else {
        return Err(format!(
            "link {name}: no RTT control block found; is the beacon firmware flashed and running?"
        ));
    };
    let index = channel
        .or_else(|| {
            rtt.up_channels()
                .iter()
                .find(|c| c.name() == Some("telemetry"))
                .map(|c| c.number())
        })
        .unwrap_or(1);
    if rtt.up_channel(index).is_none() {
        return Err(format!(
            "link {name}: the firmware has no RTT up-channel {index}"
        ));
    }
    // The downlink (protocol/SPEC.md section 8): the firmware's down-channel named
    // "downlink", else 0. Without one (older firmware) the frames are simply not acked.
    let down = rtt
        .down_channels()
        .iter()
        .find(|c| c.name() == Some("downlink"))
        .map(|c| c.number())
        .or_else(|| rtt.down_channel(0).map(|c| c.number()));
    tracing::info!(
        "link {name}: attached, reading up-channel {index}, acks to down-channel {down:?}"
    );
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<beacon_protocol::Downlink>();
    if tx.blocking_send(LinkEvent::Connected).is_err() {
        return Ok(());
    }
    if down.is_some() && tx.blocking_send(LinkEvent::Downlink(ack_tx)).is_err() {
        return Ok(());
    }
    let mut pending: Vec<u8> = Vec::new();
    if down.is_some() {
        pending.push(super::event::REPLAY_REQUEST);
    }
    pump_blocking(
        |buf| {
            // Acks (and the replay request) go out between polls; what the 64-byte
            // down-channel cannot take now waits for the next poll.
            while let Ok(msg) = ack_rx.try_recv() {
                let mut wire = [0u8; beacon_protocol::downlink::MAX_ACK_WIRE_LEN];
                if let Some(n) = super::pump::encode_downlink(&msg, &mut wire, metrics) {
                    pending.extend_from_slice(wire.get(..n).unwrap_or_default());
                }
            }
            if let Some(ch) = down.and_then(|n| rtt.down_channel(n))
                && !pending.is_empty()
            {
                let n = ch
                    .write(&mut core, &pending)
                    .map_err(std::io::Error::other)?;
                pending.drain(..n.min(pending.len()));
            }
            match rtt.up_channel(index) {
                Some(ch) => ch.read(&mut core, buf).map_err(std::io::Error::other),
                None => Err(std::io::Error::other("up-channel vanished")),
            }
        },
        tx,
        cancel,
        POLL_IDLE,
    )
    .map_err(|e| format!("link {name}: {e}"))
}

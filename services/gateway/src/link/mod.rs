//! Device links: where the bytes come from, and turning them into frames.
//!
//! Every link is a *producer* of [`LinkEvent`]s for one *consumer* ([`Consumer`]) that owns
//! the link's [`Decoder`]. A TCP connection calls its consumer in its own task (an
//! [`EventSink`]: at 10,000 devices a channel and a second task per connection cost a task
//! wake-up per read); files feed theirs over a small bounded channel ([`consume`]); blocking
//! links (serial ports, RTT through probe-rs) produce on their own `std::thread` and hand
//! bytes over with `blocking_send`, so no blocking call ever runs on an async worker thread.
//!
//! Back-pressure: the consumer takes one permit of the gateway's buffer per decoded frame
//! and waits when there is none left (the service is down and the buffer is full). It then
//! stops taking events, the producer blocks on the full channel and stops reading, and the
//! link's own flow control takes over: the TCP window fills, QEMU's UART reports "TX full",
//! and the firmware waits (it counts the sample periods it missed; sequence numbers stay
//! contiguous, so nothing that was numbered is lost).
//!
//! One file per transport ([`tcp`], [`file`], [`serial`], [`rtt`]); what they share is
//! [`event`] (the events, the context, the way back to the device), [`pump`] (byte pumps),
//! [`consume`] (the decoder side) and [`backoff`]. Invariant: transports import only those
//! shared modules, never each other or this file; this file only dispatches.

pub mod backoff;
pub mod consume;
pub mod event;
pub mod file;
pub mod pump;
pub mod rtt;
pub mod serial;
pub mod spec;
pub mod tcp;

pub use backoff::Backoff;
pub use consume::{Consumer, consume};
pub use event::{AckSink, Ctx, EventSink, LinkEvent, Pending, REPLAY_REQUEST};
pub use pump::{encode_downlink, pump_blocking};
pub use spec::LinkSpec;

use std::sync::Arc;
use tokio::sync::mpsc;

/// Runs one `--link` until shutdown (or, for a file, its end). `Err` is fatal for the gateway
/// (e.g. no probe, cannot listen); transient failures are retried inside.
pub async fn run_link(spec: LinkSpec, ctx: Ctx) -> Result<(), String> {
    let name = spec.to_string();
    match spec {
        LinkSpec::Tcp(addr) => {
            let mut consumer = Consumer::new(name.clone(), ctx.clone());
            tcp::connect_loop(&name, &addr, &mut consumer, &ctx).await;
            Ok(())
        }
        LinkSpec::Listen(addr) => tcp::listen(&name, addr, ctx).await,
        LinkSpec::File(path) => {
            let (tx, rx) = mpsc::channel(4);
            let consumer = tokio::spawn(consume(name.clone(), rx, ctx.clone()));
            let result = file::read_file(&path, tx, &ctx.cancel).await;
            let _ = consumer.await;
            result.map_err(|e| format!("link {name}: cannot read {}: {e}", path.display()))
        }
        LinkSpec::Serial { path, baud } => {
            let (tx, rx) = mpsc::channel(4);
            let consumer = tokio::spawn(consume(name.clone(), rx, ctx.clone()));
            let cancel = ctx.cancel.clone();
            let replay = ctx.replay;
            let metrics = Arc::clone(&ctx.metrics);
            let thread_name = name.clone();
            let thread = std::thread::Builder::new()
                .name(format!("link {name}"))
                .spawn(move || {
                    serial::serial_thread(&thread_name, &path, baud, replay, &tx, &cancel, &metrics)
                })
                .map_err(|e| format!("link {name}: cannot start its thread: {e}"))?;
            let _ = consumer.await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            Ok(())
        }
        LinkSpec::Rtt { chip, channel } => rtt::run(&name, chip, channel, ctx).await,
    }
}

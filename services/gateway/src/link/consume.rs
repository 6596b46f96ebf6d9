//! The consumer of one link: decodes its bytes and queues each frame for the service.

use super::event::{AckSink, Ctx, EventSink, LinkEvent, Pending};
use crate::model::{NewReading, now_millis};
use beacon_protocol::{Decoder, Downlink, Frame};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The consumer as a task of its own, fed over a channel (files and the blocking links).
pub async fn consume(name: String, mut rx: mpsc::Receiver<LinkEvent>, ctx: Ctx) {
    let mut consumer = Consumer::new(name, ctx);
    while let Some(event) = rx.recv().await {
        if !consumer.handle(event).await {
            return;
        }
    }
}

/// The decoder side of one link: decodes its bytes and queues each frame for the service,
/// waiting for buffer space when there is none (back-pressure, see the module docs). A TCP
/// connection calls it in its own task ([`EventSink`]: no channel, no second task per
/// connection); the other links feed it from [`consume`].
#[derive(Debug)]
pub struct Consumer {
    name: String,
    ctx: Ctx,
    decoder: Decoder,
    frames: Vec<Frame>,
    ack_to: Option<AckSink>,
    /// A corrupted frame after the first good one of a connection (joining mid-frame is
    /// expected) means a frame the device holds never arrived: ask it to re-send what it
    /// holds, at most once a second, so its outbox front is not stuck until the next
    /// reconnect.
    good_since_connect: bool,
    last_replay: Option<Instant>,
}

impl Consumer {
    /// A consumer for the link called `name` (in its log lines).
    pub fn new(name: String, ctx: Ctx) -> Self {
        Self {
            name,
            ctx,
            decoder: Decoder::new(),
            frames: Vec::new(),
            ack_to: None,
            good_since_connect: false,
            last_replay: None,
        }
    }

    /// Takes one event; `false` when the gateway shut down while the buffer was full (what
    /// could not be buffered is lost; the device still holds it).
    pub async fn handle(&mut self, event: LinkEvent) -> bool {
        match event {
            LinkEvent::Connected => {
                self.decoder.reset();
                self.ack_to = None;
                self.good_since_connect = false;
            }
            LinkEvent::Downlink(sink) => self.ack_to = Some(sink),
            LinkEvent::Disconnected(_) => {
                self.ack_to = None;
                if self.decoder.pending() > 0 {
                    tracing::debug!(
                        "link {}: {} bytes of a partial frame discarded",
                        self.name,
                        self.decoder.pending()
                    );
                }
                self.decoder.reset();
            }
            LinkEvent::Bytes(bytes) => return self.bytes(&bytes).await,
        }
        true
    }

    async fn bytes(&mut self, bytes: &[u8]) -> bool {
        let ctx = &self.ctx;
        ctx.metrics.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
        self.frames.clear();
        let mut corrupt_after_good = false;
        for item in self.decoder.feed(bytes) {
            match item {
                Ok(frame) => {
                    self.frames.push(frame);
                    self.good_since_connect = true;
                }
                Err(e) => {
                    ctx.metrics.corrupt.fetch_add(1, Relaxed);
                    tracing::warn!("link {}: {e}; skipped, resynchronising", self.name);
                    corrupt_after_good |= self.good_since_connect;
                }
            }
        }
        if corrupt_after_good
            && ctx.replay
            && let Some(sink) = &self.ack_to
            && self
                .last_replay
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::info!(
                "link {}: asking the device to re-send what it holds",
                self.name
            );
            let _ = sink.send(Downlink::Replay);
            self.last_replay = Some(Instant::now());
        }
        queue_frames(&self.frames, self.ack_to.as_ref(), ctx).await
    }
}

impl EventSink for Consumer {
    async fn send(&mut self, event: LinkEvent) -> bool {
        self.handle(event).await
    }
}

/// Stamps and queues the frames of one chunk. Devices have no wall clock, so `sampled_at_ms`
/// is when the gateway received the frame; a burst of frames in one chunk (a replay) is spread
/// back in time by the devices' own uptime differences, so the newest frame gets "now" and
/// an older one "now minus how much earlier the device sampled it".
async fn queue_frames(frames: &[Frame], ack_to: Option<&AckSink>, ctx: &Ctx) -> bool {
    let now = now_millis();
    for frame in frames {
        let newest = frames
            .iter()
            .filter(|f| f.device_id == frame.device_id && f.boot == frame.boot)
            .map(|f| f.uptime_ms)
            .max()
            .unwrap_or(frame.uptime_ms);
        let earlier = i64::try_from(newest.saturating_sub(frame.uptime_ms)).unwrap_or(0);
        let reading = NewReading::from_frame(frame).sampled_at(now - earlier);
        ctx.metrics
            .frame_in(frame.device_id, frame.boot, frame.seq, now);
        let permit = match ctx.buffer.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let waited = Instant::now();
                tracing::warn!("buffer full: pausing the links until the service catches up");
                let acquired = tokio::select! {
                    p = ctx.buffer.clone().acquire_owned() => p.ok(),
                    () = ctx.cancel.cancelled() => None,
                };
                match acquired {
                    Some(p) => {
                        tracing::info!(
                            "buffer has room again after {:.1}s",
                            waited.elapsed().as_secs_f64()
                        );
                        p
                    }
                    None => {
                        ctx.metrics.dropped.fetch_add(1, Relaxed);
                        return false;
                    }
                }
            }
        };
        ctx.metrics.buffered.fetch_add(1, Relaxed);
        let pending = Pending {
            reading,
            permit,
            ack_to: ack_to.cloned(),
        };
        if ctx.frames.send(pending).is_err() {
            ctx.metrics.buffered.fetch_sub(1, Relaxed);
            ctx.metrics.dropped.fetch_add(1, Relaxed);
            return false;
        }
    }
    true
}

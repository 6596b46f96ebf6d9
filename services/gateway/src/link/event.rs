//! What every link shares: the events a producer sends its consumer, a frame waiting for the
//! service, the context every link task holds, and the way back to a device.

use crate::metrics::Metrics;
use crate::model::NewReading;
use beacon_protocol::Downlink;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// The byte that asks a device to re-send every frame it holds unacknowledged
/// (protocol/SPEC.md section 8). The gateway sends it on every (re)connect, so frames the
/// device sent while nobody listened are recovered; the service stores a repeated
/// `(device, boot, seq)` once.
pub const REPLAY_REQUEST: u8 = beacon_protocol::downlink::REPLAY_REQUEST;

/// Where the acks for one connection's frames go: its writer (TCP) or thread (serial, RTT)
/// encodes each [`Downlink`] message (an ack, or a replay request after a corrupted frame) and
/// writes it back to the device. Closed when the connection is gone; an ack
/// for a connection that is gone is dropped (the device re-sends those frames on its next
/// connection, and the service answers them as duplicates, which are acked then).
pub type AckSink = mpsc::UnboundedSender<Downlink>;

/// What a producer tells its consumer.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A new connection: any partial frame from before is garbage.
    Connected,
    /// The connection (the last `Connected`) can carry acks back to the device: the frames
    /// decoded from now on are acked to this sink once the service committed them.
    Downlink(AckSink),
    /// Bytes, in whatever chunks the link delivered them.
    Bytes(Vec<u8>),
    /// The connection dropped; a reconnect follows (unless the link is done).
    Disconnected(String),
}

/// Where a producer's events go: a channel to a consumer task (files, the blocking links), or
/// the consumer itself, called in the producer's own task (TCP: one task per connection, no
/// hop between reading and decoding).
pub trait EventSink {
    /// Hands one event on; `false` when the consumer is gone or shutting down (stop).
    fn send(&mut self, event: LinkEvent) -> impl Future<Output = bool> + Send;
}

impl EventSink for mpsc::Sender<LinkEvent> {
    async fn send(&mut self, event: LinkEvent) -> bool {
        mpsc::Sender::send(self, event).await.is_ok()
    }
}

/// A decoded frame waiting for the service, holding one permit of the bounded buffer.
#[derive(Debug)]
pub struct Pending {
    /// The reading to post.
    pub reading: NewReading,
    /// Released when the service acknowledged the reading (or it was given up).
    pub permit: OwnedSemaphorePermit,
    /// Where to ack the frame after the service's 2xx; `None` for a link with no way back
    /// (a file, RTT for now).
    pub ack_to: Option<AckSink>,
}

impl PartialEq for LinkEvent {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Connected, Self::Connected) => true,
            (Self::Downlink(a), Self::Downlink(b)) => a.same_channel(b),
            (Self::Bytes(a), Self::Bytes(b)) => a == b,
            (Self::Disconnected(a), Self::Disconnected(b)) => a == b,
            _ => false,
        }
    }
}

/// What every link task shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The bounded buffer: one permit per frame between decoding and acknowledgement.
    pub buffer: Arc<Semaphore>,
    /// To the poster.
    pub frames: mpsc::UnboundedSender<Pending>,
    /// Shutdown.
    pub cancel: CancellationToken,
    /// Send [`REPLAY_REQUEST`] on every (re)connect.
    pub replay: bool,
}

//! Device links: where the bytes come from, and turning them into frames.
//!
//! Every link is a *producer* that sends [`LinkEvent`]s over a small bounded channel to one
//! *consumer* ([`consume`]) that owns the link's [`Decoder`]. Async links (TCP, files) produce
//! on the runtime; blocking ones (serial ports, RTT through probe-rs) produce on their own
//! `std::thread` and hand bytes over with `blocking_send`, so no blocking call ever runs on an
//! async worker thread.
//!
//! Back-pressure: the consumer takes one permit of the gateway's buffer per decoded frame
//! and waits when there is none left (the service is down and the buffer is full). It then
//! stops taking events, the producer blocks on the full channel and stops reading, and the
//! link's own flow control takes over: the TCP window fills, QEMU's UART reports "TX full",
//! and the firmware waits (it counts the sample periods it missed; sequence numbers stay
//! contiguous, so nothing that was numbered is lost).

use crate::metrics::Metrics;
use crate::model::{NewReading, now_millis};
use beacon_protocol::{Decoder, Downlink, Frame};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// Bytes read at once from a link.
const READ_CHUNK: usize = 4096;

/// Where a device's bytes come from (`--link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// `tcp:HOST:PORT`: connect (QEMU with `-serial tcp:HOST:PORT,server=on,wait=off`), and
    /// reconnect with backoff whenever the connection drops.
    Tcp(String),
    /// `listen:HOST:PORT`: accept connections (QEMU with `-serial tcp:HOST:PORT`, client mode);
    /// each connection is decoded on its own.
    Listen(SocketAddr),
    /// `serial:/dev/ttyACM0[@BAUD]`: a serial port (default 115200 baud).
    Serial {
        /// The device file.
        path: PathBuf,
        /// The baud rate.
        baud: u32,
    },
    /// `file:PATH`: a recorded byte stream, read once (the link ends at its end).
    File(PathBuf),
    /// `rtt:CHIP[@CHANNEL]`: a real board's RTT up-channel through probe-rs (cargo feature
    /// `rtt`). The channel defaults to the one named "telemetry", else 1.
    Rtt {
        /// probe-rs chip name, e.g. `nRF52840_xxAA` (`probe-rs chip list`). TODO(4).
        chip: String,
        /// Up-channel number.
        channel: Option<usize>,
    },
}

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected tcp:HOST:PORT, listen:HOST:PORT, serial:/dev/ttyX[@BAUD], file:PATH or rtt:CHIP[@CHANNEL]";
        let Some((scheme, rest)) = s.split_once(':') else {
            return Err(format!("bad link `{s}`: {usage}"));
        };
        if rest.is_empty() {
            return Err(format!(
                "bad link `{s}`: nothing after `{scheme}:`; {usage}"
            ));
        }
        match scheme {
            "tcp" => {
                if !rest.contains(':') {
                    return Err(format!("bad link `{s}`: tcp needs HOST:PORT"));
                }
                Ok(Self::Tcp(rest.to_owned()))
            }
            "listen" => rest
                .parse()
                .map(Self::Listen)
                .map_err(|e| format!("bad link `{s}`: {e}; listen needs IP:PORT")),
            "serial" => {
                let (path, baud) = match rest.rsplit_once('@') {
                    Some((p, b)) => (
                        p,
                        b.parse()
                            .map_err(|_| format!("bad link `{s}`: baud `{b}` is not a number"))?,
                    ),
                    None => (rest, 115_200),
                };
                Ok(Self::Serial {
                    path: path.into(),
                    baud,
                })
            }
            "file" => Ok(Self::File(rest.into())),
            "rtt" => {
                let (chip, channel) = match rest.split_once('@') {
                    Some((c, n)) => (
                        c,
                        Some(n.parse().map_err(|_| {
                            format!("bad link `{s}`: rtt channel `{n}` is not a number")
                        })?),
                    ),
                    None => (rest, None),
                };
                Ok(Self::Rtt {
                    chip: chip.to_owned(),
                    channel,
                })
            }
            _ => Err(format!("bad link `{s}`: unknown kind `{scheme}`; {usage}")),
        }
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Listen(a) => write!(f, "listen:{a}"),
            Self::Serial { path, baud } => write!(f, "serial:{}@{baud}", path.display()),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Rtt {
                chip,
                channel: None,
            } => write!(f, "rtt:{chip}"),
            Self::Rtt {
                chip,
                channel: Some(n),
            } => write!(f, "rtt:{chip}@{n}"),
        }
    }
}

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

/// Exponential backoff with "equal jitter": each delay is uniformly between half and all of
/// `base * 2^attempt`, capped at `max`. Jitter spreads the retries of many devices.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Sleeps unless cancelled first; `false` when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = cancel.cancelled() => false,
    }
}

/// Runs one `--link` until shutdown (or, for a file, its end). `Err` is fatal for the gateway
/// (e.g. no probe, cannot listen); transient failures are retried inside.
pub async fn run_link(spec: LinkSpec, ctx: Ctx) -> Result<(), String> {
    let name = spec.to_string();
    match spec {
        LinkSpec::Tcp(addr) => {
            let (tx, rx) = mpsc::channel(4);
            let consumer = tokio::spawn(consume(name.clone(), rx, ctx.clone()));
            tcp_connect_loop(&name, &addr, tx, &ctx).await;
            let _ = consumer.await;
            Ok(())
        }
        LinkSpec::Listen(addr) => listen(&name, addr, ctx).await,
        LinkSpec::File(path) => {
            let (tx, rx) = mpsc::channel(4);
            let consumer = tokio::spawn(consume(name.clone(), rx, ctx.clone()));
            let result = read_file(&path, tx, &ctx.cancel).await;
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
                    serial_thread(&thread_name, &path, baud, replay, &tx, &cancel, &metrics)
                })
                .map_err(|e| format!("link {name}: cannot start its thread: {e}"))?;
            let _ = consumer.await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            Ok(())
        }
        LinkSpec::Rtt { chip, channel } => crate::rtt::run(&name, chip, channel, ctx).await,
    }
}

async fn tcp_connect_loop(name: &str, addr: &str, tx: mpsc::Sender<LinkEvent>, ctx: &Ctx) {
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
        if !pump_stream(name, stream, &tx, ctx).await {
            return;
        }
        if !sleep_or_cancel(Duration::from_millis(50), &ctx.cancel).await {
            return;
        }
    }
}

/// Reads one connection to its end, writing the acks for its frames back on the same
/// connection. `false` when the gateway is shutting down.
async fn pump_stream(
    name: &str,
    stream: TcpStream,
    tx: &mpsc::Sender<LinkEvent>,
    ctx: &Ctx,
) -> bool {
    ctx.metrics.connects.fetch_add(1, Relaxed);
    tracing::info!("link {name}: connected");
    let (mut reader, mut writer) = stream.into_split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    if tx.send(LinkEvent::Connected).await.is_err()
        || tx.send(LinkEvent::Downlink(ack_tx)).await.is_err()
    {
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
            tx.send(LinkEvent::Disconnected(why)).await.is_ok()
        }
        None => false,
    }
}

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
async fn read_into(
    stream: &mut (impl AsyncRead + Unpin),
    tx: &mpsc::Sender<LinkEvent>,
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
                if tx.send(LinkEvent::Bytes(chunk)).await.is_err() {
                    return None;
                }
            }
            Err(e) => return Some(e.to_string()),
        }
    }
}

async fn listen(name: &str, addr: SocketAddr, ctx: Ctx) -> Result<(), String> {
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
            let (tx, rx) = mpsc::channel(4);
            let consumer = tokio::spawn(consume(conn_name.clone(), rx, ctx.clone()));
            pump_stream(&conn_name, stream, &tx, &ctx).await;
            drop(tx);
            let _ = consumer.await;
        });
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn read_file(
    path: &std::path::Path,
    tx: mpsc::Sender<LinkEvent>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    if tx.send(LinkEvent::Connected).await.is_err() {
        return Ok(());
    }
    match read_into(&mut file, &tx, cancel).await {
        // The end of a file is the end of the link, not an error.
        Some(_) | None => Ok(()),
    }
}

fn serial_thread(
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

/// The consumer: decodes the link's bytes and queues each frame for the service, waiting for
/// buffer space when there is none (back-pressure, see the module docs).
pub async fn consume(name: String, mut rx: mpsc::Receiver<LinkEvent>, ctx: Ctx) {
    let mut decoder = Decoder::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut ack_to: Option<AckSink> = None;
    // A corrupted frame after the first good one of a connection (joining mid-frame is
    // expected) means a frame the device holds never arrived: ask it to re-send what it holds,
    // at most once a second, so its outbox front is not stuck until the next reconnect.
    let mut good_since_connect = false;
    let mut last_replay: Option<Instant> = None;
    while let Some(event) = rx.recv().await {
        match event {
            LinkEvent::Connected => {
                decoder.reset();
                ack_to = None;
                good_since_connect = false;
            }
            LinkEvent::Downlink(sink) => ack_to = Some(sink),
            LinkEvent::Disconnected(_) => {
                ack_to = None;
                if decoder.pending() > 0 {
                    tracing::debug!(
                        "link {name}: {} bytes of a partial frame discarded",
                        decoder.pending()
                    );
                }
                decoder.reset();
            }
            LinkEvent::Bytes(bytes) => {
                ctx.metrics.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
                frames.clear();
                let mut corrupt_after_good = false;
                for item in decoder.feed(&bytes) {
                    match item {
                        Ok(frame) => {
                            frames.push(frame);
                            good_since_connect = true;
                        }
                        Err(e) => {
                            ctx.metrics.corrupt.fetch_add(1, Relaxed);
                            tracing::warn!("link {name}: {e}; skipped, resynchronising");
                            corrupt_after_good |= good_since_connect;
                        }
                    }
                }
                if corrupt_after_good
                    && ctx.replay
                    && let Some(sink) = &ack_to
                    && last_replay.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    tracing::info!("link {name}: asking the device to re-send what it holds");
                    let _ = sink.send(Downlink::Replay);
                    last_replay = Some(Instant::now());
                }
                if !queue_frames(&frames, ack_to.as_ref(), &ctx).await {
                    // Shutdown while the buffer was full: what could not be buffered is lost.
                    return;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_link_kind_and_rejects_bad_ones() {
        assert_eq!(
            "tcp:127.0.0.1:7000".parse(),
            Ok(LinkSpec::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "listen:127.0.0.1:7001".parse(),
            Ok(LinkSpec::Listen("127.0.0.1:7001".parse().unwrap()))
        );
        assert_eq!(
            "serial:/dev/ttyACM0".parse(),
            Ok(LinkSpec::Serial {
                path: "/dev/ttyACM0".into(),
                baud: 115_200
            })
        );
        assert_eq!(
            "serial:/dev/ttyUSB1@9600".parse(),
            Ok(LinkSpec::Serial {
                path: "/dev/ttyUSB1".into(),
                baud: 9600
            })
        );
        assert_eq!(
            "rtt:nRF52840_xxAA@1".parse(),
            Ok(LinkSpec::Rtt {
                chip: "nRF52840_xxAA".into(),
                channel: Some(1)
            })
        );
        assert_eq!("file:a/b.bin".parse(), Ok(LinkSpec::File("a/b.bin".into())));
        for bad in [
            "",
            "tcp",
            "tcp:",
            "tcp:localhost",
            "udp:1.2.3.4:5",
            "listen:host:1",
            "serial:/dev/x@fast",
        ] {
            let err = bad.parse::<LinkSpec>().unwrap_err();
            assert!(err.starts_with("bad link"), "{bad}: {err}");
        }
        for s in ["tcp:h:1", "serial:/dev/x@9600", "rtt:chip@2", "rtt:chip"] {
            assert_eq!(s.parse::<LinkSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d.iter().all(|d| *d <= Duration::from_secs(1)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

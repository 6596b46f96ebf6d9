//! One simulated device: its boots, sequence numbers and bounded outbox ([`Device`]), what it
//! built for the final check ([`Ledger`]), and the task that runs it against the gateway's
//! link ([`run_device`]): connect, send, read acks and replay requests, disconnect or reboot
//! at random when asked to.

use crate::{Config, Counters, FIRMWARE, OUTBOX_FRAMES, SIM_BOARD, SentAt, now_ms};
use beacon_protocol::{Downlink, DownlinkDecoder, Frame, MAX_WIRE_LEN, Reading, encode, status};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What one device built, for the final check.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// `(boot, frames built in that boot)`: seqs `0..n`.
    pub(crate) boots: Vec<(u32, u32)>,
    /// `(boot, seq)` the device itself dropped (overflow, reboot).
    pub(crate) dropped: HashSet<(u32, u32)>,
}

/// A frame held until acked.
#[derive(Debug)]
struct Held {
    boot: u32,
    seq: u32,
    wire: Vec<u8>,
}

/// One simulated device: its boot, sequence numbers and outbox.
#[derive(Debug)]
struct Device {
    id: u32,
    boot: u32,
    next_seq: u32,
    booted: Instant,
    counter: u32,
    outbox: VecDeque<Held>,
    /// Entries from the front already written since the last rewind.
    sent: usize,
    /// Dropped since boot (overflow).
    dropped: u32,
    /// Dropped by overflow over all boots.
    overflow_total: u64,
    reported: u32,
    ledger: Ledger,
}

impl Device {
    fn new(id: u32) -> Self {
        let mut d = Self {
            id,
            boot: 0,
            next_seq: 0,
            booted: Instant::now(),
            counter: 0,
            outbox: VecDeque::new(),
            sent: 0,
            dropped: 0,
            overflow_total: 0,
            reported: 0,
            ledger: Ledger::default(),
        };
        d.reboot(None);
        d
    }

    /// A new boot: a new boot id, seq from 0, the outbox empty (RAM is gone), a `Boot` frame.
    fn reboot(&mut self, counters: Option<&Counters>) {
        for h in self.outbox.drain(..) {
            self.ledger.dropped.insert((h.boot, h.seq));
            if let Some(c) = counters {
                c.lost_at_reboot.fetch_add(1, Relaxed);
            }
        }
        self.sent = 0;
        let old = self.boot;
        loop {
            self.boot = beacon_protocol::frame::boot_id(fastrand::u32(..));
            if self.boot != old {
                break;
            }
        }
        self.next_seq = 0;
        self.booted = Instant::now();
        self.counter = 0;
        self.dropped = 0;
        self.reported = 0;
        self.ledger.boots.push((self.boot, 0));
        self.push(&[Reading::Boot {
            firmware: FIRMWARE,
            board: SIM_BOARD,
        }]);
    }

    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.booted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Builds a frame with the next seq and puts it in the outbox (dropping the oldest when
    /// full, like the firmware).
    fn push(&mut self, readings: &[Reading]) {
        let mut frame = Frame::new(self.id, self.next_seq, self.uptime_ms()).with_boot(self.boot);
        for r in readings {
            // At most 3 readings: always fits.
            let _ = frame.push(*r);
        }
        let mut wire = [0u8; MAX_WIRE_LEN];
        let n = encode(&frame, &mut wire).unwrap_or(0);
        if let Some(last) = self.ledger.boots.last_mut() {
            last.1 = self.next_seq.wrapping_add(1);
        }
        self.outbox.push_back(Held {
            boot: self.boot,
            seq: self.next_seq,
            wire: wire.get(..n).unwrap_or_default().to_vec(),
        });
        self.next_seq = self.next_seq.wrapping_add(1);
        while self.outbox.len() > OUTBOX_FRAMES {
            if let Some(h) = self.outbox.pop_front() {
                self.ledger.dropped.insert((h.boot, h.seq));
                self.dropped += 1;
                self.overflow_total += 1;
                self.sent = self.sent.saturating_sub(1);
            }
        }
    }

    fn sample(&mut self) {
        if self.dropped != self.reported {
            self.reported = self.dropped;
            self.push(&[
                Reading::Status(status::TX_OVERFLOW),
                Reading::Counter(self.dropped),
            ]);
        }
        let t = f64::from(self.counter % 600) / 600.0 * std::f64::consts::TAU;
        #[allow(clippy::cast_possible_truncation, reason = "bounded sine values")]
        let readings = [
            Reading::Temperature {
                centi_celsius: 2100 + (t.sin() * 300.0) as i16,
            },
            Reading::Humidity {
                centi_percent: 4500 + (t.cos() * 500.0) as u16,
            },
            Reading::Counter(self.counter),
        ];
        self.counter = self.counter.wrapping_add(1);
        self.push(&readings);
    }

    /// The bytes of every frame not written since the last rewind; marks them written.
    fn unsent(&mut self, sent_at: &SentAt, counters: &Counters) -> Vec<u8> {
        let mut out = Vec::new();
        let now = now_ms();
        let mut first_sends = Vec::new();
        for h in self.outbox.iter().skip(self.sent) {
            out.extend_from_slice(&h.wire);
            first_sends.push((h.boot, h.seq));
        }
        let n = self.outbox.len() - self.sent.min(self.outbox.len());
        self.sent = self.outbox.len();
        if n > 0 {
            counters.writes.fetch_add(n as u64, Relaxed);
            let mut map = sent_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (boot, seq) in first_sends {
                map.entry((self.id, boot, seq)).or_insert(now);
            }
        }
        out
    }

    fn ack(&mut self, boot: u32, first: u32, last: u32) {
        let ack = beacon_protocol::Ack { boot, first, last };
        let mut kept = VecDeque::with_capacity(self.outbox.len());
        let mut sent = self.sent;
        for (i, h) in self.outbox.drain(..).enumerate() {
            if ack.covers(h.boot, h.seq) {
                if i < self.sent {
                    sent -= 1;
                }
            } else {
                kept.push_back(h);
            }
        }
        self.outbox = kept;
        self.sent = sent;
    }

    fn rewind(&mut self, counters: &Counters) {
        counters.resent.fetch_add(self.sent as u64, Relaxed);
        self.sent = 0;
    }
}

/// Mean-`secs` exponential delay (0: never).
fn random_interval(secs: f64) -> Option<Duration> {
    (secs > 0.0).then(|| Duration::from_secs_f64(-secs * (1.0 - fastrand::f64()).ln()))
}

enum Ended {
    Disconnect,
    Reboot,
    Done,
}

/// What the device does with bytes from the gateway: an ack drops frames from its outbox, a
/// replay request re-sends what it holds.
fn on_downlink(bytes: &[u8], decoder: &mut DownlinkDecoder, dev: &mut Device, counters: &Counters) {
    for &b in bytes {
        match decoder.push(b) {
            Some(Ok(Downlink::Replay)) => dev.rewind(counters),
            Some(Ok(Downlink::Ack(a))) => {
                counters.acks.fetch_add(1, Relaxed);
                dev.ack(a.boot, a.first, a.last);
            }
            Some(Err(_)) | None => {}
        }
    }
}

/// A graceful reboot: up to 2 s for the outbox to empty (sending, reading acks); the rest is
/// lost with the RAM.
async fn drain_before_reboot(
    dev: &mut Device,
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    decoder: &mut DownlinkDecoder,
    sent_at: &SentAt,
    counters: &Counters,
) {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dev.outbox.is_empty() && Instant::now() < deadline {
        let bytes = dev.unsent(sent_at, counters);
        if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
            break;
        }
        let read = tokio::time::timeout_at(deadline.into(), reader.read(&mut buf));
        match read.await {
            Ok(Ok(n)) if n > 0 => {
                on_downlink(buf.get(..n).unwrap_or_default(), decoder, dev, counters)
            }
            _ => break,
        }
    }
}

/// Runs device `id` from `start_at`: samples until `end_at`, then waits for its outbox to
/// empty until `drain_until`. Its ledger, for the final check.
pub(crate) async fn run_device(
    id: u32,
    start_at: Instant,
    end_at: Instant,
    drain_until: Instant,
    config: Arc<Config>,
    counters: Arc<Counters>,
    sent_at: Arc<SentAt>,
) -> (u32, Ledger) {
    tokio::time::sleep_until(start_at.into()).await;
    let period = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let dev = Device::new(id);
    let mut tick = tokio::time::interval_at(
        (Instant::now() + period.mul_f64(fastrand::f64())).into(),
        period,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut task = DeviceTask {
        dev,
        tick,
        next_disconnect: random_interval(config.disconnect_every_secs).map(|d| start_at + d),
        next_reboot: random_interval(config.reboot_every_secs).map(|d| start_at + d),
        end_at,
        drain_until,
        config,
        counters,
        sent_at,
    };
    while let Some(stream) = task.connect().await {
        if !task.session(stream).await || Instant::now() >= drain_until {
            break;
        }
    }
    task.finish()
}

/// A running device and what its task shares with the others.
struct DeviceTask {
    dev: Device,
    /// The sampling period.
    tick: tokio::time::Interval,
    next_disconnect: Option<Instant>,
    next_reboot: Option<Instant>,
    /// Sampling ends.
    end_at: Instant,
    /// The drain ends.
    drain_until: Instant,
    config: Arc<Config>,
    counters: Arc<Counters>,
    sent_at: Arc<SentAt>,
}

impl DeviceTask {
    /// Connects to the gateway, retrying 50 ms later, doubling to 1 s; `None` when the drain
    /// is over.
    async fn connect(&mut self) -> Option<TcpStream> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match TcpStream::connect(self.config.gateway).await {
                Ok(stream) => {
                    self.counters.connects.fetch_add(1, Relaxed);
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(_) => {
                    self.counters.connect_errors.fetch_add(1, Relaxed);
                    if Instant::now() > self.drain_until {
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// One connection, until it ends; then the disconnect (unplugged for a moment) or the
    /// reboot. Whether to connect again.
    async fn session(&mut self, stream: TcpStream) -> bool {
        let (mut reader, mut writer) = stream.into_split();
        // A fresh link: nothing held is known to have arrived (the gateway also asks with `R`).
        self.dev.rewind(&self.counters);
        let mut decoder = DownlinkDecoder::new();
        match self.exchange(&mut reader, &mut writer, &mut decoder).await {
            Ended::Done => return false,
            Ended::Disconnect => {
                drop(writer);
                drop(reader);
                self.unplugged().await;
            }
            Ended::Reboot => {
                drain_before_reboot(
                    &mut self.dev,
                    &mut writer,
                    &mut reader,
                    &mut decoder,
                    &self.sent_at,
                    &self.counters,
                )
                .await;
                drop(writer);
                drop(reader);
                self.dev.reboot(Some(&self.counters));
                tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..400))).await;
            }
        }
        true
    }

    /// Sends what the outbox holds, samples on each tick, and handles what the gateway sends,
    /// until the link closes, a fault is due or the run is over.
    async fn exchange(
        &mut self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
        decoder: &mut DownlinkDecoder,
    ) -> Ended {
        let mut buf = [0u8; 512];
        loop {
            let bytes = self.dev.unsent(&self.sent_at, &self.counters);
            if !bytes.is_empty() && writer.write_all(&bytes).await.is_err() {
                return Ended::Disconnect;
            }
            let now = Instant::now();
            if now >= self.end_at && self.dev.outbox.is_empty() {
                return Ended::Done;
            }
            if now >= self.drain_until {
                return Ended::Done;
            }
            let fault_at = [self.next_disconnect, self.next_reboot]
                .into_iter()
                .flatten()
                .filter(|t| *t < self.end_at)
                .min()
                .unwrap_or(self.drain_until);
            tokio::select! {
                _ = self.tick.tick(), if now < self.end_at => {
                    self.dev.sample();
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return Ended::Disconnect,
                    Ok(n) => on_downlink(buf.get(..n).unwrap_or_default(), decoder, &mut self.dev, &self.counters),
                },
                () = tokio::time::sleep_until(fault_at.into()) => {
                    if let Some(ended) = self.fault_due() {
                        return ended;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(200)), if now >= self.end_at => {}
            }
        }
    }

    /// The fault whose time has come, if one has (and the next one of its kind drawn).
    fn fault_due(&mut self) -> Option<Ended> {
        let now = Instant::now();
        if self.next_reboot.is_some_and(|t| t <= now) {
            self.next_reboot = random_interval(self.config.reboot_every_secs).map(|d| now + d);
            return Some(Ended::Reboot);
        }
        if self.next_disconnect.is_some_and(|t| t <= now) {
            self.next_disconnect =
                random_interval(self.config.disconnect_every_secs).map(|d| now + d);
            return Some(Ended::Disconnect);
        }
        None
    }

    /// Unplugged, not off: 0.2-1 s in which the device goes on sampling into its outbox.
    async fn unplugged(&mut self) {
        let until = Instant::now() + Duration::from_millis(200 + fastrand::u64(..800));
        while Instant::now() < until {
            tokio::select! {
                _ = self.tick.tick(), if Instant::now() < self.end_at => self.dev.sample(),
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Adds what the device left (unacked, dropped, built, boots) to the shared counters; its
    /// id and ledger.
    fn finish(self) -> (u32, Ledger) {
        let (counters, dev) = (self.counters, self.dev);
        counters
            .unacked_at_end
            .fetch_add(dev.outbox.len() as u64, Relaxed);
        counters
            .dropped_overflow
            .fetch_add(dev.overflow_total, Relaxed);
        let built: u64 = dev.ledger.boots.iter().map(|&(_, n)| u64::from(n)).sum();
        counters.built.fetch_add(built, Relaxed);
        counters
            .boots
            .fetch_add(dev.ledger.boots.len() as u64, Relaxed);
        (dev.id, dev.ledger)
    }
}

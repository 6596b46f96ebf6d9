//! Store-and-forward: every frame the device built, kept until the gateway acknowledges that
//! the service committed it (protocol/SPEC.md section 8).
//!
//! Frames are kept as their payloads (header and readings, no CRC, no COBS: 30-38 bytes for
//! this firmware's frames) behind a one-byte length, in a byte ring of `N` bytes, oldest first.
//! The CRC and COBS are added when a frame is (re)sent ([`Outbox::next_wire`]).
//!
//! - [`Outbox::push`] appends a frame; when the ring is full it drops the oldest frames to make
//!   room and counts them ([`Outbox::dropped`]): the board then queues a
//!   `Status(TX_OVERFLOW), Counter(dropped)` report (see [`crate::Telemetry::overflow`]), so
//!   loss is never silent.
//! - [`Outbox::next_wire`] hands out the next frame not yet written to the link.
//! - [`Outbox::ack`] removes acknowledged frames from the front.
//! - [`Outbox::rewind`] (on a replay request, i.e. a new connection) makes every frame still
//!   held due again, oldest first. Receivers store a repeated `(device, boot, seq)` once, so
//!   re-sends are harmless.

use beacon_protocol::{Ack, Frame, MAX_PAYLOAD_LEN, MAX_WIRE_LEN, encode_payload};

/// Offsets of `boot` and `seq` in a version 2 payload (SPEC.md R-PAY-1).
const BOOT_AT: usize = 6;
const SEQ_AT: usize = 10;

/// A bounded byte ring of frame payloads awaiting acknowledgement.
#[derive(Debug, Clone)]
pub struct Outbox<const N: usize> {
    buf: [u8; N],
    /// Ring position of the oldest entry.
    head: usize,
    /// Bytes in use.
    used: usize,
    /// Entries held.
    count: usize,
    /// Entries (from the front) already written to the link since the last rewind.
    sent: usize,
    /// Ring position of the first entry not yet written.
    cursor: usize,
    /// `cursor` before the last [`Outbox::next_wire`], for [`Outbox::unsend_last`].
    last_cursor: usize,
    /// Frames dropped since boot because the ring was full.
    dropped: u32,
    /// `dropped` as of the last [`Outbox::take_overflow`].
    reported: u32,
}

impl<const N: usize> Default for Outbox<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Outbox<N> {
    /// An empty outbox (const, so a board can put it in a `static`).
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            used: 0,
            count: 0,
            sent: 0,
            cursor: 0,
            last_cursor: 0,
            dropped: 0,
            reported: 0,
        }
    }

    fn at(&self, pos: usize) -> u8 {
        self.buf.get(pos % N.max(1)).copied().unwrap_or(0)
    }

    fn entry_len(&self, pos: usize) -> usize {
        1 + usize::from(self.at(pos))
    }

    fn copy_out(&self, pos: usize, out: &mut [u8]) -> usize {
        let len = usize::from(self.at(pos));
        for (i, slot) in out.iter_mut().take(len).enumerate() {
            *slot = self.at(pos + 1 + i);
        }
        len
    }

    fn word_at(&self, pos: usize, offset: usize) -> u32 {
        let b = |i: usize| self.at(pos + 1 + offset + i);
        u32::from_le_bytes([b(0), b(1), b(2), b(3)])
    }

    fn pop_front(&mut self) {
        let len = self.entry_len(self.head);
        self.head = (self.head + len) % N.max(1);
        self.used -= len;
        self.count -= 1;
        if self.sent > 0 {
            self.sent -= 1;
        } else {
            self.cursor = self.head;
        }
    }

    /// Appends `frame`, dropping (and counting) the oldest frames when there is no room.
    /// A frame that cannot be encoded or is larger than the whole ring is counted as dropped.
    pub fn push(&mut self, frame: &Frame) {
        let mut payload = [0u8; MAX_PAYLOAD_LEN];
        let Ok(len) = frame.to_payload(&mut payload) else {
            self.dropped = self.dropped.wrapping_add(1);
            return;
        };
        let need = 1 + len;
        if need > N {
            self.dropped = self.dropped.wrapping_add(1);
            return;
        }
        while N - self.used < need {
            self.pop_front();
            self.dropped = self.dropped.wrapping_add(1);
        }
        let tail = (self.head + self.used) % N;
        let bytes = core::iter::once(len as u8).chain(payload.iter().take(len).copied());
        for (i, byte) in bytes.enumerate() {
            if let Some(slot) = self.buf.get_mut((tail + i) % N) {
                *slot = byte;
            }
        }
        self.used += need;
        self.count += 1;
    }

    /// Writes the next frame not yet sent, framed for the wire, into `out`; `None` when every
    /// held frame has been written since the last rewind.
    pub fn next_wire(&mut self, out: &mut [u8; MAX_WIRE_LEN]) -> Option<usize> {
        if self.sent >= self.count {
            return None;
        }
        let mut payload = [0u8; MAX_PAYLOAD_LEN];
        let len = self.copy_out(self.cursor, &mut payload);
        self.last_cursor = self.cursor;
        self.cursor = (self.cursor + 1 + len) % N.max(1);
        self.sent += 1;
        encode_payload(payload.get(..len).unwrap_or(&[]), out).ok()
    }

    /// Undoes the last [`Outbox::next_wire`] (the link had no room for the frame: RTT in
    /// non-blocking mode), so it is handed out again next time. Call it right after
    /// `next_wire`, before any other change.
    pub fn unsend_last(&mut self) {
        if self.sent > 0 {
            self.sent -= 1;
            self.cursor = self.last_cursor;
        }
    }

    /// Makes every held frame due again, oldest first (a new connection asked for a replay).
    pub fn rewind(&mut self) {
        self.sent = 0;
        self.cursor = self.head;
    }

    /// Removes the frames at the front that `ack` covers; returns how many.
    pub fn ack(&mut self, ack: &Ack) -> usize {
        let mut n = 0;
        while self.count > 0
            && ack.covers(
                self.word_at(self.head, BOOT_AT),
                self.word_at(self.head, SEQ_AT),
            )
        {
            self.pop_front();
            n += 1;
        }
        n
    }

    /// Frames held (not acknowledged yet).
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Nothing held.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the ring in use.
    pub const fn bytes_used(&self) -> usize {
        self.used
    }

    /// `(boot, seq)` of the oldest frame held.
    pub fn oldest(&self) -> Option<(u32, u32)> {
        (self.count > 0).then(|| {
            (
                self.word_at(self.head, BOOT_AT),
                self.word_at(self.head, SEQ_AT),
            )
        })
    }

    /// Frames dropped since boot because the outbox was full.
    pub const fn dropped(&self) -> u32 {
        self.dropped
    }

    /// The drop count, if it grew since the last call: the board then queues an overflow
    /// report carrying it.
    pub fn take_overflow(&mut self) -> Option<u32> {
        (self.dropped != self.reported).then(|| {
            self.reported = self.dropped;
            self.dropped
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_protocol::{Reading, decode};

    fn frame(seq: u32) -> Frame {
        Frame::new(3, seq, u64::from(seq) * 100)
            .with_boot(0xB007)
            .with(Reading::Counter(seq))
            .unwrap()
    }

    fn drain<const N: usize>(o: &mut Outbox<N>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_WIRE_LEN];
        while let Some(n) = o.next_wire(&mut buf) {
            let f = decode(&buf[..n]).unwrap();
            assert_eq!(f, frame(f.seq), "a frame comes back as it went in");
            out.push(f.seq);
        }
        out
    }

    fn ack(first: u32, last: u32) -> Ack {
        Ack {
            boot: 0xB007,
            first,
            last,
        }
    }

    #[test]
    fn sends_each_frame_once_and_keeps_it_until_acked() {
        let mut o = Outbox::<1024>::new();
        for seq in 0..5 {
            o.push(&frame(seq));
        }
        assert_eq!(drain(&mut o), [0, 1, 2, 3, 4]);
        assert_eq!(drain(&mut o), [] as [u32; 0], "nothing new to send");
        assert_eq!(o.len(), 5);
        assert_eq!(o.ack(&ack(0, 2)), 3);
        assert_eq!(o.oldest(), Some((0xB007, 3)));
        o.push(&frame(5));
        assert_eq!(drain(&mut o), [5], "only the new frame is due");
        assert_eq!(o.ack(&ack(3, 5)), 3);
        assert!(o.is_empty());
        assert_eq!(o.bytes_used(), 0);
        assert_eq!(o.dropped(), 0);
    }

    #[test]
    fn rewind_resends_everything_unacked_oldest_first() {
        let mut o = Outbox::<1024>::new();
        for seq in 0..6 {
            o.push(&frame(seq));
        }
        assert_eq!(drain(&mut o).len(), 6);
        o.ack(&ack(0, 1));
        o.rewind();
        o.push(&frame(6));
        assert_eq!(drain(&mut o), [2, 3, 4, 5, 6]);
    }

    #[test]
    fn ack_of_another_boot_or_beyond_the_front_removes_nothing() {
        let mut o = Outbox::<1024>::new();
        for seq in 10..13 {
            o.push(&frame(seq));
        }
        assert_eq!(
            o.ack(&Ack {
                boot: 1,
                first: 10,
                last: 12
            }),
            0
        );
        assert_eq!(o.ack(&ack(11, 12)), 0, "the front (10) is not covered");
        assert_eq!(o.ack(&ack(10, 10)), 1);
        assert_eq!(o.ack(&ack(11, 12)), 2);
    }

    #[test]
    fn overflow_drops_the_oldest_counts_them_and_reports_once() {
        // Each entry: 1 length byte + 23-byte header + 6-byte counter reading = 30 bytes.
        let mut o = Outbox::<100>::new();
        for seq in 0..3 {
            o.push(&frame(seq));
        }
        assert_eq!((o.len(), o.dropped(), o.take_overflow()), (3, 0, None));
        o.push(&frame(3));
        o.push(&frame(4));
        assert_eq!(o.dropped(), 2);
        assert_eq!(o.take_overflow(), Some(2));
        assert_eq!(o.take_overflow(), None, "reported once");
        assert_eq!(drain(&mut o), [2, 3, 4], "the newest frames are kept");
        // Wrap around the ring many times: content stays intact.
        for seq in 5..200 {
            o.ack(&ack(0, seq - 2));
            o.push(&frame(seq));
        }
        assert_eq!(drain(&mut o), [198, 199]);
        assert_eq!(o.dropped(), 2);
    }

    #[test]
    fn unsend_last_hands_the_same_frame_out_again() {
        let mut o = Outbox::<1024>::new();
        o.push(&frame(0));
        o.push(&frame(1));
        let mut buf = [0u8; MAX_WIRE_LEN];
        assert!(o.next_wire(&mut buf).is_some());
        assert!(o.next_wire(&mut buf).is_some());
        o.unsend_last();
        assert_eq!(drain(&mut o), [1]);
    }

    #[test]
    fn dropping_an_unsent_frame_keeps_the_send_cursor_on_the_front() {
        let mut o = Outbox::<100>::new();
        for seq in 0..3 {
            o.push(&frame(seq));
        }
        // Nothing sent yet (link down); two more frames push the oldest two out.
        o.push(&frame(3));
        o.push(&frame(4));
        assert_eq!(drain(&mut o), [2, 3, 4]);
    }

    #[test]
    fn sized_for_a_minute_at_10_hz() {
        // The boards' sizes (qemu-mps2 and nrf52840-dk main.rs, OUTBOX_BYTES): the largest
        // frame this firmware builds (a sample: 3 readings) costs 38 bytes.
        let sample = Frame::new(1, 0, 0)
            .with(Reading::Temperature { centi_celsius: 1 })
            .unwrap()
            .with(Reading::Humidity { centi_percent: 1 })
            .unwrap()
            .with(Reading::Counter(1))
            .unwrap();
        let mut o = Outbox::<{ 24 * 1024 }>::new();
        let mut n = 0;
        while o.dropped() == 0 {
            o.push(&sample);
            n += 1;
        }
        assert!(n > 600, "24 KiB holds {} sample frames", n - 1);
        assert_eq!(1 + sample.payload_len(), 38);
    }
}

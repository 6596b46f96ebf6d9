//! A bounded ring of the most recent frames.
//!
//! The QEMU board keeps one (16 frames, 1.5 KiB) so that a receiver that restarted (the gateway) can ask for the
//! recent frames again instead of losing them: it writes [`REPLAY_REQUEST`] to the device's
//! UART and the device re-sends what the ring holds, oldest first. Receivers already treat a
//! repeated `(device_id, boot, seq)` as a retry of the same frame, so replays are idempotent.

use beacon_protocol::Frame;

/// The byte a receiver sends to ask for a replay (ASCII `R`).
pub const REPLAY_REQUEST: u8 = b'R';

/// The last `N` frames.
#[derive(Debug, Clone)]
pub struct History<const N: usize> {
    frames: [Option<Frame>; N],
    /// Index of the slot the next frame goes into.
    head: usize,
}

impl<const N: usize> Default for History<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> History<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            frames: [None; N],
            head: 0,
        }
    }

    /// Records a frame, dropping the oldest when full.
    pub fn push(&mut self, frame: Frame) {
        if let Some(slot) = self.frames.get_mut(self.head) {
            *slot = Some(frame);
            self.head = (self.head + 1) % N;
        }
    }

    /// The recorded frames, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Frame> {
        let (newer, older) = self.frames.split_at(self.head.min(N));
        older.iter().chain(newer.iter()).flatten()
    }

    /// Number of frames recorded (at most `N`).
    pub fn len(&self) -> usize {
        self.frames.iter().flatten().count()
    }

    /// Nothing recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs<const N: usize>(h: &History<N>) -> Vec<u32> {
        h.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn keeps_the_last_n_oldest_first() {
        let mut h = History::<3>::new();
        assert!(h.is_empty());
        for seq in 0..2 {
            h.push(Frame::new(1, seq, 0));
        }
        assert_eq!(seqs(&h), [0, 1]);
        for seq in 2..7 {
            h.push(Frame::new(1, seq, 0));
        }
        assert_eq!(seqs(&h), [4, 5, 6]);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut h = History::<0>::new();
        h.push(Frame::new(1, 0, 0));
        assert!(h.is_empty());
    }
}

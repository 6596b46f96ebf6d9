//! The streaming decoder: bytes in, in chunks of any size; frames and typed errors out.

use crate::{DecodeError, Frame, MAX_RAW_LEN, MAX_WIRE_LEN, cobs, wire::decode_raw};

/// A rejected frame and where it started in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameError {
    /// Offset in the stream (bytes since the decoder was created) of the frame's first byte.
    pub offset: u64,
    /// What was wrong with it.
    pub error: DecodeError,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "bad frame at byte {}: {}", self.offset, self.error)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Reassembles frames from a byte stream.
///
/// Bytes accumulate until a `0x00` delimiter; then the bytes since the previous delimiter are
/// decoded as one frame. Garbage, a truncated frame or a corrupted one yields one
/// [`FrameError`] and the decoder is in sync again from the next delimiter, so joining a
/// stream mid-frame costs at most one error. Runs of delimiters (empty frames) are skipped.
/// Memory: about [`MAX_WIRE_LEN`] bytes, fixed; no allocation.
#[derive(Clone)]
pub struct Decoder {
    buf: [u8; MAX_WIRE_LEN],
    len: usize,
    overflowed: bool,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Stream offset of the next byte.
    pos: u64,
}

impl core::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.len)
            .field("overflowed", &self.overflowed)
            .field("position", &self.pos)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at stream offset 0.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_WIRE_LEN],
            len: 0,
            overflowed: false,
            start: 0,
            pos: 0,
        }
    }

    /// Bytes taken so far.
    pub const fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes buffered that are not yet part of a complete frame.
    pub const fn pending(&self) -> usize {
        self.len
    }

    /// Forgets any partial frame, e.g. after the link reconnected. The stream offset carries on.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
        self.start = self.pos;
    }

    /// Takes one byte; returns a frame or an error when the byte completes one.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, FrameError>> {
        self.pos = self.pos.saturating_add(1);
        if byte != 0 {
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = byte;
                    self.len = self.len.saturating_add(1);
                }
                None => self.overflowed = true,
            }
            return None;
        }
        let offset = self.start;
        let overflowed = self.overflowed;
        let len = self.len;
        self.reset();
        if overflowed {
            return Some(Err(FrameError {
                offset,
                error: DecodeError::FrameTooLong,
            }));
        }
        if len == 0 {
            return None;
        }
        let mut raw = [0u8; MAX_RAW_LEN];
        let encoded = self.buf.get(..len).unwrap_or(&[]);
        let result = match cobs::decode(encoded, &mut raw) {
            Ok(n) => decode_raw(raw.get(..n).unwrap_or(&[])),
            Err(_) => Err(DecodeError::Cobs),
        };
        Some(result.map_err(|error| FrameError { offset, error }))
    }

    /// Takes a chunk of bytes; the iterator yields every frame (or error) the chunk completes.
    /// Like every iterator it is lazy: bytes it has not reached when it is dropped are not
    /// taken, so iterate to the end (`for`, `collect`) unless you mean to stop.
    pub fn feed<'a>(&'a mut self, bytes: &'a [u8]) -> Feed<'a> {
        Feed {
            decoder: self,
            bytes: bytes.iter(),
        }
    }
}

/// Iterator returned by [`Decoder::feed`].
#[derive(Debug)]
pub struct Feed<'a> {
    decoder: &'a mut Decoder,
    bytes: core::slice::Iter<'a, u8>,
}

impl Iterator for Feed<'_> {
    type Item = Result<Frame, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        for &b in self.bytes.by_ref() {
            if let Some(item) = self.decoder.push(b) {
                return Some(item);
            }
        }
        None
    }
}

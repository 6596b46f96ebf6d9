//! The downlink: what a gateway writes back to a device over the same link (SPEC.md section 8).
//!
//! Two messages:
//! - [`REPLAY_REQUEST`], one bare byte (`R`): "re-send every frame I have not acknowledged".
//!   A gateway writes it on every (re)connect.
//! - [`Ack`]: "the service has committed every frame of boot `boot` with `seq` in
//!   `first..=last`", written only after the service answered 2xx for those frames. Framed
//!   like a telemetry frame (`COBS(payload ‖ CRC-32) ‖ 0x00`) with a 13-byte payload whose
//!   first byte is [`ACK_TAG`].
//!
//! A device keeps every frame until an ack covers it (store-and-forward) and feeds the bytes
//! it receives to a [`DownlinkDecoder`], one at a time, in a fixed 19-byte buffer.

use crate::{DecodeError, EncodeError, cobs, crc::crc32};

/// The byte that asks a device to re-send what it has not had acknowledged (ASCII `R`). It is
/// never the first byte of a COBS-framed ack (that is a COBS code byte, at most 18).
pub const REPLAY_REQUEST: u8 = b'R';

/// First payload byte of an ack: message type "ack", downlink version 1.
pub const ACK_TAG: u8 = 0xA1;

/// Payload length of an ack: tag, `boot`, `first`, `last`.
pub const ACK_PAYLOAD_LEN: usize = 13;

/// Longest ack on the wire: COBS of payload and CRC, and the delimiter.
pub const MAX_ACK_WIRE_LEN: usize = cobs::max_encoded_len(ACK_PAYLOAD_LEN + 4) + 1;

/// "The service has committed every frame of boot `boot` with `seq` in `first..=last`"
/// (sequence numbers wrap: the range is `first`, `first + 1`, ... up to `last`, modulo 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack {
    /// The boot the frames belong to (the frame header's `boot`).
    pub boot: u32,
    /// First committed `seq`.
    pub first: u32,
    /// Last committed `seq` (inclusive).
    pub last: u32,
}

impl Ack {
    /// Whether this ack covers the frame `(boot, seq)`.
    pub const fn covers(&self, boot: u32, seq: u32) -> bool {
        boot == self.boot && seq.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    /// Writes the ack for the wire into `out` (with the trailing delimiter), returning the
    /// number of bytes written. [`MAX_ACK_WIRE_LEN`] bytes always suffice.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut raw = [0u8; ACK_PAYLOAD_LEN + 4];
        let (payload, crc) = raw.split_at_mut(ACK_PAYLOAD_LEN);
        let words = [self.boot, self.first, self.last];
        let (tag, fields) = payload
            .split_first_mut()
            .ok_or(EncodeError::TooManyReadings)?;
        *tag = ACK_TAG;
        for (dst, word) in fields.as_chunks_mut::<4>().0.iter_mut().zip(words) {
            *dst = word.to_le_bytes();
        }
        crc.copy_from_slice(&crc32(payload).to_le_bytes());
        let needed = MAX_ACK_WIRE_LEN;
        let n = cobs::encode(&raw, out).map_err(|_| EncodeError::BufferTooSmall { needed })?;
        let delimiter = out
            .get_mut(n)
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        *delimiter = 0;
        Ok(n.saturating_add(1))
    }

    /// Decodes one ack from its wire bytes (the trailing `0x00` may be present or not).
    pub fn decode(wire: &[u8]) -> Result<Self, DecodeError> {
        let wire = wire.strip_suffix(&[0]).unwrap_or(wire);
        let mut raw = [0u8; ACK_PAYLOAD_LEN + 4];
        let n = cobs::decode(wire, &mut raw).map_err(|_| {
            if wire.len() >= MAX_ACK_WIRE_LEN {
                DecodeError::FrameTooLong
            } else {
                DecodeError::Cobs
            }
        })?;
        Self::from_raw(raw.get(..n).unwrap_or(&[]))
    }

    fn from_raw(raw: &[u8]) -> Result<Self, DecodeError> {
        let Some((payload, crc)) = raw.split_last_chunk::<4>() else {
            return Err(DecodeError::TooShort { len: raw.len() });
        };
        if payload.len() < ACK_PAYLOAD_LEN {
            return Err(DecodeError::TooShort { len: raw.len() });
        }
        let received = u32::from_le_bytes(*crc);
        let computed = crc32(payload);
        if received != computed {
            return Err(DecodeError::Crc { received, computed });
        }
        let Some((&tag, rest)) = payload.split_first() else {
            return Err(DecodeError::TooShort { len: raw.len() });
        };
        if tag != ACK_TAG {
            return Err(DecodeError::UnsupportedVersion(tag));
        }
        let word = |i: usize| -> Result<u32, DecodeError> {
            rest.get(i..)
                .and_then(|r| r.first_chunk::<4>())
                .map(|b| u32::from_le_bytes(*b))
                .ok_or(DecodeError::TooShort { len: raw.len() })
        };
        Ok(Self {
            boot: word(0)?,
            first: word(4)?,
            last: word(8)?,
        })
    }
}

/// What a device received on its downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Downlink {
    /// Re-send everything not acknowledged yet ([`REPLAY_REQUEST`]).
    Replay,
    /// Frames the service has committed.
    Ack(Ack),
}

/// The device's downlink decoder: bytes in, one at a time, [`Downlink`] messages out. A
/// [`REPLAY_REQUEST`] byte between messages is a replay request; anything else is collected up
/// to the next `0x00` and decoded as an ack. Garbage costs the message it is in; the decoder
/// resynchronises on the next `0x00`. Fixed memory: [`MAX_ACK_WIRE_LEN`] (19) bytes of buffer.
#[derive(Debug, Clone, Default)]
pub struct DownlinkDecoder {
    buf: [u8; MAX_ACK_WIRE_LEN],
    len: usize,
    overflowed: bool,
}

impl DownlinkDecoder {
    /// A decoder between messages.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_ACK_WIRE_LEN],
            len: 0,
            overflowed: false,
        }
    }

    /// Feeds one byte; returns a message or an error when one ends with this byte.
    pub fn push(&mut self, byte: u8) -> Option<Result<Downlink, DecodeError>> {
        if byte == 0 {
            let result = if self.overflowed {
                Some(Err(DecodeError::FrameTooLong))
            } else if self.len == 0 {
                None
            } else {
                Some(Ack::decode(self.buf.get(..self.len).unwrap_or(&[])).map(Downlink::Ack))
            };
            self.len = 0;
            self.overflowed = false;
            return result;
        }
        if byte == REPLAY_REQUEST && self.len == 0 && !self.overflowed {
            return Some(Ok(Downlink::Replay));
        }
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len = self.len.saturating_add(1);
            }
            None => self.overflowed = true,
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_round_trips_and_covers_its_range() {
        let ack = Ack {
            boot: 0x9E37_79B9,
            first: 5,
            last: 9,
        };
        let mut buf = [0u8; MAX_ACK_WIRE_LEN];
        let n = ack.encode(&mut buf).unwrap();
        assert_eq!(buf[n - 1], 0);
        assert!(!buf[..n - 1].contains(&0));
        assert!(buf[0] <= 18 && buf[0] != REPLAY_REQUEST);
        assert_eq!(Ack::decode(&buf[..n]), Ok(ack));
        assert!(ack.covers(0x9E37_79B9, 5) && ack.covers(0x9E37_79B9, 9));
        assert!(!ack.covers(0x9E37_79B9, 4) && !ack.covers(0x9E37_79B9, 10));
        assert!(!ack.covers(1, 7));
        let wrap = Ack {
            boot: 1,
            first: u32::MAX - 1,
            last: 1,
        };
        assert!(wrap.covers(1, u32::MAX) && wrap.covers(1, 0) && !wrap.covers(1, 2));
    }

    #[test]
    fn decoder_sees_replay_requests_and_acks_and_resyncs() {
        let ack = Ack {
            boot: 7,
            first: 0,
            last: 0,
        };
        let mut buf = [0u8; MAX_ACK_WIRE_LEN];
        let n = ack.encode(&mut buf).unwrap();
        let mut stream = vec![REPLAY_REQUEST];
        stream.extend_from_slice(&[3, 0xFF, 0xFF, 0xFF, 0xFF, 0]); // garbage message
        stream.extend_from_slice(&buf[..n]);
        stream.extend_from_slice(&[9; 40]); // too long
        stream.push(0);
        stream.push(REPLAY_REQUEST);
        let mut d = DownlinkDecoder::new();
        let got: Vec<_> = stream.iter().filter_map(|&b| d.push(b)).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], Ok(Downlink::Replay));
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(Downlink::Ack(ack)));
        assert_eq!(got[3], Err(DecodeError::FrameTooLong));
        assert_eq!(got[4], Ok(Downlink::Replay));
    }
}

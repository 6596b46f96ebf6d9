//! Framing: `COBS(payload ‖ CRC-32(payload) as u32 LE) ‖ 0x00` (SPEC.md, "Framing").

use crate::{DecodeError, EncodeError, Frame, MAX_RAW_LEN, cobs, crc::crc32};

/// Encodes `frame` for the wire into `out` (COBS, CRC and the trailing `0x00` delimiter),
/// returning the number of bytes written. [`crate::MAX_WIRE_LEN`] bytes always suffice.
pub fn encode(frame: &Frame, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut payload = [0u8; crate::MAX_PAYLOAD_LEN];
    let payload_len = frame.to_payload(&mut payload)?;
    encode_payload(payload.get(..payload_len).unwrap_or(&[]), out)
}

/// Frames an already built payload ([`Frame::to_payload`]) for the wire into `out`: CRC,
/// COBS and the delimiter. A device that stores payloads (the firmware's outbox keeps
/// them, smaller than frames) frames them with this when it sends. A payload longer than
/// [`crate::MAX_PAYLOAD_LEN`] is refused (`TooManyReadings`).
pub fn encode_payload(payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    if payload.len() > crate::MAX_PAYLOAD_LEN {
        return Err(EncodeError::TooManyReadings);
    }
    let payload_len = payload.len();
    let mut raw = [0u8; MAX_RAW_LEN];
    let (head, rest) = raw.split_at_mut(payload_len);
    head.copy_from_slice(payload);
    let crc_bytes = crc32(payload).to_le_bytes();
    let crc_slot = rest.get_mut(..4).ok_or(EncodeError::TooManyReadings)?;
    crc_slot.copy_from_slice(&crc_bytes);
    let raw_len = payload_len.saturating_add(4);
    let needed = cobs::max_encoded_len(raw_len).saturating_add(1);
    let raw = raw.get(..raw_len).ok_or(EncodeError::TooManyReadings)?;
    let n = cobs::encode(raw, out).map_err(|_| EncodeError::BufferTooSmall { needed })?;
    let delimiter = out
        .get_mut(n)
        .ok_or(EncodeError::BufferTooSmall { needed })?;
    *delimiter = 0;
    Ok(n.saturating_add(1))
}

/// Encodes `frame` into a new `Vec` (with the trailing delimiter).
#[cfg(feature = "std")]
pub fn encode_to_vec(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; crate::MAX_WIRE_LEN];
    let n = encode(frame, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Decodes one frame from its wire bytes. The trailing `0x00` delimiter may be present or
/// not; there must be no other zero byte. For a byte stream use [`crate::Decoder`].
pub fn decode(wire: &[u8]) -> Result<Frame, DecodeError> {
    let wire = wire.strip_suffix(&[0]).unwrap_or(wire);
    let mut raw = [0u8; MAX_RAW_LEN];
    let n = cobs::decode(wire, &mut raw).map_err(|_| {
        if wire.len() > crate::MAX_WIRE_LEN {
            DecodeError::FrameTooLong
        } else {
            DecodeError::Cobs
        }
    })?;
    decode_raw(raw.get(..n).unwrap_or(&[]))
}

/// Checks the CRC of a COBS-decoded frame and parses its payload.
pub fn decode_raw(raw: &[u8]) -> Result<Frame, DecodeError> {
    let too_short = DecodeError::TooShort { len: raw.len() };
    // The smallest frame of any version (v1: 19-byte header); a v2 frame shorter than its own
    // header is caught after the CRC, when its version byte can be trusted.
    if raw.len() < crate::frame::HEADER_LEN_V1.saturating_add(4) {
        return Err(too_short);
    }
    let (payload, crc) = raw.split_last_chunk::<4>().ok_or(too_short)?;
    let received = u32::from_le_bytes(*crc);
    let computed = crc32(payload);
    if received != computed {
        return Err(DecodeError::Crc { received, computed });
    }
    Frame::from_payload(payload)
}

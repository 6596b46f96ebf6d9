//! Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): removes every `0x00` from a
//! block so that `0x00` can delimit frames. Overhead: one byte per 254, at most.
//!
//! The encoded form is a sequence of blocks `code, data[code - 1]`; each block stands for its
//! data followed by one zero byte, except a block with code `0xFF` (254 data bytes, no zero)
//! and the last block (no zero). See SPEC.md, "Framing".

/// Bytes needed to COBS-encode `len` bytes (without the `0x00` delimiter).
pub const fn max_encoded_len(len: usize) -> usize {
    len.saturating_add(len / 254).saturating_add(1)
}

/// The output buffer is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall;

/// The input is not valid COBS (or the output buffer is too small to hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvalidCobs;

/// A write cursor over a caller's buffer that never indexes out of bounds.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn set(&mut self, at: usize, byte: u8) -> Result<(), BufferTooSmall> {
        *self.buf.get_mut(at).ok_or(BufferTooSmall)? = byte;
        Ok(())
    }

    fn push(&mut self, byte: u8) -> Result<(), BufferTooSmall> {
        self.set(self.pos, byte)?;
        self.pos = self.pos.saturating_add(1);
        Ok(())
    }
}

/// COBS-encodes `input` into `out`, returning the number of bytes written. Does not add the
/// `0x00` delimiter.
pub fn encode(input: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut out = Out { buf: out, pos: 1 };
    let mut code_at = 0usize;
    let mut code = 1u8;
    for &byte in input {
        if byte == 0 {
            out.set(code_at, code)?;
            code_at = out.pos;
            out.pos = out.pos.saturating_add(1);
            code = 1;
        } else {
            out.push(byte)?;
            code = code.saturating_add(1);
            if code == 0xFF {
                out.set(code_at, code)?;
                code_at = out.pos;
                out.pos = out.pos.saturating_add(1);
                code = 1;
            }
        }
    }
    out.set(code_at, code)?;
    Ok(out.pos)
}

/// Decodes one COBS block sequence (no `0x00` delimiter inside) into `out`, returning the
/// number of bytes written.
pub fn decode(input: &[u8], out: &mut [u8]) -> Result<usize, InvalidCobs> {
    let mut out = Out { buf: out, pos: 0 };
    let mut bytes = input.iter().copied().peekable();
    while let Some(code) = bytes.next() {
        if code == 0 {
            return Err(InvalidCobs);
        }
        for _ in 1..code {
            match bytes.next() {
                Some(0) | None => return Err(InvalidCobs),
                Some(b) => out.push(b).map_err(|_| InvalidCobs)?,
            }
        }
        if code != 0xFF && bytes.peek().is_some() {
            out.push(0).map_err(|_| InvalidCobs)?;
        }
    }
    Ok(out.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &[u8]) -> Vec<u8> {
        let mut enc = vec![0u8; max_encoded_len(input.len())];
        let n = encode(input, &mut enc).unwrap();
        assert!(
            !enc[..n].contains(&0),
            "encoded form contains a zero: {:?}",
            &enc[..n]
        );
        let mut dec = vec![0u8; input.len()];
        let m = decode(&enc[..n], &mut dec).unwrap();
        assert_eq!(&dec[..m], input);
        enc.truncate(n);
        enc
    }

    // Examples from the COBS paper / Wikipedia's table.
    #[test]
    fn known_encodings() {
        assert_eq!(roundtrip(&[]), [0x01]);
        assert_eq!(roundtrip(&[0x00]), [0x01, 0x01]);
        assert_eq!(roundtrip(&[0x00, 0x00]), [0x01, 0x01, 0x01]);
        assert_eq!(
            roundtrip(&[0x11, 0x22, 0x00, 0x33]),
            [0x03, 0x11, 0x22, 0x02, 0x33]
        );
        assert_eq!(
            roundtrip(&[0x11, 0x00, 0x00, 0x00]),
            [0x02, 0x11, 0x01, 0x01, 0x01]
        );
    }

    #[test]
    fn long_runs_without_zero() {
        let data: Vec<u8> = (1..=254).collect();
        let enc = roundtrip(&data);
        assert_eq!(enc[0], 0xFF);
        assert_eq!(enc.len(), 256);
        let data: Vec<u8> = (0..600).map(|i| (i % 255 + 1) as u8).collect();
        roundtrip(&data);
    }

    #[test]
    fn rejects_zero_and_overrun() {
        let mut out = [0u8; 16];
        assert_eq!(decode(&[0x03, 0x11, 0x00], &mut out), Err(InvalidCobs));
        assert_eq!(decode(&[0x05, 0x11], &mut out), Err(InvalidCobs));
        assert_eq!(decode(&[0x00], &mut out), Err(InvalidCobs));
    }

    #[test]
    fn small_buffers_are_errors_not_panics() {
        let mut out = [0u8; 2];
        assert_eq!(encode(&[1, 2, 3], &mut out), Err(BufferTooSmall));
        assert_eq!(decode(&[0x04, 1, 2, 3], &mut out), Err(InvalidCobs));
    }
}

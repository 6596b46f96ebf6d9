use core::fmt;

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The output buffer is too small; `needed` bytes would fit the frame.
    BufferTooSmall {
        /// Bytes the encoded frame needs.
        needed: usize,
    },
    /// A frame holds at most [`crate::MAX_READINGS`] readings.
    TooManyReadings,
    /// [`crate::Reading::Unknown`] only records that a reading was skipped; it cannot be sent.
    UnknownKind(u8),
}

/// Why a received frame was rejected. Every variant is a recoverable, per-frame error: the
/// streaming decoder carries on with the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// More than [`crate::MAX_WIRE_LEN`] bytes arrived without a `0x00` delimiter; the bytes
    /// were dropped up to the next delimiter.
    FrameTooLong,
    /// The bytes between two delimiters are not valid COBS.
    Cobs,
    /// The frame is shorter than a header plus CRC (`len` bytes after COBS).
    TooShort {
        /// Length after COBS decoding.
        len: usize,
    },
    /// The CRC-32 in the frame does not match its contents: corrupted in transit.
    Crc {
        /// The CRC carried by the frame.
        received: u32,
        /// The CRC computed over the received payload.
        computed: u32,
    },
    /// The frame's version byte names a protocol version this decoder does not read.
    UnsupportedVersion(u8),
    /// The header announces more than [`crate::MAX_READINGS`] readings.
    TooManyReadings(u8),
    /// A reading runs past the end of the payload.
    TruncatedReading {
        /// Index of the reading within the frame.
        index: u8,
    },
    /// A reading of a known kind has the wrong length for that kind.
    BadReadingLength {
        /// The reading's kind code.
        kind: u8,
        /// The length it carried.
        len: u8,
    },
    /// Bytes are left over after the announced readings.
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: the frame needs {needed} bytes")
            }
            Self::TooManyReadings => {
                write!(f, "a frame holds at most {} readings", crate::MAX_READINGS)
            }
            Self::UnknownKind(k) => write!(f, "reading kind {k:#04x} is not known to this encoder"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong => write!(
                f,
                "no frame delimiter within {} bytes; bytes dropped up to the next 0x00",
                crate::MAX_WIRE_LEN
            ),
            Self::Cobs => write!(f, "invalid COBS encoding"),
            Self::TooShort { len } => write!(f, "frame too short ({len} bytes after COBS)"),
            Self::Crc { received, computed } => write!(
                f,
                "CRC mismatch: frame says {received:#010x}, contents give {computed:#010x}"
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this decoder reads versions {} to {})",
                crate::MIN_VERSION,
                crate::VERSION
            ),
            Self::TooManyReadings(n) => write!(
                f,
                "frame announces {n} readings, at most {} are allowed",
                crate::MAX_READINGS
            ),
            Self::TruncatedReading { index } => write!(f, "reading {index} runs past the frame"),
            Self::BadReadingLength { kind, len } => {
                write!(f, "reading kind {kind:#04x} cannot have length {len}")
            }
            Self::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the last reading")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}
#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

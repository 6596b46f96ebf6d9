//! Frames and readings, and the payload byte layout (SPEC.md, "Payload").
//!
//! ```text
//! version 2 (written)              version 1 (still read; boot = 0)
//! offset size field                offset size field
//!  0     1    version (= 2)         0     1    version (= 1)
//!  1     1    flags                 1     1    flags
//!  2     4    device_id u32 LE      2     4    device_id
//!  6     4    boot      u32 LE      -
//! 10     4    seq       u32 LE      6     4    seq
//! 14     8    uptime_ms u64 LE     10     8    uptime_ms
//! 22     1    reading count        18     1    reading count
//! 23     ..   readings             19     ..   readings (each: kind u8, len u8, value[len])
//! ```

use crate::{DecodeError, EncodeError, MAX_PAYLOAD_LEN, MAX_READINGS, VERSION};

/// Bytes before the first reading, in the version this crate writes (2).
pub const HEADER_LEN: usize = 23;

/// Bytes before the first reading in a version 1 frame (no `boot` field).
pub const HEADER_LEN_V1: usize = 19;

/// Reading kind codes (SPEC.md, "Reading kinds"). Codes are never reused.
pub mod kind {
    /// [`super::Reading::Temperature`]
    pub const TEMPERATURE: u8 = 0x01;
    /// [`super::Reading::Humidity`]
    pub const HUMIDITY: u8 = 0x02;
    /// [`super::Reading::Counter`]
    pub const COUNTER: u8 = 0x03;
    /// [`super::Reading::Status`]
    pub const STATUS: u8 = 0x04;
    /// [`super::Reading::Boot`]
    pub const BOOT: u8 = 0x05;
}

/// Status codes carried by [`Reading::Status`]. Codes are never reused.
pub mod status {
    /// Periodic "alive" report with nothing to report.
    pub const HEARTBEAT: u16 = 0x0001;
    /// The sensor did not answer or answered garbage; the sample was skipped.
    pub const SENSOR_FAULT: u16 = 0x0002;
    /// The device's transmit queue overflowed and frames were dropped on the device.
    pub const TX_OVERFLOW: u16 = 0x0003;
}

/// The boot id a sender writes for a candidate drawn at reset (an RNG word, a flash counter,
/// entropy handed in): the candidate itself, except that `0`, which receivers read as "no boot
/// identity" (version 1 frames), becomes `1` (SPEC.md R-BOOT-1).
pub const fn boot_id(candidate: u32) -> u32 {
    if candidate == 0 { 1 } else { candidate }
}

/// Board identifiers carried by [`Reading::Boot`]. TODO(4): add your boards.
pub mod board {
    /// QEMU `mps2-an386` (Cortex-M4F), the emulated board.
    pub const QEMU_MPS2_AN386: u8 = 0x01;
    /// Nordic nRF52840-DK (Cortex-M4F).
    pub const NRF52840_DK: u8 = 0x02;
}

/// One typed reading. New kinds are added as new variants with new kind codes; a decoder that
/// does not know a kind reports it as [`Reading::Unknown`] and decodes the rest of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reading {
    /// Temperature in hundredths of a degree Celsius (`2150` is 21.50 °C).
    Temperature {
        /// Hundredths of a degree Celsius.
        centi_celsius: i16,
    },
    /// Relative humidity in hundredths of a percent (`4550` is 45.50 %RH).
    Humidity {
        /// Hundredths of a percent.
        centi_percent: u16,
    },
    /// A monotonic event counter (e.g. pulses seen since boot).
    Counter(u32),
    /// A status or event code; see [`status`].
    Status(u16),
    /// Sent once at start-up: firmware version and board.
    Boot {
        /// Firmware version `[major, minor, patch]`.
        firmware: [u8; 3],
        /// Board id; see [`board`].
        board: u8,
    },
    /// A reading of a kind this decoder does not know; its value was skipped.
    Unknown {
        /// The kind code.
        kind: u8,
        /// The value's length in bytes.
        len: u8,
    },
}

impl Reading {
    /// The kind code written on the wire.
    pub const fn kind(&self) -> u8 {
        match self {
            Self::Temperature { .. } => kind::TEMPERATURE,
            Self::Humidity { .. } => kind::HUMIDITY,
            Self::Counter(_) => kind::COUNTER,
            Self::Status(_) => kind::STATUS,
            Self::Boot { .. } => kind::BOOT,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// Length of the value on the wire (without the kind and length bytes).
    pub const fn value_len(&self) -> u8 {
        match self {
            Self::Temperature { .. } | Self::Humidity { .. } | Self::Status(_) => 2,
            Self::Counter(_) | Self::Boot { .. } => 4,
            Self::Unknown { len, .. } => *len,
        }
    }

    /// Writes the value bytes.
    fn write_value(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            Self::Temperature { centi_celsius } => w.put(&centi_celsius.to_le_bytes()),
            Self::Humidity { centi_percent } => w.put(&centi_percent.to_le_bytes()),
            Self::Status(code) => w.put(&code.to_le_bytes()),
            Self::Counter(n) => w.put(&n.to_le_bytes()),
            Self::Boot {
                firmware: [a, b, c],
                board,
            } => w.put(&[a, b, c, board]),
            Self::Unknown { kind, .. } => Err(EncodeError::UnknownKind(kind)),
        }
    }

    fn read(kind: u8, value: &[u8]) -> Result<Self, DecodeError> {
        let bad = || DecodeError::BadReadingLength {
            kind,
            len: u8::try_from(value.len()).unwrap_or(u8::MAX),
        };
        let two = || value.try_into().map_err(|_| bad());
        let four = || <[u8; 4]>::try_from(value).map_err(|_| bad());
        Ok(match kind {
            kind::TEMPERATURE => Self::Temperature {
                centi_celsius: i16::from_le_bytes(two()?),
            },
            kind::HUMIDITY => Self::Humidity {
                centi_percent: u16::from_le_bytes(two()?),
            },
            kind::STATUS => Self::Status(u16::from_le_bytes(two()?)),
            kind::COUNTER => Self::Counter(u32::from_le_bytes(four()?)),
            kind::BOOT => {
                let [a, b, c, board] = four()?;
                Self::Boot {
                    firmware: [a, b, c],
                    board,
                }
            }
            _ => Self::Unknown {
                kind,
                len: u8::try_from(value.len()).map_err(|_| bad())?,
            },
        })
    }
}

/// Up to [`MAX_READINGS`] readings, stored inline (no allocator).
#[derive(Clone, Copy)]
pub struct Readings {
    items: [Reading; MAX_READINGS],
    len: usize,
}

impl Readings {
    /// No readings.
    pub const fn new() -> Self {
        Self {
            items: [Reading::Status(0); MAX_READINGS],
            len: 0,
        }
    }

    /// The readings, in order.
    pub fn as_slice(&self) -> &[Reading] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Appends a reading; fails when the frame is full.
    pub fn push(&mut self, reading: Reading) -> Result<(), EncodeError> {
        let slot = self
            .items
            .get_mut(self.len)
            .ok_or(EncodeError::TooManyReadings)?;
        *slot = reading;
        self.len = self.len.saturating_add(1);
        Ok(())
    }
}

impl Default for Readings {
    fn default() -> Self {
        Self::new()
    }
}

impl core::ops::Deref for Readings {
    type Target = [Reading];
    fn deref(&self) -> &[Reading] {
        self.as_slice()
    }
}

impl PartialEq for Readings {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Readings {}

impl core::fmt::Debug for Readings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Readings {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", self.as_slice())
    }
}

/// One telemetry frame: who sent it, which one it is, when, and what it measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame {
    /// Flag bits; versions 1 and 2 define none. Preserved as received.
    pub flags: u8,
    /// The device's id, unique within a deployment. TODO(3): your device id scheme.
    pub device_id: u32,
    /// Which boot of the device sent the frame: picked once at reset (a random id, or a
    /// counter kept in flash; SPEC.md 3.1) and the same in every frame until the next reset.
    /// An identity, not an order. `0` means "no boot identity": every version 1 frame has it,
    /// and senders avoid it.
    pub boot: u32,
    /// Sequence number, 0 at boot, +1 per frame. With `device_id` and `boot` it identifies the
    /// frame: receivers treat a repeated `(device_id, boot, seq)` as a retry of the same frame.
    pub seq: u32,
    /// Milliseconds since the device booted, when the readings were taken.
    pub uptime_ms: u64,
    /// The readings.
    pub readings: Readings,
}

impl Frame {
    /// A frame with no readings and `boot` 0 (no boot identity: set it with
    /// [`Frame::with_boot`]; a device always does).
    pub const fn new(device_id: u32, seq: u32, uptime_ms: u64) -> Self {
        Self {
            flags: 0,
            device_id,
            boot: 0,
            seq,
            uptime_ms,
            readings: Readings::new(),
        }
    }

    /// Builder form: the same frame with `boot` set.
    #[must_use]
    pub const fn with_boot(mut self, boot: u32) -> Self {
        self.boot = boot;
        self
    }

    /// Adds a reading; fails when the frame already holds [`MAX_READINGS`].
    pub fn push(&mut self, reading: Reading) -> Result<(), EncodeError> {
        self.readings.push(reading)
    }

    /// Builder form of [`Frame::push`].
    pub fn with(mut self, reading: Reading) -> Result<Self, EncodeError> {
        self.push(reading)?;
        Ok(self)
    }

    /// Length of the payload (header and readings, before the CRC).
    pub fn payload_len(&self) -> usize {
        self.readings.iter().fold(HEADER_LEN, |n, r| {
            n.saturating_add(2)
                .saturating_add(usize::from(r.value_len()))
        })
    }

    /// Writes the payload into `out`, returning its length.
    pub fn to_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let needed = self.payload_len();
        if needed > MAX_PAYLOAD_LEN {
            return Err(EncodeError::TooManyReadings);
        }
        let count = u8::try_from(self.readings.len()).map_err(|_| EncodeError::TooManyReadings)?;
        let mut w = Writer {
            buf: out
                .get_mut(..needed)
                .ok_or(EncodeError::BufferTooSmall { needed })?,
        };
        w.put(&[VERSION, self.flags])?;
        w.put(&self.device_id.to_le_bytes())?;
        w.put(&self.boot.to_le_bytes())?;
        w.put(&self.seq.to_le_bytes())?;
        w.put(&self.uptime_ms.to_le_bytes())?;
        w.put(&[count])?;
        for reading in self.readings.iter() {
            w.put(&[reading.kind(), reading.value_len()])?;
            reading.write_value(&mut w)?;
        }
        Ok(needed)
    }

    /// Parses a payload (CRC already checked and removed), version 2 or version 1 (which
    /// has no `boot` field and decodes with `boot` 0; SPEC.md R-VER-4).
    pub fn from_payload(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(payload);
        let too_short = DecodeError::TooShort {
            len: payload.len().saturating_add(4),
        };
        let [version, flags] = r.array().ok_or(too_short)?;
        let has_boot = match version {
            VERSION => true,
            crate::MIN_VERSION => false,
            other => return Err(DecodeError::UnsupportedVersion(other)),
        };
        let device_id = u32::from_le_bytes(r.array().ok_or(too_short)?);
        let boot = if has_boot {
            u32::from_le_bytes(r.array().ok_or(too_short)?)
        } else {
            0
        };
        let seq = u32::from_le_bytes(r.array().ok_or(too_short)?);
        let uptime_ms = u64::from_le_bytes(r.array().ok_or(too_short)?);
        let [count] = r.array().ok_or(too_short)?;
        if usize::from(count) > MAX_READINGS {
            return Err(DecodeError::TooManyReadings(count));
        }
        let mut frame = Frame {
            flags,
            device_id,
            boot,
            seq,
            uptime_ms,
            readings: Readings::new(),
        };
        for index in 0..count {
            let truncated = DecodeError::TruncatedReading { index };
            let [kind, len] = r.array().ok_or(truncated)?;
            let value = r.take(usize::from(len)).ok_or(truncated)?;
            frame
                .push(Reading::read(kind, value)?)
                .map_err(|_| DecodeError::TooManyReadings(count))?;
        }
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes { count: r.0.len() });
        }
        Ok(frame)
    }
}

/// A write cursor over a caller's buffer: every write is checked.
struct Writer<'a> {
    buf: &'a mut [u8],
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let needed = bytes.len();
        let (head, tail) = core::mem::take(&mut self.buf)
            .split_at_mut_checked(needed)
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        head.copy_from_slice(bytes);
        self.buf = tail;
        Ok(())
    }
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

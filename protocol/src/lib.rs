//! The device telemetry wire format shared by the firmware, the gateway and the service.
//!
//! A device sends a stream of *frames*. Each frame carries a header (protocol version, device
//! id, boot id, sequence number, device uptime) and up to [`MAX_READINGS`] typed [`Reading`]s.
//! `(device_id, boot, seq)` identifies a frame: `boot` changes at every device reset, so a
//! device that restarts `seq` at 0 is not mistaken for a retry of its previous boot. The
//! encoder writes version 2; the decoders read versions 1 and 2 (a version 1 frame has
//! `boot` 0). On the
//! wire a frame is `COBS(payload ‖ CRC-32(payload)) ‖ 0x00`, so a receiver can join a byte
//! stream at any point and resynchronise on the next `0x00`. The byte-level specification,
//! written for someone implementing it in C, is `protocol/SPEC.md`; the test vectors it quotes
//! are `protocol/vectors.json`, which the tests check byte for byte.
//!
//! # Layout
//! - [`frame`]: [`Frame`], [`Reading`], the payload layout ([`Frame::to_payload`],
//!   [`Frame::from_payload`]).
//! - [`wire`]: framing: [`encode`] into a caller's buffer, [`decode`] one encoded frame.
//! - [`stream`]: [`Decoder`], the streaming decoder that takes bytes in arbitrary chunks.
//! - [`cobs`], [`crc`]: the two building blocks, usable on their own.
//!
//! # Guarantees
//! - `no_std`, no allocator, no `unsafe` (`#![forbid(unsafe_code)]`).
//! - Decoding never panics, whatever the input; every rejected frame is a typed
//!   [`DecodeError`]. The strict lint set below (no indexing, no unchecked arithmetic, no
//!   unwrap) holds the code to that, and property tests and a fuzz target check it.
//!
//! # Example
//! ```
//! use beacon_protocol::{Decoder, Frame, Reading, encode, MAX_WIRE_LEN};
//!
//! let mut frame = Frame::new(7, 1, 1_500).with_boot(0x9E37_79B9);
//! frame.push(Reading::Temperature { centi_celsius: 2_150 }).unwrap();
//!
//! let mut buf = [0u8; MAX_WIRE_LEN];
//! let n = encode(&frame, &mut buf).unwrap();
//!
//! let mut decoder = Decoder::new();
//! // Bytes may arrive in any chunks; here, two.
//! let (a, b) = buf[..n].split_at(5);
//! assert!(decoder.feed(a).next().is_none());
//! let got: Vec<_> = decoder.feed(b).collect();
//! assert_eq!(got, [Ok(frame)]);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
// The decoder handles untrusted bytes: hold it to "cannot panic" (see SPEC.md, R-SAFE-*).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::as_conversions,
    )
)]
#![warn(missing_docs)]

pub mod cobs;
pub mod crc;
pub mod downlink;
mod error;
pub mod frame;
// Bounded proofs for Kani (`cargo kani`); never part of a normal build. See proofs.rs.
#[cfg(kani)]
mod proofs;
pub mod stream;
pub mod wire;

pub use downlink::{Ack, Downlink, DownlinkDecoder};
pub use error::{DecodeError, EncodeError};
pub use frame::{Frame, Reading, Readings, status};
pub use stream::{Decoder, FrameError};
pub use wire::{decode, encode, encode_payload};

/// The protocol version this crate writes (SPEC.md, "Versioning"). It reads this one and
/// every version from [`MIN_VERSION`] on.
pub const VERSION: u8 = 2;

/// The oldest protocol version the decoders read: version 1 frames decode with `boot` 0.
pub const MIN_VERSION: u8 = 1;

/// Most readings one frame carries.
pub const MAX_READINGS: usize = 8;

/// Longest payload (header + readings, before the CRC) a frame may have.
pub const MAX_PAYLOAD_LEN: usize = 250;

/// Longest frame before COBS: payload plus the 4-byte CRC.
pub const MAX_RAW_LEN: usize = MAX_PAYLOAD_LEN + 4;

/// Longest frame on the wire: COBS adds one byte per 254 and the trailing `0x00` delimiter.
pub const MAX_WIRE_LEN: usize = cobs::max_encoded_len(MAX_RAW_LEN) + 1;

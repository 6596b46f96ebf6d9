//! Bounded proof harnesses for the Kani model checker (`cargo kani -p beacon-protocol`).
//!
//! Compiled only under `--cfg kani`. What each harness states, for every input within its
//! bound (not for sampled inputs):
//! - [`decode_never_panics`]: [`crate::decode`] returns (frame or typed error) for every byte
//!   string up to [`MAX_INPUT`] bytes: no panic, no out-of-bounds access, no overflow
//!   (R-SAFE-1); and when it returns a frame, the CRC in those bytes matches (R-SAFE-2).
//! - [`stream_decoder_never_panics`]: the same "no panic" for [`Decoder`] fed those bytes in
//!   two chunks at any split point, with its buffer bounded (R-SAFE-1, R-DEC-3).
//! - [`encode_then_decode_is_identity`]: any frame with up to [`MAX_PROOF_READINGS`] readings
//!   of any known kind and any values encodes without error and decodes to itself (R-ENC-1).
//!
//! `cargo xtask safety` runs them when `cargo kani` is installed and says that they were not
//! run when it is not. Without Kani the same code is compiled as ordinary tests against a
//! stand-in `kani` module (`--cfg kani --cfg kani_stub`), where `kani::any()` draws
//! pseudo-random values: that checks the harnesses build and their assertions hold on a few
//! thousand samples. It is NOT a proof; only a Kani run is.
// `kani_stub` is this file's own cfg, passed (with its --check-cfg) only by `cargo xtask safety`.
#![allow(unexpected_cfgs)]
// Harness code: assertions are the point (this module is never part of a normal build).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use crate::{Decoder, Frame, MAX_RAW_LEN, MAX_WIRE_LEN, Reading, cobs, crc::crc32, decode, encode};

/// Longest input the no-panic harnesses cover: a header, the CRC and one 4-byte reading after
/// COBS (19 + 6 + 4 = 29 raw bytes, 30 encoded) fit, so every decoder branch is reachable.
pub const MAX_INPUT: usize = 32;

/// Readings per frame in the round-trip harness (the payload loop is the same for 2 and 8).
pub const MAX_PROOF_READINGS: usize = 2;

/// A reading of any known kind with any value.
fn any_reading() -> Reading {
    match kani::any::<u8>() % 5 {
        0 => Reading::Temperature {
            centi_celsius: kani::any(),
        },
        1 => Reading::Humidity {
            centi_percent: kani::any(),
        },
        2 => Reading::Counter(kani::any()),
        3 => Reading::Status(kani::any()),
        _ => Reading::Boot {
            firmware: [kani::any(), kani::any(), kani::any()],
            board: kani::any(),
        },
    }
}

/// Any byte string up to `MAX_INPUT` bytes: a symbolic array and a symbolic length.
fn any_input() -> ([u8; MAX_INPUT], usize) {
    let bytes: [u8; MAX_INPUT] = kani::any();
    let len: usize = kani::any();
    kani::assume(len <= MAX_INPUT);
    (bytes, len)
}

/// R-SAFE-1, R-SAFE-2: one-shot decoding never panics for any input up to `MAX_INPUT` bytes,
/// and accepts a frame only when its CRC matches.
#[cfg_attr(not(kani_stub), kani::proof)]
#[cfg_attr(not(kani_stub), kani::unwind(34))]
pub fn decode_never_panics() {
    let (bytes, len) = any_input();
    let input = &bytes[..len];
    // Any result is fine for "no panic"; reaching the end for every input is the property.
    if decode(input).is_ok() {
        let body = input.strip_suffix(&[0]).unwrap_or(input);
        let mut raw = [0u8; MAX_RAW_LEN];
        let n = cobs::decode(body, &mut raw).expect("an accepted frame is valid COBS");
        let (payload, crc) = raw[..n].split_last_chunk::<4>().expect("at least a CRC");
        assert_eq!(crc32(payload), u32::from_le_bytes(*crc));
    }
}

/// R-SAFE-1, R-DEC-3: the streaming decoder never panics, whatever the chunking, and its
/// buffer stays bounded.
#[cfg_attr(not(kani_stub), kani::proof)]
#[cfg_attr(not(kani_stub), kani::unwind(34))]
pub fn stream_decoder_never_panics() {
    let (bytes, len) = any_input();
    let split: usize = kani::any();
    kani::assume(split <= len);
    let (a, b) = bytes[..len].split_at(split);
    let mut decoder = Decoder::new();
    let mut delivered = 0usize;
    for chunk in [a, b] {
        delivered += decoder.feed(chunk).filter(Result::is_ok).count();
    }
    assert!(decoder.pending() <= MAX_WIRE_LEN);
    // A frame needs at least 24 bytes on the wire: at most one fits in MAX_INPUT.
    assert!(delivered <= 1);
}

/// R-ENC-1: encode-then-decode is the identity for every frame within the bound.
#[cfg_attr(not(kani_stub), kani::proof)]
#[cfg_attr(not(kani_stub), kani::unwind(40))]
pub fn encode_then_decode_is_identity() {
    let mut frame = Frame::new(kani::any(), kani::any(), kani::any()).with_boot(kani::any());
    frame.flags = kani::any();
    let count: usize = kani::any();
    kani::assume(count <= MAX_PROOF_READINGS);
    for _ in 0..count {
        frame.push(any_reading()).expect("within MAX_READINGS");
    }
    let mut buf = [0u8; MAX_WIRE_LEN];
    let n = encode(&frame, &mut buf).expect("a buffer of MAX_WIRE_LEN always suffices");
    assert!(n <= MAX_WIRE_LEN);
    assert_eq!(decode(&buf[..n]), Ok(frame));
}

/// Stand-in for the `kani` crate, used only to compile and exercise the harnesses when Kani
/// is not installed (`--cfg kani --cfg kani_stub`). Values are pseudo-random, not symbolic.
#[cfg(kani_stub)]
mod kani {
    use std::cell::Cell;

    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
    }

    fn next_u64() -> u64 {
        STATE.with(|s| {
            // xorshift64*
            let mut x = s.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        })
    }

    /// Types the stand-in can produce.
    pub trait Arbitrary {
        fn any() -> Self;
    }

    macro_rules! arbitrary_int {
        ($($t:ty),*) => {$(
            impl Arbitrary for $t {
                #[allow(clippy::as_conversions, clippy::cast_possible_truncation)]
                fn any() -> Self {
                    next_u64() as $t
                }
            }
        )*};
    }
    arbitrary_int!(u8, u16, u32, u64, i16);

    impl Arbitrary for usize {
        fn any() -> Self {
            // Small lengths and split points, so `assume` rejects few samples.
            usize::from(u8::any() % 40)
        }
    }

    impl<const N: usize> Arbitrary for [u8; N] {
        fn any() -> Self {
            core::array::from_fn(|_| u8::any())
        }
    }

    pub fn any<T: Arbitrary>() -> T {
        T::any()
    }

    /// Kani discards the paths where `cond` is false; the stand-in ends the sample instead.
    pub fn assume(cond: bool) {
        if !cond {
            std::panic::panic_any(Rejected);
        }
    }

    /// Panic payload of a sample that `assume` rejected.
    pub struct Rejected;
}

/// Runs every harness on pseudo-random samples (stand-in mode only; NOT a proof).
#[cfg(all(kani_stub, test))]
#[test]
fn harnesses_hold_on_samples() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let harnesses: [(&str, fn()); 3] = [
        ("decode_never_panics", decode_never_panics),
        ("stream_decoder_never_panics", stream_decoder_never_panics),
        (
            "encode_then_decode_is_identity",
            encode_then_decode_is_identity,
        ),
    ];
    let mut failures = Vec::new();
    for (name, harness) in harnesses {
        let mut ran = 0;
        for _ in 0..5_000 {
            match std::panic::catch_unwind(harness) {
                Ok(()) => ran += 1,
                Err(payload) if payload.is::<kani::Rejected>() => {}
                Err(_) => failures.push(name),
            }
        }
        assert!(ran > 200, "{name}: only {ran} samples passed `assume`");
    }
    std::panic::set_hook(quiet);
    assert!(
        failures.is_empty(),
        "harness assertions failed: {failures:?}"
    );
}

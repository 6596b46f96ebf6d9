//! Property tests: round trips, chunking, and "never panics, never accepts a corrupted frame".

use beacon_protocol::{
    DecodeError, Decoder, Frame, MAX_READINGS, MAX_WIRE_LEN, Reading, cobs, crc::crc32, decode,
    encode,
};
use proptest::prelude::*;

fn reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        any::<i16>().prop_map(|centi_celsius| Reading::Temperature { centi_celsius }),
        any::<u16>().prop_map(|centi_percent| Reading::Humidity { centi_percent }),
        any::<u32>().prop_map(Reading::Counter),
        any::<u16>().prop_map(Reading::Status),
        (any::<[u8; 3]>(), any::<u8>())
            .prop_map(|(firmware, board)| Reading::Boot { firmware, board }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        prop::collection::vec(reading(), 0..=MAX_READINGS),
    )
        .prop_map(|(flags, device_id, boot, seq, uptime_ms, readings)| {
            let mut f = Frame::new(device_id, seq, uptime_ms).with_boot(boot);
            f.flags = flags;
            for r in readings {
                f.push(r).unwrap();
            }
            f
        })
}

fn wire(f: &Frame) -> Vec<u8> {
    let mut buf = [0u8; MAX_WIRE_LEN];
    let n = encode(f, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Does `f` re-encode to bytes whose CRC is consistent? (A decoded frame always must.)
fn crc_consistent(f: &Frame) -> bool {
    // Unknown readings are skipped on decode and cannot be re-encoded (R-VER-2).
    if f.readings
        .iter()
        .any(|r| matches!(r, Reading::Unknown { .. }))
    {
        return true;
    }
    let mut raw = [0u8; 256];
    let n = f.to_payload(&mut raw).unwrap();
    let w = wire(f);
    let mut dec = [0u8; 300];
    let m = cobs::decode(&w[..w.len() - 1], &mut dec).unwrap();
    m == n + 4 && dec[..n] == raw[..n] && dec[n..m] == crc32(&raw[..n]).to_le_bytes()
}

/// Longest random byte string fed to the decoders: well past MAX_WIRE_LEN (257) either way;
/// Miri, which interprets every byte, gets shorter ones.
const MAX_JUNK: usize = if cfg!(miri) { 600 } else { 2_000 };

/// Cases per property: 2000, or `PROPTEST_CASES` when set (`cargo xtask safety` runs a few
/// under Miri, whose interpreter is about a thousand times slower, and fewer per mutant).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Checks: R-ENC-1, R-WIRE-1 (no zero byte inside an encoded frame).
    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let w = wire(&f);
        prop_assert_eq!(w.last(), Some(&0));
        prop_assert!(!w[..w.len() - 1].contains(&0));
        prop_assert!(w.len() <= MAX_WIRE_LEN);
        prop_assert_eq!(decode(&w), Ok(f));
    }

    /// Checks: R-VER-4: any frame written in the version 1 layout (by hand, here: the crate
    /// only writes version 2) decodes to that frame with boot 0, in a stream of v2 frames too.
    #[test]
    fn version_1_layout_decodes_with_boot_zero(f in frame(), next in frame()) {
        let mut v2 = [0u8; 256];
        let n = f.to_payload(&mut v2).unwrap();
        // v1 = v2 without bytes 6..10 (the boot id), version byte 1.
        let mut v1: Vec<u8> = v2[..6].iter().chain(&v2[10..n]).copied().collect();
        v1[0] = 1;
        v1.extend(crc32(&v1).to_le_bytes());
        let mut w = vec![0u8; cobs::max_encoded_len(v1.len())];
        let m = cobs::encode(&v1, &mut w).unwrap();
        w.truncate(m);
        w.push(0);
        prop_assert_eq!(decode(&w), Ok(f.with_boot(0)));
        w.extend(wire(&next));
        let got: Vec<_> = Decoder::new().feed(&w).collect();
        prop_assert_eq!(got, vec![Ok(f.with_boot(0)), Ok(next)]);
    }

    /// Checks: R-PAY-3: two frames that differ only in boot encode differently and decode
    /// back apart (a reboot is never read as a retry).
    #[test]
    fn boot_distinguishes_otherwise_equal_frames(f in frame(), other in any::<u32>()) {
        prop_assume!(other != f.boot);
        let g = f.with_boot(other);
        prop_assert_ne!(wire(&f), wire(&g));
        prop_assert_eq!(decode(&wire(&g)), Ok(g));
        prop_assert_ne!(decode(&wire(&g)), Ok(f));
    }

    /// Checks: R-DEC-1: any split of a stream of frames into chunks gives the same frames.
    #[test]
    fn chunking_does_not_matter(frames in prop::collection::vec(frame(), 1..6),
                                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let stream: Vec<u8> = frames.iter().flat_map(wire).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts {
            got.extend(decoder.feed(&stream[start..cut]));
            start = cut;
        }
        let got: Vec<Frame> = got.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got, frames);
        prop_assert_eq!(decoder.pending(), 0);
    }

    /// Checks: R-SAFE-1, R-SAFE-2, R-DEC-3: arbitrary bytes never panic, and any frame that
    /// comes out is internally consistent (its own CRC checks).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..MAX_JUNK)) {
        let _ = decode(&bytes);
        let mut decoder = Decoder::new();
        for f in decoder.feed(&bytes).flatten() {
            prop_assert!(crc_consistent(&f));
        }
        prop_assert!(decoder.pending() <= MAX_WIRE_LEN);
    }

    /// Checks: R-SAFE-2, R-DEC-2: a frame with one bit flipped is rejected (CRC-32 catches every
    /// single-bit error), and the next frame after it still decodes.
    #[test]
    fn bit_flips_are_rejected_and_the_stream_resyncs(f in frame(), next in frame(),
                                                     bit in any::<prop::sample::Index>()) {
        let mut w = wire(&f);
        let body = w.len() - 1; // never flip the delimiter itself
        let bit = bit.index(body * 8);
        w[bit / 8] ^= 1 << (bit % 8);
        let mut decoder = Decoder::new();
        let mut stream = w.clone();
        stream.extend(wire(&next));
        let got: Vec<_> = decoder.feed(&stream).collect();
        // The corrupted frame is rejected. If the flip created a zero byte it splits the frame
        // into two bad pieces; either way no corrupted frame is accepted.
        prop_assert!(!got.iter().any(|r| r.as_ref().ok() == Some(&f) && w != wire(&f)));
        prop_assert!(got.iter().filter(|r| r.is_ok()).all(|r| r.as_ref().ok() == Some(&next)));
        prop_assert_eq!(got.last().copied(), Some(Ok(next)));
    }

    /// Checks: R-SAFE-1, R-DEC-2: a truncated frame followed by a good one: one error, then
    /// the good frame.
    #[test]
    fn truncated_frames_are_one_error_then_resync(f in frame(), next in frame(),
                                                  keep in any::<prop::sample::Index>()) {
        let w = wire(&f);
        let keep = keep.index(w.len() - 1).max(1); // a non-empty prefix, without the delimiter
        let mut stream = w[..keep].to_vec();
        stream.push(0);
        stream.extend(wire(&next));
        let got: Vec<_> = Decoder::new().feed(&stream).collect();
        prop_assert_eq!(got.len(), 2);
        prop_assert!(got[0].is_err());
        prop_assert_eq!(got[1], Ok(next));
    }

    /// Checks: R-DEC-2: garbage before a frame costs at most one error.
    #[test]
    fn garbage_prefix_costs_at_most_one_error(garbage in prop::collection::vec(1u8.., 0..600), f in frame()) {
        let mut stream = garbage.clone();
        stream.push(0);
        stream.extend(wire(&f));
        let got: Vec<_> = Decoder::new().feed(&stream).collect();
        prop_assert_eq!(got.last().copied(), Some(Ok(f)));
        prop_assert!(got.len() <= 2);
    }
}

/// Checks: R-DEC-3: an endless run without a delimiter is dropped with one FrameTooLong.
#[test]
fn endless_garbage_is_bounded_and_reported_once() {
    let mut decoder = Decoder::new();
    // Far past MAX_WIRE_LEN either way; Miri interprets every byte, so it gets a shorter run.
    let junk = vec![0x55u8; if cfg!(miri) { 2_000 } else { 100_000 }];
    assert_eq!(decoder.feed(&junk).count(), 0);
    assert!(decoder.pending() <= MAX_WIRE_LEN);
    let got: Vec<_> = decoder.feed(&[0]).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].unwrap_err().error, DecodeError::FrameTooLong);
    assert_eq!(got[0].unwrap_err().offset, 0);
    let f = Frame::new(1, 2, 3);
    assert_eq!(decoder.feed(&wire(&f)).collect::<Vec<_>>(), [Ok(f)]);
}

/// Checks: R-DEC-4: errors carry the stream offset where the bad frame started.
#[test]
fn errors_name_the_offset_of_the_bad_frame() {
    let good = wire(&Frame::new(1, 1, 1));
    let mut stream = good.clone();
    stream.extend([0x09, 0x01, 0x00]); // bad COBS at offset good.len()
    let got: Vec<_> = Decoder::new().feed(&stream).collect();
    let err = got[1].unwrap_err();
    assert_eq!(err.offset, good.len() as u64);
    assert_eq!(err.error, DecodeError::Cobs);
    assert!(
        err.to_string().contains(&format!("byte {}", good.len())),
        "{err}"
    );
}

/// Checks: R-ENC-2: a buffer too small is an error, not a panic or a partial write past it.
#[test]
fn encoder_refuses_small_buffers() {
    let f = Frame::new(1, 2, 3).with(Reading::Counter(9)).unwrap();
    let full = wire(&f);
    for len in 0..full.len() {
        let mut buf = vec![0xAAu8; len];
        assert!(encode(&f, &mut buf).is_err(), "len {len}");
    }
    let too_many =
        (0..=MAX_READINGS).try_fold(Frame::new(0, 0, 0), |f, _| f.with(Reading::Status(0)));
    assert!(too_many.is_err());
    let unknown = Frame::new(0, 0, 0)
        .with(Reading::Unknown { kind: 0x7F, len: 1 })
        .unwrap();
    assert!(encode(&unknown, &mut [0u8; MAX_WIRE_LEN]).is_err());
}

// The downlink (SPEC.md section 8): acks and replay requests, gateway to device.
mod downlink {
    use beacon_protocol::downlink::{
        Ack, Downlink, DownlinkDecoder, MAX_ACK_WIRE_LEN, REPLAY_REQUEST,
    };
    use proptest::prelude::*;

    fn ack() -> impl Strategy<Value = Ack> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(boot, first, last)| Ack {
            boot,
            first,
            last,
        })
    }

    fn wire(a: &Ack) -> Vec<u8> {
        let mut buf = [0u8; MAX_ACK_WIRE_LEN];
        let n = a.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    proptest! {
        /// Checks: R-ACK-1: an ack round-trips, its wire form has one 0x00 (the delimiter) and does not
        /// start with the replay request byte.
        #[test]
        fn ack_round_trips(a in ack()) {
            let w = wire(&a);
            prop_assert_eq!(w.iter().filter(|&&b| b == 0).count(), 1);
            prop_assert_ne!(w[0], REPLAY_REQUEST);
            prop_assert_eq!(Ack::decode(&w), Ok(a));
        }

        /// Checks: R-ACK-2: a stream of replay requests and acks decodes to the same messages in
        /// order, one byte at a time.
        #[test]
        fn mixed_stream_decodes_in_order(msgs in prop::collection::vec(prop::option::of(ack()), 0..20)) {
            let mut stream = Vec::new();
            for m in &msgs {
                match m {
                    None => stream.push(REPLAY_REQUEST),
                    Some(a) => stream.extend(wire(a)),
                }
            }
            let mut d = DownlinkDecoder::new();
            let got: Vec<_> = stream.iter().filter_map(|&b| d.push(b)).collect();
            let want: Vec<_> = msgs
                .iter()
                .map(|m| Ok(m.map_or(Downlink::Replay, Downlink::Ack)))
                .collect();
            prop_assert_eq!(got, want);
        }

        /// Checks: R-ACK-2, R-SAFE-1 (downlink): arbitrary bytes never panic the decoder, a corrupted ack is never
        /// delivered as another ack, and a good ack after a delimiter always decodes.
        #[test]
        fn garbage_then_an_ack(garbage in prop::collection::vec(any::<u8>(), 0..64), a in ack(), flip in 0usize..16, bit in 0u8..8) {
            let mut d = DownlinkDecoder::new();
            for &b in &garbage {
                let _ = d.push(b);
            }
            let mut w = wire(&a);
            let i = flip % (w.len() - 1);
            w[i] ^= 1 << bit;
            let mut corrupted = vec![0u8];
            corrupted.extend(&w);
            for m in corrupted.iter().filter_map(|&b| d.push(b)) {
                if let Ok(Downlink::Ack(other)) = m {
                    prop_assert_eq!(other, a, "a bit flip must not yield another ack");
                }
            }
            let got: Vec<_> = wire(&a).iter().filter_map(|&b| d.push(b)).collect();
            prop_assert_eq!(got, vec![Ok(Downlink::Ack(a))]);
        }
    }

    proptest! {
        /// encode_payload frames exactly what encode does.
        #[test]
        fn encode_payload_matches_encode(f in super::frame()) {
            let mut p = [0u8; beacon_protocol::MAX_PAYLOAD_LEN];
            let n = f.to_payload(&mut p).unwrap();
            let mut w = [0u8; super::MAX_WIRE_LEN];
            let m = beacon_protocol::encode_payload(&p[..n], &mut w).unwrap();
            prop_assert_eq!(&w[..m], &super::wire(&f)[..]);
        }
    }
}

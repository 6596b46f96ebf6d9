//! Exact values at the limits SPEC.md states: sizes, error fields, stream offsets. The vector
//! and property tests check the common cases; these pin the boundaries (found by mutation
//! testing: `cargo xtask safety`).

use beacon_protocol::{
    DecodeError, Decoder, EncodeError, Frame, MAX_RAW_LEN, MAX_READINGS, MAX_WIRE_LEN, Reading,
    cobs, crc::Crc32, crc::crc32, decode, encode, frame::HEADER_LEN, frame::HEADER_LEN_V1,
    wire::decode_raw,
};

/// `COBS(payload ‖ CRC) ‖ 0x00` for a hand-made payload (valid or not).
fn wire_of_payload(payload: &[u8]) -> Vec<u8> {
    let mut raw = payload.to_vec();
    raw.extend(crc32(payload).to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoded_len(raw.len())];
    let n = cobs::encode(&raw, &mut out).unwrap();
    out.truncate(n);
    out.push(0);
    out
}

/// A version-2 header (device 7, boot 0xB007, seq 1, uptime 1500) announcing `count` readings.
fn header(count: u8) -> Vec<u8> {
    let mut h = vec![2, 0];
    h.extend(7u32.to_le_bytes());
    h.extend(0xB007u32.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    h.extend(1_500u64.to_le_bytes());
    h.push(count);
    assert_eq!(h.len(), HEADER_LEN);
    h
}

/// The same header in version 1 (no boot field).
fn header_v1(count: u8) -> Vec<u8> {
    let mut h = vec![1, 0];
    h.extend(7u32.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    h.extend(1_500u64.to_le_bytes());
    h.push(count);
    assert_eq!(h.len(), HEADER_LEN_V1);
    h
}

/// Checks: R-WIRE-1: the limits SPEC.md states (payload 250, raw 254, wire 256 + delimiter).
#[test]
fn size_limits_are_the_spec_numbers() {
    assert_eq!(MAX_RAW_LEN, 254);
    assert_eq!(MAX_WIRE_LEN, 257);
    assert_eq!(HEADER_LEN, 23);
    assert_eq!(HEADER_LEN_V1, 19);
    assert_eq!(beacon_protocol::VERSION, 2);
    assert_eq!(beacon_protocol::MIN_VERSION, 1);
    assert_eq!(cobs::max_encoded_len(0), 1);
    assert_eq!(cobs::max_encoded_len(253), 254);
    assert_eq!(cobs::max_encoded_len(254), 256);
    assert_eq!(cobs::max_encoded_len(508), 511);
    assert_eq!(cobs::max_encoded_len(usize::MAX), usize::MAX);
}

/// Checks: R-DEC-3: 257 bytes without a delimiter still fit (one ordinary error); the 258th
/// makes the run FrameTooLong; either way the next frame decodes.
#[test]
fn frame_too_long_starts_after_max_wire_len_bytes() {
    let good = Frame::new(1, 2, 3);
    let good_wire = encode_vec(&good);
    for (run, expect_too_long) in [(MAX_WIRE_LEN, false), (MAX_WIRE_LEN + 1, true)] {
        let mut stream = vec![0x55u8; run];
        stream.push(0);
        stream.extend(&good_wire);
        let mut decoder = Decoder::new();
        let got: Vec<_> = decoder.feed(&stream).collect();
        assert_eq!(got.len(), 2, "run of {run}");
        let err = got[0].unwrap_err();
        assert_eq!(err.offset, 0);
        assert_eq!(
            err.error == DecodeError::FrameTooLong,
            expect_too_long,
            "run of {run}"
        );
        assert_eq!(got[1], Ok(good));
        assert_eq!(decoder.pending(), 0);
    }
    // The one-shot decoder draws the same line.
    assert_eq!(decode(&[0x55; MAX_WIRE_LEN]), Err(DecodeError::Cobs));
    assert_eq!(
        decode(&[0x55; MAX_WIRE_LEN + 1]),
        Err(DecodeError::FrameTooLong)
    );
}

/// Checks: R-DEC-4: each error carries the exact values SPEC.md names, and checks happen in
/// the stated order (COBS, length, CRC, then payload fields).
#[test]
fn errors_carry_exact_fields() {
    // Length: 22 bytes after COBS is one short of the smallest (v1) header + CRC.
    let short = wire_of_payload(&header_v1(0)[..HEADER_LEN_V1 - 1]);
    assert_eq!(decode(&short), Err(DecodeError::TooShort { len: 22 }));
    assert_eq!(
        decode_raw(&[1, 2, 3]),
        Err(DecodeError::TooShort { len: 3 })
    );
    // The minimal v1 frame (header only) is exactly 23 bytes after COBS and decodes, boot 0.
    assert_eq!(
        decode(&wire_of_payload(&header_v1(0))),
        Ok(Frame::new(7, 1, 1_500))
    );
    // The minimal v2 frame is 27 bytes; one byte less is TooShort, found after the CRC (which
    // passes), with the length after COBS.
    assert_eq!(
        decode(&wire_of_payload(&header(0))),
        Ok(Frame::new(7, 1, 1_500).with_boot(0xB007))
    );
    for cut in 1..=HEADER_LEN - HEADER_LEN_V1 {
        let p = &header(0)[..HEADER_LEN - cut];
        assert_eq!(
            decode(&wire_of_payload(p)),
            Err(DecodeError::TooShort { len: p.len() + 4 }),
            "v2 header cut by {cut}"
        );
    }

    // CRC: both values reported.
    let payload = header(0);
    let computed = crc32(&payload);
    let mut raw = payload.clone();
    raw.extend((computed ^ 1).to_le_bytes());
    assert_eq!(
        decode_raw(&raw),
        Err(DecodeError::Crc {
            received: computed ^ 1,
            computed
        })
    );

    // Version is checked after the CRC: a bad CRC wins over a bad version. 0 and 3 are not
    // versions; 1 and 2 are.
    for version in [0u8, 3, 0xFF] {
        let mut bad = header(0);
        bad[0] = version;
        assert_eq!(
            decode(&wire_of_payload(&bad)),
            Err(DecodeError::UnsupportedVersion(version))
        );
        let mut raw = bad.clone();
        raw.extend((crc32(&bad) ^ 0x100).to_le_bytes());
        assert!(matches!(decode_raw(&raw), Err(DecodeError::Crc { .. })));
    }

    // Count: 8 is allowed, 9 is not.
    let mut eight = header(8);
    for _ in 0..MAX_READINGS {
        eight.extend([0x04, 2, 1, 0]);
    }
    assert_eq!(decode(&wire_of_payload(&eight)).unwrap().readings.len(), 8);
    assert_eq!(
        decode(&wire_of_payload(&header(9))),
        Err(DecodeError::TooManyReadings(9))
    );

    // Truncated: the second reading (index 1) has its kind but not its length byte; then one
    // whose value is one byte short.
    let mut p = header(2);
    p.extend([0x04, 2, 1, 0, 0x04]);
    assert_eq!(
        decode(&wire_of_payload(&p)),
        Err(DecodeError::TruncatedReading { index: 1 })
    );
    let mut p = header(1);
    p.extend([0x03, 4, 1, 2, 3]);
    assert_eq!(
        decode(&wire_of_payload(&p)),
        Err(DecodeError::TruncatedReading { index: 0 })
    );

    // A known kind with the wrong length, for each length class.
    for (kind, len) in [(0x01u8, 3u8), (0x02, 1), (0x03, 2), (0x04, 4), (0x05, 5)] {
        let mut p = header(1);
        p.extend([kind, len]);
        p.extend(vec![0xAA; usize::from(len)]);
        assert_eq!(
            decode(&wire_of_payload(&p)),
            Err(DecodeError::BadReadingLength { kind, len }),
            "kind {kind}"
        );
    }

    // Trailing bytes are counted.
    let mut p = header(0);
    p.extend([9, 9]);
    assert_eq!(
        decode(&wire_of_payload(&p)),
        Err(DecodeError::TrailingBytes { count: 2 })
    );
}

/// Checks: R-VER-2: unknown kinds are skipped by their length, zero-length ones included, and
/// the readings after them still decode.
#[test]
fn unknown_kinds_of_any_length_are_skipped() {
    let mut p = header(3);
    p.extend([0x7F, 0]);
    p.extend([0xEE, 3, 1, 2, 3]);
    p.extend([0x01, 2, 0x66, 0x08]);
    let f = decode(&wire_of_payload(&p)).unwrap();
    assert_eq!(
        f.readings.as_slice(),
        [
            Reading::Unknown { kind: 0x7F, len: 0 },
            Reading::Unknown { kind: 0xEE, len: 3 },
            Reading::Temperature {
                centi_celsius: 2150
            },
        ]
    );
}

/// Checks: R-ENC-2: the encoder needs exactly the bytes it says, and says how many.
#[test]
fn encoder_reports_the_bytes_it_needs() {
    let f = Frame::new(1, 2, 3).with(Reading::Counter(9)).unwrap();
    let wire = encode_vec(&f);
    let mut exact = vec![0u8; wire.len()];
    assert_eq!(encode(&f, &mut exact), Ok(wire.len()));
    assert_eq!(exact, wire);
    let mut short = vec![0u8; wire.len() - 1];
    assert_eq!(
        encode(&f, &mut short),
        Err(EncodeError::BufferTooSmall { needed: wire.len() })
    );
    let mut payload = [0u8; 8];
    assert_eq!(
        f.to_payload(&mut payload),
        Err(EncodeError::BufferTooSmall {
            needed: f.payload_len()
        })
    );
    assert_eq!(f.payload_len(), HEADER_LEN + 2 + 4);
    assert_eq!(
        Frame::new(0, 0, 0)
            .with(Reading::Unknown { kind: 0x7F, len: 0 })
            .map(|f| encode(&f, &mut [0u8; MAX_WIRE_LEN])),
        Ok(Err(EncodeError::UnknownKind(0x7F)))
    );
}

/// Checks: R-DEC-1, R-DEC-2: the decoder's position, pending count and reset keep the stream
/// offsets right across chunks and a reconnect.
#[test]
fn positions_pending_and_reset() {
    let f = Frame::new(4, 5, 6);
    let wire = encode_vec(&f);
    let mut d = Decoder::new();
    assert_eq!(d.feed(&wire[..5]).count(), 0);
    assert_eq!((d.position(), d.pending()), (5, 5));
    // The link dropped: forget the partial frame, carry on counting.
    d.reset();
    assert_eq!((d.position(), d.pending()), (5, 0));
    assert_eq!(d.feed(&wire).collect::<Vec<_>>(), [Ok(f)]);
    assert_eq!(d.position(), 5 + wire.len() as u64);
    // A bad frame after that reports its own start offset.
    let start = d.position();
    let got: Vec<_> = d.feed(&[0x09, 0x01, 0x00]).collect();
    assert_eq!(got[0].unwrap_err().offset, start);
    assert!(format!("{d:?}").contains("position"));
    let default = Decoder::default();
    assert_eq!((default.position(), default.pending()), (0, 0));
}

/// Checks: R-PAY-2: frames that differ only in their readings are different frames.
#[test]
fn readings_take_part_in_equality() {
    let a = Frame::new(1, 1, 1).with(Reading::Status(1)).unwrap();
    let b = Frame::new(1, 1, 1).with(Reading::Status(2)).unwrap();
    let c = Frame::new(1, 1, 1);
    assert_ne!(a, b);
    assert_ne!(a, c);
    let copy = a;
    assert_eq!(a, copy);
    assert_eq!(format!("{:?}", a.readings), "[Status(1)]");
    assert_eq!(c.readings.len(), 0);
}

/// Checks: R-WIRE-2: the incremental CRC starts from the catalogue's initial value.
#[test]
fn crc_default_is_a_fresh_state() {
    let mut c = Crc32::default();
    c.update(b"123456789");
    assert_eq!(c.finish(), 0xCBF4_3926);
    assert_eq!(Crc32::default().finish(), 0);
}

fn encode_vec(f: &Frame) -> Vec<u8> {
    let mut buf = [0u8; MAX_WIRE_LEN];
    let n = encode(f, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Checks: R-ENC-2, R-WIRE-1: a payload over 250 bytes is refused before anything is written;
/// one of exactly 250 passes the size check (and then fails only because an `Unknown` reading
/// cannot be encoded).
#[test]
fn encoder_refuses_payloads_over_the_limit() {
    let at_limit = Frame::new(0, 0, 0)
        .with(Reading::Unknown {
            kind: 0x7F,
            len: 225,
        })
        .unwrap();
    assert_eq!(at_limit.payload_len(), 250);
    let mut raw = [0u8; 512];
    assert_eq!(
        at_limit.to_payload(&mut raw),
        Err(EncodeError::UnknownKind(0x7F))
    );
    let over = Frame::new(0, 0, 0)
        .with(Reading::Unknown {
            kind: 0x7F,
            len: 226,
        })
        .unwrap();
    assert_eq!(over.payload_len(), 251);
    assert_eq!(over.to_payload(&mut raw), Err(EncodeError::TooManyReadings));
    assert_eq!(
        encode(&over, &mut [0u8; 1024]),
        Err(EncodeError::TooManyReadings)
    );
}

/// Checks: R-ENC-1: the `Vec` helper writes the same bytes as the buffer encoder.
#[test]
fn encode_to_vec_matches_encode() {
    let f = Frame::new(9, 8, 7)
        .with(Reading::Humidity {
            centi_percent: 4550,
        })
        .unwrap();
    let v = beacon_protocol::wire::encode_to_vec(&f).unwrap();
    assert_eq!(v, encode_vec(&f));
    assert_eq!(decode(&v), Ok(f));
}

/// Checks: R-DEC-4: every error has a message naming what was wrong, with its values.
#[test]
fn every_error_has_a_message() {
    let decode_errors = [
        (
            DecodeError::FrameTooLong,
            "no frame delimiter within 257 bytes",
        ),
        (DecodeError::Cobs, "invalid COBS"),
        (DecodeError::TooShort { len: 22 }, "too short (22 bytes"),
        (
            DecodeError::Crc {
                received: 1,
                computed: 0xABCD,
            },
            "frame says 0x00000001, contents give 0x0000abcd",
        ),
        (
            DecodeError::UnsupportedVersion(3),
            "version 3 (this decoder reads versions 1 to 2)",
        ),
        (
            DecodeError::TooManyReadings(9),
            "announces 9 readings, at most 8",
        ),
        (
            DecodeError::TruncatedReading { index: 3 },
            "reading 3 runs past",
        ),
        (
            DecodeError::BadReadingLength { kind: 1, len: 3 },
            "kind 0x01 cannot have length 3",
        ),
        (
            DecodeError::TrailingBytes { count: 2 },
            "2 unexpected bytes",
        ),
    ];
    for (e, text) in decode_errors {
        assert!(e.to_string().contains(text), "{e}");
    }
    let encode_errors = [
        (EncodeError::BufferTooSmall { needed: 30 }, "needs 30 bytes"),
        (EncodeError::TooManyReadings, "at most 8 readings"),
        (EncodeError::UnknownKind(0x7F), "kind 0x7f is not known"),
    ];
    for (e, text) in encode_errors {
        assert!(e.to_string().contains(text), "{e}");
    }
    assert_eq!(beacon_protocol::Readings::default().len(), 0);
}

/// Checks: R-VER-4, R-PAY-1: a version 1 frame decodes field for field like its version 2
/// twin, with boot 0, for every header field and every reading layout; it re-encodes as
/// version 2 and decodes back to the same frame.
#[test]
fn version_1_frames_decode_with_boot_zero() {
    let mut v1 = header_v1(2);
    let mut v2 = header(2);
    for p in [&mut v1, &mut v2] {
        p.extend([0x01, 2, 0x66, 0x08, 0x03, 4, 1, 2, 3, 4]);
    }
    let f1 = decode(&wire_of_payload(&v1)).unwrap();
    let f2 = decode(&wire_of_payload(&v2)).unwrap();
    assert_eq!((f1.boot, f2.boot), (0, 0xB007));
    assert_eq!(f1, f2.with_boot(0));
    assert_eq!((f1.device_id, f1.seq, f1.uptime_ms), (7, 1, 1_500));
    assert_eq!(f1.readings.len(), 2);
    let again = encode_vec(&f1);
    let mut raw = [0u8; 300];
    let n = cobs::decode(&again[..again.len() - 1], &mut raw).unwrap();
    assert_eq!(raw[0], 2, "re-encoded as version 2");
    assert_eq!(n, v2.len() + 4);
    assert_eq!(decode(&again), Ok(f1));
}

/// Checks: R-PAY-3: frames that differ only in `boot` are different frames, and the encoder
/// writes `boot` where SPEC.md says (offset 6, little-endian), `seq` after it.
#[test]
fn boot_is_part_of_the_frame_identity() {
    let a = Frame::new(7, 1, 1_500).with_boot(1);
    let b = Frame::new(7, 1, 1_500).with_boot(2);
    assert_ne!(a, b);
    let mut p = [0u8; 64];
    let n = b.to_payload(&mut p).unwrap();
    assert_eq!(n, HEADER_LEN);
    assert_eq!(
        &p[..HEADER_LEN],
        &header(0)[..2]
            .iter()
            .copied()
            .chain(7u32.to_le_bytes())
            .chain(2u32.to_le_bytes())
            .chain(1u32.to_le_bytes())
            .chain(1_500u64.to_le_bytes())
            .chain([0])
            .collect::<Vec<u8>>()[..]
    );
    assert_eq!(decode(&encode_vec(&a)), Ok(a));
    assert_eq!(decode(&encode_vec(&b)), Ok(b));
}

/// Checks: R-BOOT-1: the sender-side mapping never produces boot 0 and keeps every other
/// candidate; a frame written with it decodes with that boot.
#[test]
fn senders_boot_id_is_never_zero() {
    use beacon_protocol::frame::boot_id;
    assert_eq!(boot_id(0), 1);
    for candidate in [1, 2, 0x9E37_79B9, u32::MAX] {
        assert_eq!(boot_id(candidate), candidate);
    }
    let f = Frame::new(1, 0, 0).with_boot(boot_id(0));
    assert_eq!(decode(&encode_vec(&f)).map(|f| f.boot), Ok(1));
}

//! Feeds arbitrary bytes, in arbitrary chunks, to the streaming decoder and the one-shot
//! decoder. Checks R-SAFE-1 (no panic) and R-SAFE-2 / R-ENC-1 (every frame that comes out
//! re-encodes, as version 2, to bytes that decode to the same frame; a version 1 frame comes
//! back with boot 0, R-VER-4).
#![no_main]

use beacon_protocol::{Decoder, MAX_WIRE_LEN, Reading, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the chunk size, so the fuzzer explores chunk boundaries too.
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);

    let _ = decode(bytes);

    let mut decoder = Decoder::new();
    let mut whole = Decoder::new();
    let mut from_chunks = Vec::new();
    for piece in bytes.chunks(chunk) {
        from_chunks.extend(decoder.feed(piece));
    }
    let from_whole: Vec<_> = whole.feed(bytes).collect();
    assert_eq!(from_chunks, from_whole, "chunking changed the result");

    for frame in from_whole.into_iter().flatten() {
        // Readings of unknown kinds are skipped on decode and cannot be re-encoded (R-VER-2).
        if frame.readings.iter().any(|r| matches!(r, Reading::Unknown { .. })) {
            continue;
        }
        let mut buf = [0u8; MAX_WIRE_LEN];
        let n = encode(&frame, &mut buf).expect("a decoded frame re-encodes");
        assert_eq!(decode(&buf[..n]), Ok(frame));
    }
});

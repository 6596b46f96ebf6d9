#!/usr/bin/env python3
"""Regenerates protocol/vectors.json from the definitions below.

This is a second, independent implementation of SPEC.md (Python's zlib.crc32 is
CRC-32/ISO-HDLC; COBS is written out below), so the Rust tests that check these bytes are
checked against something other than themselves. Run: python3 protocol/tools/gen_vectors.py

Both header layouts are written here: version 2 (the current one, with the `boot` field) and
version 1 (kept as decode-only vectors: receivers still read it and report `boot` 0). The same
run rewrites the fuzz seed corpus (protocol/fuzz/corpus/decode_stream/): one file per vector
(a chunk-size byte, 7, then the wire bytes) and `all-vectors` (chunk size 1, every vector back
to back).
"""
import json
import pathlib
import struct
import zlib

KINDS = {"temperature": 0x01, "humidity": 0x02, "counter": 0x03, "status": 0x04, "boot": 0x05}


def cobs(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def value(r):
    (k, v), = r.items()
    if k == "temperature":
        return KINDS[k], struct.pack("<h", v["centi_celsius"])
    if k == "humidity":
        return KINDS[k], struct.pack("<H", v["centi_percent"])
    if k == "counter":
        return KINDS[k], struct.pack("<I", v)
    if k == "status":
        return KINDS[k], struct.pack("<H", v)
    if k == "boot":
        return KINDS[k], bytes(v["firmware"]) + bytes([v["board"]])
    if k == "raw":  # a reading of a kind the decoder does not know
        return v["kind"], bytes.fromhex(v["value"])
    raise ValueError(k)


def header(f, version):
    """The header of SPEC.md section 3: version 1 has no `boot` field; 2 has it after the id."""
    if version == 1:
        return struct.pack("<BBIIQB", version, f.get("flags", 0), f["device_id"], f["seq"],
                           f["uptime_ms"], len(f["readings"]))
    return struct.pack("<BBIIIQB", version, f.get("flags", 0), f["device_id"], f["boot"],
                       f["seq"], f["uptime_ms"], len(f["readings"]))


def payload(f, version=2):
    out = header(f, version)
    for r in f["readings"]:
        kind, val = value(r)
        out += bytes([kind, len(val)]) + val
    return out


def wire(p: bytes, crc=None) -> bytes:
    crc = zlib.crc32(p) if crc is None else crc
    return cobs(p + struct.pack("<I", crc)) + b"\x00"


def decoded(f, version):
    """The frame as a decoder reports it: raw readings become `unknown`; a version-1 frame
    has boot 0."""
    rs = []
    for r in f["readings"]:
        if "raw" in r:
            rs.append({"unknown": {"kind": r["raw"]["kind"], "len": len(bytes.fromhex(r["raw"]["value"]))}})
        else:
            rs.append(r)
    boot = f["boot"] if version == 2 else 0
    return {**f, "flags": f.get("flags", 0), "boot": boot, "readings": rs}


def main():
    vectors = []

    def ok(name, desc, f, encode=True, version=2):
        p = payload(f, version)
        vectors.append({"name": name, "description": desc, "version": version,
                        "frame": decoded(f, version), "payload": p.hex(),
                        "crc": f"{zlib.crc32(p):08x}", "wire": wire(p).hex(),
                        # The encoder writes the current version only; v1 is decode-only.
                        "encode": encode and version == 2})

    def bad(name, desc, w, error):
        vectors.append({"name": name, "description": desc, "wire": w.hex(), "error": error})

    # Good frames, each in both layouts: `NAME` is version 1 (as before version 2 existed,
    # byte for byte), `v2-NAME` the same frame in version 2 with a boot id.
    frames = [
        ("boot", "start-up frame: firmware 0.1.0 on the QEMU board",
         {"device_id": 1, "boot": 0x1234ABCD, "seq": 0, "uptime_ms": 0,
          "readings": [{"boot": {"firmware": [0, 1, 0], "board": 1}}]}, True),
        ("temperature", "one temperature reading, 21.50 C",
         {"device_id": 7, "boot": 0x9E3779B9, "seq": 1, "uptime_ms": 1500,
          "readings": [{"temperature": {"centi_celsius": 2150}}]}, True),
        ("empty", "a frame with no readings",
         {"device_id": 42, "boot": 1, "seq": 5, "uptime_ms": 100, "readings": []}, True),
        ("all-kinds", "every v1 kind, extreme header values, a negative temperature",
         {"device_id": 0xDEADBEEF, "boot": 0xFFFFFFFF, "seq": 0xFFFFFFFF, "uptime_ms": 1 << 40,
          "readings": [{"temperature": {"centi_celsius": -1050}},
                       {"humidity": {"centi_percent": 4550}},
                       {"counter": 123456},
                       {"status": 1},
                       {"boot": {"firmware": [1, 2, 3], "board": 2}}]}, True),
        ("zeros", "mostly zero bytes: exercises COBS",
         {"device_id": 0, "boot": 0, "seq": 0, "uptime_ms": 0, "readings": [{"counter": 0}]}, True),
        ("max-readings", "eight readings, the most a frame holds",
         {"device_id": 3, "boot": 0x00010000, "seq": 9, "uptime_ms": 900,
          "readings": [{"temperature": {"centi_celsius": 2000 + i}} for i in range(8)]}, True),
        ("flags-preserved", "unknown flag bits are carried, not rejected",
         {"flags": 0x80, "device_id": 5, "boot": 77, "seq": 6, "uptime_ms": 7,
          "readings": [{"status": 2}]}, True),
        ("unknown-kind", "a kind this decoder does not know is skipped by its length",
         {"device_id": 9, "boot": 0xC0FFEE, "seq": 2, "uptime_ms": 20,
          "readings": [{"raw": {"kind": 0x7F, "value": "010203"}},
                       {"temperature": {"centi_celsius": 1999}}]}, False),
    ]
    for name, desc, f, encode in frames:
        ok(name, desc + " (version 1: decodes with boot 0)", f, encode, version=1)
    for name, desc, f, encode in frames:
        ok("v2-" + name, desc, f, encode, version=2)
    ok("v2-reboot", "the v2-temperature frame after a reboot: same device and seq, new boot id, "
       "so a different frame (not a duplicate)",
       {"device_id": 7, "boot": 0x2545F491, "seq": 1, "uptime_ms": 1500,
        "readings": [{"temperature": {"centi_celsius": 2150}}]})

    # Version 1 errors (unchanged bytes, except bad-version, whose version 2 became valid).
    good = payload({"device_id": 7, "seq": 1, "uptime_ms": 1500,
                    "readings": [{"temperature": {"centi_celsius": 2150}}]}, version=1)
    bad("bad-crc", "the temperature frame with its CRC off by one",
        wire(good, zlib.crc32(good) ^ 1), "Crc")
    flipped = bytearray(good)
    flipped[6] ^= 0x01
    bad("bit-flip", "one bit of the sequence number flipped in transit (CRC unchanged)",
        wire(bytes(flipped), zlib.crc32(good)), "Crc")
    v3 = bytes([3]) + payload({"device_id": 1, "boot": 1, "seq": 0, "uptime_ms": 0,
                               "readings": []})[1:]
    bad("bad-version", "version 3 (a v2 header with its version byte set to 3), valid CRC",
        wire(v3), "UnsupportedVersion")
    bad("too-short", "a valid COBS block far shorter than a header", cobs(b"\x01\x02\x03") + b"\x00",
        "TooShort")
    bad("bad-length", "a temperature reading with length 3",
        wire(struct.pack("<BBIIQB", 1, 0, 1, 1, 1, 1) + b"\x01\x03\x00\x00\x00"), "BadReadingLength")
    bad("trailing", "a byte after the announced readings",
        wire(struct.pack("<BBIIQB", 1, 0, 1, 1, 1, 0) + b"\xAA"), "TrailingBytes")
    bad("too-many", "nine readings announced",
        wire(struct.pack("<BBIIQB", 1, 0, 1, 1, 1, 9)), "TooManyReadings")
    bad("truncated-reading", "a reading that runs past the payload",
        wire(struct.pack("<BBIIQB", 1, 0, 1, 1, 1, 1) + b"\x01\x02\x00"), "TruncatedReading")
    bad("bad-cobs", "a COBS code byte pointing past the end", bytes([0x09, 0x01, 0x02, 0x00]), "Cobs")

    # Version 2 errors.
    good2 = payload({"device_id": 7, "boot": 0x9E3779B9, "seq": 1, "uptime_ms": 1500,
                     "readings": [{"temperature": {"centi_celsius": 2150}}]})
    bad("v2-bad-crc", "the v2-temperature frame with its CRC off by one",
        wire(good2, zlib.crc32(good2) ^ 1), "Crc")
    flipped = bytearray(good2)
    flipped[6] ^= 0x01
    bad("v2-bit-flip", "one bit of the boot id flipped in transit (CRC unchanged)",
        wire(bytes(flipped), zlib.crc32(good2)), "Crc")
    bad("v2-short-header", "a version-1-sized header (19 bytes) labelled version 2: the v2 "
        "header needs 23", wire(struct.pack("<BBIIQB", 2, 0, 1, 1, 1, 0)), "TooShort")
    bad("v2-too-many", "nine readings announced in a v2 header",
        wire(struct.pack("<BBIIIQB", 2, 0, 1, 5, 1, 1, 9)), "TooManyReadings")
    bad("v2-trailing", "a byte after the announced readings of a v2 frame",
        wire(struct.pack("<BBIIIQB", 2, 0, 1, 5, 1, 1, 0) + b"\xAA"), "TrailingBytes")

    # Downlink acks (SPEC.md section 8): tag 0xA1, boot, first, last; CRC; COBS; 0x00.
    acks = []

    def ack(name, desc, boot, first, last, crc_xor=0):
        p = struct.pack("<BIII", 0xA1, boot, first, last)
        entry = {"name": name, "description": desc, "payload": p.hex(),
                 "crc": f"{zlib.crc32(p):08x}", "wire": wire(p, zlib.crc32(p) ^ crc_xor).hex()}
        if crc_xor:
            entry["error"] = "Crc"
        else:
            entry["ack"] = {"boot": boot, "first": first, "last": last}
        acks.append(entry)

    ack("ack", "frames 1..=5 of boot 0x9e3779b9 committed", 0x9E3779B9, 1, 5)
    ack("ack-one", "frame 0 of boot 1 committed (zeros in the payload)", 1, 0, 0)
    ack("ack-wrap", "a range across the seq wrap: 0xfffffffe..=1", 7, 0xFFFFFFFE, 1)
    ack("ack-bad-crc", "the ack vector with its CRC off by one", 0x9E3779B9, 1, 5, crc_xor=1)

    root = pathlib.Path(__file__).resolve().parent.parent
    (root / "vectors.json").write_text(json.dumps(
        {"comment": "Generated by protocol/tools/gen_vectors.py; see SPEC.md, 'Test vectors'.",
         "vectors": vectors, "acks": acks}, indent=2) + "\n")

    corpus = root / "fuzz" / "corpus" / "decode_stream"
    corpus.mkdir(parents=True, exist_ok=True)
    for v in vectors:
        (corpus / v["name"]).write_bytes(bytes([7]) + bytes.fromhex(v["wire"]))
    (corpus / "all-vectors").write_bytes(
        bytes([1]) + b"".join(bytes.fromhex(v["wire"]) for v in vectors))


if __name__ == "__main__":
    main()

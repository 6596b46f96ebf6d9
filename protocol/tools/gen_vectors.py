#!/usr/bin/env python3
"""Regenerates protocol/vectors.json from the definitions below.

This is a second, independent implementation of SPEC.md (Python's zlib.crc32 is
CRC-32/ISO-HDLC; COBS is written out below), so the Rust tests that check these bytes are
checked against something other than themselves. Run: python3 protocol/tools/gen_vectors.py
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


def payload(f, version=1):
    out = struct.pack("<BBIIQB", version, f.get("flags", 0), f["device_id"], f["seq"],
                      f["uptime_ms"], len(f["readings"]))
    for r in f["readings"]:
        kind, val = value(r)
        out += bytes([kind, len(val)]) + val
    return out


def wire(p: bytes, crc=None) -> bytes:
    crc = zlib.crc32(p) if crc is None else crc
    return cobs(p + struct.pack("<I", crc)) + b"\x00"


def decoded(f):
    """The frame as a decoder reports it: raw readings become `unknown`."""
    rs = []
    for r in f["readings"]:
        if "raw" in r:
            rs.append({"unknown": {"kind": r["raw"]["kind"], "len": len(bytes.fromhex(r["raw"]["value"]))}})
        else:
            rs.append(r)
    return {**f, "flags": f.get("flags", 0), "readings": rs}


def main():
    vectors = []

    def ok(name, desc, f, encode=True):
        p = payload(f)
        vectors.append({"name": name, "description": desc, "frame": decoded(f),
                        "payload": p.hex(), "crc": f"{zlib.crc32(p):08x}", "wire": wire(p).hex(),
                        "encode": encode})

    def bad(name, desc, w, error):
        vectors.append({"name": name, "description": desc, "wire": w.hex(), "error": error})

    ok("boot", "start-up frame: firmware 0.1.0 on the QEMU board",
       {"device_id": 1, "seq": 0, "uptime_ms": 0,
        "readings": [{"boot": {"firmware": [0, 1, 0], "board": 1}}]})
    ok("temperature", "one temperature reading, 21.50 C",
       {"device_id": 7, "seq": 1, "uptime_ms": 1500,
        "readings": [{"temperature": {"centi_celsius": 2150}}]})
    ok("empty", "a frame with no readings",
       {"device_id": 42, "seq": 5, "uptime_ms": 100, "readings": []})
    ok("all-kinds", "every v1 kind, extreme header values, a negative temperature",
       {"device_id": 0xDEADBEEF, "seq": 0xFFFFFFFF, "uptime_ms": 1 << 40,
        "readings": [{"temperature": {"centi_celsius": -1050}},
                     {"humidity": {"centi_percent": 4550}},
                     {"counter": 123456},
                     {"status": 1},
                     {"boot": {"firmware": [1, 2, 3], "board": 2}}]})
    ok("zeros", "mostly zero bytes: exercises COBS",
       {"device_id": 0, "seq": 0, "uptime_ms": 0, "readings": [{"counter": 0}]})
    ok("max-readings", "eight readings, the most a frame holds",
       {"device_id": 3, "seq": 9, "uptime_ms": 900,
        "readings": [{"temperature": {"centi_celsius": 2000 + i}} for i in range(8)]})
    ok("flags-preserved", "unknown flag bits are carried, not rejected",
       {"flags": 0x80, "device_id": 5, "seq": 6, "uptime_ms": 7, "readings": [{"status": 2}]})
    ok("unknown-kind", "a kind this decoder does not know is skipped by its length",
       {"device_id": 9, "seq": 2, "uptime_ms": 20,
        "readings": [{"raw": {"kind": 0x7F, "value": "010203"}},
                     {"temperature": {"centi_celsius": 1999}}]}, encode=False)

    good = payload({"device_id": 7, "seq": 1, "uptime_ms": 1500,
                    "readings": [{"temperature": {"centi_celsius": 2150}}]})
    bad("bad-crc", "the temperature frame with its CRC off by one",
        wire(good, zlib.crc32(good) ^ 1), "Crc")
    flipped = bytearray(good)
    flipped[6] ^= 0x01
    bad("bit-flip", "one bit of the sequence number flipped in transit (CRC unchanged)",
        wire(bytes(flipped), zlib.crc32(good)), "Crc")
    bad("bad-version", "version 2 with a valid CRC",
        wire(payload({"device_id": 1, "seq": 0, "uptime_ms": 0, "readings": []}, version=2)),
        "UnsupportedVersion")
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

    path = pathlib.Path(__file__).resolve().parent.parent / "vectors.json"
    path.write_text(json.dumps({"comment": "Generated by protocol/tools/gen_vectors.py; see SPEC.md, 'Test vectors'.",
                                "vectors": vectors}, indent=2) + "\n")


if __name__ == "__main__":
    main()

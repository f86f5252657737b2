#!/usr/bin/env python3
"""mkespimage: writes a small but valid ESP application/bootloader image for tests.

The ESP image format: an 8-byte header (magic 0xE9, segment count, flash mode,
flash size/frequency byte, entry point), on ESP32-family chips a 16-byte
extended header (chip id, revisions, hash-appended flag), segments (load address,
length, data), zero padding to a 16-byte boundary less one, the XOR checksum
(seed 0xEF) of all segment data, and on ESP32-family chips the SHA-256 of
everything before it. Payload bytes are deterministic from --seed.

usage: mkespimage.py --chip esp32|esp8266|esp32c3|esp32s3 --size BYTES --out FILE [--seed N]
                     [--version V] [--v2 [--map N]]

--version V puts "ESPSIM_VERSION=V\0" at the start of the first segment: the virtual
board's network persona (tests/sim, esp_netdev) reports V as the running version.

--v2 (ESP8266 only) writes an ESP8266 NONOS SDK "V2" image (user1.bin/user2.bin of the
dual-image layout, PROTOCOL-ROM.md §7.4): header EA 04 <mode> <map<<4> <entry 0x40100004>,
the irom0 segment (address 0, about --size bytes, carrying the version marker), then a
small ESP8266 0xE9 image of the RAM segments, then a CRC-32 word. --map N is the flash
size map nibble (default 2: 1 MB, 512 KB + 512 KB, user2 at 0x81000).
"""
import zlib
import argparse
import hashlib
import struct
import sys

CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13}


def payload(n, seed):
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, block)).digest()
        block += 1
    return bytes(out[:n])


# Code-like words (ASCII and Xtensa-ish opcode bytes) picked by seeded SHA-256 bytes: a
# firmware-like payload: zlib -9 leaves about a sixth, zopfli's stream is a few % smaller.
WORDS = [b"esp_wifi_", b"nvs_get_", b"httpd_", b"0x3ffb", b"\x24\x41", b"\x36\x41\x00", b"ret",
         b"_init", b"ok; ", b"\x0c\x02", b"E (%d) %s: ", b"mbedtls_", b"\x81\xf9\xff", b"gpio_"]


def text_payload(n, seed, random_bytes=payload):
    out = bytearray()
    for r in random_bytes(n, seed):
        out += WORDS[r % len(WORDS)]
        if len(out) >= n:
            break
    return bytes(out[:n])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chip", required=True)
    ap.add_argument("--size", type=int, required=True, help="approximate payload bytes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--version", default=None)
    ap.add_argument("--v2", action="store_true")
    ap.add_argument("--map", type=int, default=2)
    ap.add_argument("--text", action="store_true", help="firmware-like payload, not random bytes")
    a = ap.parse_args()
    global payload
    if a.text:
        payload = text_payload
    if a.v2:
        if a.chip != "esp8266":
            sys.exit("--v2 is an ESP8266 format")
        irom = bytearray(payload(max(64, a.size // 4 * 4), a.seed + 7))
        if a.version:
            mark = b"ESPSIM_VERSION=" + a.version.encode() + b"\0"
            irom[: len(mark)] = mark
        ram = payload(256, a.seed + 2000)
        inner = bytearray(struct.pack("<BBBBI", 0xE9, 1, 2, a.map << 4, 0x40100004))
        inner += struct.pack("<II", 0x40100000, len(ram)) + ram
        cks = 0xEF
        for b in ram:
            cks ^= b
        inner += b"\0" * (15 - len(inner) % 16)
        inner.append(cks)
        img = bytearray(struct.pack("<BBBBIII", 0xEA, 0x04, 2, a.map << 4, 0x40100004, 0, len(irom)))
        img += irom + inner
        img += struct.pack("<I", zlib.crc32(bytes(img)) & 0xFFFFFFFF)
        with open(a.out, "wb") as f:
            f.write(img)
        return
    esp8266 = a.chip == "esp8266"
    if not esp8266 and a.chip not in CHIP_IDS:
        sys.exit("unknown chip " + a.chip)
    total = max(64, a.size // 4 * 4)
    seg_a = payload(total // 2 // 4 * 4, a.seed)
    if a.version:
        mark = b"ESPSIM_VERSION=" + a.version.encode() + b"\0"
        seg_a = mark + seg_a[len(mark):]
    seg_b = payload(total - len(seg_a), a.seed + 1000)
    segs = [(0x3FFE8000 if esp8266 else 0x3F400020, seg_a), (0x40100000 if esp8266 else 0x40080000, seg_b)]
    # flash mode DIO (2), size/freq byte 0x20 (4MB, 40m on ESP32; 4MB-c1 on ESP8266 is 0x40 but
    # any value parses).
    img = bytearray(struct.pack("<BBBBI", 0xE9, len(segs), 2, 0x20, segs[1][0]))
    if not esp8266:
        img += struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", CHIP_IDS[a.chip], 0, 0, 0xFFFF, b"\0" * 4, 1)
    cks = 0xEF
    for addr, data in segs:
        img += struct.pack("<II", addr, len(data)) + data
        for b in data:
            cks ^= b
    img += b"\0" * (15 - len(img) % 16)
    img.append(cks)
    if not esp8266:
        img += hashlib.sha256(bytes(img)).digest()
    with open(a.out, "wb") as f:
        f.write(img)


if __name__ == "__main__":
    main()

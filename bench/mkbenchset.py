#!/usr/bin/env python3
"""mkbenchset: writes a realistic ESP32 firmware set for bench_daemon.sh.

usage: mkbenchset.py --out DIR [--app-size BYTES] [--name N] [--version V]

DIR/manifest.json names three regions, like an ESP-IDF build:
  0x1000  bootloader.bin  valid ESP32 image, 24 KiB
  0x8000  partitions.bin  a 3 KiB partition-table-like blob (0xFF filled)
  0x10000 app.bin         valid ESP32 image of exactly --app-size bytes (default 1 MiB)
Image payloads alternate 4 KiB of text-like bytes (log strings, compress well)
and 4 KiB of pseudo-random bytes (do not compress), so about half of an image
compresses, like a real app. Deterministic. The image format (header, extended
header, segments, XOR checksum, appended SHA-256) is as in
tests/integration/mkespimage.py; sizes are multiples of 16, so the catalog's
compressed copy is used as is (no padding added at flashing time).
"""
import argparse
import hashlib
import json
import os
import struct

TEXT = (b"esp_wifi_init: rf calibration data ok; httpd: uri handler registered; "
        b"nvs_flash: partition 'nvs' mounted; app_main: sensor poll every 500 ms\n")


def payload(n, seed):
    out = bytearray()
    block = 0
    while len(out) < n:
        if block % 2 == 0:
            t = TEXT * (4096 // len(TEXT) + 1)
            out += t[:4096]
        else:
            h = b""
            i = 0
            while len(h) < 4096:
                h += hashlib.sha256(b"%d:%d:%d" % (seed, block, i)).digest()
                i += 1
            out += h[:4096]
        block += 1
    return bytes(out[:n])


def image(total, seed):
    """A valid ESP32 image of exactly `total` bytes (multiple of 16, >= 128)."""
    # 24 header bytes, 2 x 8 segment headers, segment data, zeros to 16n-1,
    # the checksum byte, 32 SHA-256 bytes: with body = total - 88 the padding
    # is 15 bytes and the image ends exactly at total.
    body = total - 88
    a = body // 2 // 4 * 4
    segs = [(0x3F400020, payload(a, seed)), (0x40080000, payload(body - a, seed + 1000))]
    img = bytearray(struct.pack("<BBBBI", 0xE9, len(segs), 2, 0x20, segs[1][0]))
    img += struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", 0, 0, 0, 0xFFFF, b"\0" * 4, 1)
    cks = 0xEF
    for addr, data in segs:
        img += struct.pack("<II", addr, len(data)) + data
        for b in data:
            cks ^= b
    img += b"\0" * (15 - len(img) % 16)
    img.append(cks)
    img += hashlib.sha256(bytes(img)).digest()
    assert len(img) == total
    return bytes(img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--app-size", type=int, default=1 << 20)
    ap.add_argument("--name", default="benchfw")
    ap.add_argument("--version", default="1.0.0")
    a = ap.parse_args()
    if a.app_size % 16 or a.app_size < 4096:
        raise SystemExit("--app-size must be a multiple of 16, at least 4096")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bootloader.bin"), "wb") as f:
        f.write(image(24 * 1024, 7))
    pt = bytearray(b"\xff" * 3072)
    ent = [(b"nvs", 1, 2, 0x9000, 0x6000), (b"phy_init", 1, 1, 0xF000, 0x1000),
           (b"factory", 0, 0, 0x10000, 0x300000)]
    for i, (name, typ, sub, off, size) in enumerate(ent):
        pt[i * 32:(i + 1) * 32] = struct.pack("<HBBII16sI", 0x50AA, typ, sub, off, size, name, 0)
    with open(os.path.join(a.out, "partitions.bin"), "wb") as f:
        f.write(bytes(pt))
    with open(os.path.join(a.out, "app.bin"), "wb") as f:
        f.write(image(a.app_size, 1))
    manifest = {
        "name": a.name, "version": a.version, "chip": "esp32",
        "regions": [
            {"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
            {"offset": "0x8000", "file": "partitions.bin", "kind": "data"},
            {"offset": "0x10000", "file": "app.bin", "kind": "app"},
        ],
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()

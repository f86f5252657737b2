#!/usr/bin/env python3
# stub_begin_words.py PORT STUB_JSON: the model check of test_stub_protocol.sh. Talks to
# esp_sim over tcp:// byte by byte as a host does (SYNC, the stub's text and data segments
# uploaded with MEM_BEGIN/MEM_DATA/MEM_END, OHAI), then sends FLASH_BEGIN and
# FLASH_DEFL_BEGIN with five words (the encrypt flag) and with four, and prints the stub's
# two status bytes for each: "BEGIN 20:01 00 16:00 00 DEFL_BEGIN 20:01 00 16:00 00".
# Independent of the station's engine, so the persona itself is pinned.
import base64, json, socket, struct, sys, time
host, port = sys.argv[1].replace("tcp://", "").rsplit(":", 1)
stub = json.load(open(sys.argv[2]))
s = socket.create_connection((host, int(port)), timeout=5)
buf = b""
def slip(p):
    return b"\xc0" + p.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"
def frame(deadline=3.0):
    global buf
    end = time.time() + deadline
    while True:
        i = buf.find(b"\xc0")
        if i >= 0:
            j = buf.find(b"\xc0", i + 1)
            if j > i + 1:
                f, buf = buf[i + 1:j], buf[j:]
                return f.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
            if j == i + 1:
                buf = buf[j:]
                continue
        s.settimeout(max(0.01, end - time.time()))
        try:
            d = s.recv(4096)
        except socket.timeout:
            return None
        if not d:
            return None
        buf += d
def cmd(op, data, ck=0, want=True):
    s.sendall(slip(struct.pack("<BBHI", 0, op, len(data), ck) + data))
    while want:
        f = frame()
        if f is None:
            sys.exit("no answer to op 0x%02x" % op)
        if len(f) >= 8 and f[0] == 1 and f[1] == op:
            return f[8:]
def csum(d):
    c = 0xEF
    for b in d:
        c ^= b
    return c
for _ in range(10):
    s.sendall(slip(struct.pack("<BBHI", 0, 8, 36, 0) + b"\x07\x07\x12\x20" + b"\x55" * 32))
    f = frame(0.3)
    if f and f[0] == 1 and f[1] == 8:
        break
else:
    sys.exit("no SYNC answer")
while frame(0.3) is not None:
    pass
for seg in ("text", "data"):
    img = base64.b64decode(stub[seg])
    blk = 0x1800
    n = (len(img) + blk - 1) // blk
    cmd(5, struct.pack("<IIII", len(img), n, blk, stub[seg + "_start"]))
    for seq in range(n):
        d = img[seq * blk:(seq + 1) * blk]
        cmd(7, struct.pack("<IIII", len(d), seq, 0, 0) + d, csum(d))
cmd(6, struct.pack("<II", 0, stub["entry"]))
while True:
    f = frame()
    if f is None:
        sys.exit("no OHAI")
    if f == b"OHAI":
        break
out = []
for name, op in (("BEGIN", 2), ("DEFL_BEGIN", 0x10)):
    out.append(name)
    for words in (5, 4):
        w = [0x1000, 1, 0x4000, 0x10000, 0][:words]
        st = cmd(op, struct.pack("<%dI" % words, *w))
        out.append("%d:%s" % (words * 4, st[-2:].hex(" ")))
print(" ".join(out))

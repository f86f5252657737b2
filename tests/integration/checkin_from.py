#!/usr/bin/env python3
# checkin_from.py [--time] [--reason] [--chip esp32|esp8266] PORT SRC MAC[+N] VERSION [USER:PASS]
# Sends ESP updater check-ins (GET /ota/update with the x-ESP32-* or x-ESP8266-* headers the
# Arduino HTTPUpdate / ESP8266httpUpdate send, as esp_netdev's netdev_pull.c does; with
# USER:PASS an "Authorization: Basic" header, the sketch's setAuthorization) to 127.0.0.1:PORT
# from the source address SRC (any host on the device network, e.g. a spoofer), one
# connection each, and reads each answer's status.
#   MAC      one board; MAC+N: N boards, MAC and the N-1 MACs counting up from it.
#   --time   the first word printed is the seconds all the check-ins took.
#   --reason one check-in only: after its status, the first line of the answer's body
#            (the station's reason for a refusal), unless the status is 200 (the image).
# Prints one line: [SECONDS] STATUS... ("none" where the station closed without an answer).
# Exits 2 on bad arguments.
# Also a module: head() builds the request, for tests that send it their own way
# (test_ota_daemon_enrol.sh, test_ota_pull_duration.sh).
import base64, socket, sys, time


def head(port, mac, version, chip="esp32", auth="", proto="HTTP/1.0"):
    """The check-in request (head and its blank line) as a str."""
    mac = mac.upper()
    if chip == "esp8266":
        p, ua, free, sdk = "x-ESP8266-", "ESP8266-http-Update", 1044464, "2.2.2-dev(38a443e)"
    else:
        p, ua, free, sdk = "x-ESP32-", "ESP32-http-Update", 1310720, "v4.4.7"
    h = ("GET /ota/update %s\r\nHost: 127.0.0.1:%d\r\nUser-Agent: %s\r\nConnection: close\r\n"
         "%sSTA-MAC: %s\r\n%sAP-MAC: %s\r\n%sfree-space: %d\r\n%ssketch-size: 300000\r\n"
         "%ssketch-md5: 00112233445566778899aabbccddeeff\r\n%schip-size: 4194304\r\n"
         "%ssdk-version: %s\r\n%smode: sketch\r\n%sversion: %s\r\n"
         % (proto, port, ua, p, mac, p, mac, p, free, p, p, p, p, sdk, p, p, version))
    if auth:
        h += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
    return h + "\r\n"


def macs(spec):
    first, _, n = spec.partition("+")
    v = int(first.replace(":", ""), 16)
    for i in range(int(n) if n else 1):
        yield ":".join("%02X" % ((v + i) >> s & 255) for s in range(40, -8, -8))


def checkin(port, src, request):
    """Sends one request from src; returns (status, first line of the body)."""
    s = socket.socket()
    s.settimeout(30)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(request.encode())
    data = b""
    while True:
        hdr, sep, body = data.partition(b"\r\n\r\n")
        if sep and (hdr.split(b" ")[1:2] == [b"200"] or b"\n" in body):
            break  # the head (and, for a refusal, the reason's line) is in
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    hdr, _, body = data.partition(b"\r\n\r\n")
    status = hdr.split(b" ")[1].decode() if hdr else "none"
    return status, body.split(b"\n")[0].decode(errors="replace").strip()


def main(argv):
    opts = {"--time": False, "--reason": False}
    chip = "esp32"
    while argv and argv[0].startswith("--"):
        a = argv.pop(0)
        if a == "--chip" and argv:
            chip = argv.pop(0)
        elif a in opts:
            opts[a] = True
        else:
            sys.exit("checkin_from.py: unknown option %s" % a)
    if len(argv) not in (4, 5) or chip not in ("esp32", "esp8266"):
        print(__doc__ or "usage: see the comment at the top of checkin_from.py", file=sys.stderr)
        sys.exit(2)
    port, src, spec, version = int(argv[0]), argv[1], argv[2], argv[3]
    auth = argv[4] if len(argv) > 4 else ""
    boards = list(macs(spec))
    if opts["--reason"] and len(boards) != 1:
        sys.exit("checkin_from.py: --reason wants one MAC")
    t0 = time.monotonic()
    out = []
    for mac in boards:
        status, reason = checkin(port, src, head(port, mac, version, chip, auth))
        out.append(status + (" " + reason if opts["--reason"] and status != "200" and reason else ""))
    if opts["--time"]:
        out.insert(0, "%.3f" % (time.monotonic() - t0))
    print(" ".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])

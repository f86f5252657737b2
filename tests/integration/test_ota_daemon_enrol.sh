#!/usr/bin/env bash
# test_ota_daemon_enrol: the OTA endpoint as real sketches and clients reach it.
# 1. unknown_boards "enrol": a board the station has never seen, running a sketch
#    that calls the updater only in setup() (esp_netdev --interval once), is
#    answered on that first check-in as a known board: 200 and the profile's
#    target, not 304. It applies it, reboots, checks in once more with the new
#    version and gets 304. The same for an ESP8266. With no target in the profile
#    the first check-in is a 304 that names the reason, and the record exists.
# 2. A complete check-in followed at once by the client's FIN (shutdown(SHUT_WR)
#    right after the head, as some HTTP clients and proxies do) is answered every
#    time; a connection that closes mid-head is dropped without an answer.
# 3. The same over HTTPS (ota.tls): a request followed at once by a bare FIN, or by
#    close_notify and FIN, is answered every time.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw2" demo 2.0.0 esp32 60000 21
fw_set "$WORK/e2" e8266 2.0.0 esp8266 50000 22
OTA_PORT=$(free_port)
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [], "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp32": "demo@2.0.0", "esp8266": "e8266@2.0.0"}}}}
JSON
start_api_daemon "$CFG"
upload_fw "$WORK/fw2"
upload_fw "$WORK/e2"

# --- 1. first check-in of an unknown board ------------------------------------------
M1=24:6f:28:00:0e:01
M8=18:fe:34:00:0e:08
start_netdev "$WORK/nd1" --chip esp32 --mac "$M1" --bind $TNET.11 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval once
start_netdev "$WORK/nd8" --chip esp8266 --mac "$M8" --bind $TNET.12 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval once
for nd in nd1 nd8; do
    wait_file_log 'checkin: status=' "$WORK/$nd/netdev.log" 20
    first=$(grep -m1 'checkin: status=' "$WORK/$nd/netdev.log")
    case "$first" in
    *'status=200 version=1.0.0'*) ;;
    *) fail "$nd: the first check-in of an enrolled board was answered '$first', not 200 with the target" ;;
    esac
    wait_file_log 'pull: applied .* version now 2.0.0' "$WORK/$nd/netdev.log" 20
    wait_file_log 'checkin: status=304 version=2.0.0' "$WORK/$nd/netdev.log" 20
done
wait_sql "SELECT chip || ' ' || running_version || ' ' || ip FROM boards WHERE mac = '$M1';" \
    "ESP32 2.0.0 $TNET.11" 10
wait_sql "SELECT chip || ' ' || running_version || ' ' || ip FROM boards WHERE mac = '$M8';" \
    "ESP8266 2.0.0 $TNET.12" 10
wait_sql "SELECT state || ' ' || firmware FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M1';" \
    "passed demo@2.0.0" 10
wait_sql "SELECT state || ' ' || firmware FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M8';" \
    "passed e8266@2.0.0" 10
[ "$(db "SELECT current_firmware FROM boards WHERE mac = '$M1';")" = demo@2.0.0 ] ||
    fail "current_firmware of the enrolled board after its pull"
# exactly two check-ins each: the one at boot and the one after the update's reboot
sleep 1
for nd in nd1 nd8; do
    n=$(grep -c 'checkin: status=' "$WORK/$nd/netdev.log")
    [ "$n" = 2 ] || fail "$nd: $n check-ins, expected 2 (setup() after boot and after the reboot)"
done

# a board whose chip the profile has no firmware for: a 304 with the reason, a record
MC=24:6f:28:00:0e:0c
jq '.profiles.line.firmware = {"esp8266": "e8266@2.0.0"}' "$CFG" >"$CFG.2"
stop_daemon
start_api_daemon "$CFG.2"
start_netdev "$WORK/ndc" --chip esp32 --mac "$MC" --bind $TNET.13 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval once
wait_file_log 'checkin: status=304 version=1.0.0' "$WORK/ndc/netdev.log" 20
wait_sql "SELECT chip || ' ' || running_version FROM boards WHERE mac = '$MC';" "ESP32 1.0.0" 10
wait_log 'enrolled by check-in from .*: 304 \(no target firmware' 10

# --- 2. a complete request with the client's FIN right behind it -------------------
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(dirname "$0") python3 - "$OTA_PORT" "$M8" <<'PY' || fail "half-closed requests were not all answered"
import socket, sys
from checkin_from import head as checkin_head
port, mac = int(sys.argv[1]), sys.argv[2]
head = checkin_head(port, mac, "2.0.0", "esp8266", proto="HTTP/1.1").encode()
answered = 0
for i in range(40):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head)
    s.shutdown(socket.SHUT_WR)  # FIN right behind the head
    data = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    s.close()
    if data.startswith(b"HTTP/1.") and b" 304 " in data.split(b"\r\n")[0]:
        answered += 1
    else:
        print("try %d: answer %r" % (i, data[:80]), file=sys.stderr)
# closed mid-head: no answer, no crash
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(head[:40])
s.shutdown(socket.SHUT_WR)
rest = s.recv(4096)
s.close()
print("answered %d of 40; mid-head close got %d bytes" % (answered, len(rest)), file=sys.stderr)
sys.exit(0 if answered == 40 and rest == b"" else 1)
PY
api GET /api/v1/slots
expect_status 200

# --- 3. the same over HTTPS (ota.tls) --------------------------------------------------
# A TLS client that half-closes right behind its request: a bare FIN (no close_notify; the
# endpoint reads it as the end of input, SSL_OP_IGNORE_UNEXPECTED_EOF) or close_notify then
# FIN. The request is answered each time, over TLS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/ota.key" -out "$WORK/ota.pem" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" 2>"$WORK/openssl.err" ||
    fail "openssl: $(cat "$WORK/openssl.err")"
jq --arg c "$WORK/ota.pem" --arg k "$WORK/ota.key" '.ota.tls = {"cert": $c, "key": $k}' \
    "$CFG" >"$CFG.3"
stop_daemon
start_api_daemon "$CFG.3"
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(dirname "$0") python3 - "$OTA_PORT" "$M8" "$WORK/ota.pem" <<'PY' || fail "half-closed requests over TLS were not all answered"
import socket, ssl, sys
from checkin_from import head as checkin_head
port, mac, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
head = checkin_head(port, mac, "2.0.0", "esp8266", proto="HTTP/1.1").encode()
ctx = ssl.create_default_context(cafile=ca)
answered = {}
for mode in ("fin", "close_notify+fin"):
    answered[mode] = 0
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
        def flush():
            d = out.read()
            if d:
                s.sendall(d)
        while True:
            try:
                tls.do_handshake()
                flush()
                break
            except ssl.SSLWantReadError:
                flush()
                d = s.recv(65536)
                if not d:
                    sys.exit("the endpoint closed during the handshake")
                inc.write(d)
        tls.write(head)
        if mode == "close_notify+fin":
            try:
                tls.unwrap()
            except ssl.SSLWantReadError:
                pass
        flush()
        s.shutdown(socket.SHUT_WR)  # FIN right behind the request
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                inc.write(d)
                try:
                    while True:
                        x = tls.read(65536)
                        if not x:
                            break
                        data += x
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        if data.startswith(b"HTTP/1.") and b" 304 " in data.split(b"\r\n")[0]:
            answered[mode] += 1
        else:
            print("%s try %d: answer %r" % (mode, i, data[:80]), file=sys.stderr)
print("over TLS, answered of 20: %r" % answered, file=sys.stderr)
sys.exit(0 if all(n == 20 for n in answered.values()) else 1)
PY

stop_daemon
integrity_ok
done_ok

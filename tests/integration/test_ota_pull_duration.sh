#!/usr/bin/env bash
# test_ota_pull_duration: what an ota-pull job says about how long the board took (issue 8
# part 6: "the real duration and speed of a pull, or nothing where it is not known").
# The station hands the whole image to the kernel in one go (a 50 KB image fits the
# loopback socket's buffer), so the end of send() says nothing about the board; the ESP
# updaters close the connection after the last byte they wrote. Two boards (a client that
# checks in with the ESP8266 updater's headers and reads the image):
#   1. "slow": reads the image, then takes 600 ms more (its last sectors) before it closes
#      (FIN). The job passed, its seconds cover those 600 ms (from the response's first byte
#      to the close) and its kbps is bytes over seconds: not the ~1 ms of a memcpy.
#   2. "reset": reads the image, then resets the connection (SO_LINGER 0) instead of
#      closing it. Every byte was handed over (passed), but the board's time is not known:
#      seconds and kbps are null in the API, and the job's log says why.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/e2" e8266 2.0.0 esp8266 50000 31
OTA_PORT=$(free_port)
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [], "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp8266": "e8266@2.0.0"}}}}
JSON
start_api_daemon "$CFG"
upload_fw "$WORK/e2"
SIZE=$(stat -c %s "$WORK/e2/app.bin")

# pull MODE MAC: check in (again after a 304, at most 3 times) and read the image; prints
# the milliseconds from the answer's first byte to the close.
pull() {
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(dirname "$0") python3 - "$OTA_PORT" "$2" "$1" <<'PY'
import socket, struct, sys, time
from checkin_from import head as checkin_head
port, mac, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
head = checkin_head(port, mac, "0.9", "esp8266", proto="HTTP/1.1").encode()
for attempt in range(3):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head)
    buf = s.recv(65536)
    t0 = time.monotonic()
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    hdr, _, body = buf.partition(b"\r\n\r\n")
    status = hdr.split(b"\r\n")[0]
    if b" 200 " not in status:
        s.close()
        time.sleep(0.2)
        continue
    clen = [int(l.split(b":")[1]) for l in hdr.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < clen:
        b = s.recv(65536)
        if not b:
            sys.exit("connection closed after %d of %d bytes" % (len(body), clen))
        body += b
    if mode == "slow":
        time.sleep(0.6)  # the board writes its last sectors, then closes
        s.close()
    else:
        time.sleep(0.3)  # the station is surely past its last send()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST, not FIN
    print(int((time.monotonic() - t0) * 1000))
    sys.exit(0)
sys.exit("no 200 in 3 check-ins: %r" % status)
PY
}

# job_json MAC: the board's ota-pull job as GET /api/v1/jobs/{id} answers it, in $RESP.
job_json() {
    wait_sql "SELECT count(*) FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$1' AND state != 'running';" 1 10
    local id
    id=$(db "SELECT id FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$1';")
    api GET "/api/v1/jobs/$id"
    expect_status 200
}

log "1. a board that closes 600 ms after it read the image"
MS=18:fe:34:00:0d:01
ms=$(pull slow "$MS") || fail "the slow board's pull failed"
job_json "$MS"
log "the board took $ms ms; the station says $(jq -c '{state, bytes, seconds, kbps}' <<<"$RESP")"
expect_jq ".state == \"passed\" and .bytes == $SIZE"
expect_jq ".seconds != null and .seconds >= 0.6 and .seconds >= $ms / 1000 - 0.005 and .seconds <= $ms / 1000 + 2"
expect_jq '.kbps != null and (.kbps - .bytes * 8 / 1000 / .seconds | fabs) <= .kbps * 0.01'

log "2. a board that resets the connection after it read the image"
MR=18:fe:34:00:0d:02
pull reset "$MR" >/dev/null || fail "the resetting board's pull failed"
job_json "$MR"
log "the station says $(jq -c '{state, bytes, seconds, kbps}' <<<"$RESP")"
expect_jq ".state == \"passed\" and .bytes == $SIZE"
expect_jq '.seconds == null and .kbps == null'
id=$(db "SELECT id FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$MR';")
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = $id AND line LIKE '%reset the connection%duration is not known%';")" = 1 ] ||
    fail "job $id's log does not say why its duration is unknown: $(db "SELECT line FROM job_log WHERE job_id = $id;")"

stop_daemon
integrity_ok
done_ok

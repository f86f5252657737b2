#!/usr/bin/env bash
# test_security_bootcheck: an address learned from a check-in without credentials is not
# trusted for pushes until the serial boot check confirms the board's own (issue 9,
# finding 3). A board M is first known only from such a check-in, sent by a spoofer at
# another address (anyone on the device network can send one):
#   - M's record has the spoofer's address, unconfirmed (source "checkin"), with a
#     board.address event; an espota push to M is refused (409 address_unconfirmed) and
#     no invitation reaches the spoofer's address;
#   - M is then plugged into a slot and flashed; its boot check prints its real address:
#     the record now holds that one, confirmed (source "boot-check"), and a board.address
#     event says so (old = the spoofer's, previous_confirmed false, the flash job's id);
#   - an espota push now goes to the board (job passed, new version on its flash), and
#     still nothing reaches the spoofer's address.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

M=24:6f:28:00:9c:01
REAL=$TNET.41
SPOOF=$TNET.66
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 91 boot
fw_set "$WORK/fw2" demo 2.0.0 esp32 61000 92
OTA_PORT=$(free_port)
start_sim esp32 --mac "$M" --net-bind "$REAL"
S1=$SIM_DIR
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}, "baud": 460800, "retries": 0,
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}}}}
JSON
start_api_daemon "$WORK/station.json"
upload_fw "$WORK/fw1"
upload_fw "$WORK/fw2"

# The spoofer's address: anything sent there (an espota invitation is UDP to 3232, the
# image then TCP) is written to spoofer.log.
python3 - "$SPOOF" "$WORK/spoofer.log" <<'PY' &
import select, socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], 3232))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[1], 3232))
t.listen(4)
open(sys.argv[2] + ".ready", "w").close()
while True:
    r, _, _ = select.select([u, t], [], [])
    for s in r:
        if s is u:
            data = u.recv(2048)
        else:
            c, _ = t.accept()
            data = b"tcp connection"
            c.close()
        with open(sys.argv[2], "ab") as f:
            f.write(data[:200] + b"\n")
PY
NETDEV_PIDS+=("$!")
wait_ready "$WORK/spoofer.log.ready" 10 "the spoofer's listener"

# --- M known only from a check-in without credentials, sent from the spoofer's address -------
ans=$(python3 "$(dirname "$0")/checkin_from.py" "$OTA_PORT" "$SPOOF" "$M" 0.9.0)
log "the spoofer's check-in: $ans"
wait_sql "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$M';" \
    "$SPOOF 0 checkin" 20
ev=$(db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$M' ORDER BY id DESC LIMIT 1;")
[ "$(jq -c '[.new, .source, .confirmed]' <<<"$ev")" = "[\"$SPOOF\",\"checkin\",false]" ] ||
    fail "board.address for the check-in: '$ev'"
apij POST "/api/v1/boards/$M/ota" '{"method": "espota", "firmware": "demo@2.0.0"}'
expect_error 409 address_unconfirmed mac
[ "$(db "SELECT count(*) FROM jobs WHERE kind LIKE 'ota-push%';")" = 0 ] || fail "a push job was made"

# --- M plugged and flashed: the boot check confirms its real address ---------------------------
apij POST /api/v1/ports "{\"uri\": \"$S1/tty\", \"label\": \"A1\"}"
[ "$HTTP_STATUS" = 201 ] || [ "$HTTP_STATUS" = 200 ] || fail "attach: $HTTP_STATUS $RESP"
wait_sql "SELECT state FROM jobs WHERE kind = 'flash' ORDER BY id DESC LIMIT 1;" passed 120
JF=$(db "SELECT id FROM jobs WHERE kind = 'flash' ORDER BY id DESC LIMIT 1;")
[ "$(db "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$M';")" = \
    "$REAL 1 boot-check" ] ||
    fail "after the boot check: $(db "SELECT ip, ip_confirmed, ip_source FROM boards WHERE mac = '$M';")"
api GET "/api/v1/boards/$M"
expect_jq ".ip == \"$REAL\" and .ip_confirmed == true and .ip_source == \"boot-check\""
ev=$(db "SELECT data || '|' || coalesce(job_id, 0) FROM events WHERE kind = 'board.address' AND board_mac = '$M' ORDER BY id DESC LIMIT 1;")
[ "$(jq -c '[.old, .new, .source, .confirmed, .previous_confirmed]' <<<"${ev%|*}")" = \
    "[\"$SPOOF\",\"$REAL\",\"boot-check\",true,false]" ] || fail "board.address for the boot check: '$ev'"
[ "${ev##*|}" = "$JF" ] || fail "board.address for the boot check names job ${ev##*|}, not the flash job $JF"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'board.address' AND board_mac = '$M';")" = 2 ] ||
    fail "board.address events: $(db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$M';")"

# --- the push now goes to the board ------------------------------------------------------------
wait_file_log 'net: persona up' "$S1/sim.log" 10
apij POST "/api/v1/boards/$M/ota" '{"method": "espota", "firmware": "demo@2.0.0"}'
expect_status 202
J=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J;" passed 60
[ "$(board_col "$M" running_version)" = 2.0.0 ] || fail "running_version after the push"
[ -s "$WORK/spoofer.log" ] && fail "something reached the spoofer's address: $(head -c 300 "$WORK/spoofer.log")"

stop_daemon
integrity_ok
done_ok

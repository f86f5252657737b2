#!/usr/bin/env bash
# test_udev_fd_budget: issue 9 finding 1 through the real hotplug path. espstationd runs
# inside the umockdev testbed under a small open-file limit (soft 256, hard 512; it raises
# the soft one and derives its connection caps from what its reserve for jobs leaves). A
# client holds 600 idle REST API and 300 idle OTA connections -- far over both caps and
# over the whole limit -- and, while they are held:
#   - GET /api/v1/slots answers within 1 s;
#   - a CP2102 board is plugged in: the libudev monitor sees it, libserialport opens it,
#     and it is flashed (job passed, the image on its flash) -- the old daemon failed it
#     with "cannot start a worker thread: Cannot allocate memory" and no stage, or never
#     got to it;
#   - the held connections are still held when the job has passed (the board was flashed
#     beside them, not after the idle timeouts freed them);
# and the start-up line shows the raised limit and the derived caps.
# FD_TEST_DAEMON: another espstationd to run (the fail-before check), default this build's.
source "$(dirname "$0")/../umock/udev_lib.sh"

DAEMON=${FD_TEST_DAEMON:-$ESPSTATIOND}
[ -n "$DAEMON" ] && [ -x "$DAEMON" ] || udev_fail "espstationd not built (expected $DAEMON)"
N_API=600
N_OTA=300
MAC=24:6f:28:00:9d:01

station_setup "" 131072
DATA=$UWORK/data
# max_parallel 2 and the OTA endpoint on a free port; idle timeouts left at their defaults
# (60 s / 30 s), longer than this test holds the connections before the board is flashed.
jq '.max_parallel = 2 | .ota = {"listen": "127.0.0.1:0", "mdns_interval_s": 0}' \
    "$UWORK/station.json" >"$UWORK/station.json.new" && mv "$UWORK/station.json.new" "$UWORK/station.json"
cat >"$UWORK/espstationd-limited" <<SH
#!/bin/sh
ulimit -S -n 256 && ulimit -H -n 512 && exec "$DAEMON" "\$@"
SH
chmod +x "$UWORK/espstationd-limited"

umock_start "$UWORK/espstationd-limited" --config "$UWORK/station.json" --port-file "$UWORK/api.port"
umock_cmd start
umock_sync
wait_grep "$UWORK/api.port" '^[0-9]+$' 20
wait_grep "$DATA/ota.port" '^[0-9]+$' 20
API_PORT=$(tr -d '\n' <"$UWORK/api.port")
OTA_PORT=$(tr -d '\n' <"$DATA/ota.port")
API=http://127.0.0.1:$API_PORT

# --- hold idle connections ------------------------------------------------------------------
HOLD=$UWORK/hold
mkdir -p "$HOLD"
python3 "$(dirname "$0")/hold_conns.py" "$API_PORT" "$OTA_PORT" $N_API $N_OTA "$HOLD" 2>"$UWORK/hold.err" &
HOLD_PID=$!
stop_holder() {
    touch "$HOLD/stop"
    wait $HOLD_PID 2>/dev/null || true
}
wait_grep "$HOLD/ready" '^connected' 30
read -r _ held _ failed <"$HOLD/ready"
udev_log "holder: connected $held failed $failed"
[ "$held" -ge $((N_API + N_OTA - 20)) ] || udev_fail "the holder got only $held connections"
sleep 1 # the daemon takes what it will take

code=$(curl -sS --max-time 1 -o "$UWORK/slots.json" -w '%{http_code}' "$API/api/v1/slots") ||
    udev_fail "GET /api/v1/slots: no answer within 1 s while connections are held"
[ "$code" = 200 ] || udev_fail "GET /api/v1/slots: HTTP $code while connections are held"

# --- a board plugged in now is flashed ------------------------------------------------------
umock_cmd "add hot esp32 10c4:ea60 pci-0000:00:14.0-usb-0:1.1:1.0 --strict-reset --mac $MAC --link-speed 0"
umock_sync
wait_sql "select state from jobs where board_mac = '$MAC' order by id desc limit 1" passed 60
state=$(cat "$HOLD/state")
udev_log "holder when the job had passed: $state"
read -r _ still _ closed _ _ <<<"$state"
flash_matches hot || udev_fail "the board's flash does not hold the firmware"
row=$(sql "select slot || ' ' || (error_stage is null) from jobs where board_mac = '$MAC' order by id desc limit 1")
[ "$row" = "A1 1" ] || udev_fail "job row: $row"
code=$(curl -sS --max-time 1 -o "$UWORK/slots.json" -w '%{http_code}' "$API/api/v1/slots") ||
    udev_fail "GET /api/v1/slots: no answer within 1 s after the job"
jq -e '[.slots[] | select(.label == "A1" and .board.mac == "'"$MAC"'")] | length == 1' "$UWORK/slots.json" >/dev/null ||
    jq -e '[.slots[] | select(.label == "A1")] | length == 1' "$UWORK/slots.json" >/dev/null ||
    udev_fail "slot A1 not in GET /api/v1/slots: $(head -c 400 "$UWORK/slots.json")"

# --- the budget: raised limit, derived caps, connections held beside the job -----------------
line=$(grep -E 'open files: limit' "$UWORK/program.log" | head -n 1 || true)
udev_log "${line:-no 'open files' line}"
[[ $line =~ limit\ 512\ \(raised\ from\ 256,\ hard\ 512\) ]] || udev_fail "soft limit not raised to the hard one: '$line'"
[[ $line =~ REST\ API\ ([0-9]+)\ connections ]] || udev_fail "no REST API cap in: $line"
API_CAP=${BASH_REMATCH[1]}
[[ $line =~ OTA\ endpoint\ ([0-9]+)\ connections ]] || udev_fail "no OTA cap in: $line"
OTA_CAP=${BASH_REMATCH[1]}
[ $((2 * API_CAP + OTA_CAP)) -lt 512 ] || udev_fail "caps exceed the limit: $line"
[ "$held" -gt $((2 * (API_CAP + OTA_CAP))) ] || udev_fail "held $held, not well over the caps ($API_CAP + $OTA_CAP)"
[ "$still" -ge $((API_CAP + OTA_CAP - 8)) ] ||
    udev_fail "only $still held connections left when the job passed (caps $API_CAP + $OTA_CAP): the board was flashed after they were freed"
! grep -Eq 'Too many open files|Cannot allocate memory|cannot start the job' "$UWORK/program.log" ||
    udev_fail "the daemon ran out of descriptors: $(grep -E 'Too many open files|Cannot allocate memory|cannot start' "$UWORK/program.log" | head -n 3)"

stop_holder
rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
udev_log "PASS"

#!/usr/bin/env bash
# test_ota_daemon_pull: the hand-over end to end. The daemon flashes a virtual
# ESP32 over serial (manual port to esp_sim); after the reset the board boots
# the firmware it was given (version 1.0.0 inside the image), the boot check
# captures version and IP from the console, the board's network persona checks
# in at the daemon's OTA endpoint (x-ESP32-STA-MAC) -> the record is online with
# IP, version, free space, sketch size, chip size, SDK version and check-in time.
# A new firmware (2.0.0) is uploaded over REST and made the profile's OTA
# release over REST; the next check-in gets 200 + image, the board reports
# 2.0.0, the virtual flash holds the new app, and later check-ins get 304.
# The same for an ESP8266 (app at 0x0, simple layout; its sketch MD5 is of the
# flash, whose header the serial flash patched). An unknown MAC is enrolled (and, its first
# check-in answered with the profile's target, pulls it at a real flash's pace: the pull job's
# seconds in the API cover the time the board took, from the response to its close, and its
# kbps is bytes over them).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

MAC=24:6f:28:00:0a:01
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 11 boot
import_fw "$WORK/fw1"
fw_set "$WORK/fw2" demo 2.0.0 esp32 70000 12
M8=18:fe:34:00:0a:08
fw_set "$WORK/e1" e8266 1.0.0 esp8266 50000 13
import_fw "$WORK/e1"
fw_set "$WORK/e2" e8266 2.0.0 esp8266 55000 14

OTA_PORT=$(free_port)
start_sim esp32 --mac "$MAC" --net-bind $TNET.2 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --checkin-interval 300
S1=$SIM_DIR
start_sim esp8266 --mac "$M8" --net-bind $TNET.8 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --checkin-interval 300
S8=$SIM_DIR
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S8/tty", "label": "A8"}],
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"}, "baud": 460800, "retries": 0,
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}}}}
JSON
start_api_daemon "$CFG"
[ "$(ota_port_of_daemon)" = "$OTA_PORT" ] || fail "ota.port does not match"

# serial flash, boot check, hand-over
wait_sql "SELECT group_concat(state) FROM jobs WHERE kind = 'flash';" passed,passed 120
wait_file_log 'net: persona up' "$S1/sim.log" 20
wait_sql "SELECT online_state FROM boards WHERE mac = '$MAC';" online 30
[ "$(board_col "$MAC" running_version)" = 1.0.0 ] || fail "running_version $(board_col "$MAC" running_version)"
[ "$(board_col "$MAC" ip)" = $TNET.2 ] || fail "ip $(board_col "$MAC" ip)"
[ "$(board_col "$MAC" current_firmware)" = demo@1.0.0 ] || fail "current_firmware"
wait_sql "SELECT checkins >= 2 FROM board_ota WHERE mac = '$MAC';" 1 20
row=$(db "SELECT free_space, sketch_size, chip_size, sdk_version, last_checkin > 0 FROM board_ota WHERE mac = '$MAC';")
[ "$row" = "1310720|$(stat -c %s "$WORK/fw1/app.bin")|4194304|v4.4.7-dirty|1" ] || fail "board_ota row: $row"
grep -q 'checkin: status=304 version=1.0.0' "$S1/net/netdev.log" || fail "no 304 while on target"
api GET /api/v1/slots/A1
expect_jq '.phase == "online"'
[ "$(db "SELECT count(*) FROM events WHERE kind = 'board.online' AND board_mac = '$MAC';")" = 1 ] ||
    fail "expected exactly one board.online event"

wait_sql "SELECT online_state || ' ' || running_version || ' ' || ip FROM boards WHERE mac = '$M8';" \
    "online 1.0.0 $TNET.8" 30

# a new release over REST -> the next check-in pulls it
upload_fw "$WORK/fw2"
upload_fw "$WORK/e2"
apij PUT /api/v1/profiles/line '{"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"}, "ota_firmware": {"esp32": "demo@2.0.0", "esp8266": "e8266@2.0.0"}, "baud": 460800, "retries": 0, "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"], "timeout_ms": 5000}}'
expect_status 200
wait_sql "SELECT running_version FROM boards WHERE mac = '$MAC';" 2.0.0 30
wait_sql "SELECT state || ' ' || firmware || ' ' || bytes FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$MAC';" \
    "passed demo@2.0.0 $(stat -c %s "$WORK/fw2/app.bin")" 10
flash_region_equals "$S1" 0x10000 "$WORK/fw2/app.bin"
grep -q 'pull: applied .* version now 2.0.0' "$S1/net/netdev.log" || fail "netdev did not apply"
wait_file_log 'checkin: status=304 version=2.0.0' "$S1/net/netdev.log" 10
wait_sql "SELECT running_version FROM boards WHERE mac = '$M8';" 2.0.0 30
# a board that reports its target's version runs that set: the record names it
[ "$(board_col "$MAC" current_firmware)" = demo@2.0.0 ] || fail "current_firmware after the pull"
[ "$(board_col "$M8" current_firmware)" = e8266@2.0.0 ] || fail "ESP8266 current_firmware after the pull"
flash_region_equals "$S8" 0x0 "$WORK/e2/app.bin"
wait_file_log 'checkin: status=304 version=2.0.0' "$S8/net/netdev.log" 10
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull';")" = 2 ] || fail "served more than once"
[ "$(db "SELECT served_version FROM board_ota WHERE mac = '$MAC';")" = 2.0.0 ] || fail "served_version"

# plain GET of a firmware file (SDK clients): exact length, no x-MD5
curl -sS -D "$WORK/h" -o "$WORK/plain.bin" "http://127.0.0.1:$OTA_PORT/ota/fw/demo/2.0.0.bin" || fail "plain GET"
cmp -s "$WORK/plain.bin" "$WORK/fw2/app.bin" || fail "plain GET body differs"
head -n1 "$WORK/h" | grepq '^HTTP/1.0 200' || fail "plain GET status: $(head -n1 "$WORK/h")"
grep -q "^Content-Length: $(stat -c %s "$WORK/fw2/app.bin")" "$WORK/h" || fail "Content-Length"

# an unknown MAC is enrolled by its check-in (20 ms per 4 KiB sector erase: a real flash's pace)
start_netdev "$WORK/nd1" --chip esp8266 --mac 18:fe:34:00:0b:01 --bind $TNET.3 --version 0.9 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300 --erase-ms 20
wait_sql "SELECT online_state || ' ' || chip || ' ' || running_version || ' ' || ip FROM boards WHERE mac = '18:fe:34:00:0b:01';" \
    "online ESP8266 0.9 $TNET.3" 20
api GET /api/v1/boards/18:fe:34:00:0b:01
expect_status 200
expect_jq '.ota.sdk_version == "2.2.2-dev(38a443e)" and .ota.checkins >= 1'
# ... and its first check-in got the profile's target: the pull's figures in the API. The
# board logs the time from the response head to its last sector written; the station's
# duration runs from its response's first byte to the board's close, so it is at least that.
wait_file_log 'pull: received' "$WORK/nd1/netdev.log" 20
wait_sql "SELECT state || ' ' || bytes FROM jobs WHERE kind = 'ota-pull' AND board_mac = '18:fe:34:00:0b:01';" \
    "passed $(stat -c %s "$WORK/e2/app.bin")" 20
rx=$(grep -o 'pull: received [0-9]* bytes in [0-9]* ms' "$WORK/nd1/netdev.log" | tail -n 1)
ms=$(awk '{ print $6 }' <<<"$rx")
[ "$ms" -ge 200 ] || fail "the board took the image too fast for its 14 sector erases: $rx"
api GET "/api/v1/records?kind=ota-pull&mac=18:fe:34:00:0b:01&limit=1"
expect_status 200
expect_jq ".records[0] | .seconds != null and .seconds >= $ms / 1000 - 0.005 and .seconds <= $ms / 1000 + 2"
expect_jq '.records[0] | .kbps > 0 and (.kbps - .bytes * 8 / 1000 / .seconds | fabs) <= .kbps * 0.01'
log "pull of $(jq -r '.records[0].bytes' <<<"$RESP") bytes: the board took $ms ms, the station says $(jq -r '.records[0] | "\(.seconds) s, \(.kbps) kbit/s"' <<<"$RESP")"

# with unknown_boards = refuse an unknown MAC gets 404 and no record; known ones still work
stop_daemon
jq '.ota.unknown_boards = "refuse"' "$CFG" >"$CFG.2"
start_api_daemon "$CFG.2"
start_netdev "$WORK/nd2" --chip esp32 --mac 24:6f:28:00:0b:02 --bind $TNET.9 --version 0.1 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300
wait_file_log 'checkin: status=404' "$WORK/nd2/netdev.log" 20
[ "$(db "SELECT count(*) FROM boards WHERE mac = '24:6f:28:00:0b:02';")" = 0 ] || fail "refused MAC got a record"
mark=$(wc -l <"$WORK/nd1/netdev.log")
sleep 1
tail -n +"$((mark + 1))" "$WORK/nd1/netdev.log" | grepq 'checkin: status=304' || fail "a known board is not answered after the restart"

stop_daemon
integrity_ok
done_ok

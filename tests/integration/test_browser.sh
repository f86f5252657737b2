#!/usr/bin/env bash
# test_browser: the technician status page in a real browser. Starts espstationd
# (HTTP on an ephemeral loopback port, a bearer token) with three virtual boards
# -- W1 flashes a 1 MiB image over a paced link (slow enough to watch), F1 has a
# flash write fault at the app's offset, I1 (ESP8266) passes at once -- and runs
# tests/browser/status.spec.mjs with Debian's chromium through playwright-core:
# the page shows the slots, W1's progress advances live, F1 turns red with its
# reason and advice, and uploads of bad firmware sets show the validation error
# naming the region, and a valid upload lands in the catalog. Five network-only ESP32s
# (esp_netdev on $TNET.41-45, enrolled by check-in; N3 and N4 stall every transfer) get a
# real espota bulk, started by the spec (concurrency 1, no retries): the Bulk tab lists it
# with its firmware and the counts of GET /api/v1/bulk/{id}, advances live while a stalled
# board runs, shows per-board results, and Cancel (with the token) cancels it. P1 (an
# ESP32-C3 with a network persona) is flashed pullc3@1.0.0 over serial and checks in; the
# spec pins its target to pullc3@1.1.0, the board pulls it over HTTP (its persona erases
# each 4 KiB sector in 20 ms, so the pull takes a real-looking while), and the tile must then
# name pullc3@1.1.0 (noting the set the slot flashed), the pull's job and its recent-jobs row
# a duration that covers the board's own receive time and bytes over it as kbit/s. Then the
# same spec runs against tests/browser/mock-server.mjs (every tile state, and
# reconnecting after the server went away).
# Screenshots: <build>/screenshots/ and <build>/screenshots/mock/ (next to TEST_TMPDIR).
#
# Needs node and chromium (Debian packages nodejs, npm, chromium); prints SKIP and
# exits 77 (CTest SKIP_RETURN_CODE: reported as skipped, not passed) only when one of
# them is not installed. Installs the npm dependencies
# (playwright-core, from tests/browser/package-lock.json) when node_modules is
# missing; no browser is ever downloaded.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/browser_lib.sh"
browser_need test_browser

source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$HERE/daemon_lib.sh"
source "$HERE/api_lib.sh"
source "$HERE/ota_daemon_lib.sh"

browser_npm

SHOTS=$(cd "$TEST_TMPDIR/.." && pwd)/screenshots
mkdir -p "$SHOTS"

# --- firmware --------------------------------------------------------------------------
FW=$WORK/fwbig
mkdir -p "$FW"
make_image_esp esp32 1048576 "$FW/app.bin" 11
cat >"$FW/manifest.json" <<JSON
{"name": "big", "version": "1.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"
FW8=$WORK/fw8266
mkdir -p "$FW8"
make_image_esp esp8266 60000 "$FW8/app.bin" 12
cat >"$FW8/manifest.json" <<JSON
{"name": "e8266", "version": "1.0", "chip": "esp8266", "flash_mode": "dio", "flash_size": "4MB",
 "regions": [{"offset": 0, "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW8"
GOOD=$WORK/fw-good
mkdir -p "$GOOD"
make_image_esp esp32 50000 "$GOOD/app.bin" 16
cat >"$GOOD/manifest.json" <<JSON
{"name": "uploaded", "version": "1.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
# Bad sets for the upload checks (never imported): overlapping regions; an ESP32-C3 app in an ESP32 set.
BAD=$WORK/fw-overlap
mkdir -p "$BAD"
make_random 8192 "$BAD/part.bin" 13
make_image_esp esp32 60000 "$BAD/app.bin" 14
cat >"$BAD/manifest.json" <<JSON
{"name": "overlap", "version": "1.0", "chip": "esp32",
 "regions": [{"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x9000", "file": "app.bin", "kind": "app"}]}
JSON
WRONG=$WORK/fw-wrongchip
mkdir -p "$WRONG"
make_image_esp esp32c3 60000 "$WRONG/app.bin" 15
cat >"$WRONG/manifest.json" <<JSON
{"name": "wrongchip", "version": "1.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON

# The bulk's firmware (network-only boards, pushed over espota).
fw_set "$WORK/netfw" netfw 2.0 esp32 60000 17
import_fw "$WORK/netfw"
# P1's serial set and the release it pulls later (ESPSIM_VERSION inside: the board reports it).
fw_set "$WORK/pull1" pullc3 1.0.0 esp32c3 131072 18
import_fw "$WORK/pull1"
fw_set "$WORK/pull2" pullc3 1.1.0 esp32c3 131072 19
import_fw "$WORK/pull2"

# --- boards and config -----------------------------------------------------------------
start_sim esp32 --link-speed 1 --no-boot-noise
W1=$SIM_DIR
start_sim esp32 --fault write-error:0x10000 --mac 24:6f:28:00:00:f1
F1=$SIM_DIR
start_sim esp8266
I1=$SIM_DIR
TOKEN=browser-test-token-1234
OTA_PORT=$(free_port)
# P1's network persona: esp_netdev with a real flash's pace (20 ms per 4 KiB sector erase,
# after esp_sim's own arguments so it wins), checking in every 500 ms.
cat >"$WORK/netdev-paced" <<SH
#!/bin/sh
exec "$ESP_NETDEV" "\$@" --erase-ms 20
SH
chmod +x "$WORK/netdev-paced"
start_sim esp32c3 --mac 58:cf:79:00:0c:01 --net-bind "$TNET.50" --netdev "$WORK/netdev-paced" \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --checkin-interval 500
P1=$SIM_DIR
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "ports": [{"uri": "$W1/tty", "label": "W1"}, {"uri": "$F1/tty", "label": "F1"},
           {"uri": "$I1/tty", "label": "I1"}, {"uri": "$P1/tty", "label": "P1"}],
 "profiles": {"line": {"firmware": {"esp32": "big@1.0", "esp8266": "e8266@1.0",
                                    "esp32c3": "pullc3@1.0.0"}, "retries": 0,
                       $CHECKIN_AUTH_JSON}}}
JSON

start_daemon "$CFG" --listen 127.0.0.1:0 --port-file "$WORK/http.port" --web-root "$SRC/web/static"
deadline=$((SECONDS + 20))
until [ -s "$WORK/http.port" ]; do
    [ $SECONDS -lt $deadline ] || fail "espstationd wrote no --port-file within 20 s"
    sleep 0.1
done
PORT=$(tr -d ' \r\n' <"$WORK/http.port")
URL="http://127.0.0.1:$PORT"
log "status page at $URL/"

# Network-only boards for the bulk, in bulk order: N1, N2 take a push at once; N3 and N4
# stop reading after 8 KiB (the daemon gives up after its 10 s stall timeout), so with
# concurrency 1 the bulk is observably running for about 20 s and advances when N3
# fails; N5 (a good board) is still pending when the spec cancels the bulk. They send the
# profile's checkin_auth with their check-ins (ota_daemon_lib.sh): pushes need a confirmed address.
NMACS=()
for i in 1 2 3 4 5; do
    mac=24:6f:28:00:b0:0$i
    NMACS+=("$mac")
    fault=()
    case $i in 3 | 4) fault=(--fault stall:8192) ;; esac
    start_netdev "$WORK/nd$i" --chip esp32 --mac "$mac" --bind "$TNET.$((40 + i))" --ota-port 3232 \
        --version 1.0 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 500 "${fault[@]}"
done
wait_sql "SELECT count(*) FROM boards WHERE mac LIKE '24:6f:28:00:b0:%' AND online_state = 'online';" 5 30

# --- the browser test ---------------------------------------------------------------------
rc=0
TEST_TMPDIR=$WORK timeout 300 node "$BROWSER_DIR/status.spec.mjs" --url "$URL" --token "$TOKEN" \
    --shots "$SHOTS" --slots W1,F1,I1,P1 --flash-slot W1 --fail-slot F1 --timeout 90 \
    --overlap-fw "$BAD" --wrongchip-fw "$WRONG" --good-fw "$GOOD" \
    --pull-slot P1 --pull-firmware pullc3@1.1.0 --pull-log "$P1/net/netdev.log" \
    --bulk-macs "$(IFS=,; echo "${NMACS[*]}")" --bulk-firmware netfw@2.0 --bulk-fast 2 \
    >"$WORK/spec.out" 2>&1 || rc=$?
cat "$WORK/spec.out" >&2
[ "$rc" -eq 0 ] || fail "status.spec.mjs failed (rc=$rc); screenshots in $SHOTS"
grep -Eq '^[0-9]+ passed, 0 failed$' "$WORK/spec.out" || fail "status.spec.mjs printed no summary"
# P1 really runs what its tile said: the pulled app is in its flash.
flash_region_equals "$P1" 0x10000 "$WORK/pull2/app.bin"
# The bulk the page showed really ran: N1 and N2 received netfw@2.0 over espota.
for i in 1 2; do
    cmp -s "$WORK/nd$i/ota-1.bin" "$WORK/netfw/app.bin" || fail "N$i did not receive netfw@2.0"
done
[ "$(db "SELECT state FROM bulks ORDER BY id DESC LIMIT 1;")" = cancelled ] ||
    fail "the bulk is not cancelled in the records: $(db 'SELECT id, state FROM bulks;')"
# Cancelled before its turn, N5 never got a push (and stays pending in the bulk).
[ ! -e "$WORK/nd5/ota-1.bin" ] || fail "N5 received a push after the bulk was cancelled"
[ "$(db "SELECT state FROM bulk_boards WHERE mac = '${NMACS[4]}';")" = pending ] ||
    fail "N5 in the cancelled bulk: $(db "SELECT mac, state FROM bulk_boards;")"
log "screenshots in $SHOTS"

stop_daemon 0

# --- the same page against tests/browser/mock-server.mjs ---------------------------------
# Every tile state (queued, skipped, online, flagged, empty, ...) and the
# "reconnecting…" indicator when the server goes away and comes back.
rc=0
TEST_TMPDIR=$WORK timeout 300 node "$BROWSER_DIR/status.spec.mjs" --mock --shots "$SHOTS/mock" \
    >"$WORK/spec-mock.out" 2>&1 || rc=$?
cat "$WORK/spec-mock.out" >&2
[ "$rc" -eq 0 ] || fail "status.spec.mjs --mock failed (rc=$rc); screenshots in $SHOTS/mock"
done_ok

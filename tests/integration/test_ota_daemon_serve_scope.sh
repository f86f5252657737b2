#!/usr/bin/env bash
# test_ota_daemon_serve_scope: the update endpoint's plain GET /ota/fw/<name>/<version>.bin
# serves only sets a profile names (firmware or ota_firmware, active or not) or a board's
# pinned target (issue 9, finding 4). A set in the catalog that nothing names (an old
# release, another customer's set) is a 404 like an unknown path, whoever asks; pinning
# it as a board's target makes it servable, unpinning takes that back. The updater's
# check-in path is unchanged: a board gets its target.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/f1" demo 1.0.0 esp32 30000 81   # profile line's firmware
fw_set "$WORK/f2" demo 2.0.0 esp32 31000 82   # profile spare's ota_firmware (not active)
fw_set "$WORK/f3" secret 1.0 esp32 32000 83   # named by nothing
fw_set "$WORK/f4" demo 0.9.0 esp32 33000 84   # an old release, named by nothing
OTA_PORT=$(free_port)
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}},
              "spare": {"ota_firmware": {"esp32": "demo@2.0.0"}}},
 "active_profile": "line"}
JSON
start_api_daemon "$WORK/station.json"
for d in f1 f2 f3 f4; do upload_fw "$WORK/$d"; done

# get PATH: the status of a plain GET (and the body in $WORK/got)
get() {
    timeout 30 curl -sS -o "$WORK/got" -w '%{http_code}' "http://127.0.0.1:$OTA_PORT$1" || echo none
}
[ "$(get /ota/fw/demo/1.0.0.bin)" = 200 ] || fail "the active profile's set"
cmp -s "$WORK/got" "$WORK/f1/app.bin" || fail "demo@1.0.0 bytes"
[ "$(get /ota/fw/demo/2.0.0.bin)" = 200 ] || fail "another profile's ota_firmware"
[ "$(get /ota/fw/secret/1.0.bin)" = 404 ] || fail "a set nothing names was served"
[ "$(get /ota/fw/demo/0.9.0.bin)" = 404 ] || fail "an old release nothing names was served"
[ "$(get /ota/fw/nope/1.0.bin)" = 404 ] || fail "an unknown set"

# a board's pinned target is servable while it is pinned
M=24:6f:28:00:5c:01
start_netdev "$WORK/nd" --chip esp32 --mac "$M" --bind "$TNET.41" --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300
wait_sql "SELECT count(*) FROM boards WHERE mac = '$M';" 1 20
apij PUT "/api/v1/boards/$M/target" '{"firmware": "secret@1.0"}'
expect_status 200
[ "$(get /ota/fw/secret/1.0.bin)" = 200 ] || fail "a pinned target was not served"
cmp -s "$WORK/got" "$WORK/f3/app.bin" || fail "secret@1.0 bytes"
# the board itself gets it by its check-in
wait_file_log 'pull: applied .* version now 1.0' "$WORK/nd/netdev.log" 20
apij PUT "/api/v1/boards/$M/target" '{"firmware": null}'
expect_status 200
[ "$(get /ota/fw/secret/1.0.bin)" = 404 ] || fail "an unpinned target is still served"

# /metrics counts the refusals with the other 404s
api GET /metrics
n404=$(awk '$1 == "espstation_ota_checkins_total{answer=\"404\"}" { print $2 }' <<<"$RESP")
[ "${n404:-0}" -ge 4 ] || fail "404s in /metrics: '$n404'"

stop_daemon
integrity_ok
done_ok

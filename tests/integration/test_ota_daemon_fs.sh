#!/usr/bin/env bash
# test_ota_daemon_fs: filesystem images (catalog kind "filesystem") end to end,
# over real sockets against virtual boards.
#  - serial first flash: a virtual ESP32 (esp_sim) is flashed with a set whose
#    SPIFFS image sits at 0x290000; its flash then holds the image byte for byte;
#  - pull: with the board's pending-FS knob (net/want-fs) its check-in in mode
#    spiffs gets 304 (the station wrote that set's image itself); a network-only
#    board (esp_netdev) gets 200 + the image (exact bytes, ota-pull-fs job), then
#    304; a target set without a filesystem image gets a 404 with the reason;
#  - push: POST /api/v1/boards/{mac}/ota {"image": "filesystem"} with espota
#    (cmd 100; the image lands in the virtual flash at 0x290000, the app and
#    the running version stay) and with the web form (field "filesystem",
#    Basic auth as config ota.webform_user, then as a per-request "user" the
#    device refuses); raw TCP-OTA, unknown images and a filesystem "pull" bulk
#    are refused with 422.
# The serial board's boot check captures its IP (a confirmed address, pushes go
# only there); the network-only boards send the profile's checkin_auth.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

M1=24:6f:28:00:0f:01
M2=24:6f:28:00:0f:02
M3=24:6f:28:00:0f:03
fw_set_fs "$WORK/f1" fsdemo 1.0.0 60000 31 12288
import_fw "$WORK/f1"
fw_set_fs "$WORK/f2" fsdemo 2.0.0 61000 32 16384
import_fw "$WORK/f2"
fw_set "$WORK/n2" nofs 2.0.0 esp32 50000 33
import_fw "$WORK/n2"
cmp -s "$WORK/f1/spiffs.bin" "$WORK/f2/spiffs.bin" && fail "the two filesystem images must differ"

OTA_PORT=$(free_port)
URL="http://127.0.0.1:$OTA_PORT/ota/update"
start_sim esp32 --mac "$M1" --net-bind $TNET.31 --fs-offset "$FS_OFF" \
    --checkin "$URL" --checkin-interval 300
S1=$SIM_DIR
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}],
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "webform_user": "flasher"},
 "profiles": {"line": {"firmware": {"esp32": "fsdemo@1.0.0"}, "baud": 460800, "retries": 0,
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}, $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"

# --- serial first flash writes the filesystem region like any region ------------------
wait_sql "SELECT state || ' ' || firmware FROM jobs WHERE kind = 'flash';" "passed fsdemo@1.0.0" 120
flash_region_equals "$S1" 0x10000 "$WORK/f1/app.bin"
flash_region_equals "$S1" "$FS_OFF" "$WORK/f1/spiffs.bin"
api GET /api/v1/firmware/fsdemo/1.0.0
expect_status 200
expect_jq '[.regions[] | .kind] == ["app", "filesystem"]'

# --- pull, mode spiffs: the station flashed this set's image itself -> 304 -------------
wait_sql "SELECT online_state FROM boards WHERE mac = '$M1';" online 30
touch "$S1/net/want-fs"
wait_file_log 'checkin-fs: status=304' "$S1/net/netdev.log" 20
rm -f "$S1/net/want-fs"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull-fs';")" = 0 ] || fail "served an FS image the board has"

# --- pull, mode spiffs: a board the station never gave it -> 200 + exact bytes, then 304
start_netdev "$WORK/nd2" --chip esp32 --mac "$M2" --bind $TNET.32 --version 1.0.0 --want-fs \
    --fs-size 65536 --checkin "$URL" --interval 300
wait_sql "SELECT state || ' ' || firmware || ' ' || bytes FROM jobs WHERE kind = 'ota-pull-fs' AND board_mac = '$M2';" \
    "passed fsdemo@1.0.0 $(size_of "$WORK/f1/spiffs.bin")" 30
wait_file_log 'pull: filesystem image [0-9]+ bytes stored' "$WORK/nd2/netdev.log" 10
cmp "$WORK/nd2/fs.bin" "$WORK/f1/spiffs.bin" || fail "pulled filesystem image differs"
grep -q 'checkin-fs: status=200' "$WORK/nd2/netdev.log" || fail "no 200 for mode spiffs"
wait_file_log 'checkin-fs: status=304' "$WORK/nd2/netdev.log" 10
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull-fs';")" = 1 ] || fail "FS image served more than once"
[ "$(board_col "$M2" running_version)" = 1.0.0 ] || fail "an FS pull changed the running version"
db "SELECT line FROM job_log WHERE job_id = (SELECT id FROM jobs WHERE kind = 'ota-pull-fs');" |
    grep -q 'filesystem image of fsdemo@1.0.0' || fail "the pull job's log does not name the filesystem image"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'ota.served' AND data LIKE '%\"image\":\"filesystem\"%';")" = 1 ] ||
    fail "ota.served event for the filesystem image"

# --- a target set without a filesystem image: a clear refusal (404 + reason) -----------
mark=$(wc -l <"$WORK/nd2/netdev.log")
apij PUT "/api/v1/boards/$M2/target" '{"firmware": "nofs@2.0.0"}'
expect_status 200
deadline=$((SECONDS + 20))
until tail -n +"$((mark + 1))" "$WORK/nd2/netdev.log" | grepq 'checkin-fs: refused: target nofs@2.0.0 has no filesystem image'; do
    [ $SECONDS -lt $deadline ] || fail "no 404 refusal for a set without a filesystem image"
    sleep 0.1
done
tail -n +"$((mark + 1))" "$WORK/nd2/netdev.log" | grepq 'checkin-fs: status=404' || fail "refusal is not a 404"

# --- push: request validation ---------------------------------------------------------
apij POST "/api/v1/boards/$M1/ota" '{"firmware": "fsdemo@2.0.0", "image": "spiffs"}'
expect_error 422 validation_failed image
apij POST "/api/v1/boards/$M1/ota" '{"method": "tcp", "firmware": "fsdemo@2.0.0", "image": "filesystem"}'
expect_error 422 validation_failed image
jqr .error.message | grepq 'raw TCP-OTA has no filesystem mode' || fail "tcp refusal message: $RESP"
apij POST "/api/v1/boards/$M1/ota" '{"firmware": "nofs@2.0.0", "image": "filesystem"}'
expect_error 422 validation_failed image
jqr .error.message | grepq 'nofs@2.0.0 has no filesystem image' || fail "no-FS message: $RESP"
apij POST "/api/v1/boards/$M1/ota" '{"firmware": "fsdemo@2.0.0", "user": "a:b"}'
expect_error 422 validation_failed user
apij POST /api/v1/bulk "{\"select\": {\"macs\": [\"$M1\"]}, \"firmware\": \"fsdemo@2.0.0\", \"image\": \"filesystem\"}"
expect_error 422 validation_failed image
jqr .error.message | grepq 'pushed with method "espota" or "webform"' || fail "pull bulk FS message: $RESP"

# --- push with espota: cmd 100, the image lands at the filesystem offset ---------------
apij POST "/api/v1/boards/$M1/ota" '{"method": "espota", "firmware": "fsdemo@2.0.0", "image": "filesystem"}'
expect_status 202
expect_jq '.kind == "ota-push-fs" and .image == "filesystem"'
J1=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J1;" passed 60
[ "$(db "SELECT kind || ' ' || firmware || ' ' || bytes FROM jobs WHERE id = $J1;")" = \
    "ota-push-fs fsdemo@2.0.0 $(size_of "$WORK/f2/spiffs.bin")" ] || fail "FS push job record"
grep -q 'ota: invitation cmd=100 ' "$S1/net/netdev.log" || fail "espota did not invite with cmd 100"
flash_region_equals "$S1" "$FS_OFF" "$WORK/f2/spiffs.bin"
flash_region_equals "$S1" 0x10000 "$WORK/f1/app.bin"
[ "$(board_col "$M1" running_version)" = 1.0.0 ] || fail "an FS push changed the running version"
[ "$(board_col "$M1" current_firmware)" = fsdemo@1.0.0 ] || fail "an FS push changed the current firmware"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'ota.push.finished' AND job_id = $J1 AND data LIKE '%\"image\":\"filesystem\"%';")" = 1 ] ||
    fail "ota.push.finished does not name the filesystem image"

# --- push with the web form: field "filesystem", Basic auth as ota.webform_user --------
start_netdev "$WORK/web" --chip esp32 --mac "$M3" --bind $TNET.33 --version 1.0.0 \
    --http-port 0 --web-user flasher --password w3b --checkin "$URL" --interval 300
WPORT=$(sed -n 's/.*http=\([0-9]*\).*/\1/p' "$WORK/web/ready")
wait_sql "SELECT online_state FROM boards WHERE mac = '$M3';" online 20
apij POST "/api/v1/boards/$M3/ota" "{\"method\": \"webform\", \"firmware\": \"fsdemo@2.0.0\", \"image\": \"filesystem\", \"password\": \"w3b\", \"port\": $WPORT}"
expect_status 202
J2=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J2;" passed 60
cmp "$WORK/web/fs.bin" "$WORK/f2/spiffs.bin" || fail "web-form filesystem image differs"
grep -q 'web: Basic auth as user flasher' "$WORK/web/netdev.log" || fail "device did not see the configured user"
grep -q 'web: filesystem image' "$WORK/web/netdev.log" || fail "device did not take it as a filesystem image"
[ "$(cat "$WORK/web/version")" = 1.0.0 ] || fail "a web-form FS push changed the version"

# ... the per-request user wins over the config (this device refuses it: 401)
apij POST "/api/v1/boards/$M3/ota" "{\"method\": \"webform\", \"firmware\": \"fsdemo@2.0.0\", \"image\": \"filesystem\", \"password\": \"w3b\", \"user\": \"operator\", \"port\": $WPORT}"
expect_status 202
J3=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J3;" failed 60
grep -q 'web: 401 (credentials; got user operator)' "$WORK/web/netdev.log" || fail "device did not see the per-request user"
msg=$(db "SELECT error_message FROM jobs WHERE id = $J3;")
[[ $msg == *credentials* ]] || fail "401 record: $msg"

# ... and an app push through the same form still sends field "firmware"
apij POST "/api/v1/boards/$M3/ota" "{\"method\": \"webform\", \"firmware\": \"fsdemo@2.0.0\", \"password\": \"w3b\", \"port\": $WPORT}"
expect_status 202
expect_jq '.kind == "ota-push" and .image == "app"'
J4=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J4;" passed 60
# (its check-ins then bring it back to the profile's fsdemo@1.0.0: only the log is stable)
grep -q 'web: applied .* version now 2.0.0' "$WORK/web/netdev.log" || fail "web-form app push not applied"

stop_daemon
integrity_ok
done_ok

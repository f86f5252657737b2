#!/usr/bin/env bash
# test_ota_daemon_push_flash_size: an ESP8266 refuses an app image whose header declares more
# flash than its chip has, whichever way the image comes. The check is in the core's Updater
# (Updater::_verifyEnd, run by Update.end()): ArduinoOTA and the web form take the whole image
# and then answer "ERROR[9]: new Flash config wrong, real size: N" (esp_netdev --chip-size).
#  - the station knows the chip's size (the board's updater reported x-ESP8266-chip-size at its
#    check-in): an espota push, a web-form push and a bulk push of a 4 MB-header image to a
#    1 MB board are refused before anything is sent (the board sees no invitation, no POST),
#    with a job failed at stage 'prepare' naming both sizes and what to do. (Before: the image
#    was sent whole, the board refused it at the end, and the job said only "the board
#    reported an error".)
#  - control: the same board takes a 1 MB-header image.
#  - the station does not know the size (a bare push, ota_driver): the board's ERROR[9] after
#    the transfer is reported as the flash-size mismatch with both sizes and the same advice.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

# e8266@2.0.0: header 4 MB (byte 3 high nibble 4); e8266@2.0.1: header 1 MB (nibble 2).
fw_set "$WORK/big" e8266 2.0.0 esp8266 50000 31
printf '\x40' | dd of="$WORK/big/app.bin" bs=1 seek=3 conv=notrunc status=none
import_fw "$WORK/big"
fw_set "$WORK/fit" e8266 2.0.1 esp8266 50000 32
printf '\x20' | dd of="$WORK/fit/app.bin" bs=1 seek=3 conv=notrunc status=none
import_fw "$WORK/fit"

TOKEN=t0k3n
OTA_PORT=$(free_port)
cat >"$WORK/station.json" <<JSON
{"ports": [], "api": {"token": "t0k3n"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp8266": "e8266@2.0.1"}, $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"
URL="http://127.0.0.1:$OTA_PORT/ota/update"

M=18:fe:34:00:0d:01 # ESP8266 with a 1 MB chip, already on its target (no pull)
start_netdev "$WORK/a" --chip esp8266 --mac $M --bind $TNET.31 --version 2.0.1 \
    --ota-port 0 --http-port 0 --chip-size 1048576 --checkin "$URL" --interval once
UDP=$(sed -n 's/.*udp=\([0-9-]*\).*/\1/p' "$WORK/a/ready")
HTTP=$(sed -n 's/.*http=\([0-9-]*\).*/\1/p' "$WORK/a/ready")
wait_sql "SELECT chip_size FROM board_ota WHERE mac = '$M';" 1048576 20
wait_sql "SELECT online_state FROM boards WHERE mac = '$M';" online 20

# --- the station knows the chip: refused before anything is sent --------------------------
check_refused() { # JOB_ID WHAT
    local rec
    rec=$(db "SELECT state || '|' || error_stage || '|' || bytes || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $1;")
    log "$2: $rec"
    [[ $rec == failed\|prepare\|0\|*4096\ KB\ flash,\ the\ board?s\ chip\ has\ 1024\ KB*\|*real\ flash\ size* ]] ||
        fail "$2 job record: $rec"
}
apij POST "/api/v1/boards/$M/ota" "{\"method\": \"espota\", \"firmware\": \"e8266@2.0.0\", \"port\": $UDP}"
expect_error 422 validation_failed firmware
jqr .error.message | grepq '4096 KB flash, the board.s chip has 1024 KB' || fail "espota answer: $RESP"
J1=$(db "SELECT max(id) FROM jobs WHERE kind = 'ota-push' AND board_mac = '$M';")
[ -n "$J1" ] || fail "no job recorded for the refused espota push"
check_refused "$J1" espota
apij POST "/api/v1/boards/$M/ota" "{\"method\": \"webform\", \"firmware\": \"e8266@2.0.0\", \"port\": $HTTP}"
expect_error 422 validation_failed firmware
J2=$(db "SELECT max(id) FROM jobs WHERE kind = 'ota-push' AND board_mac = '$M';")
[ "$J2" != "$J1" ] || fail "no job recorded for the refused web-form push"
check_refused "$J2" webform
# a bulk: the board fails at once, not retried
apij POST /api/v1/bulk "{\"method\": \"espota\", \"firmware\": \"e8266@2.0.0\", \"select\": {\"macs\": [\"$M\"]}, \"port\": $UDP, \"retries\": 2}"
expect_status 202
B=$(jqr .id)
wait_api "/api/v1/bulk/$B" '.counts.running == 0 and .counts.pending == 0' 20
jq -e '.counts.failed == 1 and (.boards[0].error | test("1024 KB"))' <<<"$RESP" >/dev/null ||
    fail "bulk board: $RESP"
n=$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push' AND board_mac = '$M' AND error_stage = 'prepare';")
[ "$n" = 3 ] || fail "$n prepare-refused push jobs (want 3)"
# nothing reached the board: no invitation, no POST
! grep -Eq 'ota: |web: ' "$WORK/a/netdev.log" ||
    fail "the board was sent the image: $(grep -E 'ota: |web: ' "$WORK/a/netdev.log" | tail -3)"

# --- "check_flash_size": false (FLASH_MAP_SUPPORT builds do not check on the device): the
# image is sent; this board's Updater does check, so its own ERROR[9] ends the job, explained.
apij POST "/api/v1/boards/$M/ota" "{\"method\": \"espota\", \"firmware\": \"e8266@2.0.0\", \"port\": $UDP, \"check_flash_size\": \"no\"}"
expect_error 422 validation_failed check_flash_size
V0=$(cat "$WORK/a/version")
apij POST "/api/v1/boards/$M/ota" "{\"method\": \"espota\", \"firmware\": \"e8266@2.0.0\", \"port\": $UDP, \"check_flash_size\": false}"
expect_status 202 "check_flash_size false"
J4=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J4;" failed 30
rec=$(db "SELECT error_stage || '|' || bytes || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $J4;")
log "check_flash_size false: $rec"
[[ $rec != prepare\|* ]] || fail "check_flash_size false: still refused before sending: $rec"
[[ $rec == *\|50032\|* ]] || fail "check_flash_size false: the image was not sent whole: $rec"
grepq 'device: ERROR\[9\]: new Flash config wrong' <<<"$rec" || fail "check_flash_size false: the board's ERROR[9] is not reported: $rec"
grepq 'real flash size' <<<"$rec" || fail "check_flash_size false: no advice: $rec"
grep -q 'ota: ' "$WORK/a/netdev.log" || fail "check_flash_size false: nothing reached the board"
[ "$(cat "$WORK/a/version")" = "$V0" ] || fail "an image the board refused changed its version"

# --- control: an image built for 1 MB goes through ------------------------------------------
apij POST "/api/v1/boards/$M/ota" "{\"method\": \"espota\", \"firmware\": \"e8266@2.0.1\", \"port\": $UDP}"
expect_status 202
J3=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J3;" passed 30

# --- the station does not know the chip: the board's refusal, explained ---------------------
"$OTA_DRIVER" espota --ip $TNET.31 --port "$UDP" --chip esp8266 "$WORK/big/app.bin" \
    >"$WORK/drv1.out" 2>"$WORK/drv1.err" && fail "bare espota push of the 4 MB image passed"
out=$(cat "$WORK/drv1.out")
log "bare espota: $out"
grepq 'device=ERROR\[9\]: new Flash config wrong, real size: 1048576' <<<"$out" || fail "espota device text: $out"
grepq 'message=the board refused the image: the image header declares a 4096 KB flash, the board.s chip has 1024 KB' <<<"$out" ||
    fail "espota message: $out"
grepq 'advice=build the image for the board.s real flash size' <<<"$out" || fail "espota advice: $out"
"$OTA_DRIVER" webform --ip $TNET.31 --port "$HTTP" "$WORK/big/app.bin" \
    >"$WORK/drv2.out" 2>"$WORK/drv2.err" && fail "bare web-form push of the 4 MB image passed"
out=$(cat "$WORK/drv2.out")
log "bare webform: $out"
grepq 'message=the board refused the update: the image header declares a 4096 KB flash, the board.s chip has 1024 KB' <<<"$out" ||
    fail "webform message: $out"
grepq 'advice=build the image for the board.s real flash size' <<<"$out" || fail "webform advice: $out"
grep -q 'web: Update error: ERROR\[9\]: new Flash config wrong, real size: 1048576' "$WORK/a/netdev.log" ||
    fail "the board did not refuse the web-form image"
[ "$(cat "$WORK/a/version")" = 2.0.1 ] || fail "a refused image changed the board's version"

stop_daemon
integrity_ok
done_ok

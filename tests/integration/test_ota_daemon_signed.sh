#!/usr/bin/env bash
# test_ota_daemon_signed: a signed-only profile (require_signed + public_key)
# refuses unsigned images with a clear error before serving or pushing them:
# the pull check-in gets 304 and the board's OTA state names the problem, a push
# and a target pin are answered 422 unsigned_image; a correctly signed image
# (payload || RSA-2048 PKCS#1 v1.5 SHA-256 signature || u32 LE 256) is served and
# the board reports its version. A signature made with another key is refused
# (bad_signature).
# Network-only boards send the profile's checkin_auth with their check-ins
# (ota_daemon_lib.sh): that confirms their addresses, and pushes go only there.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
command -v openssl >/dev/null || fail "openssl is needed"

openssl genrsa -out "$WORK/key.pem" 2048 2>/dev/null
openssl rsa -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem" 2>/dev/null
openssl genrsa -out "$WORK/other.pem" 2048 2>/dev/null

# sign_app DIR KEY: appends the ESP8266 signature trailer to DIR/app.bin.
sign_app() {
    openssl dgst -sha256 -sign "$2" -out "$1/sig.bin" "$1/app.bin"
    cat "$1/sig.bin" >>"$1/app.bin"
    printf '\x00\x01\x00\x00' >>"$1/app.bin"
    rm -f "$1/sig.bin"
}

fw_set "$WORK/u" fw8266 2.0.0 esp8266 40000 31
fw_set "$WORK/s" fw8266 2.0.1 esp8266 40000 32
sign_app "$WORK/s" "$WORK/key.pem"
fw_set "$WORK/x" fw8266 2.0.2 esp8266 40000 33
sign_app "$WORK/x" "$WORK/other.pem"
for d in u s x; do import_fw "$WORK/$d"; done

OTA_PORT=$(free_port)
TOKEN=t0k3n
PROFILE='{"ota_firmware": {"esp8266": "fw8266@2.0.0"}, "require_signed": true, "public_key": "'$WORK'/pub.pem", '$CHECKIN_AUTH_JSON'}'
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"signed": $PROFILE}}
JSON
start_api_daemon "$WORK/station.json"
MAC=18:fe:34:00:0d:01
start_netdev "$WORK/nd" --chip esp8266 --mac "$MAC" --bind $TNET.21 --version 1.0.0 \
    --ota-port 8266 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300
wait_sql "SELECT online_state FROM boards WHERE mac = '$MAC';" online 20
wait_sql "SELECT problem LIKE '%unsigned%' FROM board_ota WHERE mac = '$MAC';" 1 10
wait_file_log 'checkin: status=304 version=1.0.0' "$WORK/nd/netdev.log" 10
! grep -q 'checkin: status=200' "$WORK/nd/netdev.log" || fail "an unsigned image was served"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull';")" = 0 ] || fail "unsigned image served"
api GET "/api/v1/boards/$MAC/ota"
expect_status 200
expect_jq '.problem | test("unsigned")'

apij POST "/api/v1/boards/$MAC/ota" '{"firmware": "fw8266@2.0.0"}'
expect_error 422 unsigned_image firmware
jqr .error.message | grepq 'signatures are required' || fail "message: $RESP"
apij PUT "/api/v1/boards/$MAC/target" '{"firmware": "fw8266@2.0.0"}'
expect_error 422 unsigned_image firmware
apij PUT "/api/v1/boards/$MAC/target" '{"firmware": "fw8266@2.0.2"}'
expect_error 422 bad_signature firmware
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push';")" = 0 ] || fail "a refused push was started"

# the signed image is served
apij PUT "/api/v1/boards/$MAC/target" '{"firmware": "fw8266@2.0.1"}'
expect_status 200
expect_jq '.target == "fw8266@2.0.1" and .pinned'
wait_sql "SELECT running_version FROM boards WHERE mac = '$MAC';" 2.0.1 20
cmp -s "$WORK/nd/ota-1.bin" "$WORK/s/app.bin" || fail "the device got other bytes than the signed file"
wait_sql "SELECT problem IS NULL FROM board_ota WHERE mac = '$MAC';" 1 10
# unpin: back to the profile's (unsigned) release -> refused again, board stays on 2.0.1
apij PUT "/api/v1/boards/$MAC/target" '{"firmware": null}'
expect_status 200
expect_jq '.target == "fw8266@2.0.0" and (.pinned | not)'
wait_sql "SELECT problem LIKE '%unsigned%' FROM board_ota WHERE mac = '$MAC';" 1 10
[ "$(board_col "$MAC" running_version)" = 2.0.1 ] || fail "version changed"

stop_daemon
integrity_ok
done_ok

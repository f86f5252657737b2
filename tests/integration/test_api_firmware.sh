#!/usr/bin/env bash
# test_api_firmware: the firmware catalog over the REST API: multipart upload
# (good -> 201, listed and shown with sizes and hashes; again -> 409; with
# ?replace=true -> 201), validation without import (good -> 200; bad -> 422
# naming each region and problem), a bad upload is refused with the same
# report, no path traversal through names (400), oversized uploads (413),
# delete (200, then 404), and a reflash with the uploaded set.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

GOOD=$WORK/good
mkdir -p "$GOOD"
make_image_esp esp32 20000 "$GOOD/bootloader.bin" 3
make_image_esp esp32 90000 "$GOOD/app.bin" 4
make_random 3072 "$GOOD/part.bin" 9
cat >"$GOOD/manifest.json" <<JSON
{"name": "up", "version": "1.0.0", "chip": "esp32", "description": "uploaded",
 "regions": [{"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
             {"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
BAD=$WORK/bad
mkdir -p "$BAD"
make_image_esp esp32c3 20000 "$BAD/app.bin" 5
make_random 3072 "$BAD/part.bin" 9
cat >"$BAD/manifest.json" <<JSON
{"name": "bad", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"},
             {"offset": "0x20000", "file": "missing.bin", "kind": "data"}]}
JSON

start_sim esp32 --mac 24:6f:28:00:00:11
S1=$SIM_DIR
TOKEN=fw-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}],
 "api": {"token": "$TOKEN", "max_body_bytes": 200000},
 "profiles": {"line": {"firmware": {"esp32": "up@1.0.0"}, "retries": 0}}}
JSON
start_api_daemon "$CFG"

upload() { # PATH DIR [extra curl args]: multipart upload of DIR's manifest and files
    local p=$1 d=$2 f args=()
    shift 2
    args=(-F "manifest=@$d/manifest.json;type=application/json")
    for f in "$d"/*.bin; do
        args+=(-F "$(basename "$f")=@$f")
    done
    apit POST "$p" "${args[@]}" "$@"
}

# The board was plugged in before its firmware existed: failed, names what to import.
wait_api /api/v1/slots/A1 '.phase == "failed"' 60
expect_jq '.error.message | test("up@1.0.0|not in the catalog|cannot")'

# --- validate only --------------------------------------------------------------------------
upload /api/v1/firmware/validate "$GOOD"
expect_status 200
expect_jq '.valid == true'
api GET /api/v1/firmware
expect_jq '.firmware == []'
upload /api/v1/firmware/validate "$BAD"
expect_error 422 validation_failed
expect_jq '.valid == false and (.error.problems | length) >= 2'
expect_jq '[.error.problems[] | select(.region == 1 and .file == "app.bin" and .severity == "error" and (.message | test("ESP32-C3")))] | length == 1'
expect_jq '[.error.problems[] | select(.region == 2 and .file == "missing.bin")] | length == 1'
log "validation report: $(jq -c '[.error.problems[].message]' <<<"$RESP")"

# --- upload: bad, good, again, replace ------------------------------------------------------------
upload /api/v1/firmware "$BAD"
expect_error 422 validation_failed
expect_jq '[.error.problems[] | select(.file == "app.bin")] | length >= 1'
api GET /api/v1/firmware/bad/1.0.0
expect_error 404 not_found
upload /api/v1/firmware "$GOOD"
expect_status 201
expect_jq '.imported.name == "up" and .imported.version == "1.0.0" and .imported.chip == "ESP32"'
expect_jq '.imported.regions | length == 3'
upload /api/v1/firmware "$GOOD"
expect_error 409 exists
upload "/api/v1/firmware?replace=true" "$GOOD"
expect_status 201
api GET /api/v1/firmware
expect_jq '.firmware | length == 1 and .[0].name == "up" and .[0].regions == 3'
api GET "/api/v1/firmware?chip=esp32c3"
expect_jq '.firmware == []'
api GET /api/v1/firmware/up/1.0.0
expect_status 200
expect_jq '.description == "uploaded" and .manifest.name == "up"'
expect_jq ".regions[2].size == $(size_of "$GOOD/app.bin") and .regions[2].md5 == \"$(md5sum "$GOOD/app.bin" | cut -d' ' -f1)\""
expect_jq ".regions[2].sha256 == \"$(sha256sum "$GOOD/app.bin" | cut -d' ' -f1)\""

# --- malformed uploads ---------------------------------------------------------------------------------
apit POST /api/v1/firmware -F "app.bin=@$GOOD/app.bin"
expect_error 400 bad_request
apit POST /api/v1/firmware -F "manifest=@$GOOD/manifest.json" -F "x=@$GOOD/app.bin;filename=../evil.bin"
expect_status 422 "a traversal name is stripped to evil.bin, which the manifest does not name"
[ ! -e "$DATA_DIR/evil.bin" ] && [ ! -e "$DATA_DIR/uploads/evil.bin" ] || fail "traversal wrote a file"
apit POST /api/v1/firmware -F "manifest=@$GOOD/manifest.json" -F "x=@$GOOD/app.bin;filename=.hidden"
expect_error 400 bad_request
apit POST /api/v1/firmware -F "manifest=@$GOOD/manifest.json" -F "x=@$GOOD/app.bin;filename=index.json"
expect_error 400 bad_request
apij POST /api/v1/firmware '{"name": "x"}'
expect_error 415 unsupported_media_type
api POST /api/v1/firmware -F "manifest=@$GOOD/manifest.json"
expect_error 401 unauthorized
make_random 300000 "$WORK/big.bin" 1
# The daemon answers 413 as soon as it knows, and may close while the client is still
# sending; a client can then see EPIPE/ECONNRESET (curl 55/56) after it has read the
# answer. Accept that only when the 413 answer itself was received.
api_oversized() {
    local rc=0
    HTTP_STATUS=$(timeout 60 curl -sS -o "$WORK/resp" -D "$WORK/resp.headers" -w '%{http_code}' \
        -X POST -H "Authorization: Bearer $TOKEN" "$@" "$API/api/v1/firmware") || rc=$?
    RESP=$(cat "$WORK/resp" 2>/dev/null || true)
    case $rc in
    0) ;;
    55 | 56) [ "$HTTP_STATUS" = 413 ] || fail "oversized upload: connection dropped (curl $rc) before the 413 answer" ;;
    *) fail "oversized upload: curl failed ($rc)" ;;
    esac
}
# With Content-Length and Expect: 100-continue (what well-behaved clients send) the
# refusal comes before any body byte is sent.
api_oversized -H 'Expect: 100-continue' -F "manifest=@$GOOD/manifest.json" -F "big.bin=@$WORK/big.bin"
expect_error 413 payload_too_large
# chunked (no Content-Length): refused when it crosses the limit
api_oversized -H 'Transfer-Encoding: chunked' -F "manifest=@$GOOD/manifest.json" -F "big.bin=@$WORK/big.bin"
expect_error 413 payload_too_large
[ -z "$(ls -A "$DATA_DIR/uploads" 2>/dev/null)" ] || fail "upload temp dirs left: $(ls "$DATA_DIR/uploads")"

# --- names in paths -------------------------------------------------------------------------------------------
api GET /api/v1/firmware/..%2F..%2Fetc/passwd
expect_status 400
api GET /api/v1/firmware/up/.. --path-as-is
expect_status 400
api GET /api/v1/firmware/.up/1.0.0
expect_error 400 bad_request name
api GET /api/v1/firmware/up/9.9.9
expect_error 404 not_found firmware
apit DELETE /api/v1/firmware/up/.. --path-as-is
expect_status 400

# --- the uploaded set flashes ---------------------------------------------------------------------------------
apij POST /api/v1/slots/A1/reflash '{"firmware": "up@1.0.0"}'
expect_status 202
J=$(jqr .id)
wait_api "/api/v1/jobs/$J" '.state == "passed"' 120
flash_region_equals "$S1" 0x10000 "$GOOD/app.bin"
flash_region_equals "$S1" 0x8000 "$GOOD/part.bin"

# --- delete ------------------------------------------------------------------------------------------------------
apit DELETE /api/v1/firmware/up/1.0.0
expect_status 200
expect_jq '.deleted.name == "up"'
apit DELETE /api/v1/firmware/up/1.0.0
expect_error 404 not_found
api GET /api/v1/firmware
expect_jq '.firmware == []'

stop_daemon
done_ok

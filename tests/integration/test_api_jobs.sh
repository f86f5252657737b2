#!/usr/bin/env bash
# test_api_jobs: the REST API over real HTTP against espstationd with virtual
# boards: slots, boards (with history), jobs (reflash with force and firmware
# override, by slot and by board, info, reset, erase region and chip, cancel),
# concurrent requests for one slot (exactly one 202, the others 409), attach
# and detach of a port, records with filters and CSV, counters, metrics.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 20000 "$FW/bootloader.bin" 3
make_image_esp esp32 120000 "$FW/app.bin" 4
cat >"$FW/manifest.json" <<JSON
{"name": "demo", "version": "1.0.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"
FW2=$WORK/fw2
mkdir -p "$FW2"
make_image_esp esp32 60000 "$FW2/app.bin" 7
cat >"$FW2/manifest.json" <<JSON
{"name": "demo", "version": "2.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW2"

# Real serial pacing: a job takes long enough for requests to race it.
start_sim esp32 --link-speed 1 --mac 24:6f:28:00:00:01
S1=$SIM_DIR
start_sim esp32 --link-speed 1 --mac 24:6f:28:00:00:02
S2=$SIM_DIR
TOKEN=t0k3n-for-tests
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S2/tty", "label": "A2"}],
 "api": {"token": "$TOKEN"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}, "baud": 460800, "retries": 0}}}
JSON
start_api_daemon "$CFG"

# --- automatic first flash; slots and boards -----------------------------------------
wait_api /api/v1/jobs '[.jobs[] | select(.state == "passed")] | length == 2' 120
api GET /api/v1/slots
expect_status 200
expect_jq '.slots | length == 2'
expect_jq '[.slots[].phase] | all(. == "awaiting_network")'
api GET /api/v1/slots/A1
expect_status 200
expect_jq '.id == "A1" and .label == "A1" and .mac == "24:6f:28:00:00:01" and .chip == "ESP32" and .present and (.busy | not)'
expect_jq '.firmware == "demo@1.0.0" and (.error == null) and (.job_id | type == "number")'
api GET /api/v1/slots/0
expect_status 200
api GET "/api/v1/slots?phase=failed"
expect_jq '.slots == []'
api GET "/api/v1/slots?busy=false&present=true"
expect_jq '.slots | length == 2'
api GET /api/v1/slots/NOPE
expect_error 404 not_found slot

api GET /api/v1/boards
expect_status 200
expect_jq '.boards | length == 2'
api GET "/api/v1/boards?chip=ESP32&firmware=demo&present=true"
expect_jq '.boards | length == 2'
api GET "/api/v1/boards?firmware=demo@2.0.0"
expect_jq '.boards == []'
api GET "/api/v1/boards?state=awaiting_network&limit=1"
expect_jq '.boards | length == 1'
api GET /api/v1/boards/24-6F-28-00-00-01
expect_status 200
expect_jq '.mac == "24:6f:28:00:00:01" and .present_on == "A1" and .current_firmware == "demo@1.0.0"'
expect_jq '.jobs | length == 1 and .[0].state == "passed" and .[0].kind == "flash"'
api GET /api/v1/boards/24:6f:28:99:99:99
expect_error 404 not_found mac
api GET /api/v1/boards/not-a-mac
expect_error 400 bad_request mac

# --- concurrent reflash requests for one slot: exactly one 202 -------------------------
CURLS=()
for i in $(seq 1 8); do
    timeout 30 curl -s -o "$WORK/c$i.json" -D "$WORK/c$i.headers" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data '{"force": true}' "$API/api/v1/slots/A1/reflash" >"$WORK/c$i.code" &
    CURLS+=($!)
done
for pid in "${CURLS[@]}"; do
    wait "$pid" || fail "a concurrent curl failed"
done
n202=0
n409=0
for i in $(seq 1 8); do
    case $(cat "$WORK/c$i.code") in
    202) n202=$((n202 + 1)) && JOB=$(jq -r .id "$WORK/c$i.json") && J202=$i ;;
    409)
        n409=$((n409 + 1))
        [ "$(jq -r .error.code "$WORK/c$i.json")" = slot_busy ] || fail "409 without slot_busy: $(cat "$WORK/c$i.json")"
        ;;
    *) fail "concurrent request $i: HTTP $(cat "$WORK/c$i.code"): $(cat "$WORK/c$i.json")" ;;
    esac
done
[ $n202 = 1 ] && [ $n409 = 7 ] || fail "concurrent reflash: $n202 x 202, $n409 x 409 (expected 1 and 7)"
log "concurrent reflash: one 202 (job $JOB), seven 409"
loc=$(tr -d '\r' <"$WORK/c$J202.headers" | sed -n 's/^[Ll]ocation: //p')
[ "$loc" = "/api/v1/jobs/$JOB" ] || fail "the 202 names its job in Location: '$loc' (job $JOB)"
api GET "/api/v1/jobs/$JOB"
expect_status 200
expect_jq '.kind == "flash" and .slot == "A1" and (.state == "running" or .state == "passed")'
wait_api "/api/v1/jobs/$JOB" '.state == "passed"' 120
expect_jq '.bytes > 0 and .kbps > 0 and .seconds > 0 and .error == null and .result_code == 0'
expect_jq '.log | length > 0'
expect_jq '[.log[].line] | any(test("wrote demo@1.0.0"))'

# --- POST /jobs by board with a firmware override ----------------------------------------
apij POST /api/v1/jobs '{"board": "24:6f:28:00:00:02", "firmware": "demo@2.0.0", "options": {"force": true, "verify": true}}'
expect_status 202
JOB2=$(jqr .id)
grep -qi "^location: /api/v1/jobs/$JOB2" "$WORK/resp.headers" || fail "no Location header for job $JOB2"
wait_api "/api/v1/jobs/$JOB2" '.state == "passed" and .firmware == "demo@2.0.0"' 120
flash_region_equals "$S2" 0x10000 "$FW2/app.bin"
api GET /api/v1/boards/24:6f:28:00:00:02
expect_jq '.current_firmware == "demo@2.0.0"'

# validation of POST /jobs
apij POST /api/v1/jobs '{"slot": "A1", "board": "24:6f:28:00:00:02"}'
expect_error 422 validation_failed
apij POST /api/v1/jobs '{"slot": "A1", "firmware": "demo@9.9"}'
expect_error 422 validation_failed firmware
apij POST /api/v1/jobs '{"slot": "A1", "options": {"baud": "fast"}}'
expect_error 422 validation_failed options.baud
apij POST /api/v1/jobs '{"slot": "A1", "options": {"bauds": 9600}}'
expect_error 422 validation_failed options.bauds
apij POST /api/v1/jobs '{"slot": "A1", "colour": 1}'
expect_error 422 validation_failed colour
apij POST /api/v1/jobs '{"slot": "Z9"}'
expect_error 404 not_found slot
apij POST /api/v1/jobs '{"board": "24:6f:28:99:99:99"}'
expect_error 404 not_found board
apij POST /api/v1/jobs '{"slot": "A1",'
expect_error 400 invalid_json
apij POST /api/v1/jobs '[1,2]'
expect_error 422 validation_failed
apit POST /api/v1/jobs -H 'Content-Type: text/plain' --data '{"slot":"A1"}'
expect_error 415 unsupported_media_type

# --- cancel ---------------------------------------------------------------------------------
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202
JOB3=$(jqr .id)
wait_api /api/v1/slots/A1 '.phase == "flashing" or .phase == "verifying"' 60
apit POST "/api/v1/jobs/$JOB3/cancel" -H 'Content-Type: application/json'
expect_status 202
wait_api "/api/v1/jobs/$JOB3" '.state == "cancelled"' 60
expect_jq '.error.message != null'
apit POST "/api/v1/jobs/$JOB3/cancel" -H 'Content-Type: application/json'
expect_error 409 job_finished
apit POST /api/v1/jobs/999999/cancel -H 'Content-Type: application/json'
expect_error 404 not_found
api GET /api/v1/jobs/999999
expect_error 404 not_found job
api GET /api/v1/jobs/abc
expect_error 404 not_found job

# --- info, reset, erase ------------------------------------------------------------------------
apij POST /api/v1/slots/A2/info '{}'
expect_status 202
JI=$(jqr .id)
expect_jq '.kind == "info"'
wait_api "/api/v1/jobs/$JI" '.state == "passed"' 60
expect_jq '[.log[].line] | any(test("flash id"))'
wait_api /api/v1/slots/A2 '.phase == "idle" and (.busy | not)' 30
api GET /api/v1/boards/24:6f:28:00:00:02
expect_jq '.flash_size > 0'
apit POST /api/v1/slots/A2/reset -H 'Content-Type: application/json'
expect_status 202
JR=$(jqr .id)
wait_api "/api/v1/jobs/$JR" '.state == "passed" and .kind == "reset"' 60
apij POST /api/v1/slots/A2/erase '{"offset": "0x10000", "size": 4096}'
expect_status 202
JE=$(jqr .id)
wait_api "/api/v1/jobs/$JE" '.state == "passed" and .kind == "erase"' 60
ff=$(od -An -tx1 -v -j $((0x10000)) -N 4096 "$S2/flash.bin" | tr -d ' \n' | tr -d 'f')
[ -z "$ff" ] || fail "erased region 0x10000+4096 is not all 0xFF"
apij POST /api/v1/slots/A2/erase '{"offset": 4096}'
expect_error 422 validation_failed size
apij POST /api/v1/slots/A2/erase '{"offset": 100, "size": 4096}'
expect_error 422 validation_failed offset
apij POST /api/v1/slots/A2/erase '{"all": true}'
expect_status 202
JA=$(jqr .id)
wait_api "/api/v1/jobs/$JA" '.state == "passed"' 90
api GET /api/v1/boards/24:6f:28:00:00:02
expect_jq '.online_state == "erased"'
api GET "/api/v1/jobs?kind=erase"
expect_jq '.jobs | length == 2'
api GET "/api/v1/jobs?board=24:6f:28:00:00:02&state=passed&limit=2"
expect_jq '.jobs | length == 2 and .[0].id > .[1].id'
api POST /api/v1/slots/A2/reset
expect_error 401 unauthorized
grep -qi '^www-authenticate: bearer' "$WORK/resp.headers" || fail "401 without WWW-Authenticate"
api GET /api/v1/slots/A2/reset
expect_error 405 method_not_allowed

# --- attach and detach ----------------------------------------------------------------------------
start_sim esp32 --link-speed 0 --mac 24:6f:28:00:00:03
S3=$SIM_DIR
apij POST /api/v1/ports "{\"uri\": \"$S3/tty\", \"label\": \"B1\"}"
expect_status 201
expect_jq '.id == "B1" and .present'
wait_api /api/v1/slots/B1 '.phase == "awaiting_network"' 60
apij POST /api/v1/ports '{"label": "B2"}'
expect_error 422 validation_failed uri
apij POST /api/v1/ports "{\"uri\": \"$S1/tty\", \"label\": \"A2\"}"
expect_error 409 exists label
apit DELETE /api/v1/ports/B1
expect_status 200
expect_jq '.present == false and .phase == "empty"'
apit DELETE /api/v1/ports/B1
expect_error 409 slot_empty
apit DELETE /api/v1/ports/nope
expect_error 404 not_found
apit POST /api/v1/slots/B1/info -H 'Content-Type: application/json'
expect_error 409 slot_empty slot

# --- records, CSV, counters, metrics ------------------------------------------------------------------
api GET "/api/v1/records?result=passed&chip=ESP32"
expect_status 200
expect_jq '(.records | length) >= 6 and ([.records[].state] | all(. == "passed"))'
api GET "/api/v1/records?firmware=demo@2.0.0"
expect_jq '.records | length == 1'
api GET "/api/v1/records?mac=24:6f:28:00:00:01&result=cancelled"
expect_jq '.records | length == 1 and .[0].id == '"$JOB3"
api GET "/api/v1/records?chip=ESP8266"
expect_jq '.records == []'
api GET "/api/v1/records?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z"
expect_jq '.records == []'
api GET "/api/v1/records?since=yesterday"
expect_error 400 bad_request since
api GET "/api/v1/records?result=great"
expect_error 400 bad_request result
api GET "/api/v1/records?format=csv&firmware=demo@2.0.0"
expect_status 200
grep -qi '^content-type: text/csv' "$WORK/resp.headers" || fail "CSV without text/csv"
[ "$(printf '%s' "$RESP" | tr -d '\r' | wc -l)" = 1 ] || fail "CSV: expected header + 1 row: $RESP"
printf '%s' "$RESP" | head -n1 | grepq '^id,kind,state' || fail "CSV header: $RESP"
printf '%s' "$RESP" | grepq "^$JOB2,flash,passed" || fail "CSV row for job $JOB2 missing: $RESP"
api GET "/api/v1/records?format=csv"
[ "$(printf '%s' "$RESP" | tr -d '\r' | grep -c '^[0-9]')" -ge 9 ] || fail "CSV: too few rows: $RESP"

api GET /api/v1/counters
expect_status 200
expect_jq '.flashed_today >= 4 and .passed >= 4 and .by_state.cancelled >= 1 and .boards_per_hour >= 2'
expect_jq '(.mean_flash_seconds | length) >= 2 and .slots.total == 3'

api GET /metrics
expect_status 200
grep -q '^espstation_jobs_total{kind="flash",result="passed"} [1-9]' "$WORK/resp" || fail "metrics: $RESP"
grep -q '^espstation_flash_bytes_total [1-9]' "$WORK/resp" || fail "metrics bytes: $RESP"
grep -q '^espstation_flash_duration_seconds_count [1-9]' "$WORK/resp" || fail "metrics histogram: $RESP"
grep -q '^espstation_boards_seen 3' "$WORK/resp" || fail "metrics boards: $RESP"

stop_daemon
done_ok

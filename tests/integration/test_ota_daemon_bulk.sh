#!/usr/bin/env bash
# test_ota_daemon_bulk: bulk updates over REST. 20 network-only virtual ESP32
# boards (esp_netdev) enrol themselves by check-in; 2 already run the target and
# are skipped; 8 report an MD5 error at the end of every ArduinoOTA push. An
# espota bulk with concurrency 4, no retries and max_failure_rate 0.2 stops once
# more than 20 % of the 20 boards (5) failed: boards not started by then stay
# pending, the running ones finish (and may fail too); progress and per-board results are visible
# in GET /api/v1/bulk/{id}, in the jobs and in the event stream journal
# (bulk.started / bulk.board / bulk.stopped / bulk.finished). A pull bulk pins
# the target of healthy boards and passes when their next check-in reports it.
# Network-only boards send the profile's checkin_auth with their check-ins
# (ota_daemon_lib.sh): that confirms their addresses, and pushes go only there.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw2" demo 2.0.0 esp32 50000 41
import_fw "$WORK/fw2"
fw_set "$WORK/fw3" demo 3.0.0 esp32 50000 42
import_fw "$WORK/fw3"
OTA_PORT=$(free_port)
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"fleet": {"ota_firmware": {"esp32": "demo@1.0.0"}, $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"

for i in $(seq 1 20); do
    mac=$(printf '24:6f:28:00:0e:%02x' "$i")
    args=(--chip esp32 --mac "$mac" --bind "$TNET.$((40 + i))" --ota-port 3232 --version 1.0.0
        --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 400)
    case $i in
    1 | 2) args+=(--version 2.0.0) ;;
    4 | 6 | 8 | 10 | 12 | 14 | 16 | 18) args+=(--fault error-line) ;;
    esac
    start_netdev "$WORK/nd$i" "${args[@]}"
done
wait_sql "SELECT count(*) FROM boards WHERE online_state = 'online';" 20 30

apij POST /api/v1/bulk '{"select": {"chip": "ESP32", "profile": "fleet"}, "firmware": "demo@2.0.0"}'
expect_error 422 validation_failed select
apij POST /api/v1/bulk '{"select": {"chip": "ESP32"}, "firmware": "demo@9.9.9"}'
expect_error 404 not_found firmware
apij POST /api/v1/bulk '{"select": {"chip": "ESP32"}, "firmware": "demo@2.0.0", "max_failure_rate": 2}'
expect_error 422 validation_failed max_failure_rate

apij POST /api/v1/bulk '{"select": {"chip": "ESP32"}, "firmware": "demo@2.0.0", "method": "espota",
  "concurrency": 4, "retries": 0, "max_failure_rate": 0.2}'
expect_status 202
BID=$(jqr .id)
expect_jq '.state == "running" and .counts.total == 20 and .counts.skipped == 2'
wait_api "/api/v1/bulk/$BID" '.state == "stopped" and .counts.running == 0' 120
api GET "/api/v1/bulk/$BID"
log "bulk: $(jq -c .counts <<<"$RESP")"
# 5 failures stop it; up to 3 boards still running then may fail as well
expect_jq '.counts.failed >= 5 and .counts.failed <= 8 and .counts.pending > 0 and .counts.skipped == 2'
expect_jq '.counts.passed + .counts.failed + .counts.pending + .counts.skipped == 20'
expect_jq '.reason | test("5 of 20 boards failed")'
expect_jq '[.boards[] | select(.state == "failed") | .error | test("MD5|checksum")] | all'
expect_jq '[.boards[] | select(.state == "passed" or .state == "failed") | .job_id] | all(. != null)'
passed=$(jqr '.counts.passed')
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push' AND state = 'passed';")" = "$passed" ] ||
    fail "passed jobs do not match the bulk counts"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push' AND state = 'failed';")" = "$(jqr .counts.failed)" ] ||
    fail "failed jobs do not match the bulk counts"
for k in bulk.started bulk.stopped bulk.finished; do
    [ "$(db "SELECT count(*) FROM events WHERE kind = '$k';")" = 1 ] || fail "no single $k event"
done
[ "$(db "SELECT count(*) FROM events WHERE kind = 'bulk.board';")" -ge 5 ] || fail "bulk.board events"
api GET /api/v1/bulk
expect_jq '.bulks | length == 1'

# a pull bulk over three healthy boards
apij POST /api/v1/bulk '{"select": {"macs": ["24:6f:28:00:0e:03", "24:6f:28:00:0e:05", "24:6f:28:00:0e:07"]},
  "firmware": "demo@3.0.0", "method": "pull", "concurrency": 2, "timeout_s": 30}'
expect_status 202
B2=$(jqr .id)
wait_api "/api/v1/bulk/$B2" '.state == "passed" and .counts.passed == 3' 60
for i in 3 5 7; do
    [ "$(cat "$WORK/nd$i/version")" = 3.0.0 ] || fail "board $i does not run 3.0.0"
done
apij POST "/api/v1/bulk/$B2/cancel" ''
expect_status 202

stop_daemon
integrity_ok
done_ok

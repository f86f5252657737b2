#!/usr/bin/env bash
# test_ota_daemon_push: ArduinoOTA push jobs through the REST API. Two virtual
# ESP32 boards are flashed over serial by the daemon; the boot check captures
# their IP, so they are push-able without any check-in. POST
# /api/v1/boards/{mac}/ota pushes a new firmware with espota without and with a
# password (the job is 'ota-push', passed, the record shows the new version and
# the board's virtual flash holds the new app). A wrong password, a silent
# device and a device that stalls mid-transfer each end in a failed job with a
# clear message and advice in the record. Bad requests are answered 4xx.
# Network-only boards send the profile's checkin_auth with their check-ins
# (ota_daemon_lib.sh): that confirms their addresses, and pushes go only there.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

M1=24:6f:28:00:0c:01
M2=24:6f:28:00:0c:02
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 21 boot
import_fw "$WORK/fw1"
fw_set "$WORK/fw2" demo 2.0.0 esp32 90000 22
import_fw "$WORK/fw2"

OTA_PORT=$(free_port)
start_sim esp32 --mac "$M1" --net-bind $TNET.11
S1=$SIM_DIR
start_sim esp32 --mac "$M2" --net-bind $TNET.12 --ota-password s3cret --ota-auth md5
S2=$SIM_DIR
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S2/tty", "label": "A2"}],
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}, "baud": 460800, "retries": 0,
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}, $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"
wait_sql "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed';" 2 120
[ "$(board_col "$M1" ip)" = $TNET.11 ] || fail "boot check did not capture the IP"
# the captured IP puts the board online (no check-in here): record, slot and event
for m in "$M1" "$M2"; do
    [ "$(board_col "$m" online_state)" = online ] || fail "$m: boot-check IP did not make it online"
done
api GET /api/v1/slots/A1
expect_jq '.phase == "online"'
api GET /api/v1/slots/A2
expect_jq '.phase == "online"'
ev=$(db "SELECT count(*) || '|' || min(job_id = (SELECT id FROM jobs WHERE kind = 'flash' AND board_mac = '$M1')) FROM events WHERE kind = 'board.online' AND board_mac = '$M1' AND data LIKE '%\"source\":\"boot-check\"%' AND data LIKE '%\"ip\":\"$TNET.11\"%';")
[ "$ev" = "1|1" ] || fail "board.online (boot-check) event for $M1: $ev"
[ "$(db "SELECT count(*) FROM board_ota WHERE mac = '$M1';")" = 0 ] || fail "$M1 checked in (the test wants none)"
wait_file_log 'net: persona up' "$S1/sim.log" 10
wait_file_log 'net: persona up' "$S2/sim.log" 10
wait_file_log ' up: ' "$S2/net/netdev.log" 10

# --- request validation --------------------------------------------------------------
api POST "/api/v1/boards/$M1/ota" -H 'Content-Type: application/json' --data '{}'
expect_status 401
apij POST "/api/v1/boards/$M1/ota" '{"method": "carrier-pigeon"}'
expect_error 422 validation_failed method
apij POST "/api/v1/boards/$M1/ota" '{"firmware": "nope@9"}'
expect_error 404 not_found firmware
apij POST "/api/v1/boards/24:6f:28:99:99:99/ota" '{"firmware": "demo@2.0.0"}'
expect_error 404 not_found mac
apij POST "/api/v1/boards/$M1/ota" '{"firmware": "demo@2.0.0", "colour": 1}'
expect_error 422 validation_failed colour
apij POST "/api/v1/boards/$M1/ota" '{"method": "tcp", "firmware": "demo@2.0.0"}'
expect_error 422 validation_failed firmware
jqr .error.message | grepq 'two app regions' || fail "tcp message: $RESP"

# --- espota without a password -------------------------------------------------------
apij POST "/api/v1/boards/$M1/ota" '{"method": "espota", "firmware": "demo@2.0.0"}'
expect_status 202
J1=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J1;" passed 60
[ "$(db "SELECT kind || ' ' || firmware || ' ' || bytes FROM jobs WHERE id = $J1;")" = \
    "ota-push demo@2.0.0 $(stat -c %s "$WORK/fw2/app.bin")" ] || fail "push job record"
[ "$(board_col "$M1" running_version)" = 2.0.0 ] || fail "running_version after push"
[ "$(board_col "$M1" online_state)" = online ] || fail "a pushed board is online"
api GET /api/v1/slots/A1
expect_jq '.phase == "online"'
flash_region_equals "$S1" 0x10000 "$WORK/fw2/app.bin"
grep -q 'ota: applied .* version now 2.0.0' "$S1/net/netdev.log" || fail "netdev did not apply"
api GET "/api/v1/jobs/$J1"
expect_status 200
expect_jq '.kind == "ota-push" and .state == "passed"'

# --- espota with a password (MD5 digest auth) -----------------------------------------
apij POST "/api/v1/boards/$M2/ota" '{"firmware": "demo@2.0.0", "password": "s3cret"}'
expect_status 202
J2=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J2;" passed 60
flash_region_equals "$S2" 0x10000 "$WORK/fw2/app.bin"

# --- a wrong password ---------------------------------------------------------------------
apij POST "/api/v1/boards/$M2/ota" '{"firmware": "demo@1.0.0", "password": "wrong"}'
expect_status 202
J3=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J3;" failed 60
msg=$(db "SELECT error_stage || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $J3;")
[[ $msg == auth\|*wrong\ OTA\ password*\|?* ]] || fail "wrong-password record: $msg"
[ "$(board_col "$M2" running_version)" = 2.0.0 ] || fail "a failed push changed the version"

# --- a silent device (no answer to the invitation) ---------------------------------------
start_netdev "$WORK/silent" --chip esp32 --mac 24:6f:28:00:0c:03 --bind $TNET.13 --version 1.0.0 \
    --ota-port 3232 --fault no-answer --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 500
wait_sql "SELECT online_state FROM boards WHERE mac = '24:6f:28:00:0c:03';" online 20
apij POST "/api/v1/boards/24:6f:28:00:0c:03/ota" '{"firmware": "demo@2.0.0"}'
expect_status 202
J4=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J4;" failed 60
msg=$(db "SELECT error_stage || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $J4;")
[[ $msg == invite\|no\ answer\ from\ $TNET.13:3232*\|?* ]] || fail "silent-device record: $msg"

# --- a device that stalls mid-transfer ----------------------------------------------------
start_netdev "$WORK/stall" --chip esp32 --mac 24:6f:28:00:0c:04 --bind $TNET.14 --version 1.0.0 \
    --ota-port 3232 --fault stall:30000 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 500
wait_sql "SELECT online_state FROM boards WHERE mac = '24:6f:28:00:0c:04';" online 20
apij POST "/api/v1/boards/24:6f:28:00:0c:04/ota" '{"firmware": "demo@2.0.0"}'
expect_status 202
J5=$(jqr .job_id)
# a second push to the same board while the first runs: 409
apij POST "/api/v1/boards/24:6f:28:00:0c:04/ota" '{"firmware": "demo@2.0.0"}'
expect_error 409 busy
wait_sql "SELECT state FROM jobs WHERE id = $J5;" failed 60
msg=$(db "SELECT error_stage || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $J5;")
[[ $msg == transfer\|*stalled*\|?* ]] || fail "stall record: $msg"
[ "$(db "SELECT bytes > 0 FROM jobs WHERE id = $J5;")" = 1 ] || fail "stalled job recorded no progress"

# --- web-form push to a device's /update (HTTPUpdateServer) --------------------------------
start_netdev "$WORK/web" --chip esp32 --mac 24:6f:28:00:0c:05 --bind $TNET.15 --version 1.0.0 \
    --http-port 0 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 500
WPORT=$(sed -n 's/.*http=\([0-9]*\).*/\1/p' "$WORK/web/ready")
wait_sql "SELECT online_state FROM boards WHERE mac = '24:6f:28:00:0c:05';" online 20
apij POST "/api/v1/boards/24:6f:28:00:0c:05/ota" "{\"method\": \"webform\", \"firmware\": \"demo@2.0.0\", \"port\": $WPORT}"
expect_status 202
J6=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J6;" passed 60
[ "$(cat "$WORK/web/version")" = 2.0.0 ] || fail "web-form push not applied"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'ota.push.finished';")" = 6 ] || fail "push events"

# --- /metrics counts the OTA jobs -------------------------------------------------------
# passed: J1 espota, J2 espota, J6 webform; failed: J3 (auth), J4 (invite), J5 (stall) espota
metric() { # metric NAME{LABELS}: its value in $WORK/metrics, "" when absent
    awk -v k="$1" '$1 == k { print $2 }' "$WORK/metrics"
}
# (the devices log a check-in after the daemon answered it: read their logs first)
ndev=$(cat "$WORK"/silent/netdev.log "$WORK"/stall/netdev.log "$WORK"/web/netdev.log | grep -c 'checkin: status=')
api GET /metrics
expect_status 200
printf '%s\n' "$RESP" >"$WORK/metrics"
APP=$(stat -c %s "$WORK/fw2/app.bin")
for kv in 'espstation_jobs_total{kind="ota-push",result="passed"} 3' \
    'espstation_jobs_total{kind="ota-push",result="failed"} 3' \
    'espstation_jobs_total{kind="flash",result="passed"} 2' \
    'espstation_ota_pushes_total{method="espota",result="passed"} 2' \
    'espstation_ota_pushes_total{method="espota",result="failed"} 3' \
    'espstation_ota_pushes_total{method="webform",result="passed"} 1'; do
    [ "$(metric "${kv% *}")" = "${kv##* }" ] || fail "metrics: want $kv, got '$(metric "${kv% *}")'"
done
# pushed bytes: three full images plus what the failed ones sent before failing
J5B=$(db "SELECT sum(bytes) FROM jobs WHERE id IN ($J3, $J4, $J5);")
[ "$(metric 'espstation_ota_bytes_total{direction="pushed"}')" = $((3 * APP + J5B)) ] ||
    fail "pushed bytes: $(metric 'espstation_ota_bytes_total{direction="pushed"}') want $((3 * APP + J5B))"
# check-ins: the netdevs' check-ins were answered 304 (known, on target) or 200
n304=$(metric 'espstation_ota_checkins_total{answer="304"}')
[ "${n304:-0}" -ge 3 ] || fail "checkins_total 304: '$n304'"
total=$(awk '$1 ~ /^espstation_ota_checkins_total\{/ { n += $2 } END { print n + 0 }' "$WORK/metrics")
[ "$total" -ge "$ndev" ] || fail "checkins_total $total < $ndev check-ins the devices logged"

stop_daemon
integrity_ok
done_ok

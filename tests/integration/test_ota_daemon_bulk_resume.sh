#!/usr/bin/env bash
# test_ota_daemon_bulk_resume: a push bulk survives a crash. Six network-only
# virtual ESP32 boards (esp_netdev) enrol by check-in; boards 1-5 are put in
# group line-a and board 6 in line-b through PUT /api/v1/boards/{mac}. Boards
# 2, 3 and 4 stall every ArduinoOTA transfer after 20000 bytes. An espota bulk
# selected by group line-a (concurrency 2, retries 1) runs until two stalled
# boards are mid-transfer (so the third is still pending); espstationd is then
# killed with SIGKILL. The stalled boards are restarted without the fault and
# espstationd is restarted on the same data directory: it resumes the bulk
# (log line, one bulk.resumed event), puts the two interrupted boards back to
# pending (their jobs are "interrupted", the attempt counted), and the bulk
# completes with all five boards passed and
# running 2.0.0, board 6 untouched. After a clean restart the finished bulk is
# still listed and readable, and is not resumed again.
# Network-only boards send the profile's checkin_auth with their check-ins
# (ota_daemon_lib.sh): that confirms their addresses, and pushes go only there.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw2" demo 2.0.0 esp32 60000 61
import_fw "$WORK/fw2"
OTA_PORT=$(free_port)
TOKEN=resume-token
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"fleet": {$CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"

declare -A ND_PID
netdev_args() { # netdev_args I: the board's esp_netdev arguments (no fault)
    echo --chip esp32 --mac "24:6f:28:00:0d:0$1" --bind "$TNET.$((110 + $1))" --ota-port 3232 \
        --version 1.0.0 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 400
}
for i in 1 2 3 4 5 6; do
    # shellcheck disable=SC2046
    case $i in
    2 | 3 | 4) start_netdev "$WORK/nd$i" $(netdev_args "$i") --fault stall:20000 ;;
    *) start_netdev "$WORK/nd$i" $(netdev_args "$i") ;;
    esac
    ND_PID[$i]=$NETDEV_PID
done
wait_sql "SELECT count(*) FROM boards WHERE online_state = 'online';" 6 30
for i in 1 2 3 4 5; do
    apij PUT "/api/v1/boards/24:6f:28:00:0d:0$i" '{"groups": ["line-a"], "notes": "resume test"}'
    expect_status 200
done
apij PUT /api/v1/boards/24:6f:28:00:0d:06 '{"groups": ["line-b"]}'
expect_status 200

apij POST /api/v1/bulk '{"select": {"group": "line-a"}, "firmware": "demo@2.0.0", "method": "espota",
  "concurrency": 2, "retries": 1, "max_failure_rate": 0.5, "password": "not-needed"}'
expect_status 202
BID=$(jqr .id)
expect_jq '.counts.total == 5 and .counts.skipped == 0'
expect_jq '[.boards[].mac] | index("24:6f:28:00:0d:06") == null'

# two stalled boards mid-transfer (the concurrency limit), then a crash
deadline=$((SECONDS + 30))
while [ "$(grep -l 'stalling at' "$WORK"/nd[234]/netdev.log 2>/dev/null | wc -l)" -lt 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "two boards never stalled"
    sleep 0.05
done
[ "$(db "SELECT state FROM bulks WHERE id = $BID;")" = running ] || fail "bulk not running in the store"
STALLED=$(grep -l 'stalling at' "$WORK"/nd[234]/netdev.log | sed -E 's|.*/nd([0-9])/.*|24:6f:28:00:0d:0\1|' | sort | tr '\n' ' ')
[ "$(db "SELECT group_concat(mac, ' ') FROM (SELECT mac FROM bulk_boards WHERE bulk_id = $BID AND state = 'running' ORDER BY mac);") " = \
    "$STALLED" ] || fail "the stalled boards ($STALLED) are not the running ones: \
$(db "SELECT mac, state FROM bulk_boards WHERE bulk_id = $BID;")"
[ "$(db "SELECT count(*) FROM bulk_boards WHERE bulk_id = $BID AND state = 'pending';")" -ge 1 ] ||
    fail "no board left pending"
kill9_daemon
log "espstationd killed mid-bulk: $(db "SELECT state, count(*) FROM bulk_boards WHERE bulk_id = $BID GROUP BY state;" | tr '\n' ' ')"
# the password is not in the database
! grep -qa 'not-needed' "$DATA_DIR"/records.db* || fail "the bulk password was written to the store"

# the stalled boards come back healthy
for i in 2 3 4; do
    kill -TERM "${ND_PID[$i]}"
    wait "${ND_PID[$i]}" 2>/dev/null || true
    rm -f "$WORK/nd$i/ready"
    # shellcheck disable=SC2046
    start_netdev "$WORK/nd$i" $(netdev_args "$i")
done

start_api_daemon "$WORK/station.json"
wait_api "/api/v1/bulk/$BID" '.state == "passed"' 60
wait_log "bulk $BID resumed after a restart: demo@2.0.0 to 5 boards by espota \\(2 requeued" 5
grep -q "bulk $BID: the password given with it is not stored" "$DAEMON_LOG" ||
    fail "no warning about the unstored password"
api GET "/api/v1/bulk/$BID"
log "after resume: $(jq -c .counts <<<"$RESP")"
expect_jq '.counts == {"total": 5, "pending": 0, "running": 0, "passed": 5, "failed": 0, "skipped": 0}'
expect_jq '.ended != null and .reason == null and .select == {"group": "line-a"}'
for mac in $STALLED; do # interrupted once: two attempts
    [ "$(jqr ".boards[] | select(.mac == \"$mac\") | .attempts")" = 2 ] || fail "$mac attempts: $RESP"
done
expect_jq '[.boards[] | .attempts] | add == 7'
expect_jq '[.boards[] | .error] | all(. == null)'
for mac in $STALLED; do
    [ "$(db "SELECT group_concat(state, ' ') FROM (SELECT state FROM jobs WHERE board_mac = '$mac' AND kind = 'ota-push' ORDER BY id);")" = \
        "interrupted passed" ] || fail "board $mac jobs: $(db "SELECT id, state FROM jobs WHERE board_mac = '$mac';")"
    [ "$(jqr ".boards[] | select(.mac == \"$mac\") | .job_id")" = \
        "$(db "SELECT max(id) FROM jobs WHERE board_mac = '$mac';")" ] || fail "board $mac job_id is not its last job"
done
for i in 1 2 3 4 5; do
    [ "$(cat "$WORK/nd$i/version")" = 2.0.0 ] || fail "board $i does not run 2.0.0"
done
[ "$(cat "$WORK/nd6/version")" = 1.0.0 ] || fail "board 6 (group line-b) was updated"
[ "$(db "SELECT count(*) FROM jobs WHERE board_mac = '24:6f:28:00:0d:06' AND kind = 'ota-push';")" = 0 ] ||
    fail "board 6 got a push job"
ev=$(db "SELECT data FROM events WHERE kind = 'bulk.resumed';")
jq -e ".bulk_id == $BID and .requeued == 2" >/dev/null <<<"$ev" || fail "bulk.resumed event: $ev"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'bulk.finished';")" = 1 ] || fail "no single bulk.finished"

# a clean restart: the finished bulk is still there and is not resumed again
stop_daemon
start_api_daemon "$WORK/station.json"
api GET /api/v1/bulk -H "Authorization: Bearer $TOKEN"
expect_status 200
expect_jq ".bulks | length == 1 and .[0].id == $BID and .[0].state == \"passed\" and .[0].counts.passed == 5"
expect_jq '.bulks[0] | has("boards") | not'
api GET "/api/v1/bulk/$BID"
expect_status 200
expect_jq '.state == "passed" and (.boards | length == 5)'
apij POST "/api/v1/bulk/$BID/cancel" ''
expect_status 202
expect_jq '.state == "passed"'
api GET /api/v1/bulk/9999
expect_error 404 not_found bulk
sleep 1.2 # past the first sweep tick, which resumes running bulks
[ "$(db "SELECT count(*) FROM events WHERE kind = 'bulk.resumed';")" = 1 ] || fail "a finished bulk was resumed"
! grep -q "resumed after a restart" "$DAEMON_LOG" || fail "the finished bulk was resumed"

stop_daemon
integrity_ok
done_ok

#!/usr/bin/env bash
# test_ota_daemon_more: daemon-level checks of OTA library features, over real
# sockets with network-only virtual ESP32 boards (esp_netdev, enrolled by
# check-in):
#  - a push bulk selected by MACs with concurrency 2: never more than 2 boards
#    run at once (bulk JSON sampled while it runs; the recorded ota-push jobs'
#    start/end times overlap by exactly 2), all pass;
#  - a bulk with select {"profile": "pa"} takes exactly the boards whose
#    current firmware is the profile's (not the one on another profile's
#    firmware, not the ones never flashed), with concurrency 3 enforced too;
#  - an espota push to a board with PBKDF2 auth (esp_netdev --auth pbkdf2):
#    the right password passes, a wrong one fails at the auth stage;
#  - an HTTP pull of a pinned target, and /metrics counting it (jobs_total
#    ota-pull, pulls_total, bytes served, check-ins answered 200) next to the
#    pushes (pushes_total, bytes pushed, bulk boards);
#  - ota.strict: a request to the update endpoint without the updater's headers
#    gets 403 (and a plain firmware GET too), while the boards' own check-ins
#    are still answered.
# Network-only boards send the profile's checkin_auth with their check-ins
# (ota_daemon_lib.sh): that confirms their addresses, and pushes go only there.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/a1" alpha 1.0.0 esp32 400000 61
import_fw "$WORK/a1"
fw_set "$WORK/a2" alpha 2.0.0 esp32 400000 62
import_fw "$WORK/a2"
fw_set "$WORK/b1" beta 1.0.0 esp32 60000 63
import_fw "$WORK/b1"
A=$(stat -c %s "$WORK/a1/app.bin")
B=$(stat -c %s "$WORK/b1/app.bin")

OTA_PORT=$(free_port)
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"pa": {"firmware": {"esp32": "alpha@1.0.0"}, $CHECKIN_AUTH_JSON},
              "pb": {"firmware": {"esp32": "beta@1.0.0"}}}}
JSON
start_api_daemon "$CFG"

MACS=()
for i in 1 2 3 4 5 6; do
    MACS+=("24:6f:28:00:0f:0$i")
    start_netdev "$WORK/nd$i" --chip esp32 --mac "24:6f:28:00:0f:0$i" --bind "$TNET.$((70 + i))" \
        --ota-port 3232 --version 0.9 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 400
done
P=24:6f:28:00:0f:07 # the PBKDF2 board
start_netdev "$WORK/nd7" --chip esp32 --mac "$P" --bind $TNET.77 --ota-port 3232 --version 0.9 \
    --auth pbkdf2 --password 'pb-s3cret' --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 400
wait_sql "SELECT count(*) FROM boards WHERE online_state = 'online';" 7 30

# bulk_sample BID N: waits for the bulk to end, sampling its JSON (the pushes are fast:
# the samples rarely catch one running), then replays the daemon's own journal (events
# ota.push.started / ota.push.finished of the bulk's jobs, in id order): at most N, and
# exactly N when the bulk has at least N boards, ran at once.
bulk_sample() {
    local bid=$1 n=$2 maxr=0 r deadline=$((SECONDS + 120))
    while :; do
        api GET "/api/v1/bulk/$bid" -H "Authorization: Bearer $TOKEN"
        [ "$HTTP_STATUS" = 200 ] || fail "GET bulk $bid: $HTTP_STATUS"
        r=$(jqr .counts.running)
        [ "$r" -gt "$maxr" ] && maxr=$r
        [ "$(jqr .state)" = running ] || break
        [ $SECONDS -lt $deadline ] || fail "bulk $bid did not end: $RESP"
        sleep 0.05
    done
    [ "$maxr" -le "$n" ] || fail "bulk $bid with concurrency $n had $maxr boards running at once"
    local total journal
    total=$(jqr .counts.total)
    journal=$(db "SELECT kind FROM events WHERE kind IN ('ota.push.started', 'ota.push.finished')
                  AND job_id IN (SELECT job_id FROM bulk_boards WHERE bulk_id = $bid) ORDER BY id;" |
        awk '/started/ { c++; if (c > m) m = c; s++ } /finished/ { c--; f++ } END { print m + 0, s + 0, f + 0 }')
    log "bulk $bid: at most $maxr running in the samples; journal (max started finished): $journal"
    local want=$n
    [ "$total" -lt "$n" ] && want=$total
    [ "$journal" = "$want $total $total" ] ||
        fail "bulk $bid with concurrency $n: journal says $journal, want '$want $total $total'"
}
# push_overlap BID: the largest number of the bulk's ota-push jobs running at one job's start.
push_overlap() {
    db "SELECT max((SELECT count(*) FROM jobs b WHERE b.id IN (SELECT job_id FROM bulk_boards WHERE bulk_id = $1)
                      AND b.started_at <= a.started_at AND b.ended_at > a.started_at))
        FROM jobs a WHERE a.id IN (SELECT job_id FROM bulk_boards WHERE bulk_id = $1);"
}

# --- bulk by MACs, concurrency 2 -----------------------------------------------------------
apij POST /api/v1/bulk "{\"select\": {\"macs\": [\"${MACS[0]}\", \"${MACS[1]}\", \"${MACS[2]}\", \"${MACS[3]}\"]},
  \"firmware\": \"alpha@1.0.0\", \"method\": \"espota\", \"concurrency\": 2, \"retries\": 0}"
expect_status 202
BID1=$(jqr .id)
bulk_sample "$BID1" 2
api GET "/api/v1/bulk/$BID1"
expect_jq '.state == "passed" and .counts.passed == 4 and .counts.total == 4'
[ "$(push_overlap "$BID1")" = 2 ] || fail "bulk $BID1: recorded overlap $(push_overlap "$BID1"), expected 2: $(db "SELECT id, started_at, ended_at FROM jobs WHERE kind = 'ota-push';")"
for i in 1 2 3 4; do
    [ "$(board_col "${MACS[$((i - 1))]}" current_firmware)" = alpha@1.0.0 ] || fail "nd$i not on alpha@1.0.0"
    cmp -s "$WORK/nd$i/ota-1.bin" "$WORK/a1/app.bin" || fail "nd$i did not receive alpha@1.0.0"
done

# --- PBKDF2 espota push (and nd5 onto beta: another profile's firmware) ----------------------
apij POST "/api/v1/boards/$P/ota" '{"firmware": "beta@1.0.0", "password": "pb-s3cret"}'
expect_status 202
JP=$(jqr .job_id)
apij POST "/api/v1/boards/${MACS[4]}/ota" '{"firmware": "beta@1.0.0"}'
expect_status 202
J5=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $JP;" passed 60
grep -q 'ota: authenticated' "$WORK/nd7/netdev.log" || fail "the PBKDF2 board did not authenticate the push"
cmp -s "$WORK/nd7/ota-1.bin" "$WORK/b1/app.bin" || fail "the PBKDF2 board did not receive beta@1.0.0"
[ "$(board_col "$P" running_version)" = 1.0.0 ] || fail "running_version after the PBKDF2 push"
apij POST "/api/v1/boards/$P/ota" '{"firmware": "alpha@1.0.0", "password": "wrong"}'
expect_status 202
JW=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $JW;" failed 60
msg=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE id = $JW;")
[[ $msg == auth\|*wrong\ OTA\ password* ]] || fail "PBKDF2 wrong-password record: $msg"
grep -q 'ota: authentication failed' "$WORK/nd7/netdev.log" || fail "the board did not refuse the wrong password"
wait_sql "SELECT state FROM jobs WHERE id = $J5;" passed 60

# --- bulk by profile, concurrency 3 --------------------------------------------------------
# pa's firmware is alpha: nd1..nd4 (alpha@1.0.0); not nd5/nd7 (beta), not nd6 (never flashed)
apij POST /api/v1/bulk '{"select": {"profile": "pa"}, "firmware": "alpha@2.0.0", "method": "espota",
  "concurrency": 3, "retries": 0}'
expect_status 202
BID2=$(jqr .id)
expect_jq '.select.profile == "pa" and .counts.total == 4'
bulk_sample "$BID2" 3
api GET "/api/v1/bulk/$BID2"
expect_jq '.state == "passed" and .counts.passed == 4'
got=$(jq -r '[.boards[].mac] | sort | join(" ")' <<<"$RESP")
[ "$got" = "${MACS[0]} ${MACS[1]} ${MACS[2]} ${MACS[3]}" ] || fail "profile pa selected: $got"
ov=$(push_overlap "$BID2")
[ "$ov" -ge 2 ] && [ "$ov" -le 3 ] || fail "bulk $BID2: recorded overlap $ov, expected 2..3"
[ "$(board_col "${MACS[4]}" current_firmware)" = beta@1.0.0 ] || fail "nd5 was touched by the pa bulk"
apij POST /api/v1/bulk '{"select": {"profile": "nope"}, "firmware": "alpha@2.0.0"}'
[ "$HTTP_STATUS" = 404 ] || fail "bulk of an unknown profile: $HTTP_STATUS $RESP"

# --- HTTP pull of a pinned target (nd6) --------------------------------------------------------
apij PUT "/api/v1/boards/${MACS[5]}/target" '{"firmware": "beta@1.0.0"}'
expect_status 200
wait_sql "SELECT state || ' ' || bytes FROM jobs WHERE kind = 'ota-pull' AND board_mac = '${MACS[5]}';" "passed $B" 30
wait_sql "SELECT running_version FROM boards WHERE mac = '${MACS[5]}';" 1.0.0 20

# --- /metrics --------------------------------------------------------------------------------
metric() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/metrics"; }
n200=$(grep -c 'checkin: status=200' "$WORK/nd6/netdev.log")
api GET /metrics
expect_status 200
printf '%s\n' "$RESP" >"$WORK/metrics"
# pushes: 4 + 4 (bulks) + nd5 + PBKDF2 passed; the wrong password failed
WB=$(db "SELECT bytes FROM jobs WHERE id = $JW;")
for kv in 'espstation_jobs_total{kind="ota-push",result="passed"} 10' \
    'espstation_jobs_total{kind="ota-push",result="failed"} 1' \
    'espstation_jobs_total{kind="ota-pull",result="passed"} 1' \
    'espstation_ota_pushes_total{method="espota",result="passed"} 10' \
    'espstation_ota_pushes_total{method="espota",result="failed"} 1' \
    'espstation_ota_pulls_total{image="app",result="passed"} 1' \
    "espstation_ota_bytes_total{direction=\"served\"} $B" \
    "espstation_ota_bytes_total{direction=\"pushed\"} $((8 * A + 2 * B + WB))" \
    'espstation_ota_bulk_boards_total{result="passed"} 8'; do
    [ "$(metric "${kv% *}")" = "${kv##* }" ] || fail "metrics: want $kv, got '$(metric "${kv% *}")'"
done
c200=$(metric 'espstation_ota_checkins_total{answer="200"}')
[ "$n200" -ge 1 ] && [ "${c200:-0}" -ge "$n200" ] || fail "check-ins answered 200: metric '$c200', nd6 logged $n200"
[ -z "$(metric 'espstation_ota_checkins_total{answer="403"}')" ] || fail "a 403 before strict mode"

# --- ota.strict: 403 without the updater's headers ------------------------------------------
curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OTA_PORT/ota/update" >"$WORK/code" || fail "curl"
[ "$(cat "$WORK/code")" != 403 ] || fail "403 without strict mode"
stop_daemon
jq '.ota.strict = true' "$CFG" >"$CFG.strict"
start_api_daemon "$CFG.strict"
mark=$(wc -l <"$WORK/nd1/netdev.log")
code=$(curl -sS -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$OTA_PORT/ota/update") || fail "curl"
[ "$code" = 403 ] || fail "strict: a request without the updater's headers got $code"
# a browser-like request with a STA MAC but no updater User-Agent: still 403
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "x-ESP32-STA-MAC: ${MACS[0]^^}" \
    -H 'x-ESP32-version: 2.0.0' "http://127.0.0.1:$OTA_PORT/ota/update") || fail "curl"
[ "$code" = 403 ] || fail "strict: a request without the updater's User-Agent got $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OTA_PORT/ota/fw/beta/1.0.0.bin") || fail "curl"
[ "$code" = 403 ] || fail "strict: a plain firmware GET got $code"
# the real updater (esp_netdev's check-in) is still answered
deadline=$((SECONDS + 10))
until tail -n +"$((mark + 1))" "$WORK/nd1/netdev.log" | grepq 'checkin: status=304'; do
    [ $SECONDS -lt $deadline ] || fail "strict: nd1's check-in not answered 304: $(tail -n 5 "$WORK/nd1/netdev.log")"
    sleep 0.1
done
api GET /metrics
[ "$(awk '$1 == "espstation_ota_checkins_total{answer=\"403\"}" { print $2 }' <<<"$RESP")" = 3 ] ||
    fail "strict: checkins_total 403: $(grep checkins_total <<<"$RESP")"

# --- a push whose worker thread cannot start ---------------------------------------------------
# The job is recorded, then pthread_create fails: the job ends failed and ota.push.finished is
# still posted (the event stream and /metrics count it). A daemon started with a 1 TiB soft
# stack limit gets that as its default thread stack size, which cannot be committed (no other
# thread is started without serial ports), so the push worker's creation fails.
# (With vm.overcommit_memory = 1 the stack would be granted: this part is left out then.)
stop_daemon
if [ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null || echo 0)" = 1 ]; then
    log "vm.overcommit_memory = 1: not checking a push whose worker cannot start"
    integrity_ok
    done_ok
    exit 0
fi
STACK_SOFT=$(ulimit -S -s)
ulimit -S -s 1073741824
start_api_daemon "$CFG"
ulimit -S -s "$STACK_SOFT"
NJ=$(db "SELECT count(*) FROM jobs;")
apij POST "/api/v1/boards/${MACS[0]}/ota" '{"firmware": "alpha@1.0.0"}'
expect_error 500 internal
[[ $(jqr .error.message) == *"cannot start a worker thread"* ]] || fail "push without a worker: $RESP"
JT=$(db "SELECT max(id) FROM jobs;")
[ "$JT" -gt "$NJ" ] || fail "no job recorded for the push whose worker could not start"
row=$(db "SELECT kind || '|' || state || '|' || error_message FROM jobs WHERE id = $JT;")
[ "$row" = "ota-push|failed|cannot start a worker thread" ] || fail "job of the push without a worker: $row"
ev=$(db "SELECT json_extract(data, '$.state') || '|' || json_extract(data, '$.method') || '|' ||
         json_extract(data, '$.error') FROM events WHERE kind = 'ota.push.finished' AND job_id = $JT;")
[ "$ev" = "failed|espota|cannot start a worker thread" ] || fail "ota.push.finished of job $JT: '$ev'"
api GET /metrics
expect_status 200
printf '%s\n' "$RESP" >"$WORK/metrics"
for kv in 'espstation_ota_pushes_total{method="espota",result="failed"} 1' \
    'espstation_jobs_total{kind="ota-push",result="failed"} 1'; do
    [ "$(metric "${kv% *}")" = "${kv##* }" ] || fail "metrics after the worker failure: want $kv, got '$(metric "${kv% *}")'"
done

stop_daemon
integrity_ok
done_ok

#!/usr/bin/env bash
# test_daemon_baud_backoff: link back-off per slot. A1's board sits behind a link
# that garbles host->board bytes above 460800 Bd (esp_sim --fault noisy-above:460800);
# the profile asks for 921600 with retries 0. The job at 921600 fails with link
# errors (on the ESP32 the first frames at 921600 are the stub upload, so stage baud:
# issue 11), the slot learns a 460800 limit (log line, slot.baud_limited event,
# "baud_limit": 460800 in the slot JSON) and the board is retried at once at 460800
# outside the retries budget, which passes and leaves the image in the flash. The
# next job on A1 starts at 460800 (only that CHANGE_BAUDRATE in sim.log), and
# limit outlives a daemon restart (records slot_link: the first job after the
# restart also runs at 460800), and POST /slots/A1/reset-baud clears it, in the
# records too. A2's board has a flash write error
# (not a link error): it fails once, no limit, no retry.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 5

start_sim esp32 --fault noisy-above:460800
NOISY=$SIM_DIR
start_sim esp32 --fault write-error:0x11000 --mac 24:6f:28:00:00:02
WERR=$SIM_DIR
TOKEN=baud-backoff-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ports": [{"uri": "$NOISY/tty", "label": "A1"}, {"uri": "$WERR/tty", "label": "A2"}],
 "profiles": {"fast": {"firmware": {"esp32": "app@1.0"}, "baud": 921600, "retries": 0,
                       "skip_if_same": false}}}
JSON
start_api_daemon "$CFG"

# --- A1: fails at 921600 with link errors, backs off, passes at 460800 -----------------
wait_sql "SELECT count(*) FROM jobs WHERE slot = 'A1' AND state = 'passed'" 1 60
rows=$(db "SELECT state || '|' || coalesce(error_stage, '') || '|' || retries FROM jobs WHERE slot = 'A1' ORDER BY id")
first=$(head -n1 <<<"$rows")
case $first in
failed\|baud\|0 | failed\|write\|0 | failed\|attach\|0 | failed\|erase\|0) ;;
*) fail "first A1 job: expected a link failure after the baud change, got: $rows" ;;
esac
[ "$(wc -l <<<"$rows")" = 2 ] || fail "A1: expected exactly two jobs (failed, passed): $rows"
[ "$(tail -n1 <<<"$rows")" = "passed||0" ] || fail "A1 retry: $rows"
sim_log_has 'fault noisy-above fired' "$NOISY" || fail "noisy-above never fired"
grep -q 'link errors at 921600 baud on slot A1: retrying at 460800; the slot keeps this limit -- check the cable/adapter' \
    "$DAEMON_LOG" || fail "no back-off log line"
[ "$(grep -c 'link errors at' "$DAEMON_LOG")" = 1 ] || fail "one back-off line expected"
# CHANGE_BAUDRATE: first to 921600, then (the retry) to 460800
bauds=$(grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' "$NOISY/sim.log" | sed 's/.*new=//' | tr '\n' ' ')
[ "$bauds" = "921600 460800 " ] || fail "CHANGE_BAUDRATE sequence on A1: '$bauds'"
flash_region_equals "$NOISY" 0x10000 "$FW/app.bin"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'slot.baud_limited' AND slot = 'A1'")" = 1 ] ||
    fail "slot.baud_limited event missing"
ev=$(db "SELECT data FROM events WHERE kind = 'slot.baud_limited' AND slot = 'A1'")
[ "$(jq -c '[.failed_baud, .baud_limit]' <<<"$ev")" = '[921600,460800]' ] || fail "event data: $ev"
api GET /api/v1/slots/A1
expect_status 200
expect_jq '.baud_limit == 460800'
expect_jq '.failures == 0 and .flagged == false'

# --- A2: a flash write error is not a link error: one failure, no limit --------------
wait_sql "SELECT state || '|' || error_stage FROM jobs WHERE slot = 'A2'" "failed|write" 60
sleep 0.5
[ "$(db "SELECT count(*) FROM jobs WHERE slot = 'A2'")" = 1 ] || fail "A2 was retried"
api GET /api/v1/slots/A2
expect_jq '.baud_limit == null'
[ "$(db "SELECT count(*) FROM events WHERE kind = 'slot.baud_limited' AND slot = 'A2'")" = 0 ] ||
    fail "A2 learnt a limit from a write error"
bauds=$(grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' "$WERR/sim.log" | sed 's/.*new=//' | tr '\n' ' ')
[ "$bauds" = "921600 " ] || fail "CHANGE_BAUDRATE sequence on A2: '$bauds'"

# --- the next job on A1 runs at the slot's limit ---------------------------------------
n0=$(wc -l <"$NOISY/sim.log")
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202 "reflash"
job=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $job" passed 60
bauds=$(tail -n +"$((n0 + 1))" "$NOISY/sim.log" | grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' |
    sed 's/.*new=//' | tr '\n' ' ')
[ "$bauds" = "460800 " ] || fail "next job on A1: CHANGE_BAUDRATE '$bauds', expected 460800 only"
flash_region_equals "$NOISY" 0x10000 "$FW/app.bin"

# --- the limit outlives a restart -------------------------------------------------------
stop_daemon
[ "$(db "SELECT baud_limit FROM slot_link WHERE slot_key = 'uri:$NOISY/tty'")" = 460800 ] ||
    fail "limit not in the records: $(db "SELECT * FROM slot_link")"
[ "$(db "SELECT count(*) FROM slot_link")" = 1 ] || fail "A2 has a stored limit"
n0=$(wc -l <"$NOISY/sim.log")
done_before=$(db "SELECT count(*) FROM jobs WHERE slot = 'A1' AND state = 'passed'")
start_api_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE slot = 'A1' AND state = 'passed'" $((done_before + 1)) 60
bauds=$(tail -n +"$((n0 + 1))" "$NOISY/sim.log" | grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' |
    sed 's/.*new=//' | tr '\n' ' ')
[ "$bauds" = "460800 " ] || fail "first job after the restart: CHANGE_BAUDRATE '$bauds'"
grep -q 'baud limited to 460800 (learnt from link errors earlier' "$DAEMON_LOG" ||
    fail "restart did not log the stored limit"
api GET /api/v1/slots/A1
expect_jq '.baud_limit == 460800'

# --- reset-baud clears the limit --------------------------------------------------------
api POST /api/v1/slots/A1/reset-baud
expect_status 401 "reset-baud without a token"
apij POST /api/v1/slots/A1/reset-baud '{}'
expect_status 200 "reset-baud"
expect_jq '.baud_limit == null'
api GET /api/v1/slots/A1
expect_jq '.baud_limit == null'
[ "$(db "SELECT count(*) FROM events WHERE kind = 'slot.baud_limit_cleared' AND slot = 'A1'")" = 1 ] ||
    fail "slot.baud_limit_cleared event missing"
grep -q 'baud limit 460800 cleared' "$DAEMON_LOG" || fail "clearing not logged"
apij POST /api/v1/slots/A9/reset-baud '{}'
expect_status 404 "reset-baud on an unknown slot"
stop_daemon
[ "$(db "SELECT count(*) FROM slot_link")" = 0 ] || fail "reset-baud left the stored limit"
done_ok

#!/usr/bin/env bash
# test_daemon_serial: a profile's serial numbers on one station (SQLite records), and
# "{serial}" in the boot check. The format is "tick %u" on purpose: esp_sim's app prints
# "app: esp_sim ESP32 app running, tick N" once a second, so a boot check
# "app running, {serial}$" passes only when the board's own serial was put into the
# pattern (board 1 waits for tick 1, board 2 for tick 2):
#  - A1 and A2 get numbers 1 and 2, each boot check matched the tick of its own number
#    (the job log), the board's "serial" in GET /api/v1/boards/{mac}, the profile's in
#    GET /api/v1/profiles/line;
#  - a forced re-flash of A1 keeps its number and passes the same boot check;
#  - with "start": 50, A3 gets 50 and its boot check fails (tick 50 is 50 s away), which
#    a pattern without its serial would have passed;
#  - a bad format is refused by the config with its key path.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 9
M1=24:6f:28:00:5e:01
M2=24:6f:28:00:5e:02
M3=24:6f:28:00:5e:03
start_sim esp32 --mac $M1
S1=$SIM_DIR
start_sim esp32 --mac $M2
S2=$SIM_DIR
start_sim esp32 --mac $M3
S3=$SIM_DIR
TOKEN=serial-token
profile() { # START TIMEOUT_MS
    cat <<JSON
{"firmware": {"esp32": "app@1.0"}, "retries": 0,
 "serial": {"format": "tick %u", "start": $1},
 "boot_check": {"pattern": "app running, {serial}\$", "timeout_ms": $2}}
JSON
}
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S2/tty", "label": "A2"}],
 "profiles": {"line": $(profile 1 30000)}}
JSON
# A bad format is refused before anything starts.
sed 's/"tick %u"/"tick %s"/' "$CFG" >"$WORK/bad.json"
rc=0
timeout 30 "$ESPSTATIOND" --config "$WORK/bad.json" --data-dir "$WORK/bad-data" \
    --stub-dir "$STUB_DIR" --no-udev >"$WORK/bad.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "bad serial format accepted (rc $rc)"
grepq 'profiles.line.serial.format: the conversion at 5 must be %u' "$WORK/bad.log" ||
    fail "bad format message: $(cat "$WORK/bad.log")"

start_api_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE slot IN ('A1', 'A2') AND state = 'passed'" 2 90
num_of() { db "SELECT number FROM serials WHERE profile = 'line' AND mac = '$1'"; }
N1=$(num_of $M1)
N2=$(num_of $M2)
[ "$(printf '%s\n' "$N1" "$N2" | sort | tr '\n' ' ')" = "1 2 " ] || fail "numbers: A1 '$N1' A2 '$N2'"
for m in $M1 $M2; do
    n=$(num_of $m)
    j=$(db "SELECT id FROM jobs WHERE board_mac = '$m' AND state = 'passed'")
    [ "$(db "SELECT count(*) FROM job_log WHERE job_id = $j AND line LIKE 'boot check matched: % app running, tick $n'")" = 1 ] ||
        fail "$m (serial tick $n): boot check lines: $(db "SELECT line FROM job_log WHERE job_id = $j AND line LIKE 'boot check%'")"
    [ "$(db "SELECT count(*) FROM job_log WHERE job_id = $j AND line = 'serial tick $n (number $n of profile line) given to this board'")" = 1 ] ||
        fail "$m: no serial line in the job log"
    [ "$(db "SELECT text || '|' || job_id FROM serials WHERE mac = '$m'")" = "tick $n|$j" ] || fail "$m: serial row"
done
api GET "/api/v1/boards/$M1"
expect_status 200
expect_jq ".serial == {\"profile\": \"line\", \"number\": $N1, \"text\": \"tick $N1\", \"job_id\": $(db "SELECT job_id FROM serials WHERE mac = '$M1'"), \"station\": .serial.station, \"assigned\": .serial.assigned} and (.serial.assigned | type) == \"string\""
api GET /api/v1/profiles/line
expect_jq '.serial == {"format": "tick %u", "start": 1}'

# --- a forced re-flash keeps the number ----------------------------------------------------
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202 "reflash A1"
JR=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JR" passed 90
[ "$(num_of $M1)" = "$N1" ] || fail "re-flash changed A1's number"
[ "$(db "SELECT count(*) FROM serials")" = 2 ] || fail "re-flash took a number"
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = $JR AND line = 'serial tick $N1 (number $N1 of profile line) again (this board''s)'")" = 1 ] ||
    fail "re-flash job log: $(db "SELECT line FROM job_log WHERE job_id = $JR AND line LIKE 'serial%'")"

# --- start 50: A3 gets 50, and its boot check waits for tick 50 ---------------------------
apij PUT /api/v1/profiles/line "$(profile 50 3000)"
expect_status 200 "profile start 50"
apij POST /api/v1/ports "{\"uri\": \"$S3/tty\", \"label\": \"A3\"}"
expect_status 201 "attach A3"
wait_sql "SELECT state FROM jobs WHERE slot = 'A3'" failed 90
[ "$(num_of $M3)" = 50 ] || fail "A3 number: $(num_of $M3)"
row=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE slot = 'A3'")
[[ $row == "finish|boot check: pattern not seen within 3000 ms; last console line: "*"app running, tick "* ]] ||
    fail "A3: $row"
stop_daemon
done_ok

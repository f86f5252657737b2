#!/usr/bin/env bash
# test_daemon_faults: a board whose flash fails to program at one address
# fails at stage write with the device's status recorded; the profile's
# retries run it twice more (retries 0, 1, 2 in the records), then the slot is
# flagged (three failures in a row) and left alone. A chip family without
# firmware in the profile is identified, recorded and skipped with advice.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image "$((256 * 1024))" "$FW/app.bin" 2
cat >"$FW/manifest.json" <<JSON
{"name": "bulk", "version": "1", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
JSON
import_fw "$FW"

start_sim esp32 --fault write-error:0x30000
BAD=$SIM_DIR
start_sim esp32c3
C3=$SIM_DIR
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$BAD/tty", "label": "B1"}, {"uri": "$C3/tty", "label": "B2"}],
 "profiles": {"line": {"firmware": {"esp32": "bulk@1"}, "retries": 2}}}
JSON
start_daemon "$CFG" --retry-backoff-ms 200

wait_sql "SELECT count(*) FROM jobs WHERE slot = 'B1' AND state = 'failed'" 3 90
wait_sql "SELECT count(*) FROM events WHERE kind = 'slot.flagged' AND slot = 'B1'" 1 10
# No fourth attempt.
sleep 1.5
[ "$(db "SELECT count(*) FROM jobs WHERE slot = 'B1'")" = 3 ] ||
    fail "expected exactly 3 jobs on B1: $(db "SELECT id, state FROM jobs WHERE slot = 'B1'")"
rows=$(db "SELECT retries, error_stage, device_status IS NOT NULL, error_address IS NOT NULL, error_message <> '' FROM jobs WHERE slot = 'B1' ORDER BY id")
want=$'0|write|1|1|1\n1|write|1|1|1\n2|write|1|1|1'
[ "$rows" = "$want" ] || fail "failed job records: got
$rows"
status=$(db "SELECT printf('0x%02X', device_status) FROM jobs WHERE slot = 'B1' LIMIT 1")
[ "$status" = 0xC4 ] || fail "device status $status, expected the stub's 0xC4 (flash write error)"
grep -Eq '^<3>\[slot B1 24:6f:28:7a:d8:84\] failed during write: .*retrying' "$DAEMON_LOG" ||
    fail "no board-scoped error line deciding a retry"
grep -q 'slot flagged: 3 failed jobs in a row' "$DAEMON_LOG" || fail "slot flag not logged"
[ "$(grep -c 'failed during write' "$DAEMON_LOG")" = 3 ] || fail "each failure must be logged once"

# The C3 has no firmware in the profile: identified, recorded, skipped with advice.
wait_sql "SELECT state || '|' || error_message FROM jobs WHERE slot = 'B2'" \
    "skipped|no firmware configured for ESP32-C3 in profile line" 30
[ "$(db "SELECT chip FROM boards WHERE mac = '58:cf:79:0a:3c:5e'")" = ESP32-C3 ] ||
    fail "C3 board not recorded"
[ "$(db "SELECT error_advice LIKE '%esp32c3%profiles.line.firmware%' FROM jobs WHERE slot = 'B2'")" = 1 ] ||
    fail "advice missing: $(db "SELECT error_advice FROM jobs WHERE slot = 'B2'")"
stop_daemon 0
integrity_ok
done_ok

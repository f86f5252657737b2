#!/usr/bin/env bash
# test_daemon_baud_stall: a board that stops answering in the middle of a write is a
# board fault, not a cable fault: the slot keeps its baud. The profile flashes at
# 921600 with retries 0. A1's board (no fault) is flashed first; from its sim.log
# the test takes the number of a FLASH_DEFL_DATA command in the middle of the write.
# A second board, B1 (esp_sim --fault stall:N: that command and everything after it
# get no answer until the next reset, as a hung or browned-out chip), is attached:
# its job fails at stage write with a timeout, the station probes the board, finds
# it silent and says so in the job log, and the slot gets no baud limit (no
# slot.baud_limited event, "baud_limit": null, no retry at 460800). A re-flash of
# B1 (the stall is over after the reset) then runs at 921600 again and passes.
# (test_daemon_baud_backoff.sh keeps the other side: garbled data at 921600 does
# lower the limit.)
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

# A 300 kB app (random, so it stays about that large compressed): many 16 KiB blocks.
FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 300000 "$FW/app.bin" 61
cat >"$FW/manifest.json" <<JSON
{"name": "big", "version": "1.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"

start_sim esp32 --mac 24:6f:28:00:00:a1
GOOD=$SIM_DIR
TOKEN=stall-token
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ports": [{"uri": "$GOOD/tty", "label": "A1"}],
 "profiles": {"fast": {"firmware": {"esp32": "big@1.0"}, "baud": 921600, "retries": 0,
                       "skip_if_same": false}}}
JSON
start_api_daemon "$WORK/station.json"
wait_sql "SELECT count(*) FROM jobs WHERE slot = 'A1' AND state = 'passed'" 1 60

# The command number of the middle FLASH_DEFL_DATA of A1's write (the sim counts every
# command it receives in download mode, SYNCs included, in the order of its "cmd" lines).
N=$(grep -o ' cmd [A-Z_]*' "$GOOD/sim.log" | awk '{n++} $2 == "FLASH_DEFL_DATA" {d[++k] = n}
    END {if (k >= 6) print d[int(k / 2)]}')
[ -n "$N" ] || fail "A1's write has too few FLASH_DEFL_DATA blocks: $(grep -c FLASH_DEFL_DATA "$GOOD/sim.log")"
log "B1 will stall at command $N (a FLASH_DEFL_DATA in the middle of the write)"

start_sim esp32 --mac 24:6f:28:00:00:b1 --fault stall:"$N"
STALL=$SIM_DIR
apij POST /api/v1/ports "{\"uri\": \"$STALL/tty\", \"label\": \"B1\"}"
expect_status 201 "attach B1"
wait_sql "SELECT count(*) FROM jobs WHERE slot = 'B1' AND ended_at IS NOT NULL" 1 90
sim_log_has 'fault stall fired' "$STALL" || fail "the stall never fired on B1"
grep -q "fault stall fired (command $N)" "$STALL/sim.log" || fail "stalled at another command"
row=$(db "SELECT state || '|' || coalesce(error_stage, '') || '|' || result_code FROM jobs WHERE slot = 'B1' ORDER BY id LIMIT 1")
case $row in
failed\|write\|-110) ;;
*) fail "B1's job: expected failed at write with a timeout (-110), got: $row" ;;
esac
# The board is the finding: the slot's baud untouched, no retry, said in the job log.
sleep 1 # a back-off retry would start at once; give it the chance to show
[ "$(db "SELECT count(*) FROM events WHERE kind = 'slot.baud_limited'")" = 0 ] ||
    fail "a stalled board lowered the slot's baud: $(db "SELECT slot, data FROM events WHERE kind = 'slot.baud_limited'")"
[ "$(db "SELECT count(*) FROM jobs WHERE slot = 'B1'")" = 1 ] ||
    fail "B1 was retried: $(db "SELECT id, state, error_stage FROM jobs WHERE slot = 'B1'")"
api GET /api/v1/slots/B1
expect_jq '.baud_limit == null'
[ "$(db "SELECT count(*) FROM slot_link")" = 0 ] || fail "a limit was stored: $(db 'SELECT * FROM slot_link')"
! grep -q 'link errors at' "$DAEMON_LOG" || fail "the daemon logged link errors: $(grep 'link errors at' "$DAEMON_LOG")"
id=$(db "SELECT id FROM jobs WHERE slot = 'B1' ORDER BY id LIMIT 1")
api GET "/api/v1/jobs/$id"
expect_status 200
expect_jq '[.log[] | select(.line | test("stopped answering"))] | length >= 1'

# The next job on B1 runs at the profile's 921600 and passes (the board is fine again).
apij POST /api/v1/slots/B1/reflash '{"force": true}'
expect_status 202 "reflash B1"
wait_sql "SELECT count(*) FROM jobs WHERE slot = 'B1' AND state = 'passed'" 1 90
bauds=$(grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' "$STALL/sim.log" | sed 's/.*new=//' | tr '\n' ' ')
[ "$bauds" = "921600 921600 " ] || fail "CHANGE_BAUDRATE sequence on B1: '$bauds'"
flash_region_equals "$STALL" 0x10000 "$FW/app.bin"
stop_daemon
done_ok

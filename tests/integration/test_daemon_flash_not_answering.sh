#!/usr/bin/env bash
# test_daemon_flash_not_answering: a board whose flash chip does not answer (RDID 0xFFFFFF,
# esp_sim --fault flash-dead) fails once at stage attach with "the flash chip does not
# answer (flash ID ffffff)" and the advice in its job record and slot; it is a board fault:
# not retried (the profile allows 2 retries), not taken for a link error (the slot keeps
# its baud, no slot.baud_limited). Before: three attempts failing at stage write with the
# stub's 0xC4 ("FLASH_DEFL_BEGIN failed").
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image "$((64 * 1024))" "$FW/app.bin" 3
cat >"$FW/manifest.json" <<JSON
{"name": "bulk", "version": "1", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
JSON
import_fw "$FW"

start_sim esp32 --fault flash-dead
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$SIM_DIR/tty", "label": "D1"}],
 "profiles": {"line": {"firmware": {"esp32": "bulk@1"}, "retries": 2, "baud": 921600}}}
JSON
start_daemon "$CFG" --retry-backoff-ms 200

wait_sql "SELECT count(*) FROM jobs WHERE slot = 'D1' AND state = 'failed'" 1 60
sleep 1.5 # a retry would have started by now
[ "$(db "SELECT count(*) FROM jobs WHERE slot = 'D1'")" = 1 ] ||
    fail "retried: $(db "SELECT id, state, retries, error_stage, error_message FROM jobs WHERE slot = 'D1'")"
row=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE slot = 'D1'")
case $row in
"attach|the flash chip does not answer (flash ID ffffff)"*) ;;
*) fail "job record: $row" ;;
esac
[ "$(db "SELECT error_advice LIKE '%solder joints%no flash fitted%' FROM jobs WHERE slot = 'D1'")" = 1 ] ||
    fail "advice: $(db "SELECT error_advice FROM jobs WHERE slot = 'D1'")"
[ "$(db "SELECT count(*) FROM events WHERE kind LIKE 'slot.baud%'")" = 0 ] ||
    fail "taken for a link error: $(db "SELECT kind, data FROM events WHERE kind LIKE 'slot.baud%'")"
grep -Eq 'failed during attach: the flash chip does not answer \(flash ID ffffff\).* -- a board fault' \
    "$DAEMON_LOG" || fail "no final error line with the advice in the daemon log"
grep -q 'slot D1.*retrying' "$DAEMON_LOG" && fail "the daemon logged a retry"
sim_log_has 'cmd (FLASH_BEGIN|FLASH_DEFL_BEGIN)' && fail "a write was started on the dead flash"
stop_daemon 0
integrity_ok
done_ok

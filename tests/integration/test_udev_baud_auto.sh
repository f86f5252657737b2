#!/usr/bin/env bash
# test_udev_baud_auto: "baud": "auto" and the per-slot rate ladder past 921600
# (issue 11 item 3), under umockdev. The board on A1 sits behind a mock FT232R
# (0403:6001, "FT232R USB UART"): the bridge table says 3 Mbaud. Its adapter
# only carries 2 Mbaud (esp_sim --adapter-max 2000000: above that every byte is
# garbled both ways). The profile says "baud": "auto", baud_probe_after 2,
# retries 0.
#  1. the first job starts at 3000000, fails with link errors (the stub upload
#     at the raised rate: stage baud), the slot learns 2000000 (slot.baud_limited
#     3000000 -> 2000000, records slot_link) and the board passes at once at
#     2000000 (that passed retry is clean job 1 at the limit);
#  2. a re-plug: the job runs at 2000000 only (clean job 2);
#  3. the next re-plug tries 3000000 once more (log line, CHANGE_BAUDRATE
#     3000000), fails, event slot.baud_probe_failed, the board passes at 2000000
#     and the limit stays (that retry is clean job 1 again);
#  4. the adapter is swapped for a good one (same port, a board without the
#     limit): clean job 2 at 2000000, then the probe at 3000000 passes, the
#     limit is cleared (slot.baud_raised, no slot_link row) and the next job
#     runs at 3000000 straight away.
source "$(dirname "$0")/../umock/udev_lib.sh"

station_setup "" 65536
sed -i 's/"baud": 460800/"baud": "auto", "baud_probe_after": 2, "retries": 0, "skip_if_same": false/' \
    "$UWORK/station.json"
grep -q '"baud": "auto"' "$UWORK/station.json" || udev_fail "profile not rewritten"
P=pci-0000:00:14.0-usb-0:1.1:1.0
MAC=24:6f:28:00:00:31

umock_start "$ESPSTATIOND" --config "$UWORK/station.json" --log-level debug
umock_cmd start
umock_sync
umock_cmd "add b1 esp32 0403:6001 $P --mac $MAC --link-speed 0 --adapter-max 2000000"
umock_sync

# bauds BOARD: the CHANGE_BAUDRATE rates in the board's current sim.log
bauds() { grep -o 'cmd CHANGE_BAUDRATE new=[0-9]*' "$UWORK/$1/sim.log" | sed 's/.*new=//' | tr '\n' ' '; }
passed() { sql "select count(*) from jobs where slot = 'A1' and state = 'passed'"; }
# replug BOARD: unplug and plug in again; waits for the next passed job on A1
replug() {
    local n
    n=$(passed)
    umock_cmd "remove $1"
    umock_cmd "wait 200"
    umock_cmd "add $1"
    umock_sync
    wait_sql "select count(*) from jobs where slot = 'A1' and state = 'passed'" $((n + 1)) 60
}

# --- 1: 3 Mbaud fails, the slot learns 2 Mbaud, the board passes there ----------------
wait_sql "select count(*) from jobs where slot = 'A1' and state = 'passed'" 1 60
rows=$(sql "select state || '|' || coalesce(error_stage, '') from jobs where slot = 'A1' order by id")
[ "$rows" = "$(printf 'failed|baud\npassed|')" ] || udev_fail "first jobs on A1: $rows"
[ "$(bauds b1)" = "3000000 2000000 " ] || udev_fail "CHANGE_BAUDRATE on the first board: '$(bauds b1)'"
assert_grep "$UWORK/b1/sim.log" 'adapter limit: host asked for 3000000 baud, the adapter runs at 2000000' \
    "the adapter limit never bit"
assert_grep "$UWORK/program.log" 'port added: /dev/ttyUSB[0-9]+ \(adapter good to 3000000 baud\)' \
    "the bridge table's rate is not in the port line"
assert_grep "$UWORK/program.log" 'link errors at 3000000 baud on slot A1: retrying at 2000000' \
    "no back-off line"
[ "$(sql "select data from events where kind = 'slot.baud_limited' and slot = 'A1'" |
    jq -c '[.failed_baud, .baud_limit]')" = '[3000000,2000000]' ] || udev_fail "slot.baud_limited event"
[ "$(sql "select baud_limit from slot_link")" = 2000000 ] || udev_fail "limit not kept in the records"
flash_matches b1 || udev_fail "the flash does not hold the firmware"

# --- 2: later jobs start at 2 Mbaud (the passed retry above was clean job 1) -------------
replug b1
[ "$(bauds b1)" = "2000000 " ] || udev_fail "clean job 2: CHANGE_BAUDRATE '$(bauds b1)'"
assert_no_grep "$UWORK/program.log" 'trying [0-9]+ baud again' "probed before two clean jobs"

# --- 3: after two clean jobs one job tries 3 Mbaud again; it fails, 2 Mbaud stays -------
replug b1
[ "$(bauds b1)" = "3000000 2000000 " ] || udev_fail "probe job: CHANGE_BAUDRATE '$(bauds b1)'"
assert_grep "$UWORK/program.log" 'trying 3000000 baud again on slot A1 after 2 clean jobs at 2000000' \
    "no probe line"
assert_grep "$UWORK/program.log" 'link errors at 3000000 baud on slot A1: the step up failed; retrying at 2000000' \
    "no probe-failed line"
[ "$(sql "select data from events where kind = 'slot.baud_probe_failed' and slot = 'A1'" |
    jq -c '[.failed_baud, .baud_limit]')" = '[3000000,2000000]' ] || udev_fail "slot.baud_probe_failed event"
[ "$(sql "select count(*) from events where kind = 'slot.baud_limited'")" = 1 ] ||
    udev_fail "the failed probe was taken for a new limit"
[ "$(sql "select baud_limit from slot_link")" = 2000000 ] || udev_fail "limit changed by the probe"

# --- 4: a good adapter on the same port: the probe passes and the limit goes ------------
umock_cmd "remove b1"
umock_cmd "wait 200"
umock_cmd "add b2 esp32 0403:6001 $P --mac $MAC --link-speed 0"
umock_sync
wait_sql "select count(*) from jobs where slot = 'A1' and state = 'passed'" 4 60
[ "$(bauds b2)" = "2000000 " ] || udev_fail "good adapter, first job: '$(bauds b2)'"
replug b2
[ "$(bauds b2)" = "3000000 " ] || udev_fail "good adapter, probe: '$(bauds b2)'"
assert_grep "$UWORK/program.log" '3000000 baud worked on slot A1: limit cleared' "no raise line"
[ "$(sql "select data from events where kind = 'slot.baud_raised' and slot = 'A1'" |
    jq -c '[.probed_baud, .baud_limit]')" = '[3000000,null]' ] || udev_fail "slot.baud_raised event"
wait_sql "select count(*) from slot_link" 0 5
replug b2
[ "$(bauds b2)" = "3000000 " ] || udev_fail "after the raise: '$(bauds b2)'"
flash_matches b2 || udev_fail "the flash of the second board does not hold the firmware"
[ "$(sql "select count(*) from jobs where slot = 'A1' and state = 'failed'")" = 2 ] ||
    udev_fail "failed jobs: $(sql "select id, state, error_stage, error_message from jobs")"

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
udev_log "PASS"

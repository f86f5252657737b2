#!/usr/bin/env bash
# test_udev_unplug: a board unplugged (remove uevent + port hang-up) in the
# middle of flashing ends its job cleanly ("removed during ...", not
# 'running'), the daemon keeps serving, and the board plugged in again on the
# same slot is flashed to the end.
source "$(dirname "$0")/../umock/udev_lib.sh"

station_setup "" 1048576
P=pci-0000:00:14.0-usb-0
umock_start "$ESPSTATIOND" --config "$UWORK/station.json"
umock_cmd start
umock_sync
umock_cmd "add b1 esp32 10c4:ea60 $P:1.3:1.0 --strict-reset --mac 24:6f:28:00:00:31"
umock_sync
wait_grep "$UWORK/b1/sim.log" 'cmd FLASH_DEFL_DATA seq=2 ' 60
umock_cmd "remove b1"
umock_sync
wait_sql "select state in ('failed','cancelled','interrupted') from jobs where id=1" 1 30
msg=$(sql "select coalesce(error_message,'') || ' ' || coalesce(error_stage,'') from jobs where id=1")
echo "$msg" | grepq -i 'remov\|unplug\|gone' || udev_fail "job 1 does not say the board was removed: '$msg'"
wait_grep "$UWORK/program.log" 'port removed' 10

umock_cmd "add b1"
umock_sync
wait_sql "select state from jobs where board_mac='24:6f:28:00:00:31' order by id desc limit 1" passed 120
flash_matches b1 || udev_fail "board b1 not fully flashed after re-plug"
[ "$(sql "select count(*) from jobs where state='running'")" = 0 ] || udev_fail "a job is still 'running'"
rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc"
udev_log "PASS"

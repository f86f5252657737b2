#!/usr/bin/env bash
# test_udev_kill9: espstationd killed with SIGKILL in the middle of flashing;
# after a restart the interrupted job is marked 'interrupted' (never left
# 'running'), the database passes an integrity check, and the board, still
# plugged in, is found at coldplug and flashed to the end.
source "$(dirname "$0")/../umock/udev_lib.sh"

station_setup "" 1048576
P=pci-0000:00:14.0-usb-0
umock_start "$ESPSTATIOND" --config "$UWORK/station.json"
umock_cmd start
umock_sync
umock_cmd "add b1 esp32 10c4:ea60 $P:1.4:1.0 --strict-reset --mac 24:6f:28:00:00:41"
umock_sync
wait_grep "$UWORK/b1/sim.log" 'cmd FLASH_DEFL_DATA seq=2 ' 60
umock_cmd "signal KILL"
umock_cmd "waitexit 10000"
umock_sync
[ "$(sql 'pragma integrity_check')" = ok ] || udev_fail "records.db corrupt after kill -9"
umock_cmd start
umock_sync
wait_sql "select state from jobs where id=1" interrupted 30
wait_sql "select state from jobs where board_mac='24:6f:28:00:00:41' order by id desc limit 1" passed 120
flash_matches b1 || udev_fail "board not fully flashed after the restart"
assert_grep "$UWORK/program.log" '\(present at start\)' "board not found at coldplug after the restart"
rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc"
udev_log "PASS"

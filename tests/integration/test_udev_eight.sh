#!/usr/bin/env bash
# test_udev_eight: eight boards plugged in at once (one burst of uevents) are
# all flashed in parallel, each record on its own slot A1..A8 with its MAC.
source "$(dirname "$0")/../umock/udev_lib.sh"

station_setup "" 262144
P=pci-0000:00:14.0-usb-0
umock_start "$ESPSTATIOND" --config "$UWORK/station.json"
umock_cmd start
umock_sync
for n in 1 2 3 4 5 6 7 8; do
    umock_cmd "add b$n esp32 10c4:ea60 $P:1.$n:1.0 --strict-reset --mac 24:6f:28:00:01:0$n"
done
umock_sync 60
wait_sql "select count(*) from jobs where state='passed'" 8 180
for n in 1 2 3 4 5 6 7 8; do
    row=$(sql "select slot, current_md5 from boards where mac='24:6f:28:00:01:0$n'")
    [ "$row" = "A$n|$FW_MD5" ] || udev_fail "board $n record: '$row'"
    flash_matches "b$n" || udev_fail "board b$n flash does not hold the image"
    assert_reset_timeline "b$n"
done
# they ran at the same time: every job started before the first one ended
first_end=$(sql "select min(ended_at) from jobs")
last_start=$(sql "select max(started_at) from jobs")
[ "$last_start" -le "$first_end" ] || udev_fail "jobs did not overlap (last start $last_start > first end $first_end)"
rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc"
udev_log "PASS"

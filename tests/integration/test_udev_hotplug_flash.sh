#!/usr/bin/env bash
# test_udev_hotplug_flash: espstationd end to end under umockdev.
#  1. coldplug: a board present before the daemon starts is flashed;
#  2. hotplug: a CP2102 board plugged in while running is seen by the real
#     libudev monitor, opened with libserialport, reset into the bootloader
#     through the modem-line handler (DTR/RTS timeline asserted), flashed by
#     the active profile; the record in SQLite has MAC, chip, firmware, MD5
#     and the board's flash holds the image;
#  3. re-plug: the same board (same flash) plugged in again is not flashed
#     twice (skip_if_same: the job is 'skipped', no FLASH_DATA on the wire).
source "$(dirname "$0")/../umock/udev_lib.sh"

station_setup "" 131072
P=pci-0000:00:14.0-usb-0
umock_start "$ESPSTATIOND" --config "$UWORK/station.json" --log-level debug
umock_cmd "add cold esp32 10c4:ea60 $P:1.1:1.0 --strict-reset --mac 24:6f:28:00:00:01 --link-speed 0"
umock_cmd start
umock_sync
umock_cmd "wait 300"
umock_cmd "add hot esp32 10c4:ea60 $P:1.2:1.0 --strict-reset --mac 24:6f:28:00:00:02 --link-speed 0"
umock_sync

wait_sql "select state from jobs where board_mac='24:6f:28:00:00:01' order by id desc limit 1" passed 60
wait_sql "select state from jobs where board_mac='24:6f:28:00:00:02' order by id desc limit 1" passed 60

for b in cold hot; do
    assert_reset_timeline "$b"
    flash_matches "$b" || udev_fail "flash of board $b does not hold the firmware"
    assert_grep "$UWORK/$b/sim.log" 'reset -> download mode' "board $b never entered download mode"
done
# the record
row=$(sql "select chip, slot, current_firmware, current_md5 from boards where mac='24:6f:28:00:00:02'")
[ "$row" = "ESP32|A2|udevtest@1.0.0|$FW_MD5" ] || udev_fail "board record: got '$row'"
row=$(sql "select chip, slot, current_firmware, current_md5 from boards where mac='24:6f:28:00:00:01'")
[ "$row" = "ESP32|A1|udevtest@1.0.0|$FW_MD5" ] || udev_fail "coldplug board record: got '$row'"
[ "$(sql "select count(*) from jobs where state='passed'")" = 2 ] || udev_fail "expected 2 passed jobs"

# re-plug the hot board: same flash (board dir kept), must be skipped
umock_cmd "remove hot"
umock_cmd "wait 300"
umock_cmd "add hot"
umock_sync
wait_sql "select count(*) from jobs where board_mac='24:6f:28:00:00:02'" 2 30
wait_sql "select state from jobs where board_mac='24:6f:28:00:00:02' order by id desc limit 1" skipped 60
# sim.log now belongs to the re-plugged board's new sim: it was asked for
# MD5s but given no flash data
assert_grep "$UWORK/hot/sim.log" 'cmd SPI_FLASH_MD5' "re-plugged board was not checked"
assert_no_grep "$UWORK/hot/sim.log" 'cmd FLASH_(DEFL_)?(BEGIN|DATA)' "re-plugged board was written again"
assert_reset_timeline hot

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
udev_log "PASS"

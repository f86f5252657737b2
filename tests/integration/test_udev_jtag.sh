#!/usr/bin/env bash
# test_udev_jtag: a USB-Serial/JTAG board (303a:1001, ttyACM) that drops off
# USB and re-enumerates when the hard reset after flashing boots the app
# (harness --jtag-reenumerate-on-reset) stays the same job on the same slot:
# one passed job, the daemon follows the new ttyACM node in the boot check.
source "$(dirname "$0")/../umock/udev_lib.sh"

UMOCK_OPTS=--jtag-reenumerate-on-reset
station_setup ', "boot_check": {"pattern": "esp_sim ([a-z0-9]+) app running", "timeout_ms": 8000, "capture": ["chip"]}' 131072
station_add_c3_set # the board is an ESP32-C3

P=pci-0000:00:14.0-usb-0
MAC=60:55:f9:00:00:41
umock_start "$ESPSTATIOND" --config "$UWORK/station.json" --log-level debug
umock_cmd start
umock_sync
umock_cmd "add j1 esp32c3 303a:1001 $P:1.4:1.0 --strict-reset --mac $MAC --link-speed 0"
umock_sync
wait_sql "select state from jobs where board_mac='$MAC' order by id desc limit 1" passed 90

[ "$(sql "select count(*) from jobs where board_mac='$MAC'")" = 1 ] ||
    udev_fail "expected one job: $(sql "select id, state, error_message from jobs")"
[ "$(sql "select count(*) from jobs")" = 1 ] || udev_fail "a second job was started"
assert_grep "$UWORK/umock.log" 'ok auto-reenumerate j1 /dev/ttyACM[0-9]+ -> /dev/ttyACM[0-9]+' \
    "the harness never re-enumerated the board"
line=$(grep -E 'ok auto-reenumerate j1' "$UWORK/umock.log" | head -1)
old=$(echo "$line" | sed -E 's/.*j1 (\/dev\/ttyACM[0-9]+) -> .*/\1/')
new=$(echo "$line" | sed -E 's/.* -> (\/dev\/ttyACM[0-9]+).*/\1/')
[ "$old" != "$new" ] || udev_fail "re-enumerated under the same name $old"
assert_grep "$UWORK/program.log" 'port gone during .*USB-Serial/JTAG' "no grace message"
assert_grep "$UWORK/program.log" "port back as ${new}: the job continues" "no re-attach message"
assert_grep "$UWORK/program.log" 'boot check matched' "boot check did not match after re-attach"
row=$(sql "select slot, current_firmware, current_md5 from boards where mac='$MAC'")
[ "$row" = "A4|udevc3@1.0.0|$FW_MD5" ] || udev_fail "board record: got '$row'"
[ "$(sql "select slot from jobs where board_mac='$MAC'")" = A4 ] || udev_fail "job slot is not A4"
flash_matches j1 || udev_fail "flash of j1 does not hold the firmware"

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
udev_log "PASS"

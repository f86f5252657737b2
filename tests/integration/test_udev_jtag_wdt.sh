#!/usr/bin/env bash
# test_udev_jtag_wdt: the daemon with a native-USB board whose USB-Serial/JTAG
# reset leaves the RTC and super watchdogs armed (PROTOCOL-ROM.md 3.6). esp_sim
# runs the --usb serial-jtag persona (the chip reads DTR/RTS as the peripheral
# does) with 400 ms watchdogs and a real-time link: the job (128 KB at 460800 Bd,
# seconds) outlasts them, so it passes only if the station disables both. The
# hard reset boots the app and the harness re-enumerates the tty (new ttyACM,
# --jtag-reenumerate-on-reset): the daemon keeps the same job and slot, verifies,
# boot-checks on the new node and records the board once.
source "$(dirname "$0")/../umock/udev_lib.sh"

UMOCK_OPTS=--jtag-reenumerate-on-reset
station_setup ', "boot_check": {"pattern": "esp_sim ([a-z0-9]+) app running", "timeout_ms": 8000, "capture": ["chip"]}' 131072
station_add_c3_set # the board is an ESP32-C3

P=pci-0000:00:14.0-usb-0
MAC=60:55:f9:00:00:42
umock_start "$ESPSTATIOND" --config "$UWORK/station.json" --log-level debug
umock_cmd start
umock_sync
umock_cmd "add j2 esp32c3 303a:1001 $P:1.3:1.0 --usb serial-jtag --usb-wdt-ms 400 --strict-reset --mac $MAC --link-speed 1"
umock_sync
# The harness restarts the board's sim on re-enumeration; the loader session's
# log is kept as sim.log.1 (umock_station start_sim).
SIMLOG=$UWORK/j2/sim.log.1
# A job that fails ends in 'failed' (or is retried): wait for any end state.
for _ in $(seq 900); do
    st=$(sql "select state from jobs where board_mac='$MAC' order by id desc limit 1" 2>/dev/null || true)
    case $st in passed | failed | cancelled) break ;; esac
    sleep 0.1
done
[ -e "$SIMLOG" ] || SIMLOG=$UWORK/j2/sim.log
[ "$st" = passed ] || udev_fail "job ended '$st': $(sql "select id, state, error_message from jobs")$(
    grep -m1 'watchdog fired' "$SIMLOG" 2>/dev/null | sed 's/^/ -- sim: /')"

[ "$(sql "select count(*) from jobs")" = 1 ] ||
    udev_fail "expected one job: $(sql "select id, slot, state, error_message from jobs")"
assert_grep "$SIMLOG" 'watchdogs armed after the USB reset \(400 ms\)' \
    "the reset did not reach the loader through the USB-Serial/JTAG peripheral"
assert_grep "$SIMLOG" 'rtc wdt: disabled' "the RTC watchdog was left running"
assert_grep "$SIMLOG" 'super wdt: auto-feed on' "the super watchdog was left running"
assert_no_grep "$SIMLOG" 'watchdog fired' "a watchdog reset the chip during the job"
assert_grep "$SIMLOG" 'reset -> boot 0x13' "the chip never booted the app"
# The job outlasted the watchdog (else this test proves nothing): ms from the
# watchdogs' arming to the session's last line (the app boot), sim.log's first column.
t0=$(grep -m1 'watchdogs armed after the USB reset' "$SIMLOG" | awk '{print $1}')
t1=$(tail -n 1 "$SIMLOG" | awk '{print $1}')
udev_log "loader session ${t0} -> ${t1} (sim.log ms)"
[ "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b - a > 400) ? 1 : 0}')" = 1 ] ||
    udev_fail "the loader session (${t0} -> ${t1}) was shorter than the 400 ms watchdog"
assert_grep "$UWORK/umock.log" 'ok auto-reenumerate j2 /dev/ttyACM[0-9]+ -> /dev/ttyACM[0-9]+' \
    "the harness never re-enumerated the board"
new=$(grep -E -m1 'ok auto-reenumerate j2' "$UWORK/umock.log" | sed -E 's/.* -> (\/dev\/ttyACM[0-9]+).*/\1/')
assert_grep "$UWORK/program.log" "port back as ${new}: the job continues" "no re-attach message"
assert_grep "$UWORK/program.log" 'boot check matched' "boot check did not match after re-attach"
row=$(sql "select slot, current_firmware, current_md5 from boards where mac='$MAC'")
[ "$row" = "A3|udevc3@1.0.0|$FW_MD5" ] || udev_fail "board record: got '$row'"
[ "$(sql "select count(*) from boards where mac='$MAC'")" = 1 ] || udev_fail "board recorded twice"
[ "$(sql "select slot from jobs where board_mac='$MAC'")" = A3 ] || udev_fail "job slot is not A3"
flash_matches j2 || udev_fail "flash of j2 does not hold the firmware"

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
udev_log "PASS"

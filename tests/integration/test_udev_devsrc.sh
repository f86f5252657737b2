#!/usr/bin/env bash
# test_udev_devsrc: the udev device source (daemon/devsrc_udev.c) under a
# umockdev testbed, through devsrc_probe (prints one line per port_event).
# Asserts: coldplug of a board present at start; hotplug of a CP2102 with
# slot_key (ID_PATH), uri, label from the config, VID:PID, serial, product;
# a tty of an unknown VID:PID is ignored; an unknown VID:PID carrying the
# config's udev tag is accepted (a foreign tag is not); remove is reported
# with the same slot_key even though sysfs is already gone; a USB-Serial/JTAG
# board that re-enumerates keeps its slot_key with a new uri; a custom bridge
# list replaces the defaults.
source "$(dirname "$0")/../umock/udev_lib.sh"

[ -x "$DEVSRC_PROBE" ] || udev_fail "devsrc_probe not built (expected $DEVSRC_PROBE)"

P=pci-0000:00:14.0-usb-0
cat >"$UWORK/station.json" <<EOF
{
  "data_dir": "$UWORK/data",
  "slots": [
    {"id_path": "$P:1.2:1.0", "label": "A2"},
    {"id_path": "$P:1.6:1.0", "label": "J1"}
  ]
}
EOF
LOG=$UWORK/program.log

umock_start "$DEVSRC_PROBE" --config "$UWORK/station.json"
umock_cmd "add cold esp32 10c4:ea60 $P:1.1:1.0 +nosim"
umock_cmd start
umock_sync
wait_grep "$LOG" '^ready$'

umock_cmd "add hot esp32 10c4:ea60 $P:1.2:1.0 +serial=0001"
umock_cmd "add stranger esp32 1234:5678 $P:1.3:1.0 +nosim"
umock_cmd "add tagged esp32 1234:5679 $P:1.4:1.0 +tag=ESPSTATION +nosim"
umock_cmd "add foreign esp32 1234:567a $P:1.5:1.0 +tag=SOMEONE_ELSE +nosim"
umock_cmd "add jtag esp32c3 303a:1001 $P:1.6:1.0 +nosim"
umock_sync
wait_grep "$LOG" "^add .*slot=$P:1.2:1.0 "
wait_grep "$LOG" "^add .*slot=$P:1.4:1.0 "
wait_grep "$LOG" "^add .*slot=$P:1.6:1.0 "

# coldplug
assert_grep "$LOG" "^add coldplug=1 slot=$P:1.1:1.0 uri=/dev/ttyUSB0 label= vid=10c4 pid=ea60 jtag=0 serial=UMOCK-cold product=CP2102 USB to UART Bridge Controller\$" \
    "coldplug CP2102 not reported as expected"
# hotplug, with the config's label
assert_grep "$LOG" "^add coldplug=0 slot=$P:1.2:1.0 uri=/dev/ttyUSB1 label=A2 vid=10c4 pid=ea60 jtag=0 serial=0001 product=CP2102 USB to UART Bridge Controller\$" \
    "hotplugged CP2102 not reported as expected"
# tagged unknown bridge accepted, untagged and foreign-tagged ones ignored
assert_grep "$LOG" "^add coldplug=0 slot=$P:1.4:1.0 uri=/dev/ttyUSB3 label= vid=1234 pid=5679 " \
    "tty tagged ESPSTATION with an unknown VID:PID not accepted"
assert_no_grep "$LOG" "slot=$P:1.3:1.0|/dev/ttyUSB2 " "tty of an unknown bridge reported"
assert_no_grep "$LOG" "slot=$P:1.5:1.0|/dev/ttyUSB4 " "tty with a foreign udev tag reported"
# USB-Serial/JTAG (cdc_acm)
assert_grep "$LOG" "^add coldplug=0 slot=$P:1.6:1.0 uri=/dev/ttyACM0 label=J1 vid=303a pid=1001 jtag=1 " \
    "USB-Serial/JTAG port not reported with jtag=1"

# unplug: remove carries the same identity; only once
umock_cmd "remove hot"
umock_sync
wait_grep "$LOG" "^remove .*slot=$P:1.2:1.0 "
assert_grep "$LOG" "^remove coldplug=0 slot=$P:1.2:1.0 uri=/dev/ttyUSB1 label=A2 vid=10c4 pid=ea60 " \
    "remove of the CP2102 lacks its identity"
# removing an ignored port reports nothing
umock_cmd "remove stranger"
# re-enumeration: same slot, new tty
umock_cmd "reenumerate jtag"
umock_sync
wait_grep "$LOG" "^add .*slot=$P:1.6:1.0 uri=/dev/ttyACM1 "
assert_grep "$LOG" "^remove coldplug=0 slot=$P:1.6:1.0 uri=/dev/ttyACM0 label=J1 " \
    "re-enumeration: remove of the old tty missing"
# plug the CP2102 back: reported again on the same slot
umock_cmd "add hot-again esp32 10c4:ea60 $P:1.2:1.0 +nosim"
umock_sync
wait_grep "$LOG" "^add coldplug=0 slot=$P:1.2:1.0 uri=/dev/ttyUSB5 label=A2 "
sleep 0.3 # let any stray event arrive before counting

[ "$(count_lines "$LOG" "^add .*slot=$P:1.2:1.0 uri=/dev/ttyUSB1 ")" = 1 ] || udev_fail "hot add reported more than once"
[ "$(count_lines "$LOG" "^remove .*slot=$P:1.2:1.0 ")" = 1 ] || udev_fail "hot remove reported more than once"
[ "$(count_lines "$LOG" "^remove ")" = 2 ] || udev_fail "expected exactly 2 removes"
[ "$(count_lines "$LOG" "^add ")" = 6 ] || udev_fail "expected exactly 6 adds"

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "devsrc_probe exited with status $rc"

# ---- a custom bridge list replaces the defaults ------------------------------
LOG2=$UWORK/program.log
: >"$LOG2"
cat >"$UWORK/custom.json" <<EOF
{"data_dir": "$UWORK/data", "bridges": ["1234:5678"], "udev_tag": "LINE2"}
EOF
rm -f "$UWORK/umock.log" "$UWORK/ctl"
umock_start "$DEVSRC_PROBE" --config "$UWORK/custom.json"
umock_cmd start
umock_sync
wait_grep "$LOG2" '^ready$'
umock_cmd "add c1 esp32 10c4:ea60 $P:2.1:1.0 +nosim"
umock_cmd "add c2 esp32 1234:5678 $P:2.2:1.0 +nosim"
umock_cmd "add c3 esp32 1234:9999 $P:2.3:1.0 +tag=LINE2 +nosim"
umock_cmd "add c4 esp32 1234:9998 $P:2.4:1.0 +tag=ESPSTATION +nosim"
umock_sync
wait_grep "$LOG2" "^add .*slot=$P:2.2:1.0 .*vid=1234 pid=5678 "
wait_grep "$LOG2" "^add .*slot=$P:2.3:1.0 .*vid=1234 pid=9999 "
sleep 0.3
assert_no_grep "$LOG2" "slot=$P:2.1:1.0" "CP2102 accepted although the bridge list no longer has it"
assert_no_grep "$LOG2" "slot=$P:2.4:1.0" "default tag accepted although the config changed it"
rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "devsrc_probe exited with status $rc"
udev_log "PASS"

#!/usr/bin/env bash
# test_udev_ota: the whole hand-over through the real hotplug path (issue 5's
# first end-to-end test). espstationd runs inside the umockdev testbed with a
# free REST port (--port-file) and a free OTA port (ota.listen port 0 ->
# <data_dir>/ota.port). Then:
#  - an ESP32 (CP2102) and an ESP8266 (CH340) are plugged in; their sims run
#    the network persona (--net-bind, check-in at the daemon's OTA endpoint);
#  - the real libudev monitor sees them, the daemon serial-flashes the profile's
#    firmware 1.0.0 (a real ESP image carrying its version), resets them into
#    the app; the boot check captures version and IP from the console;
#  - the boards boot the image, check in (x-ESP32-STA-MAC / x-ESP8266-STA-MAC),
#    the records turn online with IP and version 1.0.0, check-ins get 304;
#  - firmware 2.0.0 is uploaded over REST (multipart, bearer token) and made
#    the release: the profile's ota_firmware for the ESP32 (PUT profile), a
#    pinned target for the ESP8266 (PUT /boards/{mac}/target);
#  - the next check-in gets it: the boards report 2.0.0, their virtual flash
#    holds the new app, the ota-pull jobs passed, /boards/{mac}/ota says
#    on_target, the ESP32's slot shows online, check-ins get 304 again.
source "$(dirname "$0")/../umock/udev_lib.sh"
# this test's own loopback /24 for the boards' addresses ($TNET.N)
source "$(dirname "$0")/testnet.sh"
claim_test_net test_udev_ota || exit 1

# the integration helpers (fw_set, upload_fw, apit/apij ...) on this work dir
# shellcheck disable=SC2034 # WORK, MKIMAGE: read by api_lib.sh / ota_daemon_lib.sh
WORK=$UWORK
fail() { udev_fail "$*"; }
log() { udev_log "$*"; }
# shellcheck disable=SC2034
MKIMAGE="$(dirname "$0")/mkespimage.py"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
trap udev_cleanup EXIT # ota_daemon_lib's trap is for daemons it starts itself: none here

[ -n "$ESPSTATIOND" ] && [ -x "$ESPSTATIOND" ] || udev_fail "espstationd not built (expected $ESPSTATIOND)"
M32=24:6f:28:00:0e:01
M8=18:fe:34:00:0e:08
DATA=$UWORK/data
DB=$DATA/records.db # read by udev_lib.sh sql()
export DB
fw_set "$UWORK/fw1" demo 1.0.0 esp32 60000 21 boot
fw_set "$UWORK/fw2" demo 2.0.0 esp32 70000 22
fw_set "$UWORK/e1" e8266 1.0.0 esp8266 50000 23
fw_set "$UWORK/e2" e8266 2.0.0 esp8266 55000 24
TOKEN=udev0ta
BOOT='"boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"], "timeout_ms": 5000}'
PROFILE='"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"}, "baud": 460800, "retries": 0, '$BOOT
cat >"$UWORK/station.json" <<JSON
{"data_dir": "$DATA", "stub_dir": "${STUB_DIR:-}", "listen": "127.0.0.1:0",
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:0", "unknown_boards": "refuse", "mdns_interval_s": 0},
 "slots": [{"id_path": "pci-0000:00:14.0-usb-0:1.1:1.0", "label": "A1"},
           {"id_path": "pci-0000:00:14.0-usb-0:1.8:1.0", "label": "A8"}],
 "profiles": {"line": {$PROFILE}},
 "active_profile": "line"}
JSON
for f in fw1 e1; do
    "$ESPSTATIOND" --config "$UWORK/station.json" --import-firmware "$UWORK/$f" \
        >"$UWORK/import.log" 2>&1 || udev_fail "firmware import failed: $(cat "$UWORK/import.log")"
done

umock_start "$ESPSTATIOND" --config "$UWORK/station.json" --port-file "$UWORK/api.port" --log-level debug
umock_cmd start
umock_sync
wait_grep "$UWORK/api.port" '^[0-9]+$' 20
wait_grep "$DATA/ota.port" '^[0-9]+$' 20
API="http://127.0.0.1:$(tr -d '\n' <"$UWORK/api.port")"
OTA_PORT=$(tr -d '\n' <"$DATA/ota.port")
CHECKIN="http://127.0.0.1:$OTA_PORT/ota/update"
udev_log "API at $API, OTA endpoint $CHECKIN"

P=pci-0000:00:14.0-usb-0
umock_cmd "add b32 esp32 10c4:ea60 $P:1.1:1.0 --strict-reset --mac $M32 --link-speed 0 --net-bind $TNET.2 --checkin $CHECKIN --checkin-interval 300"
umock_cmd "add b8 esp8266 1a86:7523 $P:1.8:1.0 --mac $M8 --link-speed 0 --net-bind $TNET.8 --checkin $CHECKIN --checkin-interval 300"
umock_sync

# serial flash through the hotplug path, boot check, first check-ins
wait_sql "select group_concat(state || ':' || slot, ' ') from (select state, slot from jobs where kind = 'flash' order by slot)" \
    "passed:A1 passed:A8" 90
assert_reset_timeline b32
assert_grep "$UWORK/b32/sim.log" 'reset -> download mode' "the ESP32 never entered download mode"
wait_grep "$UWORK/b32/sim.log" 'net: persona up' 20
wait_sql "select online_state || ' ' || running_version || ' ' || ip || ' ' || current_firmware || ' ' || slot from boards where mac = '$M32'" \
    "online 1.0.0 $TNET.2 demo@1.0.0 A1" 30
wait_sql "select online_state || ' ' || running_version || ' ' || ip || ' ' || current_firmware || ' ' || slot from boards where mac = '$M8'" \
    "online 1.0.0 $TNET.8 e8266@1.0.0 A8" 30
wait_sql "select checkins >= 2 from board_ota where mac = '$M32'" 1 20
row=$(sql "select sketch_size, chip_size, last_checkin > 0 from board_ota where mac = '$M32'")
[ "$row" = "$(stat -c %s "$UWORK/fw1/app.bin")|4194304|1" ] || udev_fail "board_ota row of the ESP32: $row"
wait_grep "$UWORK/b32/net/netdev.log" 'checkin: status=304 version=1.0.0' 10
wait_grep "$UWORK/b8/net/netdev.log" 'checkin: status=304 version=1.0.0' 10
api GET /api/v1/slots/A1
expect_status 200
expect_jq '.phase == "online"'

# a new release over REST -> the next check-in pulls it
upload_fw "$UWORK/fw2"
upload_fw "$UWORK/e2"
apij PUT /api/v1/profiles/line '{"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"}, "ota_firmware": {"esp32": "demo@2.0.0"}, "baud": 460800, "retries": 0, '"$BOOT"'}'
expect_status 200
apij PUT "/api/v1/boards/$M8/target" '{"firmware": "e8266@2.0.0"}'
expect_status 200
expect_jq '.target == "e8266@2.0.0" and .pinned == true'

wait_sql "select running_version from boards where mac = '$M32'" 2.0.0 30
wait_sql "select running_version from boards where mac = '$M8'" 2.0.0 30
wait_sql "select group_concat(state || ' ' || firmware || ' ' || bytes, ', ') from (select * from jobs where kind = 'ota-pull' order by board_mac)" \
    "passed e8266@2.0.0 $(stat -c %s "$UWORK/e2/app.bin"), passed demo@2.0.0 $(stat -c %s "$UWORK/fw2/app.bin")" 10
cmp -s <(tail -c +$((0x10000 + 1)) "$UWORK/b32/flash.bin" | head -c "$(stat -c %s "$UWORK/fw2/app.bin")") \
    "$UWORK/fw2/app.bin" || udev_fail "the ESP32's flash at 0x10000 does not hold firmware 2.0.0"
cmp -s <(head -c "$(stat -c %s "$UWORK/e2/app.bin")" "$UWORK/b8/flash.bin") "$UWORK/e2/app.bin" ||
    udev_fail "the ESP8266's flash at 0x0 does not hold firmware 2.0.0"
assert_grep "$UWORK/b32/net/netdev.log" 'pull: applied .* version now 2.0.0' "the ESP32 did not apply the pull"
wait_grep "$UWORK/b32/net/netdev.log" 'checkin: status=304 version=2.0.0' 10
wait_grep "$UWORK/b8/net/netdev.log" 'checkin: status=304 version=2.0.0' 10
for m in "$M32" "$M8"; do
    api GET "/api/v1/boards/$m/ota"
    expect_status 200
    expect_jq '.on_target == true and (.target | endswith("@2.0.0")) and .served_version == "2.0.0"'
done
api GET /api/v1/slots/A1
expect_jq '.phase == "online"'
[ "$(sql "select count(*) from jobs where kind = 'ota-pull'")" = 2 ] || udev_fail "an image was served more than once"
[ "$(sql "select count(*) from jobs where kind = 'flash'")" = 2 ] || udev_fail "a board was serial-flashed again"

rc=0
umock_quit || rc=$?
[ "$rc" = 0 ] || udev_fail "espstationd exited with status $rc on SIGTERM"
assert_no_grep "$UWORK/program.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"
[ "$(sql 'pragma integrity_check')" = ok ] || udev_fail "records database integrity check failed"
udev_log "PASS"

#!/usr/bin/env bash
# test_ota_daemon_pull_facts: what the Arduino updaters really send and refuse, through the
# daemon's check-in endpoint (PROTOCOL-OTA.md §2, esp_netdev's knobs):
#  - a sketch that calls the updater without a current version (ESPhttpUpdate.update(client,
#    url), --no-current-version) sends no x-…-version header. A board that already runs the
#    target (flashed over serial, pushed) reports the target's sketch MD5: the file's on an
#    ESP32, the file's with the flash-mode byte it runs in on an ESP8266 (the image here is QIO,
#    the board runs DIO). It gets 304 and nothing is served. (Before: 200, and since its
#    sketch MD5 then stayed what it was when served, "did not take" served it again at every
#    check-in: a reboot loop.)
#  - an ESP8266 whose chip is smaller than the flash size the image header declares
#    (--chip-size 1 MB, header 4 MB) refuses the image (-107) before writing a byte. The
#    station does not serve it and names the problem. (Before: 200 at every check-in, each
#    refused by the board.)
#  - control: an ESP8266 with a 4 MB chip on 1.0.0 pulls the same image and then gets 304.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

# The ESP8266 target: QIO (byte 2 = 0), 4 MB header (byte 3 high nibble 4).
fw_set "$WORK/e2" e8266 2.0.0 esp8266 50000 21
printf '\x00\x40' | dd of="$WORK/e2/app.bin" bs=1 seek=2 conv=notrunc status=none
import_fw "$WORK/e2"
fw_set "$WORK/d2" demo 2.0.0 esp32 60000 22
import_fw "$WORK/d2"
E2=$WORK/e2/app.bin
# What a board running them reports: ESP8266 the flash with its running mode (DIO) written in.
E2_DIO_MD5=$(python3 -c 'import hashlib,sys; b=bytearray(open(sys.argv[1],"rb").read()); b[2]=2; print(hashlib.md5(b).hexdigest())' "$E2")
D2_MD5=$(md5sum "$WORK/d2/app.bin" | cut -d' ' -f1)
[ "$E2_DIO_MD5" != "$(md5sum "$E2" | cut -d' ' -f1)" ] || fail "test image is not QIO"

OTA_PORT=$(free_port)
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [], "api": {"token": "t0k3n"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp32": "demo@2.0.0", "esp8266": "e8266@2.0.0"}}}}
JSON
start_api_daemon "$CFG"
URL="http://127.0.0.1:$OTA_PORT/ota/update"

MA=18:fe:34:00:0c:01 # ESP8266 on the target, no version header
MB=24:6f:28:00:0c:02 # ESP32 on the target, no version header
MD=18:fe:34:00:0c:03 # ESP8266 with a 1 MB chip, on 1.0.0
ME=18:fe:34:00:0c:04 # ESP8266 with a 4 MB chip, on 1.0.0 (control)
start_netdev "$WORK/a" --chip esp8266 --mac $MA --bind $TNET.21 --ota-port -1 --version 2.0.0 \
    --no-current-version --sketch-md5 "$E2_DIO_MD5" --sketch-size "$(stat -c %s "$E2")" \
    --checkin "$URL" --interval 200
start_netdev "$WORK/b" --chip esp32 --mac $MB --bind $TNET.22 --ota-port -1 --version 2.0.0 \
    --no-current-version --sketch-md5 "$D2_MD5" --sketch-size "$(stat -c %s "$WORK/d2/app.bin")" \
    --checkin "$URL" --interval 200
start_netdev "$WORK/d" --chip esp8266 --mac $MD --bind $TNET.23 --ota-port -1 --version 1.0.0 \
    --chip-size 1048576 --checkin "$URL" --interval 200
start_netdev "$WORK/e" --chip esp8266 --mac $ME --bind $TNET.24 --ota-port -1 --version 1.0.0 \
    --checkin "$URL" --interval 200

# control first: the image is servable and taken
wait_sql "SELECT state FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$ME';" passed 20
wait_file_log 'checkin: status=304 version=2.0.0' "$WORK/e/netdev.log" 10
# the others have checked in several times by now
for m in $MA $MB $MD; do
    wait_sql "SELECT checkins >= 4 FROM board_ota WHERE mac = '$m';" 1 20
done
for b in a b d; do
    ! grep -q 'status=200' "$WORK/$b/netdev.log" ||
        fail "board $b was served: $(grep -c 'status=200' "$WORK/$b/netdev.log") x 200, $(grep -Ec 'pull: applied|-10[0-9]' "$WORK/$b/netdev.log") applied/refused"
    grep -q 'checkin: status=304' "$WORK/$b/netdev.log" || fail "board $b got no 304"
done
n=$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull' AND board_mac IN ('$MA', '$MB', '$MD');")
[ "$n" = 0 ] || fail "$n pull jobs for boards that run the target or cannot take it"
# the boards without a version header stay as they are, no problem; the small chip is named
for m in $MA $MB; do
    [ -z "$(db "SELECT problem FROM board_ota WHERE mac = '$m';")" ] || fail "$m: problem $(db "SELECT problem FROM board_ota WHERE mac = '$m';")"
done
p=$(db "SELECT problem FROM board_ota WHERE mac = '$MD';")
grepq -- '4096 KB flash, the board.s chip has 1024 KB' <<<"$p" || fail "$MD problem: '$p'"
log "small chip: $p"

stop_daemon
integrity_ok
done_ok

#!/usr/bin/env bash
# test_ota_daemon_nonos: ESP8266 NONOS dual images (user1/user2), raw TCP-OTA and
# gzip images through the daemon.
#  - A dual-image set (boot.bin at 0x0, user1 at 0x1000, user2 at 0x81000, "slot"
#    user1/user2) is flashed over serial to a virtual ESP8266; it boots user1, whose
#    persona runs the raw TCP-OTA listener on 65056 (sim.log says so).
#  - POST /api/v1/boards/{mac}/ota method "tcp" with the 2.0.0 set: the device asks
#    for user2 (GetNextFlash), the user2 bytes arrive at 0x81000 of the virtual flash,
#    user1 at 0x1000 is untouched, the job passes with the user2 size, the device
#    reports 2.0.0 and so does the record. A second push: the device now runs user2,
#    asks for user1, which lands at 0x1000.
#  - SDK plain GET over the daemon's endpoint: /ota/fw/<n>/<v>/user1.bin and
#    user2.bin give the exact head (HTTP/1.0 200, "Content-Length: <n>" with one
#    space, Connection: close) and the half's bytes, then the connection closes; a
#    path ending in user2.bin from the board's own IP gets its target's user2; a
#    set without slots has no user1.bin (404). Every image served counts in /metrics
#    and posts ota.served ("plain": true); the one fetched from the board's own
#    address is also an ota-pull job in that board's history.
#  - A gzip ESP8266 image is uploaded, pulled by an ESP8266 check-in (served as is:
#    the device receives the gzip bytes) and refused for an ESP32 set with a message
#    saying why.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

# dual_set DIR VERSION SEED: boot.bin + user1/user2 V2 images carrying ESPSIM_VERSION.
dual_set() {
    local dir=$1 ver=$2 seed=$3
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip esp8266 --size 3000 --out "$dir/boot.bin" --seed "$seed" ||
        fail "mkespimage failed"
    python3 "$MKIMAGE" --chip esp8266 --v2 --size 40000 --out "$dir/user1.bin" \
        --seed $((seed + 1)) --version "$ver" || fail "mkespimage failed"
    python3 "$MKIMAGE" --chip esp8266 --v2 --size 44000 --out "$dir/user2.bin" \
        --seed $((seed + 2)) --version "$ver" || fail "mkespimage failed"
    cat >"$dir/manifest.json" <<JSON
{"name": "nonos", "version": "$ver", "chip": "esp8266", "flash_size": "4MB",
 "regions": [{"offset": "0x0", "file": "boot.bin", "kind": "bootloader"},
             {"offset": "0x1000", "file": "user1.bin", "kind": "app", "slot": "user1"},
             {"offset": "0x81000", "file": "user2.bin", "kind": "app", "slot": "user2"}]}
JSON
}

# raw_get PATH OUT [SOURCE_IP]: a plain SDK-style GET over a raw socket; OUT.head gets
# the head bytes, OUT the body, read until the server closes.
raw_get() {
    python3 - "$OTA_PORT" "$1" "$2" "${3:-127.0.0.1}" <<'PY' || fail "raw GET $1 failed"
import socket, sys
port, path, out, src = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.socket()
s.bind((src, 0))
s.settimeout(10)
s.connect(("127.0.0.1", port))
s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: esp-idf/1.0 esp32\r\n\r\n"
           % (path, port)).encode())
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, _, body = data.partition(b"\r\n\r\n")
open(out + ".head", "wb").write(head + b"\r\n\r\n")
open(out, "wb").write(body)
PY
}

# expect_sdk_head OUT FILE: the exact head of a plain GET answer for FILE.
expect_sdk_head() {
    local want
    want=$(printf 'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
        "$(stat -c %s "$2")" | od -c)
    [ "$(od -c <"$1.head")" = "$want" ] || fail "plain GET head for $2: $(cat -A "$1.head")"
    cmp -s "$1" "$2" || fail "plain GET body differs from $2"
}

M8=18:fe:34:00:0e:01
dual_set "$WORK/n1" 1.0.0 31
import_fw "$WORK/n1"
dual_set "$WORK/n2" 2.0.0 41
import_fw "$WORK/n2"
fw_set "$WORK/plain" plain8266 1.0.0 esp8266 30000 51
import_fw "$WORK/plain"

OTA_PORT=$(free_port)
start_sim esp8266 --mac "$M8" --net-bind $TNET.31
S8=$SIM_DIR
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S8/tty", "label": "N1"}],
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"firmware": {"esp8266": "nonos@1.0.0"},
   "ota_firmware": {"esp8266": "nonos@2.0.0"}, "baud": 460800, "retries": 0,
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}}}}
JSON
start_api_daemon "$WORK/station.json"

# --- serial flash of the dual set; the board boots user1 with its TCP-OTA listener ---------
wait_sql "SELECT state FROM jobs WHERE kind = 'flash';" passed 120
flash_region_equals "$S8" 0x1000 "$WORK/n1/user1.bin"
flash_region_equals "$S8" 0x81000 "$WORK/n1/user2.bin"
wait_file_log 'net: persona up .* nonos user1 tcp-ota 65056' "$S8/sim.log" 10
wait_file_log ' up: .*tcpota=65056' "$S8/net/netdev.log" 10
[ "$(board_col "$M8" ip)" = $TNET.31 ] || fail "boot check did not capture the IP"
[ "$(board_col "$M8" running_version)" = 1.0.0 ] || fail "running_version after the serial flash"

# --- raw TCP-OTA push: the device asks for user2 ----------------------------------------------
apij POST "/api/v1/boards/$M8/ota" '{"method": "tcp", "firmware": "nonos@2.0.0"}'
expect_status 202
J1=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J1;" passed 30
[ "$(db "SELECT kind || ' ' || firmware || ' ' || bytes FROM jobs WHERE id = $J1;")" = \
    "ota-push nonos@2.0.0 $(stat -c %s "$WORK/n2/user2.bin")" ] || fail "tcp push job record"
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = $J1 AND line LIKE '%device asked for user2%';")" = 1 ] ||
    fail "the job log does not say which half the device asked for"
grep -q 'tcpota: wrote user2.bin' "$S8/net/netdev.log" || fail "device did not write user2"
flash_region_equals "$S8" 0x81000 "$WORK/n2/user2.bin"
flash_region_equals "$S8" 0x1000 "$WORK/n1/user1.bin" # the running half is untouched
[ "$(cat "$S8/net/version")" = 2.0.0 ] || fail "device version after the push: $(cat "$S8/net/version")"
[ "$(board_col "$M8" running_version)" = 2.0.0 ] || fail "running_version after the tcp push"
[ "$(board_col "$M8" current_firmware)" = nonos@2.0.0 ] || fail "current_firmware after the tcp push"

# a second push: now running user2, the device asks for user1
apij POST "/api/v1/boards/$M8/ota" '{"method": "tcp", "firmware": "nonos@2.0.0"}'
expect_status 202
J2=$(jqr .job_id)
wait_sql "SELECT state || ' ' || bytes FROM jobs WHERE id = $J2;" "passed $(stat -c %s "$WORK/n2/user1.bin")" 30
flash_region_equals "$S8" 0x1000 "$WORK/n2/user1.bin"
grep -q 'tcpota: wrote user1.bin' "$S8/net/netdev.log" || fail "device did not write user1"

# a set without two app regions cannot go over TCP-OTA
apij POST "/api/v1/boards/$M8/ota" '{"method": "tcp", "firmware": "plain8266@1.0.0"}'
expect_error 422 validation_failed firmware
jqr .error.message | grepq 'dual-image set' || fail "tcp message: $RESP"

# --- SDK plain GET of user1/user2 ------------------------------------------------------------
pull_metric() {
    api GET /metrics
    awk '$1 == "espstation_ota_pulls_total{image=\"app\",result=\"passed\"}" { print $2 }' <<<"$RESP"
}
pulls0=$(pull_metric)
pulls0=${pulls0:-0}
jobs0=$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull';")
raw_get /ota/fw/nonos/2.0.0/user1.bin "$WORK/g1"
expect_sdk_head "$WORK/g1" "$WORK/n2/user1.bin"
raw_get /ota/fw/nonos/2.0.0/user2.bin "$WORK/g2"
expect_sdk_head "$WORK/g2" "$WORK/n2/user2.bin"
raw_get /ota/fw/nonos/1.0.0/user2.bin "$WORK/g3"
expect_sdk_head "$WORK/g3" "$WORK/n1/user2.bin"
# system_upgrade_start builds its own path: the board's target (ota_firmware nonos@2.0.0)
raw_get /fw/user2.bin "$WORK/g4" $TNET.31
expect_sdk_head "$WORK/g4" "$WORK/n2/user2.bin"
raw_get /ota/fw/plain8266/1.0.0/user1.bin "$WORK/g5"
head -n1 "$WORK/g5.head" | grepq '^HTTP/1.0 404' || fail "user1.bin of a set without slots: $(head -n1 "$WORK/g5.head")"
raw_get /fw/user2.bin "$WORK/g6" $TNET.39 # an IP the station does not know
head -n1 "$WORK/g6.head" | grepq '^HTTP/1.0 404' || fail "user2.bin from an unknown IP: $(head -n1 "$WORK/g6.head")"
# Four images served (g1-g4): all in /metrics; only g4 came from a board's address, so it
# alone is a job in that board's history (with the half it took), and an ota.served event
# says it was a plain GET.
wait_sql "SELECT count(*) FROM jobs WHERE kind = 'ota-pull';" $((jobs0 + 1)) 10
row=$(db "SELECT board_mac || '|' || firmware || '|' || state || '|' || bytes FROM jobs WHERE kind = 'ota-pull' ORDER BY id DESC LIMIT 1;")
[ "$row" = "$M8|nonos@2.0.0|passed|$(stat -c %s "$WORK/n2/user2.bin")" ] || fail "plain GET job: '$row'"
JP=$(db "SELECT id FROM jobs WHERE kind = 'ota-pull' ORDER BY id DESC LIMIT 1;")
db "SELECT line FROM job_log WHERE job_id = $JP;" | grepq "user2 image of nonos@2.0.0.*plain GET from the board's address" ||
    fail "plain GET job log: $(db "SELECT line FROM job_log WHERE job_id = $JP;")"
ev=$(db "SELECT data FROM events WHERE kind = 'ota.served' AND job_id = $JP;")
[ "$(jq -c '[.plain, .half, .ip]' <<<"$ev")" = "[true,\"user2\",\"$TNET.31\"]" ] || fail "ota.served: $ev"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'ota.served' AND board_mac IS NULL AND json_extract(data, '$.plain');")" = 3 ] ||
    fail "plain GETs from unknown addresses: no events"
[ "$(pull_metric)" = $((pulls0 + 4)) ] || fail "/metrics pulls: $(pull_metric), expected $((pulls0 + 4))"

# --- gzip ESP8266 image: imported, pulled as is; refused for an ESP32 set --------------------
mkdir -p "$WORK/gz" "$WORK/gz32"
python3 "$MKIMAGE" --chip esp8266 --size 60000 --out "$WORK/gz/app.bin" --seed 61 --version 3.0.0 ||
    fail "mkespimage failed"
gzip -9 -n -c "$WORK/gz/app.bin" >"$WORK/gz/app.bin.gz"
cat >"$WORK/gz/manifest.json" <<JSON
{"name": "gz8266", "version": "3.0.0", "chip": "esp8266",
 "regions": [{"offset": "0x0", "file": "app.bin.gz", "kind": "app"}]}
JSON
apit POST /api/v1/firmware -F "manifest=@$WORK/gz/manifest.json" -F "app.bin.gz=@$WORK/gz/app.bin.gz"
expect_status 201
M9=18:fe:34:00:0e:09
start_netdev "$WORK/nd9" --chip esp8266 --mac "$M9" --bind $TNET.32 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300
wait_sql "SELECT online_state FROM boards WHERE mac = '$M9';" online 20
apij PUT "/api/v1/boards/$M9/target" '{"firmware": "gz8266@3.0.0"}'
expect_status 200
wait_sql "SELECT state || ' ' || bytes FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M9';" \
    "passed $(stat -c %s "$WORK/gz/app.bin.gz")" 20
wait_file_log 'pull: applied' "$WORK/nd9/netdev.log" 10
cmp -s "$WORK/nd9/ota-1.bin" "$WORK/gz/app.bin.gz" || fail "the device did not receive the gzip bytes as is"
wait_sql "SELECT running_version FROM boards WHERE mac = '$M9';" 3.0.0 20

# a gzip image is for network OTA only: a serial flash of that set is refused before
# anything is written, with the reason and what to do
md5_before=$(md5sum <"$S8/flash.bin")
apij POST /api/v1/slots/N1/reflash '{"firmware": "gz8266@3.0.0", "force": true}'
expect_status 202
JG=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JG;" failed 60
msg=$(db "SELECT error_stage || '|' || error_message || '|' || error_advice FROM jobs WHERE id = $JG;")
[[ $msg == *"gzip-compressed OTA image, which the ROM cannot boot"*"uncompressed .bin over serial"* ]] ||
    fail "gzip serial flash refusal: '$msg'"
[ "$(md5sum <"$S8/flash.bin")" = "$md5_before" ] || fail "the refused gzip set changed the flash"

cp "$WORK/gz/app.bin.gz" "$WORK/gz32/"
cat >"$WORK/gz32/manifest.json" <<JSON
{"name": "gz32", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin.gz", "kind": "app"}]}
JSON
apit POST /api/v1/firmware -F "manifest=@$WORK/gz32/manifest.json" -F "app.bin.gz=@$WORK/gz32/app.bin.gz"
expect_error 422 validation_failed
expect_jq '[.error.problems[] | select(.file == "app.bin.gz" and (.message | test("only ESP8266 boards .* take compressed images")))] | length == 1'

stop_daemon
integrity_ok
done_ok

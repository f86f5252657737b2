#!/usr/bin/env bash
# test_ota_espota: ArduinoOTA pushes (espproto ota_espota via ota_driver) to
# esp_netdev over real loopback sockets: ESP8266 without and with a password
# (MD5 digest), ESP32 with PBKDF2-SHA256 auth, glued "OK", a filesystem
# image; the board reports the new version afterwards.
# shellcheck source=lib.sh
source "$INTEG_LIB"

# shellcheck source=ota_netdev_lib.sh
source "$(dirname "$0")/ota_netdev_lib.sh"

expect_ok() {
    [ "$DRV_RC" -eq 0 ] && [[ $DRV_OUT == OK* ]] || {
        tail -n 30 "$WORK/drv.err" >&2
        tail -n 30 "$ND_DIR/netdev.log" >&2
        fail "expected OK, got: $DRV_OUT"
    }
}

mkimg() { # mkimg FILE VERSION SIZE
    { printf '\xe9\x03\x02\x20'; head -c "$3" /dev/urandom; printf 'ESPVER:%s\n' "$2"; } >"$1"
}

mkimg "$WORK/a.bin" 2.0.0 200000
mkimg "$WORK/b.bin" 3.0.0 70000

# 1. ESP8266, no password.
start_netdev e1 --chip esp8266 --mac 24:6F:28:00:01:01 --bind $TNET.21
drv espota --chip esp8266 --ip $TNET.21 --port "$ND_UDP" "$WORK/a.bin"
expect_ok
cmp "$WORK/a.bin" "$ND_DIR/ota-1.bin" || fail "received image differs"
[ "$(cat "$ND_DIR/version")" = 2.0.0 ] || fail "board did not switch to 2.0.0"

# 2. ESP8266 with password (legacy MD5 digest).
start_netdev e2 --chip esp8266 --mac 24:6F:28:00:01:02 --bind $TNET.22 --password s3cret
drv espota --chip esp8266 --ip $TNET.22 --port "$ND_UDP" --password s3cret "$WORK/b.bin"
expect_ok
grep -q 'ota: authenticated' "$ND_DIR/netdev.log" || fail "no auth on the device"
[ "$(cat "$ND_DIR/version")" = 3.0.0 ] || fail "board did not switch to 3.0.0"

# 3. ESP32 with PBKDF2 auth (69-byte AUTH reply), glued "OK".
start_netdev e3 --chip esp32 --mac 24:6F:28:00:01:03 --bind $TNET.23 --password s3cret \
    --auth pbkdf2 --fault glued-ok
drv espota --chip esp32 --ip $TNET.23 --port "$ND_UDP" --password s3cret "$WORK/a.bin"
expect_ok
cmp "$WORK/a.bin" "$ND_DIR/ota-1.bin" || fail "received image differs (esp32)"
grep -q 'PBKDF2' "$WORK/drv.err" || fail "station did not pick the PBKDF2 scheme"

# 4. Filesystem image (command 100) does not change the version.
drv espota --chip esp32 --ip $TNET.23 --port "$ND_UDP" --password s3cret --fs "$WORK/b.bin"
expect_ok
[ -f "$ND_DIR/fs-2.bin" ] || fail "filesystem image not stored as such"
grep -q 'invitation cmd=100' "$ND_DIR/netdev.log" || fail "cmd 100 not sent"
[ "$(cat "$ND_DIR/version")" = 2.0.0 ] || fail "FS image changed the version"

# 5. ESP32 core >= 3.3.2 whose sketch gave setPasswordHash an MD5 hex: PBKDF2 with H = that
# MD5. The SHA-256 secret is refused; the station invites again and answers with H = MD5.
start_netdev e3b --chip esp32 --mac 24:6F:28:00:01:05 --bind $TNET.25 --password s3cret \
    --auth pbkdf2-md5
drv espota --chip esp32 --ip $TNET.25 --port "$ND_UDP" --password s3cret "$WORK/a.bin"
expect_ok
cmp "$WORK/a.bin" "$ND_DIR/ota-1.bin" || fail "received image differs (esp32, MD5-hash secret)"
grep -q 'retrying with MD5 secret' "$WORK/drv.err" || fail "station did not retry with H=MD5"
[ "$(grep -c 'ota: authentication failed' "$ND_DIR/netdev.log")" = 1 ] ||
    fail "expected one refused SHA-256 answer: $(grep -c 'ota: authentication failed' "$ND_DIR/netdev.log")"

log "PASS"

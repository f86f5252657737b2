#!/usr/bin/env bash
# test_ota_webform_tcp: web-form push to /update (success, "Update error:"
# bodies under HTTP 200, 401 on wrong credentials, wrong magic) and raw
# TCP-OTA (user2 then user1 as the device alternates slots, header refusal).
# shellcheck source=lib.sh
source "$INTEG_LIB"

# shellcheck source=ota_netdev_lib.sh
source "$(dirname "$0")/ota_netdev_lib.sh"

expect_ok() {
    [ "$DRV_RC" -eq 0 ] && [[ $DRV_OUT == "OK $1"* ]] || {
        tail -n 20 "$ND_DIR/netdev.log" >&2
        fail "expected 'OK $1', got: $DRV_OUT"
    }
}

expect_err() {
    [ "$DRV_RC" -eq 1 ] || fail "expected a failure, got rc $DRV_RC: $DRV_OUT"
    [[ $DRV_OUT == *"errno=$1 "* ]] || fail "expected errno=$1 in: $DRV_OUT"
    grep -Eq -- "$2" <<<"$DRV_OUT" || fail "expected /$2/ in: $DRV_OUT"
}

{ printf '\xe9\x03\x02\x20'; head -c 150000 /dev/urandom; printf 'ESPVER:4.1.0\n'; } >"$WORK/app.bin"
{ printf 'PK\x03\x04'; head -c 1000 /dev/urandom; } >"$WORK/zip.bin"

# --- web form ---
start_netdev web --chip esp8266 --mac 24:6F:28:00:03:01 --bind $TNET.41 --http-port 0 \
    --password webpw
drv webform --ip $TNET.41 --port "$ND_HTTP" --user admin --password webpw "$WORK/app.bin"
expect_ok "Update Success"
cmp "$WORK/app.bin" "$ND_DIR/ota-1.bin" || fail "web: received image differs"
grep -q 'part name=firmware filename=firmware.bin' "$ND_DIR/netdev.log" || fail "web: part layout"
[ "$(cat "$ND_DIR/version")" = 4.1.0 ] || fail "web: version not switched"

drv webform --ip $TNET.41 --port "$ND_HTTP" --user admin --password nope "$WORK/app.bin"
expect_err auth 'wrong web-update credentials'

drv webform --ip $TNET.41 --port "$ND_HTTP" --user admin --password webpw "$WORK/zip.bin"
expect_err invalid 'device=ERROR\[10\]: Magic byte is wrong'

start_netdev web2 --chip esp32 --mac 24:6F:28:00:03:02 --bind $TNET.42 --http-port 0 \
    --free-space 1000
drv webform --ip $TNET.42 --port "$ND_HTTP" "$WORK/app.bin"
expect_err 'no space' 'refused the update: Not Enough Space'

start_netdev web3 --chip esp32 --mac 24:6F:28:00:03:03 --bind $TNET.43 --http-port 0 \
    --fault error-line
drv webform --ip $TNET.43 --port "$ND_HTTP" "$WORK/app.bin"
expect_err 'device error' 'Flash Write Failed'

# --- raw TCP-OTA ---
mkuser() { # mkuser FILE TAG: a NONOS user image with a valid first sector
    { printf '\xea\x04\x00\x20\x00\x00\x10\x40\x00\x00\x00\x00'; head -c 20000 /dev/urandom
      printf 'ESPVER:%s\n' "$2"; } >"$1"
}
mkuser "$WORK/user1.bin" u1-5.0
mkuser "$WORK/user2.bin" u2-5.0
start_netdev tcp --chip esp8266 --mac 24:6F:28:00:03:04 --bind $TNET.44 --tcp-ota --ota-port -1
drv tcpota --ip $TNET.44 --port "$ND_TCP" "$WORK/user1.bin" "$WORK/user2.bin"
expect_ok user2
cmp "$WORK/user2.bin" "$ND_DIR/ota-1.bin" || fail "tcp-ota: user2 image differs"
drv tcpota --ip $TNET.44 --port "$ND_TCP" "$WORK/user1.bin" "$WORK/user2.bin"
expect_ok user1
cmp "$WORK/user1.bin" "$ND_DIR/ota-2.bin" || fail "tcp-ota: user1 image differs"
drv tcpota --ip $TNET.44 --port "$ND_TCP" "$WORK/app.bin" "$WORK/app.bin"
expect_err invalid 'ERR: IROM magic missing\.'
head -c 600000 /dev/zero >"$WORK/big.bin"
drv tcpota --ip $TNET.44 --port "$ND_TCP" "$WORK/big.bin" "$WORK/big.bin"
expect_err error 'ERR: Firmware length is too big'

log "PASS"

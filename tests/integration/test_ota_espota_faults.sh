#!/usr/bin/env bash
# test_ota_espota_faults: every known espota failure gives its error class,
# message and advice: wrong password, silent device, stall mid-transfer,
# not enough space (ESP8266 UDP ERR; ESP32 silence), no connect-back, device
# error line, every byte counted but no verdict, missing password, nothing listening.
# shellcheck source=lib.sh
source "$INTEG_LIB"

# shellcheck source=ota_netdev_lib.sh
source "$(dirname "$0")/ota_netdev_lib.sh"

# expect_err ERRNO_NAME REGEX: the last push failed with that class and text.
expect_err() {
    [ "$DRV_RC" -eq 1 ] || fail "expected a failure, got rc $DRV_RC: $DRV_OUT"
    [[ $DRV_OUT == *"errno=$1 "* ]] || fail "expected errno=$1 in: $DRV_OUT"
    grep -Eq -- "$2" <<<"$DRV_OUT" || fail "expected /$2/ in: $DRV_OUT"
    [[ $DRV_OUT == *"advice="?* ]] || fail "no advice in: $DRV_OUT"
}

{ printf '\xe9\x03\x02\x20'; head -c 300000 /dev/urandom; } >"$WORK/img.bin"
FAST=(--attempts 2 --invite-timeout 300 --accept-timeout 1500 --stall-timeout 1500)

start_netdev wp --chip esp8266 --mac 24:6F:28:00:02:01 --bind $TNET.31 --password right \
    --fault wrong-password
drv espota --ip $TNET.31 --port "$ND_UDP" --password right "${FAST[@]}" "$WORK/img.bin"
expect_err auth 'wrong OTA password'

drv espota --ip $TNET.31 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err auth 'asks for an OTA password'

start_netdev na --chip esp8266 --mac 24:6F:28:00:02:02 --bind $TNET.32 --fault no-answer
drv espota --ip $TNET.32 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err timeout "no answer from $TNET.32:$ND_UDP: is the board on the network and running ArduinoOTA"
[ "$(grep -c 'ignoring datagram' "$ND_DIR/netdev.log")" -eq 2 ] || fail "expected 2 invitations"

start_netdev st --chip esp8266 --mac 24:6F:28:00:02:03 --bind $TNET.33 --fault stall:20000
drv espota --ip $TNET.33 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err timeout 'stage=transfer .*stalled: the board acknowledged about [0-9]+ of 300004'
for i in $(seq 1 60); do
    grep -q 'station closed the stalled transfer' "$ND_DIR/netdev.log" && break
    sleep 0.05
done
grep -q 'station closed the stalled transfer' "$ND_DIR/netdev.log" ||
    fail "the station did not close the stalled connection"
# The acknowledged figure is read from glued decimal counts, so it is an
# estimate: it must be within a quarter of what the board really took (its own
# log says). What its TCP took (the station's send queue) is at least that.
took=$(sed -n 's/.*ota: stalling at \([0-9]*\) bytes.*/\1/p' "$ND_DIR/netdev.log" | head -1)
said=$(sed -n 's/.*acknowledged about \([0-9]*\) of.*/\1/p' <<<"$DRV_OUT")
tcp=$(sed -n 's/.*its TCP took \([0-9]*\),.*/\1/p' <<<"$DRV_OUT")
[ -n "$took" ] && [ "$took" -eq 20000 ] || fail "the board stalled at '$took', not 20000"
[ $((said * 4)) -ge $((took * 3)) ] && [ $((said * 4)) -le $((took * 5)) ] ||
    fail "the station said about $said bytes were acknowledged; the board took $took"
[ -n "$tcp" ] && [ "$tcp" -ge "$took" ] && [ "$tcp" -lt 300004 ] ||
    fail "the station said the board's TCP took '$tcp' bytes; the board read $took"

start_netdev ns --chip esp8266 --mac 24:6F:28:00:02:04 --bind $TNET.34 --free-space 100000
drv espota --ip $TNET.34 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err 'no space' 'not enough space.*ERROR\[4\]: Not Enough Space'

start_netdev ns32 --chip esp32 --mac 24:6F:28:00:02:05 --bind $TNET.35 --fault no-space
drv espota --chip esp32 --ip $TNET.35 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err timeout 'never connected back.*firewall'
[[ $DRV_OUT == *"does not fit"* ]] || fail "ESP32 silence advice lacks the space hint"

start_netdev nc --chip esp32 --mac 24:6F:28:00:02:06 --bind $TNET.36 --fault no-connect-back
drv espota --chip esp32 --ip $TNET.36 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err timeout 'the board accepted but never connected back to 127\.0\.0\.[0-9]+:[0-9]+: a firewall on the station is probably blocking inbound TCP'

start_netdev el --chip esp8266 --mac 24:6F:28:00:02:07 --bind $TNET.37 --fault error-line
drv espota --ip $TNET.37 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err 'checksum or signature' 'device=ERROR\[7\]: MD5 Failed'

# Every byte taken and counted (one count of the whole image), then the board closes without
# its verdict: the counts add up to the image, but only "OK" is success.
start_netdev nv --chip esp8266 --mac 24:6F:28:00:02:08 --bind $TNET.39 --fault no-verdict
drv espota --ip $TNET.39 --port "$ND_UDP" "${FAST[@]}" "$WORK/img.bin"
expect_err 'device error' 'stage=result .*closed the connection without a verdict \(no OK\)'
grep -q "Update.write returned 300004 (300004 of 300004)" "$ND_DIR/netdev.log" ||
    fail "the board did not count the whole image before closing"
grep -q 'closing after 300004 bytes without a verdict' "$ND_DIR/netdev.log" ||
    fail "the board did not close without its verdict"

# Nothing listening: ICMP port unreachable.
drv espota --ip $TNET.38 --port 9 "${FAST[@]}" "$WORK/img.bin"
expect_err refused 'port unreachable'

log "PASS"

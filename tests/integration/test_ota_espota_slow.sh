#!/usr/bin/env bash
# test_ota_espota_slow: ArduinoOTA pushes to devices that write flash slowly
# (issue 8). esp_netdev with the lwIP receive window (5840) and a 400 ms erase
# per 4 KiB sector takes about 10 KB/s and, like the ESP8266 core
# (Update.write(client) returns only when the stream runs dry), writes a single
# count for the whole image. With the default 10 s stall timeout the push of a
# 300032-byte image must succeed (the station once declared "stalled" after 10 s
# without a count), with progress that never goes back nor past the image and
# moves during the transfer. An ESP32 (a count per 1460-byte read) at ~40 KB/s
# succeeds too, and a slow device that really stops is still reported as
# stalled (short stall timeout), with the count it wrote. A peer whose TCP takes
# nothing for 3 s while it writes counts is not stalled (1 s timeout): either
# moving keeps the push alive.
# Takes about 40 s (the 10 KB/s push is ~30 s by design).
# shellcheck source=lib.sh
source "$INTEG_LIB"

# shellcheck source=ota_netdev_lib.sh
source "$(dirname "$0")/ota_netdev_lib.sh"

SIZE=300032
{
    printf '\xe9\x03\x02\x20'
    head -c $((SIZE - 4 - 13)) /dev/urandom
    printf 'ESPVER:4.0.0\n'
} >"$WORK/img.bin"
[ "$(stat -c %s "$WORK/img.bin")" -eq $SIZE ] || fail "test image is not $SIZE bytes"

# check_progress FILE TOTAL MIN_STEPS: "<done> <total>" lines never go back, never pass
# TOTAL, end at TOTAL, and show at least MIN_STEPS distinct values below TOTAL.
check_progress() {
    awk -v total="$2" -v min="$3" '
        $2 != total { print "line " NR ": total " $2 " is not " total; bad = 1 }
        $1 > total { print "line " NR ": " $1 " is past the image"; bad = 1 }
        NR > 1 && $1 < last { print "line " NR ": " $1 " after " last; bad = 1 }
        $1 < total && $1 != last { steps++ }
        { last = $1 }
        END {
            if (last != total) { print "ends at " last ", not " total; bad = 1 }
            if (steps < min) { print "only " steps " steps below the total"; bad = 1 }
            exit bad
        }' "$1" || fail "progress in $1 is wrong (see above)"
}

# 1. ESP8266 at ~10 KB/s, real window, one count for the whole image.
start_netdev slow --chip esp8266 --mac 24:6F:28:00:08:01 --bind $TNET.81 --rcvbuf 5840 \
    --erase-ms 400
t0=$(date +%s.%N)
drv espota --ip $TNET.81 --port "$ND_UDP" --progress "$WORK/p1" "$WORK/img.bin"
t1=$(date +%s.%N)
[ "$DRV_RC" -eq 0 ] && [[ $DRV_OUT == OK* ]] || {
    tail -n 20 "$WORK/drv.err" >&2
    tail -n 20 "$ND_DIR/netdev.log" >&2
    fail "push to the slow ESP8266 failed: $DRV_OUT"
}
cmp "$WORK/img.bin" "$ND_DIR/ota-1.bin" || fail "received image differs"
[ "$(cat "$ND_DIR/version")" = 4.0.0 ] || fail "board did not switch to 4.0.0"
# The model really behaved like the device: one count, the whole image.
counts=$(grep -c 'Update.write returned' "$ND_DIR/netdev.log")
grep -q "Update.write returned $SIZE ($SIZE of $SIZE)" "$ND_DIR/netdev.log" && [ "$counts" -eq 1 ] ||
    fail "expected the device to write one count of $SIZE, it wrote $counts"
check_progress "$WORK/p1" $SIZE 10
log "ESP8266: $SIZE bytes at ~10 KB/s pushed in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s," \
    "$(wc -l <"$WORK/p1") progress reports"

# 2. ESP32 (a count after each read of <= 1460 bytes), 100 ms per sector.
start_netdev slow32 --chip esp32 --mac 24:6F:28:00:08:02 --bind $TNET.82 --erase-ms 100
drv espota --chip esp32 --ip $TNET.82 --port "$ND_UDP" --progress "$WORK/p2" "$WORK/img.bin"
[ "$DRV_RC" -eq 0 ] && [[ $DRV_OUT == OK* ]] || fail "push to the slow ESP32 failed: $DRV_OUT"
cmp "$WORK/img.bin" "$ND_DIR/ota-1.bin" || fail "received image differs (esp32)"
check_progress "$WORK/p2" $SIZE 10

# 3. A slow ESP8266 that takes 100000 bytes, writes its count and stops reading: still
#    a stall (nothing moves), reported with the device's count.
start_netdev stuck --chip esp8266 --mac 24:6F:28:00:08:03 --bind $TNET.83 --erase-ms 100 \
    --fault stall:100000
drv espota --ip $TNET.83 --port "$ND_UDP" --stall-timeout 2000 --progress "$WORK/p3" \
    "$WORK/img.bin"
[ "$DRV_RC" -eq 1 ] && [[ $DRV_OUT == *"errno=timeout "* ]] ||
    fail "expected a stall timeout, got rc $DRV_RC: $DRV_OUT"
grep -Eq "stage=transfer .*stalled: the board acknowledged about 100000 of $SIZE bytes" \
    <<<"$DRV_OUT" || fail "stall message lacks the device's count: $DRV_OUT"
grep -q 'ota: stalling at 100000 bytes' "$ND_DIR/netdev.log" || fail "the device did not stall"
for _ in $(seq 1 60); do
    grep -q 'station closed the stalled transfer' "$ND_DIR/netdev.log" && break
    sleep 0.05
done
grep -q 'station closed the stalled transfer' "$ND_DIR/netdev.log" ||
    fail "the station did not close the stalled connection"
# Progress stopped short of the image and never passed what the device's TCP took.
last=$(tail -n 1 "$WORK/p3" | cut -d' ' -f1)
[ -n "$last" ] && [ "$last" -ge 100000 ] && [ "$last" -lt $SIZE ] ||
    fail "stalled push ended its progress at '$last'"

# 4. Counts alone are a sign of life too: a scripted peer (not a device model) whose TCP
#    takes nothing for 3 s (its receive buffer full, the station's send queue still) while it
#    writes a count every 300 ms, then reads the rest and says OK. With a 1 s stall timeout the
#    push must not be declared stalled: the counts moved though the send queue did not.
python3 - "$TNET.84" "$WORK/img.bin" >"$WORK/peer.log" 2>&1 <<'PY' &
import hashlib, socket, sys, time
ip, img = sys.argv[1], open(sys.argv[2], "rb").read()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((ip, 0))
open(sys.argv[2] + ".port", "w").write(str(u.getsockname()[1]))
msg, peer = u.recvfrom(512)
cmd, port, size, md5 = msg.decode().split()
assert int(size) == len(img) and md5 == hashlib.md5(img).hexdigest(), msg
u.sendto(b"OK", peer)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
t.bind((ip, 0))
t.connect((peer[0], int(port)))
end = time.time() + 3
while time.time() < end:  # read nothing; counts only
    t.sendall(b"1460")
    time.sleep(0.3)
print("peer: counts only for 3 s", flush=True)
got = b""
while len(got) < len(img):
    d = t.recv(65536)
    if not d:
        break
    got += d
print("peer: took %d of %d" % (len(got), len(img)), flush=True)
t.sendall(b"%dOK" % len(got) if got == img else b"ERROR[7]: MD5 Failed\n")
time.sleep(0.5)
t.close()
PY
PEER=$!
for _ in $(seq 1 100); do [ -s "$WORK/img.bin.port" ] && break; sleep 0.05; done
[ -s "$WORK/img.bin.port" ] || fail "the scripted peer did not start: $(cat "$WORK/peer.log")"
drv espota --ip $TNET.84 --port "$(cat "$WORK/img.bin.port")" --stall-timeout 1000 \
    --accept-timeout 5000 "$WORK/img.bin"
peer_rc=0
wait "$PEER" || peer_rc=$?
[ "$DRV_RC" -eq 0 ] && [[ $DRV_OUT == OK* ]] ||
    fail "counts alone did not keep the push alive (1 s stall timeout): $DRV_OUT"
[ "$peer_rc" -eq 0 ] && grep -q "peer: took $SIZE of $SIZE" "$WORK/peer.log" ||
    fail "the scripted peer failed (rc $peer_rc): $(cat "$WORK/peer.log")"

log "PASS"

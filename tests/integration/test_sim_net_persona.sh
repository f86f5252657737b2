#!/usr/bin/env bash
# esp_sim --net-bind: the network persona (esp_netdev) is "up" only once it
# wrote DIR/net/ready; a persona that cannot start is reported, never passed
# off as up (issue 8 part 5: a demo without esp_netdev logged "net: persona up"
# and every board looked fine until nobody checked in):
#   - up: "net: persona starting", then "net: persona up" with DIR/net/ready
#     there, the console's "app: version V ip A", no DIR/net/failed;
#   - missing program (exec error), early exit (status and the first line it
#     wrote to stderr), no ready file within --net-start-timeout (child killed): each logs
#     "net: persona failed: <why>", writes DIR/net/failed, and the console says
#     "app: version V network failed: <why>" instead of the IP line;
#   - the next boot clears DIR/net/failed and starts afresh.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"

NETDEV=$(dirname "$ESP_SIM")/netdev/esp_netdev
[ -x "$NETDEV" ] || fail "esp_netdev not built next to esp_sim ($NETDEV)"
APP=$WORK/app.bin
python3 "$(dirname "$0")/mkespimage.py" --chip esp32 --size 65536 --seed 5 --version 2.3.4 \
    --out "$APP" || fail "mkespimage.py failed"

# console DIR SECONDS: power-cycle the board into its app (EN low, then high with
# BOOT high, over DIR/tty.modem) and print what its console says meanwhile.
console() {
    python3 - "$1" "$2" <<'PY'
import os, select, socket, sys, termios, time, tty
d, secs = sys.argv[1], float(sys.argv[2])
fd = os.open(d + "/tty", os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
a = termios.tcgetattr(fd)
a[4] = a[5] = termios.B115200
termios.tcsetattr(fd, termios.TCSANOW, a)
m = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
m.sendto(b"DTR=0 RTS=1", d + "/tty.modem")  # EN low
time.sleep(0.1)
m.sendto(b"DTR=0 RTS=0", d + "/tty.modem")  # EN high, BOOT high: run the app
out, end = b"", time.time() + secs
while time.time() < end:
    if select.select([fd], [], [], 0.05)[0]:
        out += os.read(fd, 4096)
sys.stdout.write(out.decode("latin1"))
PY
}

# boot_app SECONDS: write the app (the board stays in its loader), then boot it;
# the console goes to $SIM_DIR/console.txt.
boot_app() {
    cli -p "$SIM_PORT" --after no-reset flash 0x10000 "$APP"
    [ "$LAST_RC" -eq 0 ] || fail "flashing the app failed (rc $LAST_RC)"
    console "$SIM_DIR" "$1" >"$SIM_DIR/console.txt" || fail "console capture failed"
}

# expect_failed WHAT-REGEX: the persona of the latest sim failed, and said so everywhere.
expect_failed() {
    sim_log_has "net: persona failed: .*$1" || fail "sim.log lacks 'net: persona failed: $1'"
    ! sim_log_has 'net: persona up' || fail "a persona that could not start was logged as up"
    [ -s "$SIM_DIR/net/failed" ] || fail "no $SIM_DIR/net/failed flag"
    grep -Eq -- "$1" "$SIM_DIR/net/failed" || fail "net/failed says '$(cat "$SIM_DIR/net/failed")'"
    grep -aEq "app: version 2\.3\.4 network failed: .*$1" "$SIM_DIR/console.txt" ||
        fail "console lacks the failure line: $(grep -a 'app:' "$SIM_DIR/console.txt" | head -n 3)"
    ! grep -aq "app: version 2.3.4 ip " "$SIM_DIR/console.txt" ||
        fail "the console announced an IP although the persona failed"
    sim_alive
}

log "a persona that starts: up only with DIR/net/ready"
start_sim esp32 --net-bind "$TNET.31"
boot_app 1.5
sim_log_has 'net: persona starting \(pid [0-9]+\)' || fail "no 'net: persona starting' line"
sim_log_has "net: persona up \(pid [0-9]+\) .*version 2\.3\.4 .*ip $TNET\.31" ||
    fail "no 'net: persona up' line"
[ "$(grep -n 'net: persona starting' "$SIM_DIR/sim.log" | head -n1 | cut -d: -f1)" -lt \
    "$(grep -n 'net: persona up' "$SIM_DIR/sim.log" | head -n1 | cut -d: -f1)" ] ||
    fail "'persona up' logged before 'persona starting'"
[ -s "$SIM_DIR/net/ready" ] || fail "persona up but no net/ready"
[ ! -e "$SIM_DIR/net/failed" ] || fail "net/failed on a good persona: $(cat "$SIM_DIR/net/failed")"
grep -aq "app: version 2.3.4 ip $TNET.31" "$SIM_DIR/console.txt" || fail "console lacks the IP line"
stop_sim

log "the persona program does not exist: exec error"
start_sim esp32 --net-bind "$TNET.32" --netdev "$WORK/no/such/esp_netdev"
boot_app 1.5
expect_failed 'cannot run .*/no/such/esp_netdev: No such file or directory'
stop_sim

log "the persona exits before it is ready: status and its last words"
cat >"$WORK/die.sh" <<'SH'
#!/bin/sh
echo "esp_netdev: bind 127.0.0.1:3232: Address already in use" >&2
echo "usage: esp_netdev --chip esp8266|esp32 ..." >&2
exit 3
SH
chmod +x "$WORK/die.sh"
start_sim esp32 --net-bind "$TNET.33" --netdev "$WORK/die.sh"
boot_app 1.5
expect_failed 'exited with status 3 before it was ready: esp_netdev: bind 127.0.0.1:3232: Address already in use'
stop_sim

log "the persona never writes ready: killed after --net-start-timeout"
printf '#!/bin/sh\nexec sleep 60\n' >"$WORK/hang.sh"
chmod +x "$WORK/hang.sh"
start_sim esp32 --net-bind "$TNET.34" --netdev "$WORK/hang.sh" --net-start-timeout 300
boot_app 1.5
expect_failed 'wrote no .*/net/ready within 300 ms \(killed\)'
hpid=$(grep -o 'net: persona starting (pid [0-9]*' "$SIM_DIR/sim.log" | grep -o '[0-9]*$' | head -n1)
[ -n "$hpid" ] || fail "no pid in the 'persona starting' line"
! kill -0 "$hpid" 2>/dev/null || fail "the persona that never got ready (pid $hpid) still runs"
stop_sim

log "a failure is cleared by the next boot that brings the persona up"
cat >"$WORK/flaky.sh" <<SH
#!/bin/sh
[ -e "$WORK/flaky.once" ] && exec "$NETDEV" "\$@"
touch "$WORK/flaky.once"
exit 1
SH
chmod +x "$WORK/flaky.sh"
start_sim esp32 --net-bind "$TNET.35" --netdev "$WORK/flaky.sh"
boot_app 1.5
expect_failed 'exited with status 1 before it was ready'
console "$SIM_DIR" 1.5 >"$SIM_DIR/console2.txt"
sim_log_has "net: persona up \(pid [0-9]+\) .*ip $TNET\.35" || fail "the second boot's persona is not up"
[ ! -e "$SIM_DIR/net/failed" ] || fail "net/failed left over from the first boot"
grep -aq "app: version 2.3.4 ip $TNET.35" "$SIM_DIR/console2.txt" ||
    fail "the second boot's console lacks the IP line"
stop_sim

log "PASS"

#!/usr/bin/env bash
# test_rfc2217_ser2net_reset: auto-reset and baud through Debian's real ser2net,
# end to end, with a board that boots its app unless reset into the loader.
#
# A pty has no modem lines, so here ser2net serves a umockdev tty (/dev/ttyUSBn of a
# CP2102, tests/umock/umock_station.c): ser2net runs inside the testbed, its TIOCMSET
# ioctls on the port reach the board's modem side channel and are logged with a
# timestamp in modem.log, while its tcsetattr runs on the real pty (the board reads the
# host's rate from it). The station (CLI, then espstationd with a manual port) runs
# outside the testbed and only talks RFC 2217 over TCP:
#  - a --strict-reset ESP32 is reset into download mode (SET-CONTROL DTR/RTS ->
#    ser2net -> TIOCMSET -> EN/BOOT), flashed at 921600 (SET-BAUDRATE -> pty), and the
#    hard reset after flashing boots its app; a second session resets it again;
#  - espstationd flashes the same board through a "ports" entry rfc2217://..., by
#    profile at 921600, with the reset (no "no modem lines" in the job log).
# ser2net must be installed (scripts/setup.sh does): missing, the test fails. Without
# umockdev the test skips, like the other umockdev tests.
source "$(dirname "$0")/../umock/udev_lib.sh"
source "$(dirname "$0")/testnet.sh"

command -v ser2net >/dev/null ||
    udev_fail "ser2net is not installed (scripts/setup.sh installs it: apt-get install ser2net)"
: "${ESPSTATION:?ESPSTATION (path of the espstation CLI) must be set}"
: "${STUB_DIR:?STUB_DIR must be set}"
claim_test_net "$UDEV_TEST" || udev_fail "no test network"
ADDR=$TNET.21 # this test's own loopback /24: a fixed port cannot collide
URI=rfc2217://$ADDR:2217

DAEMON_PID=""
_rfc_cleanup() {
    local rc=$?
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    (exit "$rc") || true
    udev_cleanup
}
trap _rfc_cleanup EXIT

# cli ARGS...: espstation with a bound run time; output in $UWORK/cli.N.{out,err}.
CLI_N=0
cli() {
    CLI_N=$((CLI_N + 1))
    OUT=$UWORK/cli.$CLI_N.out ERR=$UWORK/cli.$CLI_N.err
    udev_log "run: espstation $*"
    RC=0
    timeout -k 5 120 "$ESPSTATION" --stub-dir "$STUB_DIR" "$@" >"$OUT" 2>"$ERR" || RC=$?
    ! grep -q Sanitizer "$ERR" || udev_fail "sanitizer report from espstation: $(head -5 "$ERR")"
}
result() { jq -Rc 'fromjson? | select(type == "object" and .event == "result")' "$OUT" | tail -1; }

# check_download_reset BOARD SINCE_MS: after SINCE_MS in modem.log, ser2net's TIOCMSET
# held EN low for a while (>= 10 ms: the engine holds it 20 ms on a first attempt,
# protocols/esp_reset.c, 100 ms on retries; ser2net applies the queued edges a little
# late) and released it with BOOT low (within 5 ms, the RC delay the board samples BOOT
# after). Shorter EN-low states are skipped: one SET-CONTROL per line means
# (1,1) -> (0,0) passes through (0,1) for the time of one ioctl.
check_download_reset() {
    local b=$1 since=$2 got
    got=$(awk -v since="$since" '
        $1 + 0 < since || $0 !~ /TIOCMSET/ { next }
        { t = $1 + 0; en = ($0 ~ / EN=low /); boot = ($0 ~ / BOOT=low /) }
        st == 0 && en { t_en = t; st = 1; next }
        st == 1 && !en && t - t_en < 10 { st = 0; next } # a glitch between two commands
        st == 1 && !en { hold = t - t_en; t_rel = t; st = boot ? 3 : 2; next }
        st == 2 && en { t_en = t; st = 1; next }
        st == 2 && boot && t - t_rel <= 5 { st = 3 }
        st == 2 && t - t_rel > 5 { st = 0 }
        st == 3 { found = 1; exit }
        END { if (st == 3 || found) printf "%.1f\n", hold; else print "none" }' "$UWORK/$b/modem.log")
    [ "$got" != none ] ||
        udev_fail "modem.log of $b has no EN low -> release with BOOT low from ser2net: $(tail -20 "$UWORK/$b/modem.log")"
    awk -v h="$got" 'BEGIN { exit !(h >= 10) }' ||
        udev_fail "EN was held low only $got ms: $(tail -20 "$UWORK/$b/modem.log")"
    udev_log "$b: EN held low $got ms by ser2net's TIOCMSET, released with BOOT low"
}

now_ms() { awk '{ print $1 * 1000 }' /proc/uptime; }
# mark BOARD: remembers how long modem.log and sim.log are now
mark() {
    MODEM_MARK=$(tail -n 1 "$UWORK/$1/modem.log" 2>/dev/null | awk '{ print $1 + 0.001 }')
    : "${MODEM_MARK:=0}"
    SIM_MARK=$(wc -l <"$UWORK/$1/sim.log")
}
sim_new() { tail -n +$((SIM_MARK + 1)) "$UWORK/$1/sim.log"; }

# --- the board, and ser2net in the testbed in front of its tty --------------------------
station_setup "" 131072
umock_start ser2net -n -d -u -c "$UWORK/ser2net.yaml" -P "$UWORK/ser2net.pid"
umock_cmd "add b1 esp32 10c4:ea60 pci-0000:00:14.0-usb-0:1.1:1.0 --strict-reset --mac 24:6f:28:00:22:17 --link-speed 0 --stub-dir $STUB_DIR"
umock_sync
DEV=$(sed -nE 's/.* ok add b1 (\/dev\/tty[A-Z]+[0-9]+) .*/\1/p' "$UWORK/umock.log" | head -1)
[ -n "$DEV" ] || udev_fail "no device node for b1 in umock.log"
cat >"$UWORK/ser2net.yaml" <<EOF
connection: &b1
  accepter: telnet(rfc2217),tcp,$ADDR,2217
  connector: serialdev,$DEV,115200n81,local
EOF
umock_cmd start
umock_sync
for i in $(seq 200); do
    ss -Hltn "src $ADDR:2217" | grepq . && break
    grep -Eq 'ok exit|exited' "$UWORK/umock.log" && udev_fail "ser2net exited: $(tail -5 "$UWORK/program.log")"
    sleep 0.05
done
ss -Hltn "src $ADDR:2217" | grepq . || udev_fail "ser2net does not listen on $ADDR:2217"
assert_grep "$UWORK/b1/sim.log" 'reset -> boot 0x13' "the strict board did not start in its app"

# --- CLI: reset into the loader, 921600, hard reset into the app ------------------------
head -c 200000 /dev/urandom >"$UWORK/cli.bin"
mark b1
cli -p "$URI" -b 921600 --json flash 0x100000 "$UWORK/cli.bin"
[ "$RC" = 0 ] || udev_fail "flash through ser2net failed (rc $RC): $(result) $(tail -5 "$ERR")"
[ "$(result | jq -r '.ok, .baud' | tr '\n' ' ')" = "true 921600 " ] || udev_fail "result: $(result)"
cmp -s <(tail -c +$((0x100000 + 1)) "$UWORK/b1/flash.bin" | head -c 200000) "$UWORK/cli.bin" ||
    udev_fail "the board's flash at 0x100000 does not hold the image"
check_download_reset b1 "$MODEM_MARK"
sim_new b1 | grepq 'reset -> download mode' || udev_fail "the board never entered download mode"
sim_new b1 | grepq 'host baud 921600' || udev_fail "the tty never ran at 921600"
last=$(sim_new b1 | grep -E 'reset -> ' | tail -1)
[[ $last == *"boot 0x13"* ]] || udev_fail "the hard reset after flashing did not boot the app: '$last'"
grep -q 'no modem lines' "$OUT" "$ERR" && udev_fail "the CLI said the port has no modem lines"

# again: the app is running, so only a reset gets the loader
mark b1
cli -p "$URI" --json info
[ "$RC" = 0 ] || udev_fail "second session failed (rc $RC): $(result)"
[ "$(result | jq -r .chip)" = ESP32 ] || udev_fail "info: $(result)"
check_download_reset b1 "$MODEM_MARK"

# --- espstationd: a manual port rfc2217://, flashed by profile at 921600 -----------------
jq --arg u "$URI" '.ports = [{"uri": $u, "label": "R1"}] | .slots = [] | .profiles.line.baud = 921600' \
    "$UWORK/station.json" >"$UWORK/rfc.json"
mark b1
"$ESPSTATIOND" --config "$UWORK/rfc.json" --no-udev --stub-dir "$STUB_DIR" --log-level debug \
    >"$UWORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_sql "select state from jobs where slot='R1' order by id desc limit 1" passed 90
flash_matches b1 || udev_fail "the daemon's job did not write the firmware"
check_download_reset b1 "$MODEM_MARK"
J=$(sql "select id from jobs where slot='R1' order by id desc limit 1")
sql "select line from job_log where job_id = $J order by id" >"$UWORK/joblog"
assert_grep "$UWORK/joblog" 'changed baud to 921600' "the job did not run at 921600: $(cat "$UWORK/joblog")"
assert_no_grep "$UWORK/joblog" 'no modem lines' "the daemon treated the RFC 2217 port as one without modem lines"
sim_new b1 | grepq 'host baud 921600' || udev_fail "the tty never ran at 921600 during the job"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=""
[ "$rc" = 0 ] || udev_fail "espstationd exited with $rc on SIGTERM: $(tail -5 "$UWORK/daemon.log")"
assert_no_grep "$UWORK/daemon.log" 'AddressSanitizer|runtime error:' "sanitizer report in the daemon log"

rc=0
umock_quit || rc=$?
# ser2net's own status on SIGTERM is not ours to judge; it must have run until now.
udev_log "ser2net exit status on SIGTERM: $rc"
udev_log "PASS"

#!/usr/bin/env bash
# test_rfc2217_ser2net: a board behind Debian's real ser2net (4.x), as a serial
# server in front of esp_sim's pty.
#
#  - rfc2217:// (accepter telnet(rfc2217)): the CLI flashes at -b 921600. The rate
#    travels as SET-BAUDRATE, ser2net sets it on the pty (tcsetattr), and the board,
#    which reads the host's rate from the pty (TCGETS2), logs "host baud 921600";
#    had the rate not arrived, every frame after CHANGE_BAUDRATE would be garbled
#    and the flash would fail. The image is one third 0xFF bytes, so IAC escaping is
#    exercised both ways (written, then read back and compared).
#  - tcp:// to a raw ser2net port on the same pty still works: at 115200, the rate
#    ser2net's config gives the port, because raw TCP cannot change it.
#  - rfc2217:// to a raw port or a plain telnet port fails at open with advice.
#
# DTR/RTS: a pty has no modem lines (ser2net's TIOCMSET on it fails and it sends no
# answer), so the board starts in download mode here and sessions end with
# --after no-reset (the stub reboots the chip into its ROM at 115200). The reset
# through ser2net is tested in test_rfc2217_ser2net_reset.sh, where ser2net drives a
# umockdev tty whose modem ioctls reach the board.
#
# ser2net must be installed (scripts/setup.sh does): missing, the test fails.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"

command -v ser2net >/dev/null ||
    fail "ser2net is not installed (scripts/setup.sh installs it: apt-get install ser2net)"

S2N_PIDS=()
_s2n_cleanup() {
    local rc=$? pid
    for pid in "${S2N_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${S2N_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ -f "$WORK/ser2net.log" ]; then
        printf -- '--- ser2net log (tail):\n' >&2
        tail -n 30 "$WORK/ser2net.log" >&2 || true
    fi
    if [ "$rc" -eq 0 ]; then
        _cleanup
    else
        (exit "$rc") || _cleanup # _cleanup reads the status from $?
    fi
}
trap _s2n_cleanup EXIT

# start_ser2net CONFIG ADDR PORT...: runs ser2net in the foreground mode (-n: not
# detached, a child of this test; -u: no UUCP lock files) and waits until it
# listens on every PORT of ADDR.
start_ser2net() {
    local cfg=$1 addr=$2 port deadline
    shift 2
    ser2net -n -d -u -c "$cfg" -P "$WORK/ser2net.pid" >>"$WORK/ser2net.log" 2>&1 &
    S2N_PIDS+=($!)
    deadline=$((SECONDS + 10))
    for port in "$@"; do
        until ss -Hltn "src $addr:$port" | grepq .; do
            kill -0 "${S2N_PIDS[-1]}" 2>/dev/null ||
                fail "ser2net exited at start: $(tail -n 5 "$WORK/ser2net.log")"
            [ $SECONDS -lt $deadline ] || fail "ser2net does not listen on $addr:$port"
            sleep 0.05
        done
    done
    log "ser2net (pid ${S2N_PIDS[-1]}) listens on $addr ports $*"
}

# make_ff_image SIZE FILE SEED: deterministic bytes, one third of them 0xFF (IAC).
make_ff_image() {
    python3 - "$1" "$2" "$3" <<'EOF'
import random, sys
size, out, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = random.Random(seed)
with open(out, "wb") as f:
    f.write(bytes(0xFF if r.random() < 1 / 3 else r.randrange(256) for _ in range(size)))
EOF
}

start_sim esp32
TTY=$SIM_DIR/tty
ADDR=$TNET.21 # this test's own loopback /24 (testnet.sh): fixed ports cannot collide
cat >"$WORK/ser2net.yaml" <<EOF
connection: &rfc
  accepter: telnet(rfc2217),tcp,$ADDR,2217
  connector: serialdev,$TTY,115200n81,local
connection: &raw
  accepter: tcp,$ADDR,2218
  connector: serialdev,$TTY,115200n81,local
connection: &plain
  accepter: telnet,tcp,$ADDR,2219
  connector: serialdev,$TTY,115200n81,local
EOF
start_ser2net "$WORK/ser2net.yaml" "$ADDR" 2217 2218 2219
RFC=rfc2217://$ADDR:2217
RAW=tcp://$ADDR:2218

make_ff_image 300000 "$WORK/ff.bin" 2217
ff=$(tr -dc '\377' <"$WORK/ff.bin" | wc -c)
[ "$ff" -gt 90000 ] || fail "test image has only $ff 0xFF bytes"

# --- rfc2217:// at 921600: the rate reaches the pty --------------------------------------
sim_log_mark
expect_exit 0 -p "$RFC" -b 921600 --after no-reset --json flash 0x10000 "$WORK/ff.bin"
assert_ok_result flash
assert_json '.baud' 921600
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/ff.bin"
sim_log_new_has '^[0-9]+ baud 921600$' || fail "the board never switched to 921600"
sim_log_new_has 'host baud 921600' ||
    fail "the pty never ran at 921600: SET-BAUDRATE did not reach ser2net's serial port"
sim_log_new_has 'wrong baud|garbage' && fail "frames were garbled: $(grep -E 'wrong baud|garbage' "$SIM_DIR/sim.log" | head -3)"
json_log_has 'no modem lines|cannot reset' &&
    fail "the CLI treated the RFC 2217 port as one without modem lines"

# Read back through the same path: the board's 0xFF bytes come escaped by ser2net.
expect_exit 0 -p "$RFC" -b 921600 --after no-reset --json read 0x10000 300000 "$WORK/back.bin"
cmp "$WORK/back.bin" "$WORK/ff.bin" || fail "read back through rfc2217:// differs"
expect_exit 0 -p "$RFC" -b 921600 --after no-reset --json verify 0x10000 "$WORK/ff.bin"
assert_ok_result verify

# --- tcp:// to the raw port: unchanged, at ser2net's 115200 --------------------------------
make_ff_image 60000 "$WORK/raw.bin" 2218
sim_log_mark
expect_exit 0 -p "$RAW" -b 921600 --after no-reset --json flash 0x80000 "$WORK/raw.bin"
assert_ok_result flash
assert_json '.baud' 115200
flash_region_equals "$SIM_DIR" 0x80000 "$WORK/raw.bin"
sim_log_new_has 'baud 921600' && fail "the board left 115200 over raw TCP"
json_log_has 'no modem lines' || fail "the CLI did not say raw TCP has no modem lines"

# --- wrong kind of port ----------------------------------------------------------------------
expect_exit 2 -p "rfc2217://$ADDR:2219" --json info
assert_json_true '.error.message | test("refused the COM-PORT-OPTION")'
assert_json_true '.error.advice | test("telnet\\(rfc2217\\)")'
expect_exit 2 -p "rfc2217://$ADDR:2218" --json info
assert_json_true '.error.message | test("did not negotiate RFC 2217")'
assert_json_true '.error.advice | test("tcp://host:port")'

# The board took all that (the raw port got our telnet requests as data) and still works.
expect_exit 0 -p "$RFC" -b 460800 --after no-reset --json verify 0x80000 "$WORK/raw.bin"
assert_ok_result verify
sim_alive

for pid in "${S2N_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "ser2net (pid $pid) died during the test"
done
done_ok

#!/usr/bin/env bash
# Interrupting a flash (SIGTERM/SIGINT to the CLI) ends it promptly with exit
# 7; the board vanishing mid-flash (the virtual board process is killed, as
# when a USB cable is pulled) ends it with exit 8. Both with a JSON result.
source "${INTEG_LIB:?}"

make_random $((1024 * 1024)) "$WORK/big.bin" 501

# run_bg ARGS...: start the CLI in the background (under timeout), output to
# files; sets BG_PID, BG_OUT.
run_bg() {
    CLI_CALLS=$((CLI_CALLS + 1))
    BG_OUT="$WORK/bg$CLI_CALLS.out"
    LAST_OUT=$BG_OUT
    LAST_ERR="$WORK/bg$CLI_CALLS.err"
    LAST_CMD="espstation $* (background)"
    timeout -k 5 "$CLI_TIMEOUT" "$ESPSTATION" "$@" >"$BG_OUT" 2>"$LAST_ERR" &
    BG_PID=$!
}

# wait_progress: until the background CLI reports write progress (<= 30 s).
wait_progress() {
    local deadline=$((SECONDS + 30))
    until grep -q '"stage":"write"' "$BG_OUT" 2>/dev/null; do
        kill -0 "$BG_PID" 2>/dev/null || fail "CLI ended before writing"
        [ $SECONDS -lt $deadline ] || fail "no write progress within 30 s"
        sleep 0.1
    done
}

# wait_bg MAX_S: wait for the background CLI; sets LAST_RC; fails if it
# takes longer than MAX_S after the signal.
wait_bg() {
    local max=$1 deadline
    deadline=$((SECONDS + max))
    while kill -0 "$BG_PID" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "CLI still running ${max}s after the interruption"
        sleep 0.1
    done
    LAST_RC=0
    wait "$BG_PID" || LAST_RC=$?
    grep -q 'Sanitizer' "$LAST_ERR" && fail "espstation reported a sanitizer error"
    return 0
}

# signal_cli SIG: deliver SIG once to the CLI itself (the child of `timeout`). Signalling
# the timeout process would deliver it twice (timeout forwards it to its child AND to its
# process group), and the CLI treats a second Ctrl-C as "kill me now" on purpose.
signal_cli() {
    local child
    child=$(cat "/proc/$BG_PID/task/$BG_PID/children" 2>/dev/null | awk '{print $1}')
    [ -n "$child" ] || fail "cannot find the CLI process under timeout (pid $BG_PID)"
    kill "-$1" "$child"
}

# --- SIGTERM during a paced ROM write (115200 Bd, ~90 s for 1 MiB) ---------------
start_sim esp32 --link-speed 1
run_bg -p "$SIM_PORT" --no-stub -b 115200 --json flash --no-compress 0x10000 "$WORK/big.bin"
wait_progress
sleep 0.5
signal_cli TERM
wait_bg 10
[ "$LAST_RC" -eq 7 ] || fail "SIGTERM during flash: exit $LAST_RC, expected 7"
assert_json '.ok' false
assert_json '.error.code' cancelled
# The board is still usable afterwards.
sim_alive
expect_exit 0 -p "$SIM_PORT" --no-stub --json info
assert_json '.chip' ESP32

# --- SIGINT, stub write ---------------------------------------------------------------
run_bg -p "$SIM_PORT" -b 115200 --json flash 0x10000 "$WORK/big.bin"
wait_progress
signal_cli INT
wait_bg 10
[ "$LAST_RC" -eq 7 ] || fail "SIGINT during flash: exit $LAST_RC, expected 7"
assert_json '.ok' false

# --- the board disappears mid-write --------------------------------------------------
run_bg -p "$SIM_PORT" -b 115200 --json flash 0x10000 "$WORK/big.bin"
wait_progress
kill -TERM "$SIM_PID"
wait_bg 20
[ "$LAST_RC" -eq 8 ] || fail "board removed during flash: exit $LAST_RC, expected 8"
assert_json '.ok' false
assert_json '.error.code' no_device
assert_json '.error.stage' write

# And a port that vanished before the CLI started: exit 2.
expect_exit 2 -p "$SIM_PORT" --json info

# --- a second flasher on a port in use is refused, the first one unharmed -----------
start_sim esp32 --link-speed 1
make_random 200000 "$WORK/mid.bin" 502
run_bg -p "$SIM_PORT" --no-stub -b 115200 --json flash --no-compress 0x10000 "$WORK/mid.bin"
FIRST_PID=$BG_PID FIRST_OUT=$BG_OUT FIRST_ERR=$LAST_ERR
wait_progress
expect_exit 2 -p "$SIM_PORT" --json info
assert_json_true '.error.code == "busy" or (.error.message | test("busy|in use|locked"; "i"))'
BG_PID=$FIRST_PID BG_OUT=$FIRST_OUT LAST_OUT=$FIRST_OUT LAST_ERR=$FIRST_ERR
LAST_CMD="first flasher (background)"
wait_bg 60
[ "$LAST_RC" -eq 0 ] || fail "the first flasher was disturbed by the second one: exit $LAST_RC"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/mid.bin"
done_ok

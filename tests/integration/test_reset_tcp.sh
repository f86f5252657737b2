#!/usr/bin/env bash
# Getting into the bootloader: a --strict-reset board (boots its app unless
# the DTR/RTS sequence holds BOOT low when EN is released) is reached through
# the reset sequence, and sim.log shows the timeline; over TCP (no modem lines)
# the CLI says it cannot reset and works with a board already in download mode.
source "${INTEG_LIB:?}"

# modem_states DIR: one "ms dtr rts" line per modem change in sim.log
# (asserted = 1), in log order.
modem_states() {
    grep -Ei 'dtr' "$1/sim.log" | grep -Ei 'rts' |
        sed -nE 's/^([0-9]+) .*[Dd][Tt][Rr][ =:]*([01]|on|off|true|false|high|low).*[Rr][Tt][Ss][ =:]*([01]|on|off|true|false|high|low).*$/\1 \2 \3/p' |
        sed -E 's/ (on|true)/ 1/g; s/ (off|false)/ 0/g'
}

# check_reset_timeline DIR: somewhere EN is held low (RTS asserted, DTR not),
# and the next state that releases EN has BOOT low (DTR asserted, RTS not):
# the chip samples GPIO0 low when it comes out of reset.
check_reset_timeline() {
    local dir=$1 states
    states=$(modem_states "$dir")
    [ -n "$states" ] || fail "sim.log has no DTR/RTS lines to check the reset timeline"
    awk '
        { d = $2; r = $3
          if (r == 1 && d == 0) { en_low = 1; t_en = $1; next }
          if (en_low && !(r == 1 && d == 0)) {
              if (d == 1 && r == 0) { ok = 1; exit }
              en_low = 0   # released without BOOT low
          } }
        END { exit ok ? 0 : 1 }' <<<"$states" ||
        fail "no EN-low -> release-with-BOOT-low sequence in the modem timeline:
$states"
}

make_image 200000 "$WORK/app.bin" 401

# --- strict reset: the default sequence reaches the loader --------------------------
start_sim esp32 --strict-reset
STRICT_DIR=$SIM_DIR
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
check_reset_timeline "$SIM_DIR"
# And after flashing the default --after hard-reset pulses EN (RTS) again.
n_before=$(modem_states "$SIM_DIR" | wc -l)
[ "$n_before" -ge 3 ] || fail "expected several modem changes in sim.log, got $n_before"

# No reset requested on a strict board that is running its app: cannot connect.
expect_exit 3 -p "$SIM_PORT" --before no-reset --json info
assert_json '.ok' false

# Again with the reset: fine, repeatedly (each session resets).
expect_exit 0 -p "$SIM_PORT" --json info
assert_json '.chip' ESP32
expect_exit 0 -p "$SIM_PORT" --no-stub --json info
assert_json '.chip' ESP32

# --after no-reset leaves the board in the loader: a --before no-reset session
# then reaches it without any reset.
expect_exit 0 -p "$SIM_PORT" --no-stub --after no-reset --json info
expect_exit 0 -p "$SIM_PORT" --no-stub --before no-reset --json info
assert_json '.chip' ESP32

# `reset`: connects (reset into the loader), then hard-resets into the firmware.
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json reset
assert_ok_result reset
assert_json '.after' hard-reset
last_reset=$(sim_log_new | grep -E 'reset ->' | tail -n1 || true)
[[ $last_reset == *"boot 0x13"* ]] || fail "reset did not end in a firmware boot: '$last_reset'"
sim_log_new_has 'cmd SYNC' || fail "reset did not connect first"
# `--before no-reset-no-sync reset`: no talking at all, just the EN pulse.
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --before no-reset-no-sync --json reset
sim_log_new_has 'cmd ' && fail "--before no-reset-no-sync reset sent commands to the board"
sim_log_new_has 'EN low' || fail "--before no-reset-no-sync reset did not pulse EN"
last_reset=$(sim_log_new | grep -E 'reset ->' | tail -n1 || true)
[[ $last_reset == *"boot 0x13"* ]] || fail "EN pulse did not boot the firmware: '$last_reset'"

# --after no-reset-stub leaves the stub running (at the -b baud, 460800 by
# default): a --before no-reset session finds nothing at 115200, says so, tries
# the -b baud, finds the stub (SYNC replies with value 0) and does not upload it
# again; a --before no-reset-no-sync session talks to it without even a SYNC
# (here with --initial-baud given explicitly).
make_image 30000 "$WORK/small.bin" 402
expect_exit 0 -p "$SIM_PORT" --after no-reset-stub --json flash 0x60000 "$WORK/small.bin"
assert_json '.stub' true
assert_json '.baud' 460800
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --before no-reset --after no-reset-stub \
    --json verify 0x60000 "$WORK/small.bin"
assert_json '.stub' true
json_log_has 'trying 460800 baud' || fail "the CLI did not say it retried at the -b baud"
sim_log_new_has 'MEM_BEGIN' && fail "the running stub was uploaded again"
sim_log_new_has 'EN low' && fail "--before no-reset reset the board"
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --initial-baud 460800 --before no-reset-no-sync --json \
    read 0x60000 30000 "$WORK/nosync.bin"
cmp "$WORK/nosync.bin" "$WORK/small.bin" || fail "read through the already running stub differs"
sim_log_new_has 'cmd SYNC' && fail "--before no-reset-no-sync sent a SYNC"
sim_log_new_has 'MEM_BEGIN' && fail "--before no-reset-no-sync uploaded the stub again"
# nothing at either baud without a reset: the advice names both and the way out
sim_log_mark
expect_exit 3 -p "$SIM_PORT" --before no-reset -b 230400 --json info
assert_json_true '.error.advice | test("115200 or 230400")'

# ESP8266 (74880 Bd boot banner) with a strict reset, ROM and stub.
start_sim esp8266 --strict-reset
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x20000 "$WORK/app.bin"
flash_region_equals "$SIM_DIR" 0x20000 "$WORK/app.bin"
check_reset_timeline "$SIM_DIR"
expect_exit 0 -p "$SIM_PORT" --json info
assert_json '.chip' ESP8266

# ESP32-S3 with strict reset and --after hard-reset (clears force-download first).
start_sim esp32s3 --strict-reset
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
check_reset_timeline "$SIM_DIR"

# --- TCP: no modem lines ---------------------------------------------------------------
start_sim esp32 --tcp 0
[[ $SIM_PORT =~ ^tcp://127\.0\.0\.1:[0-9]+$ ]] || fail "ready file of a --tcp 0 sim: '$SIM_PORT'"
[[ $SIM_PORT =~ :0$ ]] && fail "sim reported port 0 instead of the bound port"
make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 92
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
cp "$WORK/prefill.bin" "$WORK/model.bin"

expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin" 0x80000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.chip' ESP32
json_log_has 'reset' || fail "no JSON log event about the reset over TCP"
json_log_has "cannot reset|can't reset|no (modem|dtr|control) lines|reset (is )?(impossible|not possible|unavailable|skipped)" ||
    fail "the CLI does not say that it cannot reset over TCP"
model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
model_write "$WORK/model.bin" 0x80000 "$WORK/app.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# Human output says it too.
expect_exit 0 -p "$SIM_PORT" --before no-reset --after no-reset-stub info
assert_output 'ESP32'
expect_exit 0 -p "$SIM_PORT" info
assert_output "cannot reset|can't reset|no (modem|dtr|control) lines|reset (is )?(impossible|not possible|unavailable|skipped)"

# A high baud over TCP: the line rate belongs to the serial server, the CLI
# must not break the session trying to change it.
expect_exit 0 -p "$SIM_PORT" -b 921600 --json read 0x10000 200000 "$WORK/tcp-read.bin"
cmp "$WORK/tcp-read.bin" "$WORK/app.bin" || fail "read over TCP returned other bytes"
expect_exit 0 -p "$SIM_PORT" --json verify 0x80000 "$WORK/app.bin" 0x10000 "$WORK/app.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --after no-reset with the stub running soft-resets the stub back into the
# ROM loader (FLASH_BEGIN(0,0)+FLASH_END(reboot)); the strapping latched at the
# last chip reset still says download mode, so the next session finds the ROM.
expect_exit 0 -p "$SIM_PORT" --before no-reset --after no-reset --json info
assert_json '.stub' true
expect_exit 0 -p "$SIM_PORT" --before no-reset --no-stub --json info
assert_json '.chip' ESP32
assert_json '.stub' false

# A TCP port nobody listens on: exit 2 (cannot open port), quickly. The port is held
# bound but not listening by a helper, so connects are refused and no other test's
# server can take it meanwhile (a just-closed port could be reused by one).
stop_sim
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True)
time.sleep(120)' >"$WORK/closed.port" &
HOLDER=$!
for _ in $(seq 100); do [ -s "$WORK/closed.port" ] && break; sleep 0.05; done
port=$(cat "$WORK/closed.port")
[ -n "$port" ] || fail "no closed port"
expect_exit 2 -p "tcp://127.0.0.1:$port" --json info
kill "$HOLDER" 2>/dev/null || true
assert_json '.error.stage | ascii_downcase' open

# The strict board is still fine after all that.
sim_alive "${SIM_PIDS[0]}"
flash_region_equals "$STRICT_DIR" 0x10000 "$WORK/app.bin"
done_ok

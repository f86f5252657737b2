#!/usr/bin/env bash
# esp_sim's flasher stub works as the real stubs do (tests/sim/README.md "Stub
# details"): a data block is answered when the stub takes it and written while the
# next one arrives, erases are started ahead, and a write that fails after its reply
# is reported later (the next command; the legacy stub: every later data block and
# FLASH_END). The station must not take an answer for "written": its END barrier
# and MD5 verify catch such a failure. No timed assertions: the overlap is read from
# the sim's own log, where the order of events is fixed by the model.
source "${INTEG_LIB:?}"

# 128 KiB of random bytes at 0x10000: zlib makes them 9 data blocks (8 of 16 KiB,
# each inflating to a bit less, and a short last one); the stub writes its 32 KiB
# output buffer every second block, so the buffers land at 0x10000, 0x18000,
# 0x20000 and 0x28000 (the last one in the last block's work, when the stream ends).
make_random 131072 "$WORK/app.bin" 17

# 1. Realistic pacing at 2 Mbaud (a block is 82 ms on the wire; a 64 KiB block erase
#    is 150 ms, W25Q32JV typical): blocks arrive while the previous one's flash work
#    still runs, and that work includes erases started ahead.
start_sim esp32 --link-speed 1
cli -p "$SIM_PORT" -b 2000000 --json flash 0x10000 "$WORK/app.bin" || fail "flash failed"
assert_json '.ok' true
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
sim_log_has 'stub FLASH_DEFL_DATA seq=0: reply, then the flash work' || fail "block not answered first"
sim_log_has 'arrived during the previous block.s work, waited' || fail "no block arrived during the previous block's flash work"
grep -Eq 'stub write done: [0-9]+ blocks, [1-9][0-9]* arrived during .* [1-9][0-9]* erases ahead' \
    "$SIM_DIR/sim.log" || fail "summary: no overlap or no erase ahead: $(grep 'stub write done' "$SIM_DIR/sim.log")"
stop_sim

# Knobs off: the stub writes each block before it answers, erases only as a write
# needs it; no block can arrive during the previous one's work.
start_sim esp32 --link-speed 20 --stub-pipeline off --stub-erase-ahead off
cli -p "$SIM_PORT" -b 921600 --json flash 0x10000 "$WORK/app.bin" || fail "flash failed (knobs off)"
assert_json '.ok' true
sim_log_has 'seq=0: flash work, then the reply' || fail "--stub-pipeline off not applied"
grep -Eq 'stub write done: [0-9]+ blocks, 0 arrived during .* 0 erases ahead, [1-9][0-9]* needed' \
    "$SIM_DIR/sim.log" || fail "summary with the knobs off: $(grep 'stub write done' "$SIM_DIR/sim.log")"
stop_sim

# 2. A write that fails in the last block's work: every data block was answered
#    OK, so only the END barrier can tell. The station fails the write stage (exit 4)
#    at the last buffer's address instead of reporting success.
start_sim esp32 --fault write-error:0x2C000
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_json '.error.stage | ascii_downcase' write
assert_json_true '.error.device_status == "0xC4" or .error.device_status == "0xc4"'
sim_log_has 'reporting background write error on FLASH_DEFL_END' ||
    fail "the error was not reported on the END barrier"
# What is on flash is not the image: a later verify (new session) says so.
expect_exit 5 -p "$SIM_PORT" --json verify 0x10000 "$WORK/app.bin"
assert_json '.error.stage | ascii_downcase' verify
stop_sim

# 3. Legacy stub (esptool 4.x): the error of the first buffer (0x10000, written in
#    block 2's work) sticks: block 3 is answered 0xC4 and not written.
start_sim esp32 --stub-gen legacy --fault write-error:0x12000
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_json '.error.stage | ascii_downcase' write
sim_log_has 'reporting background write error on FLASH_DEFL_DATA \(legacy: sticky\)' ||
    fail "legacy stub did not report the error on the next data block"
stop_sim
done_ok

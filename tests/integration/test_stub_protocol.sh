#!/usr/bin/env bash
# test_stub_protocol: the stub protocol as the stubs speak it (issue 8).
# - FLASH_BEGIN / FLASH_DEFL_BEGIN: 4 words to every stub and to the ESP32 ROM, 5 (the
#   encrypt word) only to the ROM of S2-and-later chips. The legacy stub generation
#   (esptool 4.x; esp_sim --stub-gen legacy) refuses 5 words with status 01 00, so a
#   station that sends 5 fails with "stub error 0x01"; both generations must flash.
# - A stub that never says OHAI (esp_sim --fault stub-no-ohai): over a port that can
#   reset the board the flash goes on through the ROM loader with a recorded warning;
#   over tcp:// (no DTR/RTS) it fails at stage stub with advice to flash without it.
source "${INTEG_LIB:?}"

W1="stub did not start; flashed through the ROM loader, slower"

# --- the model itself, without the station's engine: raw commands to the stub personas --
# The legacy stub refuses a 5-word FLASH_BEGIN / FLASH_DEFL_BEGIN with 01 00 and takes 4;
# the current one takes both. (If the persona stopped refusing, the checks below would
# pass whatever the station sends.)
for gen in legacy current; do
    start_sim esp32 --tcp 0 --stub-gen "$gen"
    got=$(python3 "$(dirname "$0")/stub_begin_words.py" "$SIM_PORT" "$STUB_DIR/esp32.json") ||
        fail "$gen stub: the raw session failed: $got"
    want="BEGIN 20:00 00 16:00 00 DEFL_BEGIN 20:00 00 16:00 00"
    [ "$gen" = legacy ] && want="BEGIN 20:01 00 16:00 00 DEFL_BEGIN 20:01 00 16:00 00"
    [ "$got" = "$want" ] || fail "$gen stub persona answered '$got', expected '$want'"
    stop_sim
done

# --- both stub generations flash, with 4-word BEGINs ----------------------------------
for chip in esp32 esp32c3; do
    for gen in legacy current; do
        start_sim "$chip" --stub-gen "$gen"
        make_image 70000 "$WORK/app-$chip-$gen.bin" 801
        make_image 9000 "$WORK/raw-$chip-$gen.bin" 802
        expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app-$chip-$gen.bin"
        assert_ok_result flash
        assert_json '.stub' true
        expect_exit 0 -p "$SIM_PORT" --json flash --no-compress 0x30000 "$WORK/raw-$chip-$gen.bin"
        assert_ok_result flash
        flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app-$chip-$gen.bin"
        flash_region_equals "$SIM_DIR" 0x30000 "$WORK/raw-$chip-$gen.bin"
        sim_log_has 'refused' && fail "$chip $gen stub refused a command: $(grep refused "$SIM_DIR/sim.log")"
        sim_log_has 'cmd FLASH_DEFL_BEGIN len=16' || fail "$chip $gen: no 4-word FLASH_DEFL_BEGIN"
        sim_log_has 'cmd FLASH_BEGIN len=16' || fail "$chip $gen: no 4-word FLASH_BEGIN"
        sim_log_has 'cmd FLASH_(DEFL_)?BEGIN len=20' && fail "$chip $gen: a stub got 5 words"
        stop_sim
    done
done

# --- the ROMs: 4 words to the ESP32's, 5 to the C3's (which takes the encrypt word) -----
for chip in esp32 esp32c3; do
    start_sim "$chip"
    make_image 20000 "$WORK/rom-$chip.bin" 803
    expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/rom-$chip.bin"
    assert_ok_result flash
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/rom-$chip.bin"
    want=16
    [ "$chip" = esp32c3 ] && want=20
    sim_log_has "cmd FLASH_DEFL_BEGIN len=$want" || fail "$chip ROM: FLASH_DEFL_BEGIN not $want bytes"
    stop_sim
done

# --- a stub that never starts, port with DTR/RTS: ROM fallback, warning in the result ---
start_sim esp32 --fault stub-no-ohai
make_image 50000 "$WORK/noohai.bin" 804
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/noohai.bin"
assert_ok_result flash
assert_json '.stub' false
assert_json '.warnings[0]' "$W1"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/noohai.bin"
sim_log_has 'fault stub-no-ohai fired' || fail "the stub-no-ohai fault did not fire"
# reset into the loader at the start, and again for the ROM fallback
[ "$(grep -c 'reset -> download mode' "$SIM_DIR/sim.log")" -ge 2 ] ||
    fail "no second reset into the loader for the ROM fallback"
# the human output ends with the same warning
expect_exit 0 -p "$SIM_PORT" flash 0x10000 "$WORK/noohai.bin"
assert_output "warning: $W1" "fallback warning"
# --erase-all cannot go through the ROM loader the fallback left: refused (exit 9), nothing
# erased, and the advice names the stub that did not start, not a missing stub directory.
expect_exit 9 -p "$SIM_PORT" --json flash --erase-all 0x10000 "$WORK/noohai.bin"
assert_json '.error.stage' erase
assert_json_true '.error.advice | test("stub did not start")'
assert_json_true '.error.advice | test("stub-dir") | not'
sim_log_has 'ERASE_FLASH' && fail "a chip erase was sent to the ROM loader"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/noohai.bin"
stop_sim

# --- the same over tcp:// (no DTR/RTS): fails at stage stub, says how to flash anyway ---
start_sim esp32 --tcp 0 --fault stub-no-ohai
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/noohai.bin"
assert_json '.error.stage' stub
assert_json_true '.error.advice | test("no reset can bring back the ROM loader")'
assert_json_true '.error.advice | test("flash without the stub")'
assert_json_true '.error.advice | test("--no-stub")'
stop_sim
done_ok

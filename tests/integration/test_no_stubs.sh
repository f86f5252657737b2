#!/usr/bin/env bash
# Without stub files (--stub-dir pointing to an empty directory) flashing
# still works through the ROM, and the CLI says it runs ROM-only (slower).
source "${INTEG_LIB:?}"

mkdir -p "$WORK/empty-stubs"
make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 93

for chip in esp32 esp8266 esp32c3; do
    start_sim "$chip"
    prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
    cp "$WORK/prefill.bin" "$WORK/model.bin"
    make_image 70000 "$WORK/app-$chip.bin" 300
    make_image 4097 "$WORK/small-$chip.bin" 301

    expect_exit 0 -p "$SIM_PORT" --stub-dir "$WORK/empty-stubs" --json flash \
        0x10000 "$WORK/app-$chip.bin" 0x9000 "$WORK/small-$chip.bin"
    assert_ok_result flash
    assert_json '.stub' false
    # The JSON stream carries a log event saying why it is ROM-only.
    json_log_has 'rom[ -]only|rom loader only|no (flasher )?stub|stub.*(not found|missing|unavailable)' ||
        fail "no JSON log event says the flash runs ROM-only"
    model_write "$WORK/model.bin" 0x10000 "$WORK/app-$chip.bin"
    model_write "$WORK/model.bin" 0x9000 "$WORK/small-$chip.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"
    # No stub upload happened on the board.
    if sim_log_has 'OHAI|stub (running|started|persona)'; then
        fail "sim.log shows a stub started although no stub files were given"
    fi

    # Human output warns: ROM-only, slower.
    expect_exit 0 -p "$SIM_PORT" --stub-dir "$WORK/empty-stubs" flash 0x10000 "$WORK/app-$chip.bin"
    assert_output 'rom[ -]only|rom loader only|without (a |the )?stub|no (flasher )?stub' "ROM-only notice"
    assert_output 'slow' "'slower' notice"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"

    # A stub dir that does not exist behaves the same (no crash, ROM fallback).
    expect_exit 0 -p "$SIM_PORT" --stub-dir "$WORK/no-such-dir" --json info
    assert_json '.stub' false
    stop_sim
done
# Broken stub files: not valid JSON -> ROM fallback with a warning; a stub
# for another chip under the right name (the board never says OHAI) -> the
# chip is reset into the bootloader again and flashed through the ROM, with a
# warning that says the stub did not start; never a hang or a crash.
mkdir -p "$WORK/bad-stubs" "$WORK/wrong-stubs"
printf '{"text": "!!!", "entry": 5' >"$WORK/bad-stubs/esp32.json"
cp "$STUB_DIR/esp32c3.json" "$WORK/wrong-stubs/esp32.json"
start_sim esp32
make_image 30000 "$WORK/s.bin" 302
expect_exit 0 -p "$SIM_PORT" --stub-dir "$WORK/bad-stubs" --json flash 0x10000 "$WORK/s.bin"
assert_json '.stub' false
json_log_has 'esp32.json' || fail "no warning naming the unusable stub file"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/s.bin"
make_image 30000 "$WORK/s2.bin" 303
expect_exit 0 -p "$SIM_PORT" --stub-dir "$WORK/wrong-stubs" --json flash 0x10000 "$WORK/s2.bin"
assert_json '.stub' false
json_log_has 'did not start' || fail "no warning that the stub did not start"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/s2.bin"
# the fallback reset the chip: two download-mode resets in this session
[ "$(grep -c 'reset -> download mode' "$SIM_DIR/sim.log")" -ge 3 ] ||
    fail "expected a second reset into the bootloader for the ROM fallback"
stop_sim
done_ok

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
done_ok

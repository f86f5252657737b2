#!/usr/bin/env bash
# ESP32-C3 and ESP32-S3: flashing through the stub with compression (and the
# S3 ROM once, which takes the 5-word FLASH_BEGIN), several regions per call.
source "${INTEG_LIB:?}"

make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 97

flash_chip() { # CHIP NAME SEEDBASE
    local chip=$1 name=$2 s=$3
    cp "$WORK/prefill.bin" "$WORK/model-$chip.bin"
    start_sim "$chip"
    prefill_flash "$SIM_DIR" "$WORK/prefill.bin"

    make_image 1 "$WORK/$chip-1.bin" $((s + 1))
    make_image 24576 "$WORK/$chip-2.bin" $((s + 2))
    make_image $((1024 * 1024 + 3)) "$WORK/$chip-3.bin" $((s + 3))
    make_image 9999 "$WORK/$chip-4.bin" $((s + 4))
    expect_exit 0 -p "$SIM_PORT" --json flash \
        0x0 "$WORK/$chip-1.bin" 0x8000 "$WORK/$chip-2.bin" 0x10000 "$WORK/$chip-3.bin" \
        0x3FD000 "$WORK/$chip-4.bin"
    assert_ok_result flash
    assert_json '.chip' "$name"
    assert_json '.stub' true
    assert_json_true '.mac | test("^([0-9a-f]{2}:){5}[0-9a-f]{2}$")'
    assert_regions_json 0x0 "$WORK/$chip-1.bin" 0x8000 "$WORK/$chip-2.bin" \
        0x10000 "$WORK/$chip-3.bin" 0x3FD000 "$WORK/$chip-4.bin"
    assert_json_true '[.regions[].verified] | all'
    assert_json_true ".wire_bytes < $((1024 * 1024 * 8 / 10))"
    model_write "$WORK/model-$chip.bin" 0x0 "$WORK/$chip-1.bin"
    model_write "$WORK/model-$chip.bin" 0x8000 "$WORK/$chip-2.bin"
    model_write "$WORK/model-$chip.bin" 0x10000 "$WORK/$chip-3.bin"
    model_write "$WORK/model-$chip.bin" 0x3FD000 "$WORK/$chip-4.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model-$chip.bin"
}

flash_chip esp32c3 ESP32-C3 100
C3_DIR=$SIM_DIR
flash_chip esp32s3 ESP32-S3 200

# S3 through the ROM only (compressed, 5-word FLASH_DEFL_BEGIN).
make_image 150000 "$WORK/s3rom.bin" 250
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x200000 "$WORK/s3rom.bin"
assert_ok_result flash
assert_json '.chip' ESP32-S3
assert_json '.stub' false
assert_json_true '.regions[0].verified'
model_write "$WORK/model-esp32s3.bin" 0x200000 "$WORK/s3rom.bin"
flash_equals_model "$SIM_DIR" "$WORK/model-esp32s3.bin"

# The C3 board was not touched by the S3 runs.
flash_equals_model "$C3_DIR" "$WORK/model-esp32c3.bin"
done_ok

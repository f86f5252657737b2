#!/usr/bin/env bash
# Baud changes (the sim garbles bytes sent at a baud the other side does not
# use, so a wrong switch shows up as failure) and flash sizes other than 4 MB:
# 16 MB ESP32 written near its end through ROM and stub, a 1 MB ESP8266 whose
# end is refused.
source "${INTEG_LIB:?}"

make_image 120000 "$WORK/app.bin" 701

# --- baud rates --------------------------------------------------------------------
start_sim esp32
for b in 115200 230400 921600 2000000; do
    for stub in "" --no-stub; do
        expect_exit 0 -p "$SIM_PORT" -b "$b" $stub --json flash 0x20000 "$WORK/app.bin"
        assert_ok_result flash
        assert_json '.baud' "$b"
        assert_json '.regions[0].verified' true
        flash_region_equals "$SIM_DIR" 0x20000 "$WORK/app.bin"
    done
done
sim_log_has 'frame at wrong baud' && fail "the host sent frames at a baud the board did not use"
# ESP32-C3 / S3 ROMs and stubs at 921600 too.
for chip in esp32c3 esp32s3; do
    start_sim "$chip"
    expect_exit 0 -p "$SIM_PORT" -b 921600 --no-stub --json flash 0x20000 "$WORK/app.bin"
    assert_json '.baud' 921600
    expect_exit 0 -p "$SIM_PORT" -b 921600 --json read 0x20000 120000 "$WORK/rb-$chip.bin"
    cmp "$WORK/rb-$chip.bin" "$WORK/app.bin" || fail "$chip read at 921600 differs"
    stop_sim
done

# --- 16 MB ESP32 ---------------------------------------------------------------------
start_sim esp32 --flash-size 16MB
make_image 65536 "$WORK/end.bin" 702
expect_exit 0 -p "$SIM_PORT" --json info
assert_json '.flash_size' $((16 * 1024 * 1024))
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0xFF0000 "$WORK/end.bin" 0x800000 "$WORK/app.bin"
assert_json_true '[.regions[].verified] | all'
flash_region_equals "$SIM_DIR" 0xFF0000 "$WORK/end.bin"
flash_region_equals "$SIM_DIR" 0x800000 "$WORK/app.bin"
make_image 65536 "$WORK/end2.bin" 703
expect_exit 0 -p "$SIM_PORT" --json flash 0xFF0000 "$WORK/end2.bin"
flash_region_equals "$SIM_DIR" 0xFF0000 "$WORK/end2.bin"
expect_exit 0 -p "$SIM_PORT" --json read 0xFF0000 65536 "$WORK/rb-end.bin"
cmp "$WORK/rb-end.bin" "$WORK/end2.bin" || fail "read near the end of 16 MB differs"
expect_exit 6 -p "$SIM_PORT" --json flash 0xFF8000 "$WORK/end.bin"
stop_sim

# --- 1 MB ESP8266 --------------------------------------------------------------------
start_sim esp8266 --flash-size 1MB
make_image 4096 "$WORK/last.bin" 704
expect_exit 0 -p "$SIM_PORT" --json flash 0xFF000 "$WORK/last.bin"
flash_region_equals "$SIM_DIR" 0xFF000 "$WORK/last.bin"
expect_exit 6 -p "$SIM_PORT" --json flash 0x100000 "$WORK/last.bin"
expect_exit 6 -p "$SIM_PORT" --no-stub --json flash 0xFF800 "$WORK/last.bin"
[ "$(size_of "$SIM_DIR/flash.bin")" -eq $((1024 * 1024)) ] || fail "flash.bin changed size"
done_ok

#!/usr/bin/env bash
# read returns what was written (stub READ_FLASH and ROM READ_FLASH_SLOW),
# verify passes on good flash and fails with exit 5 after one byte changes,
# erase --region erases exactly that range, erase wipes the chip.
source "${INTEG_LIB:?}"

make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 96
cp "$WORK/prefill.bin" "$WORK/model.bin"
start_sim esp32
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"

make_image 300000 "$WORK/app.bin" 71
make_image 3072 "$WORK/pt.bin" 72
expect_exit 0 -p "$SIM_PORT" --json flash 0x8000 "$WORK/pt.bin" 0x10000 "$WORK/app.bin"
assert_ok_result flash
model_write "$WORK/model.bin" 0x8000 "$WORK/pt.bin"
model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- read ------------------------------------------------------------------------
expect_exit 0 -p "$SIM_PORT" --json read 0x10000 300000 "$WORK/r1.bin"
assert_ok_result read
cmp "$WORK/r1.bin" "$WORK/app.bin" || fail "stub read of the app differs from what was written"

# Unaligned read that spans written data and untouched prefill.
expect_exit 0 -p "$SIM_PORT" --json read 0x7F01 12345 "$WORK/r2.bin"
cmp "$WORK/r2.bin" <(tail -c +$((0x7F01 + 1)) "$WORK/model.bin" | head -c 12345) ||
    fail "read 0x7F01 12345 differs from the flash contents"

# ROM read (READ_FLASH_SLOW, 64 bytes per command).
expect_exit 0 -p "$SIM_PORT" --no-stub --json read 0x10000 5000 "$WORK/r3.bin"
assert_ok_result read
cmp "$WORK/r3.bin" <(head -c 5000 "$WORK/app.bin") || fail "ROM read differs"

# Reading past the end of flash is refused, nothing is written.
cli -p "$SIM_PORT" --json read 0x3FF000 8192 "$WORK/r4.bin" || true
[ "$LAST_RC" -ne 0 ] || fail "read past the end of a 4 MB flash succeeded"

# --- verify ----------------------------------------------------------------------
expect_exit 0 -p "$SIM_PORT" --json verify 0x8000 "$WORK/pt.bin" 0x10000 "$WORK/app.bin"
assert_ok_result verify
assert_json_true '[.regions[].verified] | all'

# Change one byte in the middle of the app, behind the flasher's back.
printf '\x5a' | dd of="$SIM_DIR/flash.bin" bs=1 seek=$((0x10000 + 123457)) conv=notrunc status=none
cmp -s "$SIM_DIR/flash.bin" "$WORK/model.bin" && fail "test bug: byte change did not land"
expect_exit 5 -p "$SIM_PORT" --json verify 0x8000 "$WORK/pt.bin" 0x10000 "$WORK/app.bin"
assert_json '.ok' false
assert_json '.error.stage | ascii_downcase' verify
# The partition table still matches, the app does not.
assert_json_true '.regions | length == 2'
assert_json_true '.regions[0].verified == true and .regions[1].verified == false'
# Human output says which region failed.
expect_exit 5 -p "$SIM_PORT" verify 0x10000 "$WORK/app.bin"
assert_output '0x0*10000' "failing region offset in the message"
# Restore the model's idea of flash.
dd if="$WORK/model.bin" of="$SIM_DIR/flash.bin" bs=1 skip=$((0x10000 + 123457)) \
    seek=$((0x10000 + 123457)) count=1 conv=notrunc status=none
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# ROM-only verify (ROM SPI_FLASH_MD5) also works.
expect_exit 0 -p "$SIM_PORT" --no-stub --json verify 0x10000 "$WORK/app.bin"
assert_ok_result verify

# --- erase --region ----------------------------------------------------------------
expect_exit 0 -p "$SIM_PORT" --json erase --region 0x20000 0x3000
assert_ok_result erase
model_erase "$WORK/model.bin" 0x20000 0x3000
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

expect_exit 0 -p "$SIM_PORT" --no-stub --json erase --region 0x1FF000 0x2000
assert_ok_result erase
model_erase "$WORK/model.bin" 0x1FF000 0x2000
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# Unaligned erase: refused before touching anything.
cli -p "$SIM_PORT" --json erase --region 0x20100 0x1000 || true
case $LAST_RC in 1 | 6) ;; *) fail "unaligned erase --region: exit $LAST_RC, expected 1 or 6" ;; esac
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# verify now fails (the app lost 0x20000..0x23000).
expect_exit 5 -p "$SIM_PORT" --json verify 0x10000 "$WORK/app.bin"

# --- erase all --------------------------------------------------------------------
expect_exit 0 -p "$SIM_PORT" --json erase
assert_ok_result erase
head -c $((4 * 1024 * 1024)) /dev/zero | tr '\0' '\377' >"$WORK/model.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# flash --erase-all: everything outside the region is erased too.
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
make_image 5000 "$WORK/small.bin" 73
expect_exit 0 -p "$SIM_PORT" --json flash --erase-all 0x1000 "$WORK/small.bin"
assert_ok_result flash
model_write "$WORK/model.bin" 0x1000 "$WORK/small.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

sim_alive
done_ok

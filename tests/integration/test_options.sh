#!/usr/bin/env bash
# Command options and input validation through the real CLI: --no-verify,
# --erase-all/erase without the stub and verify on the ESP8266 ROM (refused as
# unsupported, exit 9), bad input
# and output files refused before the board is touched, --flash-size detect.
source "${INTEG_LIB:?}"

make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 91
cp "$WORK/prefill.bin" "$WORK/model.bin"
start_sim esp32
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
make_image 50000 "$WORK/app.bin" 601

# --- --no-verify: written, not verified, no MD5 asked after the write ---------------
# (the re-flash of changed sectors compares by MD5 before writing; over the random
# prefill everything differs, so the whole region is written and not verified)
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash --no-verify 0x10000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.regions[0].verified' false
assert_json '.skipped_bytes' 0
sim_log_new | awk '$3 == "FLASH_DEFL_END" { w = 1 } w && $3 == "SPI_FLASH_MD5" { bad = 1 }
    END { exit !bad }' && fail "--no-verify still asked the chip for an MD5 after the write"
model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# --no-verify --no-diff: no MD5 at all, the whole region written again
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash --no-verify --no-diff 0x10000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.diff' false
assert_json '.regions[0].verified' false
sim_log_new_has 'SPI_FLASH_MD5' && fail "--no-verify --no-diff still asked the chip for an MD5"
sim_log_new_has 'FLASH_DEFL_DATA' || fail "--no-diff did not write the region"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- input files: empty, missing -> exit 6 before the port is touched ---------------
: >"$WORK/empty.bin"
sim_log_mark
expect_exit 6 -p "$SIM_PORT" --json flash 0x10000 "$WORK/empty.bin"
assert_json_true '.error.message | test("empty.bin")'
expect_exit 6 -p "$SIM_PORT" --json flash 0x10000 "$WORK/missing.bin"
assert_json_true '.error.message | test("missing.bin")'
expect_exit 6 -p "$SIM_PORT" --json verify 0x10000 "$WORK/missing.bin"
sim_log_new_has 'modem|cmd ' && fail "the board was touched although the input was refused"

# --- output file of read: unusable path -> exit 6, board untouched -----------------
sim_log_mark
expect_exit 6 -p "$SIM_PORT" --json read 0x10000 4096 "$WORK/no-such-dir/out.bin"
sim_log_new_has 'cmd ' && fail "read with an unusable output path talked to the board"
# A failed read does not leave a file behind; an existing file survives.
echo "keep me" >"$WORK/existing.bin"
start_sim esp32 --fault stall:30
expect_exit "3|4" -p "$SIM_PORT" --json read 0x10000 50000 "$WORK/existing.bin"
[ "$(cat "$WORK/existing.bin")" = "keep me" ] || fail "a failed read clobbered the existing output file"
stop_sim
start_sim esp32 --fault stall:30 # the stall fires once: a fresh board for the next case
expect_exit "3|4" -p "$SIM_PORT" --json read 0x10000 50000 "$WORK/new.bin"
[ ! -e "$WORK/new.bin" ] || fail "a failed read left a partial new file behind"
stop_sim

# --- whole-chip erase needs the stub: refused as unsupported (exit 9), with advice ----
SIM_DIR=${SIM_DIRS[0]}
SIM_PID=${SIM_PIDS[0]}
SIM_PORT=$SIM_DIR/tty
sim_log_mark
expect_exit 9 -p "$SIM_PORT" --no-stub --json erase
assert_json '.ok' false
assert_json '.error.stage' erase
assert_json '.error.code' not_supported
assert_json_true '.error.message | test("stub"; "i")'
assert_json_true '.error.advice | test("drop --no-stub")'
assert_json_true '.error.advice | test("erase --region 0 0x400000")'
sim_log_new_has 'ERASE_FLASH' && fail "a chip erase was sent to the ROM loader"
expect_exit 9 -p "$SIM_PORT" --no-stub --json flash --erase-all 0x10000 "$WORK/app.bin"
assert_json_true '.error.advice | test("without --erase-all")'
# The ROM's way that the advice names works: erase the whole range region by region.
expect_exit 0 -p "$SIM_PORT" --no-stub --json erase --region 0x3F0000 0x10000
model_erase "$WORK/model.bin" 0x3F0000 0x10000
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- --flash-size detect patches the bootloader header with the JEDEC size ---------
# A minimal ESP32 image (chip id 0, no hash): 24-byte header, one 16-byte segment.
{
    printf '\xe9\x01\x02\x00\x00\x04\x08\x40'                 # magic, 1 seg, DIO, 1MB/40m, entry
    printf '\xee\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x00\x00\x00'  # ext hdr, id 0
    printf '\x00\x00\xfb\x3f\x10\x00\x00\x00'                 # load 0x3FFB0000, 16 bytes
    printf '0123456789abcdef'
} >"$WORK/boot.bin"
x=$((0xEF))
for b in $(printf '0123456789abcdef' | od -An -v -tu1); do x=$((x ^ b)); done
pad=$(((15 - $(size_of "$WORK/boot.bin") % 16 + 16) % 16))
head -c "$pad" /dev/zero >>"$WORK/boot.bin"
printf "$(printf '\\x%02x' "$x")" >>"$WORK/boot.bin"
expect_exit 0 -p "$SIM_PORT" --json flash --flash-size detect 0x1000 "$WORK/boot.bin"
assert_ok_result flash
# 4 MB on the ESP32 is size code 2: byte 3 = 0x20 (frequency nibble kept: 40m = 0).
[ "$(xxd -s $((0x1003)) -l 1 -p "$SIM_DIR/flash.bin")" = 20 ] ||
    fail "header byte 3 at 0x1003 is $(xxd -s $((0x1003)) -l 1 -p "$SIM_DIR/flash.bin"), expected 20"
cmp -s -i $((0x1004)):4 "$SIM_DIR/flash.bin" "$WORK/boot.bin" -n $(($(size_of "$WORK/boot.bin") - 4)) ||
    fail "bytes after the header fields changed"

# --- ESP8266 ROM cannot verify: verify must not pass -----------------------------------
start_sim esp8266
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
expect_exit 9 -p "$SIM_PORT" --no-stub --json verify 0x10000 "$WORK/app.bin"
assert_json '.ok' false
# With the stub it works.
expect_exit 0 -p "$SIM_PORT" --json verify 0x10000 "$WORK/app.bin"
assert_json '.regions[0].verified' true

# --- ESP8266 ROM erase --region: exactly the region, or refused --------------------------
# The ROM's FLASH_BEGIN erase cannot erase a single sector inside a 64 KiB block
# (it erases two); erasing a neighbour the user did not name is data loss.
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
cp "$WORK/prefill.bin" "$WORK/model8266.bin"
cli -p "$SIM_PORT" --no-stub --json erase --region 0x20000 0x1000 || true
case $LAST_RC in
0) model_erase "$WORK/model8266.bin" 0x20000 0x1000 ;;
1 | 4 | 6) assert_json_true '.error.message | length > 0' ;;
*) fail "ESP8266 ROM erase --region: exit $LAST_RC" ;;
esac
flash_equals_model "$SIM_DIR" "$WORK/model8266.bin"
# An even number of sectors is exact through the ROM.
expect_exit 0 -p "$SIM_PORT" --no-stub --json erase --region 0x30000 0x2000
model_erase "$WORK/model8266.bin" 0x30000 0x2000
flash_equals_model "$SIM_DIR" "$WORK/model8266.bin"
done_ok

#!/usr/bin/env bash
# ESP32: flash through the ROM (compressed, then --no-compress) and through the
# stub with compression; several regions per call, 1 byte .. 2 MiB, offsets
# from 0x0 to the last sector, one region above the ROM's default 2 MB limit.
# The whole flash.bin must equal the model (prefill pattern + exactly the
# sectors each region touches), so over-erase and stray writes show up.
source "${INTEG_LIB:?}"

make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 99
cp "$WORK/prefill.bin" "$WORK/model.bin"

start_sim esp32
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"

# --- A: ROM only, compressed (FLASH_DEFL_* in the ESP32 ROM) ----------------
make_image 1 "$WORK/a1.bin" 11
make_image 5003 "$WORK/a2.bin" 12    # not a multiple of 4, offset not 64K-aligned
make_image 307200 "$WORK/a3.bin" 13
make_image 4096 "$WORK/a4.bin" 14    # the very last sector
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash \
    0x1000 "$WORK/a1.bin" 0x3000 "$WORK/a2.bin" 0x10000 "$WORK/a3.bin" 0x3FF000 "$WORK/a4.bin"
assert_ok_result flash
assert_json '.chip' ESP32
assert_json '.stub' false
assert_regions_json 0x1000 "$WORK/a1.bin" 0x3000 "$WORK/a2.bin" 0x10000 "$WORK/a3.bin" \
    0x3FF000 "$WORK/a4.bin"
assert_json_true '[.regions[].verified] | all'
assert_json '.bytes' $((1 + 5003 + 307200 + 4096))
assert_json_true '.wire_bytes > 0 and .seconds > 0 and .kbps > 0'
[ "$(json_events progress | wc -l)" -ge 1 ] || fail "no progress events in --json output"
model_write "$WORK/model.bin" 0x1000 "$WORK/a1.bin"
model_write "$WORK/model.bin" 0x3000 "$WORK/a2.bin"
model_write "$WORK/model.bin" 0x10000 "$WORK/a3.bin"
model_write "$WORK/model.bin" 0x3FF000 "$WORK/a4.bin"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/a3.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
assert_json '.compressed' true
# The ESP32 ROM got compressed blocks, and no stub was uploaded.
sim_log_new_has 'cmd FLASH_DEFL_DATA' || fail "ROM run did not use FLASH_DEFL_DATA"
sim_log_new_has 'cmd (FLASH_DATA|MEM_BEGIN)' && fail "ROM run sent FLASH_DATA or uploaded code"

# --- B: ROM only, uncompressed; a region above 2 MB needs SPI_SET_PARAMS ----
make_image $((65536 + 1)) "$WORK/b1.bin" 21
make_image 65536 "$WORK/b2.bin" 22
make_image 100000 "$WORK/b3.bin" 23
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash --no-compress \
    0x20000 "$WORK/b1.bin" 0x1F0000 "$WORK/b2.bin" 0x200000 "$WORK/b3.bin"
assert_ok_result flash
assert_json '.stub' false
assert_regions_json 0x20000 "$WORK/b1.bin" 0x1F0000 "$WORK/b2.bin" 0x200000 "$WORK/b3.bin"
assert_json_true '[.regions[].verified] | all'
# Uncompressed: every image byte crosses the wire (plus framing).
assert_json_true ".wire_bytes >= $((65537 + 65536 + 100000))"
assert_json '.compressed' false
sim_log_new_has 'cmd FLASH_DATA' || fail "--no-compress run did not use FLASH_DATA"
sim_log_new_has 'cmd FLASH_DEFL' && fail "--no-compress run sent compressed data"
# Above 2 MB the ROM needs SPI_SET_PARAMS with the real size first.
sim_log_new_has 'spi params: total size 0x400000' || fail "no SPI_SET_PARAMS with 4 MB"
model_write "$WORK/model.bin" 0x20000 "$WORK/b1.bin"
model_write "$WORK/model.bin" 0x1F0000 "$WORK/b2.bin"
model_write "$WORK/model.bin" 0x200000 "$WORK/b3.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- C: stub + compression, 2 MiB ---------------------------------------------
make_image $((2 * 1024 * 1024)) "$WORK/c1.bin" 31
make_image 3072 "$WORK/c2.bin" 32
make_image 17 "$WORK/c3.bin" 33
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash \
    0x8000 "$WORK/c2.bin" 0x10000 "$WORK/c1.bin" 0x300000 "$WORK/c3.bin"
assert_ok_result flash
assert_json '.chip' ESP32
assert_json '.stub' true
assert_regions_json 0x8000 "$WORK/c2.bin" 0x10000 "$WORK/c1.bin" 0x300000 "$WORK/c3.bin"
assert_json_true '[.regions[].verified] | all'
assert_json '.bytes' $((2 * 1024 * 1024 + 3072 + 17))
# About half of the image is compressible: the wire must carry clearly less.
assert_json_true ".wire_bytes < $((2 * 1024 * 1024 * 8 / 10))"
assert_json '.compressed' true
# Progress: every region reported in order, each write ending at done == total
# == file size, region/regions/address consistent.
json_events progress >"$WORK/progress.jsonl"
jq -s -e --argjson sizes "[3072, $((2 * 1024 * 1024)), 17]" --argjson addrs "[32768, 65536, 3145728]" '
    [.[] | select(.stage == "write")] as $w
    | ($w | map(.region) | . == sort) and ($w | all(.regions == 3))
    and ([range(0; 3)] | all(. as $i
        | ($w | map(select(.region == $i))) as $r
        | ($r | length) >= 1 and ($r | last | .done == .total and .total == $sizes[$i])
          and ($r | all(.address == $addrs[$i])) and ($r | map(.done) | . == sort)))' \
    "$WORK/progress.jsonl" >/dev/null || fail "write progress events inconsistent: $(head -c 600 "$WORK/progress.jsonl")"
sim_log_new_has 'stub image matches esp32.json' || fail "the uploaded stub is not the esp32 stub"
sim_log_new_has 'cmd FLASH_DEFL_DATA' || fail "stub run did not use FLASH_DEFL_DATA"
# Default --after hard-reset: the board was reset into its firmware at the end.
last_reset=$(sim_log_new | grep -E 'reset ->' | tail -n1 || true)
[[ $last_reset == *"boot 0x13"* ]] ||
    fail "after the flash the board did not boot its firmware (hard reset): '$last_reset'"
model_write "$WORK/model.bin" 0x8000 "$WORK/c2.bin"
model_write "$WORK/model.bin" 0x10000 "$WORK/c1.bin"
model_write "$WORK/model.bin" 0x300000 "$WORK/c3.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- D: human output of a stub flash names the chip and says verified -----
make_image 40000 "$WORK/d1.bin" 41
expect_exit 0 -p "$SIM_PORT" flash 0x50000 "$WORK/d1.bin"
assert_output 'ESP32'
assert_output 'verif'
model_write "$WORK/model.bin" 0x50000 "$WORK/d1.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

sim_alive
done_ok

#!/usr/bin/env bash
# Safety checks before writing: an image built for another chip is refused
# (exit 6) at the bootloader offset and accepted with --force; a region past
# the end of flash and overlapping regions are refused; flash-mode/size/freq
# options patch the header of an image at the bootloader offset and the
# appended SHA-256 is recomputed.
source "${INTEG_LIB:?}"

# le16 V / le32 V: little-endian bytes as \x escapes for printf.
le16() { printf '\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)); }
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) \
    $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }

# make_esp_image OUT CHIP_ID [HASH=1] [MODE=2] [SIZEFREQ=0x20]
# (MIN_REV_FULL / MAX_REV_FULL from the environment, default 0 / 0xFFFF)
# A tiny valid ESP32-family image: common header, extended header with
# CHIP_ID, two segments, zero padding to 15 mod 16, the 0xEF-seeded XOR
# checksum byte, then (HASH=1) the SHA-256 of everything before.
make_esp_image() {
    local out=$1 chip_id=$2 hash=${3:-1} mode=${4:-2} sf=${5:-0x20}
    local seg1 seg2 b x=$((0xEF)) len pad
    seg1="$WORK/seg1.$$" seg2="$WORK/seg2.$$"
    head -c 32 < <(yes "segment one data") >"$seg1"   # 32 bytes
    make_random 20 "$seg2" $((chip_id + 5))            # 20 bytes (multiple of 4)
    {
        printf '\xe9\x02'
        printf "$(printf '\\x%02x\\x%02x' "$mode" "$sf")"
        printf "$(le32 0x40380400)"                               # entry
        printf '\xee\x00\x00\x00'                                 # wp pin, drive strengths
        printf "$(le16 "$chip_id")"                               # chip id
        printf '\x00'                                             # min_rev (legacy)
        printf "$(le16 "${MIN_REV_FULL:-0}")$(le16 "${MAX_REV_FULL:-0xFFFF}")" # min/max_rev_full
        printf '\x00\x00\x00\x00'                                 # reserved
        printf "$(printf '\\x%02x' "$hash")"                      # hash_appended
        printf "$(le32 0x3FC88000)$(le32 32)"; cat "$seg1"
        printf "$(le32 0x40380400)$(le32 20)"; cat "$seg2"
    } >"$out"
    for b in $(od -An -v -tu1 "$seg1" "$seg2"); do x=$((x ^ b)); done
    len=$(size_of "$out")
    pad=$(((15 - len % 16 + 16) % 16))
    head -c "$pad" /dev/zero >>"$out"
    printf "$(printf '\\x%02x' "$x")" >>"$out"
    [ $(($(size_of "$out") % 16)) -eq 0 ] || fail "test bug: image length not a multiple of 16"
    if [ "$hash" = 1 ]; then
        openssl dgst -sha256 -binary "$out" >"$out.sha"
        cat "$out.sha" >>"$out"
        rm -f "$out.sha"
    fi
    rm -f "$seg1" "$seg2"
}

make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 94
cp "$WORK/prefill.bin" "$WORK/model.bin"
start_sim esp32
prefill_flash "$SIM_DIR" "$WORK/prefill.bin"

make_esp_image "$WORK/c3.bin" 5            # ESP32-C3 image (chip id 5)
make_esp_image "$WORK/esp32.bin" 0         # ESP32 image (chip id 0)
[ "$(size_of "$WORK/c3.bin")" -eq 128 ] || fail "test bug: c3 image is $(size_of "$WORK/c3.bin") bytes"

# --- wrong chip: refused, nothing written ----------------------------------------
expect_exit 6 -p "$SIM_PORT" --json flash 0x1000 "$WORK/c3.bin"
assert_json '.ok' false
assert_json '.error.stage | ascii_downcase' prepare
assert_json_true '.error.message | test("ESP32-C3|chip"; "i")'
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# Human output also explains, and mentions --force.
expect_exit 6 -p "$SIM_PORT" flash 0x1000 "$WORK/c3.bin"
assert_output 'ESP32-C3'
assert_output '--force' "the override in the advice (F2)"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# An app image for the wrong chip at 0x10000 is refused too.
expect_exit 6 -p "$SIM_PORT" --json flash 0x10000 "$WORK/c3.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --force: written as is (flash options "keep": header untouched).
expect_exit 0 -p "$SIM_PORT" --json flash --force 0x1000 "$WORK/c3.bin"
assert_ok_result flash
model_write "$WORK/model.bin" 0x1000 "$WORK/c3.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# The right chip passes without --force.
expect_exit 0 -p "$SIM_PORT" --json flash 0x1000 "$WORK/esp32.bin"
assert_ok_result flash
model_write "$WORK/model.bin" 0x1000 "$WORK/esp32.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- chip revision range (the virtual ESP32 is v3.0 = 300) ---------------------------
MIN_REV_FULL=301 make_esp_image "$WORK/rev-new.bin" 0   # needs v3.1
MAX_REV_FULL=299 make_esp_image "$WORK/rev-old.bin" 0   # up to v2.99
MIN_REV_FULL=300 MAX_REV_FULL=300 make_esp_image "$WORK/rev-ok.bin" 0
expect_exit 6 -p "$SIM_PORT" --json flash 0x1000 "$WORK/rev-new.bin"
assert_json '.error.stage' prepare
assert_json_true '.error.message | test("rev|v3"; "i")'
expect_exit 6 -p "$SIM_PORT" --json flash 0x1000 "$WORK/rev-old.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
expect_exit 0 -p "$SIM_PORT" --json flash 0x1000 "$WORK/rev-ok.bin"
model_write "$WORK/model.bin" 0x1000 "$WORK/rev-ok.bin"
expect_exit 0 -p "$SIM_PORT" --json flash --force 0x1000 "$WORK/rev-new.bin"
model_write "$WORK/model.bin" 0x1000 "$WORK/rev-new.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# Put the plain ESP32 image back for the patching checks below.
expect_exit 0 -p "$SIM_PORT" --json flash 0x1000 "$WORK/esp32.bin"
model_write "$WORK/model.bin" 0x1000 "$WORK/esp32.bin"

# --- header patching at the bootloader offset --------------------------------------
# dout (3), 2MB (code 1), 80m (0xF): byte 2 = 0x03, byte 3 = 0x1F, SHA-256 recomputed.
expect_exit 0 -p "$SIM_PORT" --json flash --flash-mode dout --flash-size 2MB --flash-freq 80m \
    0x1000 "$WORK/esp32.bin"
assert_ok_result flash
make_esp_image "$WORK/esp32-patched.bin" 0 1 3 0x1F
# The region's MD5 in the result may be of the patched data; the flash must hold it.
model_write "$WORK/model.bin" 0x1000 "$WORK/esp32-patched.bin"
flash_region_equals "$SIM_DIR" 0x1000 "$WORK/esp32-patched.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# The same options leave an image at another offset alone.
expect_exit 0 -p "$SIM_PORT" --json flash --flash-mode dout --flash-size 2MB --flash-freq 80m \
    0x20000 "$WORK/esp32.bin"
model_write "$WORK/model.bin" 0x20000 "$WORK/esp32.bin"
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- bounds and overlap ----------------------------------------------------------
make_image 8192 "$WORK/8k.bin" 7
expect_exit 6 -p "$SIM_PORT" --json flash 0x3FF000 "$WORK/8k.bin"
assert_json '.ok' false
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
expect_exit 6 -p "$SIM_PORT" --json flash 0x40000 "$WORK/8k.bin" 0x41000 "$WORK/8k.bin"
assert_json '.ok' false
flash_equals_model "$SIM_DIR" "$WORK/model.bin"
# Unaligned offset (not a multiple of 4 KiB): either refused (usage/safety,
# nothing written) or written with a warning that the rest of the sector is
# erased -- and then exactly that happens, nothing more.
cli -p "$SIM_PORT" --json flash 0x40100 "$WORK/8k.bin" || true
case $LAST_RC in
1 | 6) ;;
0)
    json_log_has 'align' || fail "unaligned region written without a warning"
    model_write "$WORK/model.bin" 0x40100 "$WORK/8k.bin"
    ;;
*) fail "unaligned flash offset: exit $LAST_RC, expected 0 (with warning), 1 or 6" ;;
esac
flash_equals_model "$SIM_DIR" "$WORK/model.bin"

# --- ESP32-C3 board: its own image at 0x0 is fine, an ESP32 image is not -----
start_sim esp32c3
expect_exit 0 -p "$SIM_PORT" --json flash 0x0 "$WORK/c3.bin"
flash_region_equals "$SIM_DIR" 0x0 "$WORK/c3.bin"
expect_exit 6 -p "$SIM_PORT" --json flash 0x0 "$WORK/esp32.bin"
flash_region_equals "$SIM_DIR" 0x0 "$WORK/c3.bin"
# The C3's bootloader offset is 0x0: the header is patched there (SHA-256 redone).
expect_exit 0 -p "$SIM_PORT" --json flash --flash-mode dout --flash-size 2MB --flash-freq 80m \
    0x0 "$WORK/c3.bin"
make_esp_image "$WORK/c3-patched.bin" 5 1 3 0x1F
flash_region_equals "$SIM_DIR" 0x0 "$WORK/c3-patched.bin"
# The reported MD5 is that of the bytes written (docs/CLI.md).
assert_json '.regions[0].md5' "$(md5_of "$WORK/c3-patched.bin")"
done_ok

#!/usr/bin/env bash
# test_reflash_diff: re-flash of only what changed (issue 11 item 4) through the
# real CLI on the esp_sim stub personas (ESP32, ESP8266): a fresh board gets the
# whole image; the same image again writes nothing; a change inside one 4 KiB
# sector writes exactly that sector and the whole region's MD5 is checked after
# it; --no-diff writes everything. Then the doubts: a lost MD5 reply during the
# comparison and a board whose MD5s are all wrong end in a full write (and the
# latter in a verify failure); without the stub no comparison is made.
source "${INTEG_LIB:?}"

# begins: the writes the last session opened, as "size@offset" lines.
begins() {
    sim_log_new | awk '$3 == "FLASH_DEFL_BEGIN" || $3 == "FLASH_BEGIN" {
        sub("size=", "", $5); sub("offset=", "", $6); print $5 "@" $6 }'
}
# last_md5_after_write: "addr size" of the last SPI_FLASH_MD5 after the last write.
last_md5_after_write() {
    sim_log_new | awk '$3 ~ /BEGIN$/ { w = 1; m = "" }
        w && $3 == "SPI_FLASH_MD5" { sub("addr=", "", $5); sub("size=", "", $6); m = $5 " " $6 }
        END { print m }'
}

SIZE=300000 # not a multiple of 4 KiB
make_image $SIZE "$WORK/app.bin" 701
cp "$WORK/app.bin" "$WORK/app2.bin"
# one byte inside sector 37 of the image (flash 0x35000)
printf '\x5a' | dd of="$WORK/app2.bin" bs=1 seek=$((37 * 4096 + 1234)) conv=notrunc status=none
cmp -s "$WORK/app.bin" "$WORK/app2.bin" && fail "app2.bin equals app.bin"

for chip in esp32 esp8266; do
    start_sim "$chip"
    head -c "$(size_of "$SIM_DIR/flash.bin")" /dev/zero | tr '\0' '\377' >"$WORK/model.bin"

    # --- a fresh board: the whole region, then verified -----------------------------
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json '.diff' true
    assert_json '.skipped_bytes' 0
    assert_json '.regions[0].verified' true
    [ "$(begins)" = "$SIZE@0x00010000" ] || fail "$chip fresh board: writes $(begins | xargs)"
    model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"

    # --- the same image again: nothing written, verified by MD5 ---------------------
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json '.skipped_bytes' $SIZE
    assert_json '.regions[0].verified' true
    sim_log_new_has 'FLASH_(DEFL_)?(BEGIN|DATA)' && fail "$chip: the same image was written again"
    json_log_has 'already on flash' || fail "$chip: no 'already on flash' line"

    # --- one changed sector: only it is written, then the whole region's MD5 --------
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app2.bin"
    assert_ok_result flash
    assert_json '.skipped_bytes' $((SIZE - 4096))
    assert_json '.regions[0].verified' true
    [ "$(begins)" = "4096@0x00035000" ] || fail "$chip one-sector change: writes $(begins | xargs)"
    [ "$(last_md5_after_write)" = "0x00010000 $SIZE" ] ||
        fail "$chip: the last MD5 after the write is not the whole region: $(last_md5_after_write)"
    model_write "$WORK/model.bin" 0x10000 "$WORK/app2.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"

    # --- --no-diff: every byte written -------------------------------------------
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --json flash --no-diff 0x10000 "$WORK/app2.bin"
    assert_ok_result flash
    assert_json '.diff' false
    assert_json '.skipped_bytes' 0
    [ "$(begins)" = "$SIZE@0x00010000" ] || fail "$chip --no-diff: writes $(begins | xargs)"
    sim_log_new | awk '$3 ~ /BEGIN$/ { exit } $3 == "SPI_FLASH_MD5" { bad = 1 } END { exit !bad }' &&
        fail "$chip --no-diff: an MD5 was asked before the write"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"
    sim_alive
    stop_sim
done

# --- lost MD5 replies during the comparison -----------------------------------------
# Reply numbers from a clean run on a board holding app.bin: the second
# SPI_FLASH_MD5 is the first half's. One lost reply: the request is sent again
# and the comparison goes on. Its three attempts lost: the whole region is written.
start_sim esp32
dd if="$WORK/app.bin" of="$SIM_DIR/flash.bin" bs=4096 seek=16 conv=notrunc status=none
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app2.bin"
N=$(sim_log_new | awk '$2 == "cmd" { n += ($3 == "SYNC") ? 8 : 1; if ($3 == "SPI_FLASH_MD5" && ++k == 2) { print n; exit } }')
[ -n "$N" ] || fail "no second SPI_FLASH_MD5 in the clean run"
stop_sim
for lost in 1 3; do
    faults=()
    for i in $(seq 0 $((lost - 1))); do
        faults+=(--fault "drop-reply:$((N + i))")
    done
    start_sim esp32 "${faults[@]}"
    dd if="$WORK/app.bin" of="$SIM_DIR/flash.bin" bs=4096 seek=16 conv=notrunc status=none
    cp "$SIM_DIR/flash.bin" "$WORK/model.bin"
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --timeout-scale 0.2 --json flash 0x10000 "$WORK/app2.bin"
    assert_ok_result flash
    [ "$(grep -c 'fault drop-reply fired .*SPI_FLASH_MD5' "$SIM_DIR/sim.log")" = $lost ] ||
        fail "expected $lost dropped MD5 replies: $(grep 'fault' "$SIM_DIR/sim.log")"
    if [ $lost = 1 ]; then
        assert_json '.skipped_bytes' $((SIZE - 4096))
        [ "$(begins)" = "4096@0x00035000" ] || fail "after one lost MD5 reply: writes $(begins | xargs)"
    else
        assert_json '.skipped_bytes' 0
        [ "$(begins)" = "$SIZE@0x00010000" ] || fail "after lost MD5 replies: writes $(begins | xargs)"
        json_log_has 'comparing it with the flash failed.*writing all of it' ||
            fail "the fall back to a full write is not logged"
    fi
    model_write "$WORK/model.bin" 0x10000 "$WORK/app2.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"
    stop_sim
done

# --- every MD5 wrong: the whole region is written, and the verify fails (exit 5) ---
start_sim esp32 --fault md5-mismatch
dd if="$WORK/app.bin" of="$SIM_DIR/flash.bin" bs=4096 seek=16 conv=notrunc status=none
sim_log_mark
expect_exit 5 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app2.bin"
[ "$(begins)" = "$SIZE@0x00010000" ] || fail "md5-mismatch: writes $(begins | xargs)"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app2.bin"
stop_sim

# --- without the stub: no comparison, the whole region ----------------------------
start_sim esp32
dd if="$WORK/app.bin" of="$SIM_DIR/flash.bin" bs=4096 seek=16 conv=notrunc status=none
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app2.bin"
assert_ok_result flash
assert_json '.skipped_bytes' 0
sim_log_new | awk '$3 ~ /BEGIN$/ { exit } $3 == "SPI_FLASH_MD5" { bad = 1 } END { exit !bad }' &&
    fail "ROM loader: an MD5 was asked before the write"
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app2.bin"
stop_sim
done_ok

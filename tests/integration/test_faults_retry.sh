#!/usr/bin/env bash
# Fault knobs the flasher must ride out: dropped and corrupted replies and a
# SYNC refused a few times end in a successful flash with correct bytes.
source "${INTEG_LIB:?}"

make_image 600000 "$WORK/app.bin" 81
make_random $((4 * 1024 * 1024)) "$WORK/prefill.bin" 95

# flash_through_fault CHIP FAULT [CLI args...]: new sim with FAULT, flash
# app.bin at 0x10000, check success, the bytes, and that the fault fired.
flash_through_fault() {
    local chip=$1 fault=$2
    shift 2
    start_sim "$chip" --fault "$fault"
    prefill_flash "$SIM_DIR" "$WORK/prefill.bin"
    cp "$WORK/prefill.bin" "$WORK/model.bin"
    # --no-diff: these faults are aimed at the whole-region write (test_reflash_diff
    # has the faults during the comparison of changed sectors)
    expect_exit 0 -p "$SIM_PORT" "$@" --json flash --no-diff 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json_true '.regions[0].verified or .chip == "ESP8266"'
    model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"
    sim_log_has 'fault .* fired' || fail "sim.log does not show that fault $fault fired"
    sim_alive
    stop_sim
}

# put_app: app.bin at 0x10000 of the latest board's flash (behind its back).
put_app() {
    dd if="$WORK/app.bin" of="$SIM_DIR/flash.bin" bs=4096 seek=16 conv=notrunc status=none
}

# reply_index CHIP OP NTH CLI_ARGS...: on a fault-free board, run the CLI and
# set REPLY_INDEX to the number of the reply frame (as the sim counts them for
# drop-reply/corrupt-reply: 8 per SYNC, 1 per other command) answering the
# NTH command OP ("mid" = the middle one). Keeps the fault cases aimed at the
# intended command even when the engine's command sequence changes.
reply_index() {
    local chip=$1 op=$2 nth=$3
    shift 3
    start_sim "$chip"
    put_app # the clean run sees the same flash as the fault runs
    expect_exit 0 -p "$SIM_PORT" "$@"
    if [ "$nth" = mid ]; then
        nth=$(grep -c " cmd $op " "$SIM_DIR/sim.log" || true)
        nth=$(((nth + 1) / 2))
    fi
    REPLY_INDEX=$(awk -v op="$op" -v nth="$nth" '
        $2 == "cmd" { n += ($3 == "SYNC") ? 8 : 1; if ($3 == op && ++k == nth) { print n; exit } }' \
        "$SIM_DIR/sim.log")
    stop_sim
    [ -n "$REPLY_INDEX" ] || fail "no command $op #$nth in a clean run"
    log "reply to $op #$nth is reply $REPLY_INDEX"
}

# data_fault_counted: when the fault hit the reply to a data block
# (sim.log: "fault ... fired (reply N, FLASH_DEFL_DATA)"), the block was
# resent and the result must count it.
data_fault_counted() {
    if grep -Eq 'fault (drop|corrupt)-reply fired .*(FLASH_DATA|FLASH_DEFL_DATA)' \
        "$SIM_DIR/sim.log"; then
        assert_json_true '.retries >= 1'
    else
        fail "fault did not hit a data block (test needs a new reply number): $(grep 'fault' "$SIM_DIR/sim.log")"
    fi
}

# Reply numbers for an ESP32 flash with the stub (sim.log names the command a
# fault hit): 1-8 SYNC, 9 GET_SECURITY_INFO, 10-16 READ_REG (identify),
# 17-22 MEM_* (stub upload), 23 CHANGE_BAUDRATE, 24-37 SPI attach/RDID,
# ~38-56 FLASH_DEFL_DATA (600 kB image), then FLASH_DEFL_END, SPI_FLASH_MD5.
for f in drop-reply:3 corrupt-reply:3 drop-reply:9; do
    flash_through_fault esp32 "$f"
done
reply_index esp32 FLASH_DEFL_DATA mid --json flash --no-diff 0x10000 "$WORK/app.bin"
flash_through_fault esp32 "drop-reply:$REPLY_INDEX"
data_fault_counted
flash_through_fault esp32 "corrupt-reply:$REPLY_INDEX"
data_fault_counted
reply_index esp32 FLASH_DEFL_DATA mid --no-stub --json flash 0x10000 "$WORK/app.bin"
flash_through_fault esp32 "drop-reply:$REPLY_INDEX" --no-stub
data_fault_counted
reply_index esp32 FLASH_DATA mid --no-stub --json flash --no-compress 0x10000 "$WORK/app.bin"
flash_through_fault esp32 "corrupt-reply:$REPLY_INDEX" --no-stub --no-compress
data_fault_counted
flash_through_fault esp8266 drop-reply:30 --no-stub
reply_index esp32c3 FLASH_DEFL_DATA mid --json flash --no-diff 0x10000 "$WORK/app.bin"
flash_through_fault esp32c3 "corrupt-reply:$REPLY_INDEX"
data_fault_counted

# Refused SYNC a couple of times: connect retries and gets through.
flash_through_fault esp32 refuse-sync:2
flash_through_fault esp8266 refuse-sync:3

# One lost or garbled reply outside the data phase (identify, stub upload,
# flash attach) must be retried too, not end the job (see findings F5).
flash_through_fault esp32 drop-reply:12      # READ_REG (identify)
flash_through_fault esp32 corrupt-reply:18   # MEM_DATA (stub upload)
flash_through_fault esp32 drop-reply:20      # MEM_BEGIN (stub upload)
flash_through_fault esp32 drop-reply:30      # WRITE_REG (flash id)

# Reading and verifying: a lost reply to READ_FLASH or SPI_FLASH_MD5 is retried.
# read_through_fault FAULT: fresh board holding app.bin at 0x10000, read it back.
read_through_fault() {
    start_sim esp32 --fault "$1"
    put_app
    rm -f "$WORK/rb.bin"
    expect_exit 0 -p "$SIM_PORT" --json read 0x10000 "$(size_of "$WORK/app.bin")" "$WORK/rb.bin"
    cmp "$WORK/rb.bin" "$WORK/app.bin" || fail "read through fault $1 returned other bytes"
    sim_log_has 'fault .* fired' || fail "fault $1 did not fire"
    stop_sim
}
reply_index esp32 READ_FLASH 1 --json read 0x10000 "$(size_of "$WORK/app.bin")" "$WORK/rb.bin"
read_through_fault "drop-reply:$REPLY_INDEX"
read_through_fault "corrupt-reply:$REPLY_INDEX"
reply_index esp32 SPI_FLASH_MD5 1 --json verify 0x10000 "$WORK/app.bin"
start_sim esp32 --fault "drop-reply:$REPLY_INDEX"
put_app
expect_exit 0 -p "$SIM_PORT" --json verify 0x10000 "$WORK/app.bin"
assert_json '.regions[0].verified' true
sim_log_has 'fault .* fired .*SPI_FLASH_MD5' || fail "the MD5 reply was not dropped"
done_ok

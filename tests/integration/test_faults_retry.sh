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
    expect_exit 0 -p "$SIM_PORT" "$@" --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json_true '.regions[0].verified or .chip == "ESP8266"'
    model_write "$WORK/model.bin" 0x10000 "$WORK/app.bin"
    flash_equals_model "$SIM_DIR" "$WORK/model.bin"
    sim_log_has 'fault .* fired' || fail "sim.log does not show that fault $fault fired"
    sim_alive
    stop_sim
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
flash_through_fault esp32 drop-reply:45
data_fault_counted
flash_through_fault esp32 corrupt-reply:45
data_fault_counted
flash_through_fault esp32 drop-reply:70 --no-stub
data_fault_counted
flash_through_fault esp32 corrupt-reply:70 --no-stub --no-compress
data_fault_counted
flash_through_fault esp8266 drop-reply:30 --no-stub
flash_through_fault esp32c3 corrupt-reply:42
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
done_ok

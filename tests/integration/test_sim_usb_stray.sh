#!/usr/bin/env bash
# Stray "unsupported" replies over USB-Serial/JTAG (esptool #813, #1173; PROTOCOL-ROM.md
# §8): an ESP32-S3 that is not in Secure Download Mode sporadically answers with a
# reply whose opcode is not the command's, status 1 error 0x05, ahead of the real
# reply. The "opcode mismatch + 0x05 = unsupported" heuristic of §1.4 then misfires
# ("READ_REG is not supported by the device", exit 4, before the fix). esp_sim
# --usb-stray-05 N[:EVERY] puts one such frame before the reply to every EVERY-th ROM
# command (not SYNC), N in all.
#  1. C3/S3 through the ROM and with the stub (strays while the ROM runs): flash +
#     verify pass, every stray was sent, nothing said "not supported".
#  2. A stray ahead of GET_SECURITY_INFO's reply: the chip is detected from its
#     security info (ESP32-S3, not in Secure Download Mode, flags 0), the full
#     info (MAC, flash id) is read.
#  3. A chip really in Secure Download Mode with strays: SDM comes from the flags
#     (4), the raw flash passes.
# A ROM that does not know a command and answers 0x05 with another opcode only is
# still "unsupported" (after the command's timeout): test_sim_rom_quirks 1.
source "${INTEG_LIB:?}"

strays_sent() { sim_log_new | grep -c 'usb: stray reply' || true; }

no_unsupported() {
    if grep -qi 'not supported' "$LAST_OUT" "$LAST_ERR"; then
        fail "$1: a stray reply was taken as 'unsupported': $(grep -hi -m1 'not supported' \
            "$LAST_OUT" "$LAST_ERR")"
    fi
}

make_image 98304 "$WORK/app.bin" 31

# --- 1. flash through the ROM and with the stub ------------------------------------
for chip in esp32c3 esp32s3; do
    for stub in --no-stub ""; do
        what="$chip${stub:+ $stub}"
        start_sim "$chip" --usb serial-jtag --usb-stray-05 6:3 --strict-reset
        sim_log_mark
        expect_exit 0 -p "$SIM_PORT" $stub --json flash 0x10000 "$WORK/app.bin"
        assert_ok_result flash
        assert_json_true '.regions[0].verified'
        flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
        no_unsupported "$what"
        n=$(strays_sent)
        # Through the stub only the ROM part (detect, watchdogs, stub upload) sees strays.
        [ "$n" -ge 2 ] || fail "$what: only $n stray replies were sent"
        [ -n "$stub" ] && [ "$n" -ne 6 ] && fail "$what: $n of 6 stray replies sent"
        log "$what: $n stray replies, flash verified"
        stop_sim
    done
done

# --- 2. a stray right before GET_SECURITY_INFO's reply ------------------------------
start_sim esp32s3 --usb serial-jtag --usb-stray-05 2:1 --strict-reset
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json info
assert_ok_result info
sim_log_new_has 'stray reply .* before the reply to GET_SECURITY_INFO' ||
    fail "no stray reply before GET_SECURITY_INFO's"
assert_json '.chip' ESP32-S3
assert_json '.security.valid' true
assert_json '.security.secure_download_mode' false
assert_json '.security.flags' 0
assert_json '.flash_id' 0x1640ef
[ "$(jr '.mac')" != null ] || fail "no MAC read (the chip was taken for one in SDM?)"
no_unsupported "info"
stop_sim

# --- 3. really in Secure Download Mode, with strays ---------------------------------
start_sim esp32s3 --usb serial-jtag --usb-stray-05 3:1 --secure-download --strict-reset
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
assert_json '.stub' false
[ "$(strays_sent)" -eq 3 ] || fail "sdm: $(strays_sent) of 3 stray replies sent"
if sim_log_new_has 'secure download mode: .* refused'; then
    fail "sdm: the station sent a command SDM refuses: $(grep -m1 refused "$SIM_DIR/sim.log")"
fi
stop_sim

done_ok

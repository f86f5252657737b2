#!/usr/bin/env bash
# Boards without a USB-UART bridge: the chip's own USB as the port (esp_sim --usb,
# tests/sim/sim_usb.c; PROTOCOL-ROM.md 3.2, 3.6, 5.2). The sim's pty carries no USB
# ids, so the station learns the interface from the ROM's uart_no byte.
#  1. USB-Serial/JTAG (C3, S3): the reset through the peripheral leaves the RTC and
#     super watchdogs armed (--usb-wdt-ms, short here): the flash (longer than that)
#     passes only if the station disables both; the hard reset boots the app and the
#     tty re-enumerates (new pty behind DIR/tty). The S3 ROM sets its force-download
#     bit: the hard reset boots the app only if the station clears it first.
#  2. --usb-reenum always: the tty also drops on the reset into the loader; the station
#     reopens DIR/tty and connects.
#  3. USB-OTG CDC (S3 ROM): DTR/RTS reset nothing, data blocks over 0x800 are lost:
#     the flash passes with 0x800 blocks (stub upload and stub writes) and the hard
#     reset goes through the RTC watchdog; then the tty re-enumerates.
source "${INTEG_LIB:?}"

# app boots of the sim since the last mark (sim.log "reset -> boot 0x13")
app_booted() { sim_log_new_has 'reset -> boot 0x13'; }

# --- 1. USB-Serial/JTAG ----------------------------------------------------------
# 128 KB through the ROM at 460800 Bd, link paced in real time: ~3 s, far beyond the
# 400 ms watchdog.
make_image 131072 "$WORK/app.bin" 21
for chip in esp32c3 esp32s3; do
    start_sim "$chip" --usb serial-jtag --usb-wdt-ms 400 --usb-gone-ms 100 --strict-reset \
        --link-speed 1
    tty_before=$(readlink "$SIM_DIR/tty")
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json_true '.regions[0].verified'
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
    grep -q 'talks over the chip.s USB-Serial/JTAG' "$LAST_ERR" "$LAST_OUT" ||
        fail "$chip: the station did not learn the ROM's console from uart_no"
    sim_log_new_has 'watchdogs armed after the USB reset' ||
        fail "$chip: the USB-JTAG reset did not reach the loader through the peripheral"
    sim_log_new_has 'rtc wdt: disabled' || fail "$chip: the RTC watchdog was left running"
    sim_log_new_has 'super wdt: auto-feed on' || fail "$chip: the super watchdog was left running"
    if sim_log_new_has 'watchdog fired'; then
        fail "$chip: a watchdog reset the chip during the session"
    fi
    # The hard reset boots the app, which re-enumerates the tty.
    for _ in $(seq 100); do
        app_booted && sim_log_new_has 'usb: tty back' && break
        sleep 0.05
    done
    app_booted || fail "$chip: the hard reset did not boot the app (force-download bit left set?)"
    sim_log_new_has 'usb: the app starts its USB: tty gone' || fail "$chip: the tty did not drop"
    sim_log_new_has 'usb: tty back' || fail "$chip: the tty did not come back"
    [ -e "$SIM_DIR/tty" ] || fail "$chip: DIR/tty missing after re-enumeration"
    log "$chip: tty $tty_before -> $(readlink "$SIM_DIR/tty")"
    if [ "$chip" = esp32s3 ]; then
        sim_log_new_has 'force-download bit cleared' ||
            fail "esp32s3: the station did not clear the force-download bit"
    fi
    stop_sim
done

# With the stub (its own block sizes; the watchdogs are disabled before it is uploaded).
start_sim esp32c3 --usb serial-jtag --usb-wdt-ms 400 --usb-gone-ms 100 --strict-reset \
    --link-speed 1
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
assert_json '.stub' true
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
if sim_log_new_has 'watchdog fired'; then
    fail "stub session: a watchdog reset the chip"
fi
stop_sim

# --- 2. the tty drops on the reset into the loader too -----------------------------
make_image 65536 "$WORK/small.bin" 22
start_sim esp32c3 --usb serial-jtag --usb-reenum always --usb-gone-ms 200 --strict-reset
sim_log_mark
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/small.bin"
assert_ok_result flash
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/small.bin"
sim_log_new_has 'usb: reset into the loader: tty gone' || fail "the tty did not drop at the reset"
stop_sim

# --- 3. USB-OTG CDC of the S3 ROM ----------------------------------------------------
# The board waits in the loader (BOOT held at plug-in: no --strict-reset); the
# lines do nothing.
for stub in "" --no-stub; do
    start_sim esp32s3 --usb otg --usb-gone-ms 100
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" $stub --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    assert_json_true '.regions[0].verified'
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
    grep -q 'talks over the chip.s USB-OTG' "$LAST_ERR" "$LAST_OUT" ||
        fail "otg${stub:+ $stub}: the station did not learn the ROM's console from uart_no"
    if sim_log_new_has 'usb-otg: .* lost'; then
        fail "otg${stub:+ $stub}: a block over 0x800 was sent: $(grep -m1 'lost' "$WORK/simlog.tmp")"
    fi
    for _ in $(seq 100); do
        app_booted && sim_log_new_has 'usb: tty back' && break
        sleep 0.05
    done
    sim_log_new_has 'rtc wdt: armed by the host' ||
        fail "otg${stub:+ $stub}: no watchdog reset after flashing"
    app_booted || fail "otg${stub:+ $stub}: the chip did not boot the app after the hard reset"
    sim_log_new_has 'usb: tty back' || fail "otg${stub:+ $stub}: the tty did not come back"
    stop_sim
done

done_ok

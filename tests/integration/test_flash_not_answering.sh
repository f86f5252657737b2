#!/usr/bin/env bash
# A board whose flash chip does not answer (not powered, a broken solder joint, flash on
# pins nobody attached, no flash fitted): the SPI RDID reads 0xFFFFFF (MISO floating high)
# or 0x000000 (held low), and every flash command after it fails (ROM 01 06, stub 0xC4).
# The station stops at the flash attach (stage attach, exit 4, error code
# flash_not_answering) with "the flash chip does not answer (flash ID ffffff)" and advice
# naming power, solder joints and the SPI pins, before any write, erase or read; also with
# an explicit --flash-size, since writes would fail anyway. esp_sim --fault flash-dead[:ID].
# Before: "unknown size, assuming 4 MB", then FLASH_DEFL_BEGIN failed (01 06 / 0xC4).
source "${INTEG_LIB:?}"

make_image 70000 "$WORK/app.bin" 21

# dead_checks ID: the refusal as the result line and the sim's log show it.
dead_checks() {
    assert_json '.ok' false
    assert_json '.error.stage' attach
    assert_json '.error.code' flash_not_answering
    assert_json_true ".error.message | contains(\"the flash chip does not answer (flash ID $1)\")"
    assert_json_true '.error.advice | test("power") and test("solder") and test("no flash")'
    sim_log_new_has 'fault flash-dead fired \(spi RDID' || fail "the station did not read the flash id"
    if sim_log_new_has 'cmd (FLASH_BEGIN|FLASH_DEFL_BEGIN|ERASE|SPI_FLASH_MD5|READ_FLASH)'; then
        fail "a flash command was sent after the flash id said no flash answers: $(
            grep -Ei 'cmd (FLASH|ERASE|SPI_FLASH_MD5|READ)' "$WORK/simlog.tmp" | head -3)"
    fi
}

# 1. ESP32 through the stub and through the ROM (the ROM attach names the eFuse pins).
start_sim esp32 --fault flash-dead
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
dead_checks ffffff
assert_json_true '.error.message | test("default SPI pins")' # the stub read them from eFuse
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
dead_checks ffffff
assert_json_true '.error.message | test("default SPI pins")'
# An explicit flash size does not hide it: every write would fail.
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json flash --flash-size 4MB 0x10000 "$WORK/app.bin"
dead_checks ffffff
# Not a JSON user: the error and advice lines say it too.
sim_log_mark
expect_exit 4 -p "$SIM_PORT" flash 0x10000 "$WORK/app.bin"
grep -q 'the flash chip does not answer (flash ID ffffff)' "$LAST_ERR" ||
    fail "no plain-text error line: $(tail -n 3 "$LAST_ERR")"
grep -q 'assuming 4 MB' "$LAST_ERR" && fail "still assumed a flash size"
# info and read stop there too.
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json info
dead_checks ffffff
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json read 0x0 0x1000 "$WORK/out.bin"
dead_checks ffffff
stop_sim

# 2. ESP32 with flash pins in eFuse: the message names the pins the attach used.
start_sim esp32 --fault flash-dead:000000 --spi-pads 6,17,8,16,11
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --no-stub --json flash 0x10000 "$WORK/app.bin"
dead_checks 000000
assert_json_true '.error.message | test("eFuse: CLK 6, Q 17, D 8, CS 16, HD 11")'
# the stub reads the pins from eFuse itself; the message names them all the same
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
dead_checks 000000
assert_json_true '.error.message | test("eFuse: CLK 6, Q 17, D 8, CS 16, HD 11")'
stop_sim

# 3. ESP8266 ROM (FLASH_BEGIN(0,0) attach) and ESP32-C3 stub.
start_sim esp8266 --fault flash-dead
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --no-stub --json flash 0x0 "$WORK/app.bin"
assert_json '.error.code' flash_not_answering
assert_json_true '.error.message | contains("(flash ID ffffff)")'
stop_sim
start_sim esp32c3 --fault flash-dead
sim_log_mark
expect_exit 4 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
dead_checks ffffff
stop_sim

# 4. A flash left in deep power-down (an XMC part after a brown-out, an app that put it to
# sleep) answers only "release" (0xAB): RDID reads ffffff until then. The station runs the
# wake-up (0xB9, 0x79, 0xFF, 2 ms, 0xAB; PROTOCOL-ROM.md 4.5), reads the id again, warns,
# and flashes. Before: refused as a flash that does not answer. Stub, ROM, ESP8266 ROM.
for args in "esp32" "esp32 --no-stub" "esp32c3" "esp8266 --no-stub"; do
    read -r chip nostub <<<"$args"
    start_sim "$chip" --fault flash-asleep
    sim_log_mark
    expect_exit 0 -p "$SIM_PORT" $nostub --json flash 0x10000 "$WORK/app.bin"
    assert_ok_result flash
    grep -q '"level":"warning".*only after a wake-up from deep power-down' "$LAST_OUT" ||
        fail "$args: no warning about the wake-up: $(tail -n 3 "$LAST_OUT")"
    flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
    sim_log_new_has 'spi RDID -> 0xffffff \(flash in deep power-down\)' ||
        fail "$args: the first RDID did not meet the sleeping flash"
    sim_log_new_has 'spi 0xAB: flash released from deep power-down' ||
        fail "$args: no release command reached the flash"
    stop_sim
done
log "a flash in deep power-down is woken and flashed (ESP32 stub and ROM, C3 stub, ESP8266 ROM)"

# 5. Control: the same board with its flash answering is flashed.
start_sim esp32
expect_exit 0 -p "$SIM_PORT" --json flash 0x10000 "$WORK/app.bin"
assert_ok_result flash
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/app.bin"
stop_sim
done_ok

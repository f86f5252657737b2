#!/usr/bin/env bash
# `info` on every persona: chip name, MAC (as set with the sim's --mac) and
# flash size (as set with --flash-size), both in --json and in human output.
source "${INTEG_LIB:?}"

# flash_size_is BYTES: .flash_size in the result, as a number of bytes or as
# a "4MB"-style string.
flash_size_is() {
    local bytes=$1 mb=$(($1 / 1024 / 1024))
    assert_json_true "(.flash_size | tostring | ascii_downcase | gsub(\" \"; \"\")) as \$s
        | \$s == \"$bytes\" or \$s == \"${mb}mb\" or \$s == \"${mb}m\""
}

check_info() { # CHIP NAME MAC FLASH_MB [extra CLI args]
    local chip=$1 name=$2 mac=$3 mb=$4
    shift 4
    start_sim "$chip" --mac "$mac" --flash-size "${mb}MB"

    expect_exit 0 -p "$SIM_PORT" "$@" --json info
    assert_ok_result info
    assert_json '.chip' "$name"
    # GET_SECURITY_INFO exists on the C3/S3 ROMs (and their stubs), not on ESP8266/ESP32.
    case $chip in
    esp32c3 | esp32s3)
        assert_json '.security.valid' true
        assert_json_true '.security.secure_boot == false and .security.flash_encryption == false'
        ;;
    *) assert_json '.security.valid' false ;;
    esac
    assert_json '.mac | ascii_downcase' "$mac"
    flash_size_is $((mb * 1024 * 1024))

    expect_exit 0 -p "$SIM_PORT" "$@" info
    assert_output "$name" "chip name in human output"
    output_has "$mac" || fail "MAC $mac not in human info output"
    assert_output "${mb} ?M" "flash size in human output"
    stop_sim
}

check_info esp8266 ESP8266 18:fe:34:a1:b2:c3 4
check_info esp8266 ESP8266 18:fe:34:a1:b2:c4 2 --no-stub
check_info esp32 ESP32 24:6f:28:7a:d8:84 4
check_info esp32 ESP32 24:6f:28:7a:d8:85 16 --no-stub
check_info esp32c3 ESP32-C3 7c:df:a1:00:11:22 4
check_info esp32s3 ESP32-S3 48:27:e2:61:b0:d4 8

# The default MAC of two sims of the same chip may be equal or not, but it must
# be a well-formed MAC that info reports the same way twice.
start_sim esp32
expect_exit 0 -p "$SIM_PORT" --json info
mac1=$(jr '.mac')
expect_exit 0 -p "$SIM_PORT" --no-stub --json info
mac2=$(jr '.mac')
[[ $mac1 =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "malformed MAC '$mac1'"
[ "$mac1" = "$mac2" ] || fail "MAC differs between stub ($mac1) and ROM ($mac2) sessions"

# A port that does not exist: exit 2 with a message naming the port.
expect_exit 2 -p "$WORK/no-such-tty" --json info
assert_json '.ok' false
assert_json_true '.error.message | test("no-such-tty")'

# Usage errors: exit 1.
expect_exit 1 -p "$SIM_PORT" no-such-command
expect_exit 1 -p "$SIM_PORT" flash 0x1000
expect_exit 1 -p "$SIM_PORT" flash notanoffset "$WORK/x.bin"
# In --json mode a usage error is a result line too (stage none, exit_code 1).
expect_exit 1 -p "$SIM_PORT" --json flash 0x1000
assert_json '.ok' false
assert_json '.exit_code' 1
assert_json '.error.stage' none
expect_exit 1 -p "$SIM_PORT" --json --before sideways info
assert_json '.exit_code' 1
# Options of another command are refused.
expect_exit 1 -p "$SIM_PORT" --json info --erase-all
done_ok

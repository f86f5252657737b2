#!/usr/bin/env bash
# Fault knobs that cannot be ridden out end in a clear error: the right exit
# code, a JSON error naming the stage with a message and advice; never a hang
# (every call is under timeout) nor a crash.
source "${INTEG_LIB:?}"

make_image 300000 "$WORK/app.bin" 91

# fault_run CHIP FAULT WANT_EXIT [CLI args...]: fresh sim with FAULT, flash
# app.bin at 0x10000 with --json, expect WANT_EXIT ("3|4" allowed).
fault_run() {
    local chip=$1 fault=$2 want=$3
    shift 3
    start_sim "$chip" --fault "$fault"
    expect_exit "$want" -p "$SIM_PORT" "$@" --json flash 0x10000 "$WORK/app.bin"
    assert_json '.ok' false
    assert_json_true '.error.stage | type == "string" and length > 0'
    assert_json_true '.error.message | type == "string" and length > 0'
    assert_json_true '.error.advice | type == "string" and length > 0'
    assert_json_true '.error.code != null'
}

# No serial data at all: connect fails, exit 3, "no serial data".
# (--connect-attempts 3: the diagnosis is per attempt; 7 would only take longer)
fault_run esp32 silent 3 --connect-attempts 3
assert_json_true '.error.message | test("no serial data"; "i")'
assert_json_true '.error.stage | test("^(reset|sync|connect)$"; "i")'
stop_sim

# Board boots the app (GPIO0 not pulled low): exit 3, "wrong boot mode (0x13)".
fault_run esp32 boot-mode:0x13 3 --connect-attempts 3
assert_json_true '.error.message | test("wrong boot mode"; "i")'
assert_json_true '.error.message | test("0x13"; "i")'
stop_sim

# Download banner printed but the board never answers SYNC: exit 3; the
# diagnosis is about the host->chip line, not "no serial data".
fault_run esp32 no-download-banner-answer 3 --connect-attempts 3
assert_json_true '.error.message | test("no serial data"; "i") | not'
stop_sim

# The board stops answering mid-session: a command timeout, exit 4 (or 3
# when it happens while connecting).
fault_run esp32 stall:30 "3|4"
sim_alive
stop_sim
fault_run esp32 stall:30 "3|4" --no-stub
stop_sim

# The board vanishes mid-write: exit 8 (board removed).
fault_run esp32 disconnect:100000 8
assert_json_true '.error.stage | test("^(write|verify|stub|attach)$"; "i")'
stop_sim

# Flash program failure at 0x12000: exit 4 with the device's status bytes
# and the address in the error.
fault_run esp32 write-error:0x12000 4 --no-stub
assert_json '.error.stage | ascii_downcase' write
assert_json_true '.error.device_status != null and .error.device_error != null'
assert_json_true '.error.device_status != "0x00"'
stop_sim
fault_run esp32 write-error:0x12000 4
assert_json '.error.stage | ascii_downcase' write
assert_json_true '.error.device_status != null'
stop_sim
fault_run esp8266 write-error:0x12000 4 --no-stub
assert_json '.error.stage | ascii_downcase' write
stop_sim

# The chip's MD5 disagrees with the data: verify failed, exit 5.
fault_run esp32 md5-mismatch 5
assert_json '.error.stage | ascii_downcase' verify
stop_sim
fault_run esp32 md5-mismatch 5 --no-stub
stop_sim

# Human (non-JSON) output of a connect failure carries message and advice.
start_sim esp32 --fault silent
expect_exit 3 -p "$SIM_PORT" --connect-attempts 2 info
assert_output 'no serial data'
assert_output 'cable|auto-reset|reset circuit' "advice"
done_ok

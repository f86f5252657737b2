# shellcheck shell=bash
#
# lib.sh: helpers for the integration tests (sourced, never run).
#
# Each test_*.sh runs the real `espstation` CLI against one or more virtual
# boards (`esp_sim`) over ptys or TCP. CTest provides:
#   ESPSTATION  the CLI binary          ESP_SIM   the virtual board binary
#   STUB_DIR    flasher stub JSON dir   TEST_TMPDIR  scratch root
#   INTEG_LIB   this file
#
# Invariants the helpers keep, because the suite runs in parallel (ctest -j)
# and under ASan+UBSan:
#   - every test gets its own mktemp -d work dir under TEST_TMPDIR;
#   - every sim started here is killed on exit (trap), by its own pid;
#   - every CLI call runs under `timeout`, so a hang fails the test instead of
#     blocking CI; a timeout, a crash (signal) or a sanitizer report in the
#     CLI's stderr is a failure whatever exit code the test expected;
#   - no fixed TCP ports (sims use --tcp 0 and report the port in DIR/ready).
#
# Knobs (environment): CLI_TIMEOUT (s, default 120 per CLI call),
# SIM_READY_TIMEOUT (s, default 10), KEEP_TMP=1 keeps the work dir.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/grepq.sh"
shopt -s inherit_errexit

: "${ESPSTATION:?ESPSTATION (path of the espstation CLI) must be set}"
: "${ESP_SIM:?ESP_SIM (path of the esp_sim binary) must be set}"
: "${STUB_DIR:?STUB_DIR (flasher stub JSON dir) must be set}"
: "${TEST_TMPDIR:=${TMPDIR:-/tmp}/espstation-integ}"
: "${CLI_TIMEOUT:=120}"
: "${SIM_READY_TIMEOUT:=10}"

TEST_NAME=$(basename "${0%.sh}")
mkdir -p "$TEST_TMPDIR"
WORK=$(mktemp -d "$TEST_TMPDIR/${TEST_NAME}.XXXXXX")
export WORK
# This test's own loopback /24 for board addresses: "$TNET.N" (testnet.sh).
source "$(dirname "${BASH_SOURCE[0]}")/testnet.sh"
claim_test_net "$TEST_NAME" || exit 1

# Sims started by this test: pid and dir, same index.
SIM_PIDS=()
SIM_DIRS=()
# Set by start_sim for the most recent sim.
SIM_DIR=""
SIM_PID=""
SIM_PORT=""
# Files of the last CLI call.
LAST_OUT="$WORK/last.out"
LAST_ERR="$WORK/last.err"
LAST_RC=0
LAST_CMD=""
CLI_CALLS=0
TEST_FAILED=0

log() { printf '[%s] %s\n' "$TEST_NAME" "$*" >&2; }

# --- diagnostics -------------------------------------------------------------

_dump_diag() {
    if [ -n "$LAST_CMD" ]; then
        printf -- '--- last CLI call (rc=%s): %s\n' "$LAST_RC" "$LAST_CMD" >&2
        printf -- '--- stdout (tail):\n' >&2
        tail -n 25 "$LAST_OUT" >&2 2>/dev/null || true
        printf -- '--- stderr (tail):\n' >&2
        tail -n 40 "$LAST_ERR" >&2 2>/dev/null || true
    fi
    local i d
    for i in "${!SIM_DIRS[@]}"; do
        d=${SIM_DIRS[$i]}
        printf -- '--- sim %s (pid %s) sim.log (tail):\n' "$d" "${SIM_PIDS[$i]}" >&2
        tail -n 40 "$d/sim.log" >&2 2>/dev/null || true
        if [ -s "$d/sim.stderr" ]; then
            printf -- '--- sim %s stderr (tail):\n' "$d" >&2
            tail -n 20 "$d/sim.stderr" >&2 || true
        fi
    done
}

# fail MESSAGE...: print the message, the last CLI call's output and the sims'
# log tails, then exit 1.
fail() {
    TEST_FAILED=1
    printf '\n[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
    _dump_diag
    exit 1
}

# --- cleanup -----------------------------------------------------------------

_stop_sim_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "sim pid $pid ignored SIGTERM for 5 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
}

_cleanup() {
    local rc=$? pid
    for pid in "${SIM_PIDS[@]}"; do
        _stop_sim_pid "$pid"
    done
    wait 2>/dev/null || true
    if [ "$rc" -eq 0 ] && [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        log "work dir kept: $WORK"
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# --- virtual board -----------------------------------------------------------

# start_sim CHIP [esp_sim args...]
# Starts a virtual board in a fresh dir and waits (<= SIM_READY_TIMEOUT) for
# DIR/ready. Sets SIM_DIR, SIM_PID, SIM_PORT (the ready file's content: the tty
# path or tcp://127.0.0.1:PORT). Defaults: --link-speed 0 (no pacing) and
# --stub-dir $STUB_DIR unless given. If SIM_PREFILL names a file, it is
# placed as DIR/flash.bin before the sim starts (see prefill_flash).
start_sim() {
    local chip=$1
    shift
    local dir args=("$@") have_speed=0 have_stub=0 a
    dir=$(mktemp -d "$WORK/sim-$chip.XXXX")
    for a in "${args[@]}"; do
        case $a in
        --link-speed) have_speed=1 ;;
        --stub-dir) have_stub=1 ;;
        esac
    done
    [ $have_speed = 1 ] || args+=(--link-speed 0)
    [ $have_stub = 1 ] || args+=(--stub-dir "$STUB_DIR")
    if [ -n "${SIM_PREFILL:-}" ]; then
        cp "$SIM_PREFILL" "$dir/flash.bin"
    fi
    "$ESP_SIM" --chip "$chip" --dir "$dir" "${args[@]}" >"$dir/sim.stdout" 2>"$dir/sim.stderr" &
    local pid=$!
    SIM_PIDS+=("$pid")
    SIM_DIRS+=("$dir")
    SIM_DIR=$dir
    SIM_PID=$pid
    local deadline=$((SECONDS + SIM_READY_TIMEOUT))
    while :; do
        if [ -s "$dir/ready" ]; then
            SIM_PORT=$(head -n1 "$dir/ready" | tr -d '\r\n')
            [ -n "$SIM_PORT" ] && break
        fi
        kill -0 "$pid" 2>/dev/null || fail "esp_sim --chip $chip ${args[*]} exited before ready"
        [ $SECONDS -lt $deadline ] || fail "esp_sim --chip $chip not ready within ${SIM_READY_TIMEOUT}s"
        sleep 0.05
    done
    case $SIM_PORT in
    tcp://*) ;;
    *)
        [ -e "$SIM_PORT" ] || fail "sim ready file names '$SIM_PORT', which does not exist"
        # The modem side channel sits next to DIR/tty (DIR/tty.modem): talk
        # to the board through the symlink so DTR/RTS reach it.
        [ -e "$dir/tty" ] || fail "sim did not create $dir/tty"
        [ -S "$dir/tty.modem" ] || fail "sim did not create the modem side channel $dir/tty.modem"
        SIM_PORT=$dir/tty
        ;;
    esac
    log "sim $chip ready: port $SIM_PORT dir $dir pid $pid"
}

# stop_sim [PID]: SIGTERM one sim (default the latest) and check it exited
# cleanly (no crash, no sanitizer report).
stop_sim() {
    local pid=${1:-$SIM_PID} i dir="" rc=0
    for i in "${!SIM_PIDS[@]}"; do
        [ "${SIM_PIDS[$i]}" = "$pid" ] && dir=${SIM_DIRS[$i]}
    done
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "sim pid $pid did not exit within 10 s of SIGTERM"
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || rc=$?
    if [ -n "$dir" ] && grep -q 'Sanitizer' "$dir/sim.stderr" 2>/dev/null; then
        fail "esp_sim reported a sanitizer error (see $dir/sim.stderr)"
    fi
    case $rc in
    0 | 143) ;;
    *) fail "esp_sim pid $pid exited with status $rc after SIGTERM" ;;
    esac
}

# sim_alive: fails the test if the latest sim (or PID) died (crash).
sim_alive() {
    local pid=${1:-$SIM_PID}
    kill -0 "$pid" 2>/dev/null || fail "esp_sim pid $pid is no longer running (crash?)"
}

# sim_log_has REGEX [DIR]: grep -E -i in the sim's event log.
sim_log_has() {
    grep -Eiq -- "$1" "${2:-$SIM_DIR}/sim.log"
}

# sim_log_mark [DIR]: remember the current end of sim.log; sim_log_new_has
# REGEX [DIR] then greps only the lines logged since (one CLI session).
SIM_LOG_MARK=0
sim_log_mark() {
    SIM_LOG_MARK=$(wc -l <"${1:-$SIM_DIR}/sim.log")
}
sim_log_new() {
    tail -n +$((SIM_LOG_MARK + 1)) "${1:-$SIM_DIR}/sim.log"
}
sim_log_new_has() {
    sim_log_new "${2:-$SIM_DIR}" >"$WORK/simlog.tmp"
    grep -Eiq -- "$1" "$WORK/simlog.tmp"
}

# --- test data ---------------------------------------------------------------

# make_image SIZE FILE [SEED]
# Deterministic firmware-like data, about half compressible: alternating
# 16 KiB chunks of repeated text and pseudo-random bytes (AES-CTR keystream of
# a seeded key, so the same SEED always gives the same bytes). The first byte
# is text ('e'), never the 0xE9 image magic.
make_image() {
    local size=$1 out=$2 seed=${3:-1}
    local chunk=16384 i=0 done_bytes=0 n key
    key=$(printf '%032x' "$seed")
    head -c "$size" /dev/zero |
        openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -nosalt \
            -out "$out.rnd"
    head -c "$chunk" < <(yes "espstation test firmware seed=$seed: the quick brown fox 0123456789") \
        >"$out.txt"
    : >"$out"
    while [ "$done_bytes" -lt "$size" ]; do
        n=$((size - done_bytes))
        [ "$n" -le "$chunk" ] || n=$chunk
        if [ $((i % 2)) -eq 0 ]; then
            head -c "$n" "$out.txt" >>"$out"
        else
            dd if="$out.rnd" bs="$chunk" skip="$i" count=1 status=none | head -c "$n" >>"$out"
        fi
        done_bytes=$((done_bytes + n))
        i=$((i + 1))
    done
    rm -f "$out.rnd" "$out.txt"
    [ "$(stat -c %s "$out")" -eq "$size" ] || fail "make_image produced the wrong size"
}

# make_random SIZE FILE [SEED]: incompressible deterministic bytes.
make_random() {
    local key
    key=$(printf '%032x' "${3:-7}")
    head -c "$1" /dev/zero |
        openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -nosalt -out "$2"
}

md5_of() { md5sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# --- flash model -------------------------------------------------------------
#
# Tests keep an "expected flash" file next to the sim: start from the prefill
# pattern, then for every region written apply what a correct flasher does:
# erase the 4 KiB sectors the region touches (0xFF) and write the data. At the
# end the whole flash.bin must equal it, so over-erase (the ESP8266 ROM erase
# quirk), writes at the wrong offset and stray writes all show up.

FLASH_SECTOR=4096

# prefill_flash DIR PATTERN: puts PATTERN into DIR/flash.bin of a running sim
# (the sim keeps flash.bin as the live flash contents), and checks it stuck.
prefill_flash() {
    local dir=$1 pattern=$2
    dd if="$pattern" of="$dir/flash.bin" conv=notrunc status=none
    cmp -s "$pattern" "$dir/flash.bin" || fail "could not prefill $dir/flash.bin"
}

# model_erase MODEL OFFSET LEN: set [OFFSET, OFFSET+LEN) to 0xFF in MODEL.
model_erase() {
    local model=$1 off=$(($2)) len=$(($3)) size
    size=$(size_of "$model")
    [ $((off + len)) -le "$size" ] || len=$((size - off)) # erases stop at the end of flash
    [ "$len" -gt 0 ] || return 0
    head -c "$len" /dev/zero | tr '\0' '\377' |
        dd of="$model" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# model_write MODEL OFFSET FILE: sector-erase then write FILE at OFFSET.
model_write() {
    local model=$1 off=$(($2)) file=$3 len start end
    len=$(size_of "$file")
    start=$((off / FLASH_SECTOR * FLASH_SECTOR))
    end=$(((off + len + FLASH_SECTOR - 1) / FLASH_SECTOR * FLASH_SECTOR))
    model_erase "$model" "$start" $((end - start))
    dd if="$file" of="$model" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# model_write_esp8266_rom MODEL OFFSET FILE: as model_write, for the ESP8266
# ROM loader (no stub). Its FLASH_BEGIN erase has a known bug: asked for E
# sectors that fit before the next 64 KiB block boundary it erases 2E, else E
# plus the sectors up to the boundary. The best any host can do (esptool's
# get_erase_size) is therefore: N sectors needed, H sectors left in the first
# block; if N is odd and N < 2H, one sector more than needed is erased (the
# one after the region). Anything beyond that is over-erase.
model_write_esp8266_rom() {
    local model=$1 off=$(($2)) file=$3 len start n h
    len=$(size_of "$file")
    start=$((off / FLASH_SECTOR))
    n=$(((off % FLASH_SECTOR + len + FLASH_SECTOR - 1) / FLASH_SECTOR))
    h=$((16 - start % 16))
    if [ $((n % 2)) -eq 1 ] && [ "$n" -lt $((2 * h)) ]; then
        n=$((n + 1))
    fi
    model_erase "$model" $((start * FLASH_SECTOR)) $((n * FLASH_SECTOR))
    dd if="$file" of="$model" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# flash_region_equals DIR OFFSET FILE: the flash slice at OFFSET equals FILE.
flash_region_equals() {
    local dir=$1 off=$(($2)) file=$3 len
    len=$(size_of "$file")
    if ! cmp -s -i "$off:0" -n "$len" "$dir/flash.bin" "$file"; then
        local where
        where=$(cmp -i "$off:0" -n "$len" "$dir/flash.bin" "$file" 2>&1 | head -n1 || true)
        fail "flash at $(printf 0x%X "$off") differs from $file ($len bytes): $where"
    fi
}

# flash_equals_model DIR MODEL: the whole flash equals the model (reports the
# first differing offset in hex).
flash_equals_model() {
    local dir=$1 model=$2 first
    if ! cmp -s "$dir/flash.bin" "$model"; then
        first=$(cmp "$dir/flash.bin" "$model" 2>&1 | head -n1 || true)
        local byte
        byte=$(printf '%s' "$first" | sed -n 's/.*byte \([0-9]*\).*/\1/p')
        [ -n "$byte" ] && first="$first (flash offset $(printf 0x%X $((byte - 1))))"
        fail "flash.bin differs from the expected contents: $first"
    fi
}

# --- CLI -----------------------------------------------------------------------

# cli ARGS...: runs espstation under timeout; stdout -> $LAST_OUT, stderr ->
# $LAST_ERR, exit code -> $LAST_RC (also returned). Fails the test on a hang
# (timeout), a crash (killed by a signal) or a sanitizer report.
cli() {
    CLI_CALLS=$((CLI_CALLS + 1))
    LAST_OUT="$WORK/cli$CLI_CALLS.out"
    LAST_ERR="$WORK/cli$CLI_CALLS.err"
    LAST_CMD="espstation $*"
    log "run: $LAST_CMD"
    LAST_RC=0
    timeout -k 5 "$CLI_TIMEOUT" "$ESPSTATION" "$@" >"$LAST_OUT" 2>"$LAST_ERR" || LAST_RC=$?
    if [ "$LAST_RC" -eq 124 ] || [ "$LAST_RC" -eq 137 ]; then
        fail "espstation hung: killed by timeout after ${CLI_TIMEOUT}s"
    fi
    if grep -q 'Sanitizer' "$LAST_ERR"; then
        fail "espstation reported a sanitizer error"
    fi
    if [ "$LAST_RC" -gt 128 ]; then
        fail "espstation crashed (status $LAST_RC = signal $((LAST_RC - 128)))"
    fi
    return "$LAST_RC"
}

# expect_exit CODE ARGS...: runs `cli ARGS...` and fails unless it exits CODE.
# CODE may be a list "3|4".
expect_exit() {
    local want=$1
    shift
    cli "$@" || true
    case "|$want|" in
    *"|$LAST_RC|"*) ;;
    *) fail "expected exit code $want, got $LAST_RC from: espstation $*" ;;
    esac
}

# json_result [FILE]: the final {"event":"result"} line of the last CLI call
# (non-JSON lines are skipped). Fails if there is none or more than one.
# Also checks the --json contract (docs/CLI.md): stdout is nothing but JSON
# objects, one per line, and the result is the last line.
json_result() {
    local f=${1:-$LAST_OUT} n bad
    n=$(jq -Rc 'fromjson? | select(type == "object" and .event == "result")' "$f" | wc -l)
    [ "$n" -eq 1 ] || fail "expected exactly one JSON result line on stdout, found $n"
    bad=$(jq -Rr '. as $l | (fromjson? | objects | "") // $l | select(length > 0)' "$f" | head -n 3)
    [ -z "$bad" ] || fail "non-JSON line(s) on stdout with --json: $bad"
    tail -n 1 "$f" | jq -e 'type == "object" and .event == "result"' >/dev/null ||
        fail "the result is not the last line of stdout"
    jq -Rc 'fromjson? | select(type == "object" and .event == "result")' "$f"
}

# jr FILTER: jq -r FILTER applied to the last result line.
jr() {
    local res
    res=$(json_result)
    jq -r "$1" <<<"$res"
}

# assert_json FILTER EXPECTED: jq -r FILTER of the result equals EXPECTED.
assert_json() {
    local got
    got=$(jr "$1")
    [ "$got" = "$2" ] || fail "result $1 = '$got', expected '$2'"
}

# assert_json_true FILTER: jq -e style boolean test on the result.
assert_json_true() {
    local res
    res=$(json_result)
    jq -e "$1" >/dev/null <<<"$res" || fail "result does not satisfy: $1 (result: $res)"
}

# json_events KIND: all JSON lines of the last call with .event == KIND.
json_events() {
    jq -Rc --arg k "$1" 'fromjson? | select(type == "object" and .event == $k)' "$LAST_OUT"
}

# output_has REGEX: stdout+stderr of the last call match (grep -E -i).
output_has() {
    grep -Eiq -- "$1" "$LAST_OUT" "$LAST_ERR"
}

# json_log_has REGEX: some JSON log event of the last call matches (grep -E -i).
# (Not a pipe into grep -q: with pipefail the writer's SIGPIPE would fail it.)
json_log_has() {
    json_events log >"$WORK/events.tmp"
    grep -Eiq -- "$1" "$WORK/events.tmp"
}

# assert_output REGEX [what]
assert_output() {
    output_has "$1" || fail "CLI output does not match /$1/${2:+ ($2)}"
}

# assert_ok_result COMMAND: exit 0 and a result line with ok:true for COMMAND.
assert_ok_result() {
    [ "$LAST_RC" -eq 0 ] || fail "expected success, exit code $LAST_RC"
    assert_json '.ok' true
    [ -z "${1:-}" ] || assert_json '.command' "$1"
}

# assert_regions_json FILE OFFSET [FILE OFFSET...]: .regions lists each
# (offset, size, md5) in order. Offsets are compared numerically whether the
# CLI prints them as numbers or as "0x..." strings.
assert_regions_json() {
    local res i=0 off file got_off got_size got_md5
    res=$(json_result)
    local n=$(($# / 2))
    [ "$(jq '.regions | length' <<<"$res")" -eq "$n" ] ||
        fail "result has $(jq '.regions | length' <<<"$res") regions, expected $n: $res"
    while [ $# -ge 2 ]; do
        off=$1 file=$2
        shift 2
        got_off=$(jq -r ".regions[$i].offset" <<<"$res")
        got_size=$(jq -r ".regions[$i].size" <<<"$res")
        got_md5=$(jq -r ".regions[$i].md5" <<<"$res")
        [ $((got_off)) -eq $((off)) ] || fail "regions[$i].offset=$got_off expected $off"
        [ "$got_size" -eq "$(size_of "$file")" ] ||
            fail "regions[$i].size=$got_size expected $(size_of "$file")"
        [ "$got_md5" = "$(md5_of "$file")" ] ||
            fail "regions[$i].md5=$got_md5 expected $(md5_of "$file")"
        i=$((i + 1))
    done
}

# done_ok: end of test; checks the sims are still alive (no crash) and stops
# them cleanly (sanitizer check).
done_ok() {
    local pid
    for pid in "${SIM_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            stop_sim "$pid"
        fi
    done
    log "PASS"
}

# hex N: 0x%X
hex() { printf '0x%X' "$1"; }

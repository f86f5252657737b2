# shellcheck shell=bash
#
# udev_lib.sh: helpers for tests/integration/test_udev_*.sh (sourced).
#
# The tests run a program (devsrc_probe, espstation, espstationd) inside a
# umockdev testbed driven by umock_station (tests/umock/umock_station.c) and
# plug virtual boards in and out through its control FIFO.
#
# CTest gives ESPSTATION, ESP_SIM, STUB_DIR, TEST_TMPDIR, INTEG_LIB. Paths
# derived here:
#   UMOCK_STATION  <dir of ESP_SIM>/umock/umock_station
#   DEVSRC_PROBE   <dir of ESP_SIM>/umock/devsrc_probe
#   ESPSTATIOND    <dir of ESPSTATION>/../daemon/espstationd
#
# Skips (exit 0, "SKIP: ...") only when umockdev-wrapper is missing. A
# missing harness binary while umockdev is installed is a failure.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../integration/grepq.sh"

UDEV_TEST=$(basename "${0%.sh}")

udev_log() { printf '[%s] %s\n' "$UDEV_TEST" "$*" >&2; }

if ! command -v umockdev-wrapper >/dev/null 2>&1; then
    echo "SKIP: umockdev not available (umockdev-wrapper not found; apt-get install umockdev)"
    exit 0
fi

: "${ESP_SIM:?ESP_SIM (path of the esp_sim binary) must be set}"
: "${TEST_TMPDIR:=${TMPDIR:-/tmp}/espstation-integ}"
: "${UMOCK_TIMEOUT:=30}"

UMOCK_DIR=$(cd "$(dirname "$ESP_SIM")/umock" 2>/dev/null && pwd || true)
UMOCK_STATION=${UMOCK_DIR:+$UMOCK_DIR/umock_station}
DEVSRC_PROBE=${UMOCK_DIR:+$UMOCK_DIR/devsrc_probe}
ESPSTATIOND=""
if [ -n "${ESPSTATION:-}" ]; then
    ESPSTATIOND=$(dirname "$ESPSTATION")/../daemon/espstationd
fi

if [ -z "$UMOCK_STATION" ] || [ ! -x "$UMOCK_STATION" ]; then
    echo "FAIL: umockdev is installed but umock_station was not built (expected next to $ESP_SIM in umock/)" >&2
    exit 1
fi

# Sanitizer builds: umockdev's preload library is loaded before a dynamic
# ASan runtime (gcc); tell ASan not to insist on being first.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=1"

mkdir -p "$TEST_TMPDIR"
UWORK=$(mktemp -d "$TEST_TMPDIR/${UDEV_TEST}.XXXXXX")
UMOCK_PID=""
UMOCK_FAILED=0

udev_dump() {
    udev_log "--- umock.log:"
    tail -n 40 "$UWORK/umock.log" >&2 2>/dev/null || true
    udev_log "--- program.log (tail):"
    tail -n 60 "$UWORK/program.log" >&2 2>/dev/null || true
    local d
    for d in "$UWORK"/*/; do
        [ -f "$d/sim.log" ] || [ -f "$d/modem.log" ] || continue
        udev_log "--- board $(basename "$d"): modem.log, sim.log (tail), sim.stderr"
        tail -n 20 "$d/modem.log" >&2 2>/dev/null || true
        tail -n 20 "$d/sim.log" >&2 2>/dev/null || true
        cat "$d/sim.stderr" >&2 2>/dev/null || true
    done
}

udev_fail() {
    UMOCK_FAILED=1
    udev_log "FAIL: $*"
    udev_dump
    exit 1
}

udev_cleanup() {
    local rc=$?
    if [ -n "$UMOCK_PID" ] && kill -0 "$UMOCK_PID" 2>/dev/null; then
        kill -TERM "$UMOCK_PID" 2>/dev/null || true
        local i
        for i in $(seq 100); do
            kill -0 "$UMOCK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$UMOCK_PID" 2>/dev/null || true
    fi
    exec 9>&- 2>/dev/null || true
    if [ "$rc" -ne 0 ] || [ "$UMOCK_FAILED" -ne 0 ] || [ -n "${KEEP_TMP:-}" ]; then
        udev_log "work dir kept: $UWORK"
    else
        rm -rf "$UWORK"
    fi
}
trap udev_cleanup EXIT

# umock_start PROG [ARGS...]: starts the harness (not yet the program: send
# "start"), opens the control FIFO on fd 9.
umock_start() {
    # shellcheck disable=SC2086 # UMOCK_OPTS: extra harness options, word-split
    umockdev-wrapper "$UMOCK_STATION" --sim "$ESP_SIM" --workdir "$UWORK" ${UMOCK_OPTS:-} -- "$@" \
        >"$UWORK/harness.out" 2>&1 &
    UMOCK_PID=$!
    local i
    for i in $(seq 200); do
        [ -p "$UWORK/ctl" ] && grep -q '^[0-9.]* ready' "$UWORK/umock.log" 2>/dev/null && break
        kill -0 "$UMOCK_PID" 2>/dev/null || udev_fail "umock_station exited: $(cat "$UWORK/harness.out")"
        sleep 0.05
    done
    [ -p "$UWORK/ctl" ] || udev_fail "umock_station did not create its control FIFO"
    exec 9>"$UWORK/ctl"
}

umock_cmd() { printf '%s\n' "$*" >&9; }

# wait_grep FILE ERE [TIMEOUT_S]: waits until a line of FILE matches ERE.
wait_grep() {
    local file=$1 re=$2 t=${3:-$UMOCK_TIMEOUT} i
    for i in $(seq $((t * 20))); do
        grep -Eq -- "$re" "$file" 2>/dev/null && return 0
        if grep -Eq -- ' error ' "$UWORK/umock.log" 2>/dev/null; then
            udev_fail "harness reported an error while waiting for /$re/ in $file"
        fi
        sleep 0.05
    done
    udev_fail "timeout (${t}s) waiting for /$re/ in $file"
}

# umock_sync: returns once the harness has executed every command sent so far.
UMOCK_SYNC_N=0
umock_sync() {
    UMOCK_SYNC_N=$((UMOCK_SYNC_N + 1))
    umock_cmd "sync s$UMOCK_SYNC_N"
    wait_grep "$UWORK/umock.log" " ok sync s$UMOCK_SYNC_N\$" "${1:-$UMOCK_TIMEOUT}"
}

# umock_quit: SIGTERMs the program, waits; prints nothing, returns its status.
umock_quit() {
    umock_cmd quit
    local rc=0
    wait "$UMOCK_PID" || rc=$?
    UMOCK_PID=""
    return "$rc"
}

# count_lines FILE ERE
count_lines() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }

assert_grep() {
    grep -Eq -- "$2" "$1" 2>/dev/null || udev_fail "${3:-expected /$2/ in $1}"
}

assert_no_grep() {
    if grep -Eq -- "$2" "$1" 2>/dev/null; then
        udev_fail "${3:-unexpected /$2/ in $1}: $(grep -E -- "$2" "$1" | head -3)"
    fi
}

# ---- espstationd under the testbed ----------------------------------------------

# station_setup [PROFILE_EXTRA_JSON] [IMAGE_BYTES]: writes a firmware set
# (one 'data' region at 0x10000), the config $UWORK/station.json (slots
# A1..A8 on ID_PATH pci-0000:00:14.0-usb-0:1.N:1.0) and imports the set.
# Sets FW_MD5 and FW_FILE.
station_setup() {
    local extra=${1:-} bytes=${2:-131072}
    [ -n "$ESPSTATIOND" ] && [ -x "$ESPSTATIOND" ] ||
        udev_fail "espstationd not built (expected $ESPSTATIOND)"
    mkdir -p "$UWORK/fw"
    head -c "$bytes" /dev/urandom >"$UWORK/fw/app.bin"
    cat >"$UWORK/fw/manifest.json" <<EOJ
{"name": "udevtest", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
EOJ
    local slots="" n
    for n in 1 2 3 4 5 6 7 8; do
        slots="$slots${slots:+, }{\"id_path\": \"pci-0000:00:14.0-usb-0:1.$n:1.0\", \"label\": \"A$n\"}"
    done
    cat >"$UWORK/station.json" <<EOJ
{"data_dir": "$UWORK/data", "stub_dir": "${STUB_DIR:-}", "listen": "127.0.0.1:0",
 "slots": [$slots],
 "profiles": {"line": {"firmware": {"esp32": "udevtest@1.0.0"}, "baud": 460800$extra}},
 "active_profile": "line"}
EOJ
    "$ESPSTATIOND" --config "$UWORK/station.json" --import-firmware "$UWORK/fw" \
        >"$UWORK/import.log" 2>&1 || udev_fail "firmware import failed: $(cat "$UWORK/import.log")"
    FW_FILE=$UWORK/fw/app.bin
    FW_MD5=$(md5sum "$FW_FILE" | cut -d' ' -f1)
    DB=$UWORK/data/records.db
}

# station_add_c3_set: the same image as an ESP32-C3 set (udevc3@1.0.0), mapped in the
# profile next to the ESP32 one, for the native-USB boards (USB-Serial/JTAG is a C3/S3 part).
station_add_c3_set() {
    sed -i 's/"esp32": "udevtest@1.0.0"/"esp32": "udevtest@1.0.0", "esp32c3": "udevc3@1.0.0"/' \
        "$UWORK/station.json"
    mkdir -p "$UWORK/fwc3"
    cp "$UWORK/fw/app.bin" "$UWORK/fwc3/app.bin"
    cat >"$UWORK/fwc3/manifest.json" <<EOJ
{"name": "udevc3", "version": "1.0.0", "chip": "esp32c3",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
EOJ
    "$ESPSTATIOND" --config "$UWORK/station.json" --import-firmware "$UWORK/fwc3" \
        >>"$UWORK/import.log" 2>&1 || udev_fail "c3 firmware import failed: $(cat "$UWORK/import.log")"
}

sql() { sqlite3 -batch -noheader "$DB" "$@"; }

# wait_sql QUERY EXPECTED [TIMEOUT_S]: polls until QUERY prints EXPECTED.
wait_sql() {
    local q=$1 want=$2 t=${3:-$UMOCK_TIMEOUT} i got=""
    for i in $(seq $((t * 10))); do
        got=$(sql "$q" 2>/dev/null || true)
        [ "$got" = "$want" ] && return 0
        sleep 0.1
    done
    udev_fail "timeout (${t}s): '$q' gave '$got', expected '$want'"
}

# flash_matches BOARD: the board's flash at 0x10000 holds the firmware region.
flash_matches() {
    cmp -s <(tail -c +$((0x10000 + 1)) "$UWORK/$1/flash.bin" | head -c "$(stat -c %s "$FW_FILE")") "$FW_FILE"
}

# assert_reset_timeline BOARD [DELAY_MS]: modem.log shows the bootloader reset
# (docs PROTOCOL-ROM.md 3.2, tight or classic): EN low (RTS without DTR) held
# for at least the first attempt's 20 ms (protocols/esp_reset.c), then EN
# released with BOOT low at that moment (DTR without RTS), then BOOT released
# once the ROM's download banner arrived, at most DELAY_MS (the reset delay,
# default 50: the first attempt's) later, and not before the board sampled it
# (esp_sim: 5 ms after EN rose). The first such sequence in the log is checked.
# The harness logs each change while the ioctl blocks, so the sleeps are lower
# bounds (3 ms slack for rounding); a loaded machine only makes them longer,
# up to RESET_SLACK_MS (default 1500) more.
assert_reset_timeline() {
    local f=$UWORK/$1/modem.log delay=${2:-50} got
    got=$(awk '
        { t = $1 + 0; en = ($0 ~ / EN=low /) ? "low" : "high"; boot = ($0 ~ / BOOT=low /) ? "low" : "high" }
        st == 0 && en == "low" { t_en = t; st = 1; next }
        st == 1 && en == "high" {
            hold = t - t_en
            if (boot == "low") { t_boot = t; st = 3 } else st = 2
            next
        }
        st == 2 && en == "low" { t_en = t; st = 1; next }
        st == 2 && boot == "low" { t_boot = t; st = 3; next }
        st == 3 && en == "low" { t_en = t; st = 1; next }
        st == 3 && boot == "high" { printf "%.3f %.3f\n", hold, t - t_boot; found = 1; exit }
        END { if (!found) print "none" }' "$f")
    [ "$got" != none ] ||
        udev_fail "modem.log of $1 lacks EN low -> (EN high, BOOT low) -> release: $(cat "$f")"
    local hold=${got% *} gap=${got#* } slack=${RESET_SLACK_MS:-1500}
    awk -v h="$hold" -v g="$gap" -v d="$delay" -v s="$slack" \
        'BEGIN { exit !(h >= 17 && h <= 100 + s && g >= 5 && g <= d + s) }' ||
        udev_fail "reset timing of $1: EN held low ${hold} ms (want >= 20), BOOT released ${gap} ms after EN (want 5..${delay}): $(cat "$f")"
    udev_log "reset timing of $1: EN low ${hold} ms, BOOT released ${gap} ms after EN"
}

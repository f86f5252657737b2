# shellcheck shell=bash
#
# daemon_lib.sh: helpers for the espstationd integration tests (sourced after
# lib.sh, never run). The daemon binary comes from ESPSTATIOND, else it is
# derived from the CLI's path (<build>/cli/espstation -> <build>/daemon/espstationd).
#
# Invariants (on top of lib.sh's): every daemon started here is stopped on
# exit by its own pid (SIGTERM, then SIGKILL after 10 s); every wait is
# bounded; the records database is read with the sqlite3 CLI only (WAL lets
# it read while the daemon writes); a sanitizer report in a daemon log fails
# the test.

: "${ESPSTATIOND:=$(cd "$(dirname "$ESPSTATION")/.." && pwd)/daemon/espstationd}"
[ -x "$ESPSTATIOND" ] || fail "espstationd not found at $ESPSTATIOND (set ESPSTATIOND)"
command -v sqlite3 >/dev/null || fail "the sqlite3 CLI is needed (apt-get install sqlite3)"
MKIMAGE="$(dirname "${BASH_SOURCE[0]}")/mkespimage.py"

DAEMON_PIDS=()
DAEMON_PID=""
DAEMON_LOG=""
DAEMON_N=0
DATA_DIR="$WORK/data"

_daemon_cleanup() {
    local rc=$? pid i
    for pid in "${DAEMON_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ -n "$DAEMON_LOG" ]; then
        printf -- '--- daemon log (tail): %s\n' "$DAEMON_LOG" >&2
        tail -n 60 "$DAEMON_LOG" >&2 2>/dev/null || true
    fi
    if [ "$rc" -eq 0 ]; then
        _cleanup
    else
        (exit "$rc") || _cleanup # _cleanup reads the status from $?
    fi
}
trap _daemon_cleanup EXIT

# db SQL...: runs SQL against the records database (read-mostly; waits on locks).
db() {
    sqlite3 -batch -noheader -cmd '.timeout 5000' "$DATA_DIR/records.db" "$@"
}

# wait_sql SQL EXPECTED [TIMEOUT_S]: polls until SQL prints EXPECTED.
wait_sql() {
    local sql=$1 want=$2 tmo=${3:-60} got=""
    local deadline=$((SECONDS + tmo))
    while :; do
        if [ -f "$DATA_DIR/records.db" ]; then
            got=$(db "$sql" 2>/dev/null || true)
            [ "$got" = "$want" ] && return 0
        fi
        if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            fail "espstationd (pid $DAEMON_PID) died while waiting for: $sql = $want (last: '$got')"
        fi
        [ $SECONDS -lt $deadline ] || fail "timeout (${tmo}s) waiting for: $sql = '$want' (last: '$got')"
        sleep 0.2
    done
}

# wait_log REGEX [TIMEOUT_S]: polls the current daemon log for REGEX (grep -E).
wait_log() {
    local re=$1 tmo=${2:-30}
    local deadline=$((SECONDS + tmo))
    until grep -Eq -- "$re" "$DAEMON_LOG" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "timeout (${tmo}s) waiting for /$re/ in $DAEMON_LOG"
        sleep 0.1
    done
}

# wait_file_log REGEX FILE [TIMEOUT_S]
wait_file_log() {
    local re=$1 file=$2 tmo=${3:-30}
    local deadline=$((SECONDS + tmo))
    until grep -Eq -- "$re" "$file" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "timeout (${tmo}s) waiting for /$re/ in $file"
        sleep 0.1
    done
}

# import_fw DIR: imports a firmware set into $DATA_DIR with espstationd --import-firmware.
import_fw() {
    timeout 60 "$ESPSTATIOND" --data-dir "$DATA_DIR" --import-firmware "$1" \
        >"$WORK/import.out" 2>"$WORK/import.err" ||
        fail "import of $1 failed: $(cat "$WORK/import.err")"
    ! grep -q Sanitizer "$WORK/import.err" || fail "sanitizer report during import"
}

# import_esp32_app SEED: the set app@1.0 (one ESP32 app of 40000 bytes at 0x10000, 4 MB
# flash) in $WORK/fw, imported; $FW is that directory, $FW/app.bin the image.
import_esp32_app() {
    FW=$WORK/fw
    mkdir -p "$FW"
    make_image_esp esp32 40000 "$FW/app.bin" "$1"
    cat >"$FW/manifest.json" <<JSON
{"name": "app", "version": "1.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
    import_fw "$FW"
}

# make_image_esp CHIP SIZE FILE SEED: a valid ESP image (see mkespimage.py).
make_image_esp() {
    python3 "$MKIMAGE" --chip "$1" --size "$2" --out "$3" --seed "$4" || fail "mkespimage failed"
}

# start_daemon CONFIG [args...]: starts espstationd in the background (log in
# $WORK/daemon.N.log) and waits until it runs. Sets DAEMON_PID, DAEMON_LOG.
start_daemon() {
    local cfg=$1
    shift
    DAEMON_N=$((DAEMON_N + 1))
    DAEMON_LOG="$WORK/daemon.$DAEMON_N.log"
    "$ESPSTATIOND" --config "$cfg" --data-dir "$DATA_DIR" --stub-dir "$STUB_DIR" --no-udev "$@" \
        >"$DAEMON_LOG" 2>&1 &
    DAEMON_PID=$!
    DAEMON_PIDS+=("$DAEMON_PID")
    log "espstationd started (pid $DAEMON_PID, log $DAEMON_LOG)"
    wait_log 'station running' 30
}

# stop_daemon [EXPECTED_RC]: SIGTERM, bounded wait, exit status check (default 0).
stop_daemon() {
    local want=${1:-0} rc=0
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$DAEMON_PID" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "espstationd did not exit within 30 s of SIGTERM"
        sleep 0.1
    done
    wait "$DAEMON_PID" 2>/dev/null || rc=$?
    check_daemon_log
    [ "$rc" -eq "$want" ] || fail "espstationd exited with $rc after SIGTERM, expected $want"
    DAEMON_PID=""
}

# kill9_daemon: SIGKILL (a crash).
kill9_daemon() {
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
}

check_daemon_log() {
    if grep -Eq 'Sanitizer|runtime error' "$DAEMON_LOG"; then
        fail "espstationd reported a sanitizer error (see $DAEMON_LOG)"
    fi
    if grep -q 'internal:' "$DAEMON_LOG"; then
        fail "espstationd logged an internal error: $(grep 'internal:' "$DAEMON_LOG" | head -n 3)"
    fi
}

# integrity_ok: PRAGMA integrity_check of the records database says ok.
integrity_ok() {
    local r
    r=$(db 'PRAGMA integrity_check;')
    [ "$r" = ok ] || fail "records database integrity_check: $r"
}

#!/usr/bin/env bash
# test_line_allocation: a line of three stations on one private PostgreSQL 15 (pg_lib.sh)
# allocates serial numbers and per-board pool files (issue 12, atomic allocation).
# Three espstationd ("station": st1, st2, st3; own data dirs, three virtual boards each)
# start at the same moment and flash their nine boards under one profile with
#   "serial": {"format": "ESP-%06u", "start": 1, "offset": "0x3ff000"} and a per_board
#   pool "nvs" of five files:
#  - the nine boards hold the serial numbers 1..9, each once, each rendered "ESP-00000N";
#  - five boards got one pool file each (no file twice), passed, and their flash holds
#    their file at 0x9000 and their serial text, a NUL and 0xFF to the end of the sector
#    at 0x3ff000 (read back from esp_sim's flash file);
#  - the other four failed at stage "prepare" with "pool nvs is exhausted" and a
#    pool.failed event, nothing written at 0x3ff000; they keep their serial number;
#  - GET /api/v1/boards/{mac} on another station shows the board's "serial";
#  - a forced re-flash keeps the board's number (serial.assigned "kept": true), and so
#    does the board flashed by another station after its own stopped.
# When PostgreSQL cannot be started this test FAILS (never skips).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/pg_lib.sh"
trap 'pg_stop_then _daemon_cleanup' EXIT

pg_test_db line
pg_wait() { # SQL WANT [TIMEOUT_S]
    local got="" deadline=$((SECONDS + ${3:-90}))
    until got=$(pgq "$1" 2>/dev/null) && [ "$got" = "$2" ]; do
        [ $SECONDS -lt $deadline ] || fail "timeout waiting for: $1 = '$2' (last: '$got')"
        sleep 0.2
    done
}

POOL=$WORK/pool
mkdir -p "$POOL"
for i in 1 2 3 4 5; do head -c $((2000 + i * 100)) /dev/urandom >"$POOL/000$i.bin"; done
SEC=0x3ff000
TOKEN=line-token

DATA_DIR=$WORK/data1
import_esp32_app 12
MACS=()
declare -A SIM_OF STATION_OF LABEL_OF
for s in 1 2 3; do
    DATA_DIR=$WORK/data$s
    [ "$s" = 1 ] || import_fw "$FW"
    ports=""
    for b in 1 2 3; do
        mac=$(printf '24:6f:28:12:%02x:%02x' "$s" "$b")
        start_sim esp32 --mac "$mac"
        MACS+=("$mac")
        SIM_OF[$mac]=$SIM_DIR
        STATION_OF[$mac]=st$s
        LABEL_OF[$mac]=A$b
        ports+="${ports:+, }{\"uri\": \"$SIM_DIR/tty\", \"label\": \"A$b\"}"
    done
    cat >"$WORK/st$s.json" <<JSON
{"station": "st$s", "api": {"token": "$TOKEN"},
 "records": {"backend": "postgresql", "dsn": "$DSN"},
 "ports": [$ports],
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}, "retries": 0,
                       "serial": {"format": "ESP-%06u", "start": 1, "offset": "$SEC"},
                       "per_board": [{"name": "nvs", "offset": "0x9000", "dir": "$POOL"}]}}}
JSON
done

# The schema first (a station without boards), so the three start on a migrated database.
cat >"$WORK/schema.json" <<JSON
{"station": "schema", "records": {"backend": "postgresql", "dsn": "$DSN"}}
JSON
DATA_DIR=$WORK/data-schema
start_daemon "$WORK/schema.json" --listen 127.0.0.1:0
stop_daemon

# --- three stations at once ---------------------------------------------------------------
declare -A PID_OF LOG_OF API_OF
for s in 1 2 3; do
    LOG_OF[st$s]=$WORK/st$s.log
    rm -f "$WORK/port.st$s"
    "$ESPSTATIOND" --config "$WORK/st$s.json" --data-dir "$WORK/data$s" --stub-dir "$STUB_DIR" \
        --no-udev --listen 127.0.0.1:0 --port-file "$WORK/port.st$s" >"${LOG_OF[st$s]}" 2>&1 &
    PID_OF[st$s]=$!
    DAEMON_PIDS+=("$!")
done
for s in 1 2 3; do
    DAEMON_LOG=${LOG_OF[st$s]}
    DAEMON_PID=${PID_OF[st$s]}
    wait_log 'station running' 30
    deadline=$((SECONDS + 10))
    until [ -s "$WORK/port.st$s" ]; do
        [ $SECONDS -lt $deadline ] || fail "no port file for st$s"
        sleep 0.05
    done
    API_OF[st$s]="http://127.0.0.1:$(tr -d '\n' <"$WORK/port.st$s")"
done
use_station() {
    API=${API_OF[$1]}
    DAEMON_PID=${PID_OF[$1]}
    DAEMON_LOG=${LOG_OF[$1]}
}

pg_wait "SELECT count(*) FROM jobs WHERE state IN ('passed', 'failed')" 9 120
[ "$(pgq "SELECT count(*) FROM jobs")" = 9 ] || fail "jobs: $(pgq 'SELECT id, station, slot, state FROM jobs')"
[ "$(pgq "SELECT string_agg(DISTINCT station, ',' ORDER BY station) FROM jobs")" = st1,st2,st3 ] ||
    fail "jobs per station: $(pgq 'SELECT station, count(*) FROM jobs GROUP BY station')"

# --- serial numbers: 1..9, one per board ----------------------------------------------------
[ "$(pgq "SELECT string_agg(number::text, ',' ORDER BY number) FROM serials WHERE profile = 'line'")" = 1,2,3,4,5,6,7,8,9 ] ||
    fail "serial numbers: $(pgq 'SELECT number, mac, station FROM serials ORDER BY number')"
[ "$(pgq "SELECT count(DISTINCT mac) FROM serials")" = 9 ] || fail "a board holds two numbers"
[ "$(pgq "SELECT count(*) FROM serials WHERE text <> 'ESP-' || lpad(number::text, 6, '0')")" = 0 ] ||
    fail "serial texts: $(pgq 'SELECT number, text FROM serials')"
[ "$(pgq "SELECT count(*) FROM serials s JOIN jobs j ON j.id = s.job_id AND j.board_mac = s.mac AND j.station = s.station")" = 9 ] ||
    fail "serials not recorded with their job and station: $(pgq 'SELECT number, mac, job_id, station FROM serials')"
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'serial.assigned'")" = 9 ] || fail "serial.assigned events"
[ "$(pgq "SELECT count(*) FROM job_log WHERE line LIKE 'serial ESP-0000__ (number _ of profile line) given to this board, written at 0x3ff000'")" = 9 ] ||
    fail "serial lines in the job logs: $(pgq "SELECT line FROM job_log WHERE line LIKE 'serial%'")"

# --- pool files: five boards, one file each; four boards find the pool exhausted ---------
[ "$(pgq "SELECT count(*), count(DISTINCT file), count(DISTINCT mac) FROM pool_items WHERE pool = 'nvs'")" = "5|5|5" ] ||
    fail "pool items: $(pgq 'SELECT file, mac FROM pool_items')"
[ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'passed'")" = 5 ] ||
    fail "passed jobs: $(pgq 'SELECT station, slot, state, error_message FROM jobs')"
[ "$(pgq "SELECT count(*) FROM jobs j WHERE state = 'failed' AND error_stage = 'prepare' AND error_message LIKE 'pool nvs is exhausted: all 5 .bin files in % went to other boards%' AND NOT EXISTS (SELECT 1 FROM pool_items p WHERE p.mac = j.board_mac)")" = 4 ] ||
    fail "failed jobs: $(pgq "SELECT station, slot, error_stage, error_message FROM jobs WHERE state = 'failed'")"
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'pool.failed'")" = 4 ] || fail "pool.failed events"

# --- the boards' flash ----------------------------------------------------------------------
serial_sector() { # TEXT FILE: the sector the daemon writes for TEXT
    { printf '%s\0' "$1"; head -c $((4096 - ${#1} - 1)) /dev/zero | tr '\0' '\377'; } >"$2"
}
PASSED_MAC="" FAILED_MAC=""
for mac in "${MACS[@]}"; do
    text=$(pgq "SELECT text FROM serials WHERE mac = '$mac'")
    file=$(pgq "SELECT file FROM pool_items WHERE mac = '$mac'")
    dir=${SIM_OF[$mac]}
    if [ -n "$file" ]; then
        serial_sector "$text" "$WORK/sector.bin"
        flash_region_equals "$dir" $SEC "$WORK/sector.bin"
        flash_region_equals "$dir" 0x9000 "$POOL/$file"
        flash_region_equals "$dir" 0x10000 "$FW/app.bin"
        PASSED_MAC=$mac
    else
        head -c 4096 /dev/zero | tr '\0' '\377' >"$WORK/erased.bin"
        flash_region_equals "$dir" $SEC "$WORK/erased.bin"
        FAILED_MAC=$mac
    fi
done
[ -n "$PASSED_MAC" ] && [ -n "$FAILED_MAC" ] || fail "no passed or no failed board"

# --- the API of another station shows the board's serial ------------------------------------
P_ST=${STATION_OF[$PASSED_MAC]}
OTHER=st1
[ "$P_ST" != st1 ] || OTHER=st2
use_station "$OTHER"
api GET "/api/v1/boards/$PASSED_MAC"
expect_status 200
N=$(pgq "SELECT number FROM serials WHERE mac = '$PASSED_MAC'")
expect_jq ".serial.profile == \"line\" and .serial.number == $N and .serial.text == \"$(printf 'ESP-%06d' "$N")\" and .serial.station == \"$P_ST\""
expect_jq '.serials | length == 1'
api GET /api/v1/profiles/line
expect_jq '.serial == {"format": "ESP-%06u", "start": 1, "offset": "0x3ff000"}'

# --- a forced re-flash keeps the number -------------------------------------------------------
use_station "$P_ST"
dd if=/dev/zero of="${SIM_OF[$PASSED_MAC]}/flash.bin" bs=1 seek=$((SEC)) count=16 conv=notrunc status=none
apij POST "/api/v1/slots/${LABEL_OF[$PASSED_MAC]}/reflash" '{"force": true}'
expect_status 202 "reflash $PASSED_MAC"
JR=$(jqr .id)
pg_wait "SELECT state FROM jobs WHERE id = $JR" passed 60
[ "$(pgq "SELECT number FROM serials WHERE mac = '$PASSED_MAC'")" = "$N" ] || fail "the re-flash changed the number"
[ "$(pgq "SELECT count(*) FROM serials")" = 9 ] || fail "the re-flash took a new number"
ev=$(pgq "SELECT data FROM events WHERE kind = 'serial.assigned' AND job_id = $JR")
[ "$(jq -c '[.number, .kept]' <<<"$ev")" = "[$N,true]" ] || fail "re-flash serial event: $ev"
serial_sector "$(printf 'ESP-%06d' "$N")" "$WORK/sector.bin"
flash_region_equals "${SIM_OF[$PASSED_MAC]}" $SEC "$WORK/sector.bin"

# --- the board moves to another station: same number there ------------------------------
F_ST=${STATION_OF[$FAILED_MAC]}
NF=$(pgq "SELECT number FROM serials WHERE mac = '$FAILED_MAC'")
use_station "$F_ST"
api DELETE "/api/v1/ports/${LABEL_OF[$FAILED_MAC]}" -H "Authorization: Bearer $TOKEN"
[ "$HTTP_STATUS" = 200 ] || [ "$HTTP_STATUS" = 204 ] || fail "detach from $F_ST: $HTTP_STATUS $RESP"
TO=st1
[ "$F_ST" != st1 ] || TO=st3
head -c 3333 /dev/urandom >"$POOL/0006.bin" # room for it now
use_station "$TO"
apij POST /api/v1/ports "{\"uri\": \"${SIM_OF[$FAILED_MAC]}/tty\", \"label\": \"M1\"}"
expect_status 201 "attach $FAILED_MAC to $TO"
pg_wait "SELECT state FROM jobs WHERE station = '$TO' AND slot = 'M1' ORDER BY id DESC LIMIT 1" passed 60
[ "$(pgq "SELECT number FROM serials WHERE mac = '$FAILED_MAC'")" = "$NF" ] || fail "the moved board got another number"
[ "$(pgq "SELECT count(*) FROM serials")" = 9 ] || fail "the moved board took a new number"
[ "$(pgq "SELECT file FROM pool_items WHERE mac = '$FAILED_MAC'")" = 0006.bin ] || fail "moved board's pool file"
serial_sector "$(printf 'ESP-%06d' "$NF")" "$WORK/sector.bin"
flash_region_equals "${SIM_OF[$FAILED_MAC]}" $SEC "$WORK/sector.bin"

log "serial numbers by station: $(pgq "SELECT string_agg(station || ' ' || nums, '; ') FROM (SELECT station, string_agg(number::text, ',' ORDER BY number) AS nums FROM serials GROUP BY station ORDER BY station) x")"
log "pool files by station: $(pgq "SELECT string_agg(j.station || ' ' || p.file, '; ' ORDER BY p.file) FROM pool_items p JOIN jobs j ON j.id = p.job_id")"
for s in st1 st2 st3; do
    use_station "$s"
    stop_daemon
done
log "ok: 3 stations, serials 1..9 once each, 5 pool files to 5 boards, 4 boards 'pool exhausted'; re-flash and a moved board kept their numbers"
done_ok

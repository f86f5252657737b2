#!/usr/bin/env bash
# test_daemon_records_pg: espstationd keeps its records in PostgreSQL
# ("records": {"backend": "postgresql", "dsn": ...}) on a private PostgreSQL 15
# (pg_lib.sh): it creates the schema, flashes a virtual board and its board, job
# and events rows are in the server (no records.db in the data directory); a
# second daemon on the same database is refused; with the server unreachable the
# daemon does not start and says which server and what to check, without the
# DSN's password. When PostgreSQL cannot be started this test FAILS (never skips).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/pg_lib.sh"
trap 'pg_stop_then _daemon_cleanup' EXIT

PGD=$(mktemp -d "$TEST_TMPDIR/pg.XXXXXX")
rmdir "$PGD"
pg_start "$PGD" ||
    fail "PostgreSQL 15 could not be started (see above); this test needs it: apt-get install postgresql (scripts/setup.sh)"
psql -X -q -v ON_ERROR_STOP=1 "$PG_DSN" -c "CREATE DATABASE espstation" >/dev/null ||
    fail "cannot create the test database"
DSN="host=$PG_HOST port=$PG_PORT user=postgres dbname=espstation password=sekret-not-needed"
pgq() { psql -X -At -v ON_ERROR_STOP=1 "$DSN" -c "$1"; }

import_esp32_app 7
start_sim esp32
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$SIM_DIR/tty", "label": "A1"}],
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}}},
 "records": {"backend": "postgresql", "dsn": "$DSN"}}
JSON

start_daemon "$CFG"
deadline=$((SECONDS + 90))
until [ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'passed'" 2>/dev/null)" = 1 ]; do
    [ $SECONDS -lt $deadline ] ||
        fail "no passed job in PostgreSQL after 90 s: $(pgq 'SELECT id, state, error_message FROM jobs' 2>&1)"
    sleep 0.2
done
[ "$(pgq 'SELECT version FROM records_schema')" = 9 ] || fail "schema version in PostgreSQL: $(pgq 'SELECT version FROM records_schema')"
row=$(pgq "SELECT chip, current_firmware, current_md5, slot FROM boards WHERE mac = '24:6f:28:7a:d8:84'")
[ "$row" = "ESP32|app@1.0|$(md5_of "$FW/app.bin")|A1" ] || fail "board record in PostgreSQL: $row"
row=$(pgq "SELECT firmware, board_mac, slot, bytes > 0, kbps > 0 FROM jobs")
[ "$row" = "app@1.0|24:6f:28:7a:d8:84|A1|t|t" ] || fail "job record in PostgreSQL: $row"
[ "$(pgq "SELECT count(*) FROM job_log WHERE line LIKE 'sync ok%'")" = 1 ] || fail "engine log lines missing from the job log"
for k in port.added job.started board.identified job.finished; do
    [ "$(pgq "SELECT count(*) FROM events WHERE kind = '$k'")" = 1 ] || fail "expected one '$k' event in PostgreSQL"
done
[ ! -e "$DATA_DIR/records.db" ] || fail "a records.db was written although the backend is PostgreSQL"
grep -q 'records PostgreSQL' "$DAEMON_LOG" || fail "the start-up line does not name the PostgreSQL backend"

# A second daemon on the same database is refused, as on the same data directory.
rc=0
timeout 30 "$ESPSTATIOND" --config "$CFG" --data-dir "$WORK/data2" --stub-dir "$STUB_DIR" \
    --no-udev >"$WORK/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a second daemon on the same database: rc $rc ($(tail -n 3 "$WORK/second.log"))"
grep -q 'in use by another process' "$WORK/second.log" ||
    fail "second daemon: no 'in use' message: $(tail -n 3 "$WORK/second.log")"
stop_daemon

# The server gone. A data directory that never worked with this database: the daemon does
# not start, names the server and what to check. (One that did starts offline and journals:
# test_line_db_faults.)
pg_stop
rc=0
mkdir -p "$WORK/fresh"
timeout 60 "$ESPSTATIOND" --config "$CFG" --data-dir "$WORK/fresh" --stub-dir "$STUB_DIR" \
    --no-udev >"$WORK/down.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "daemon with PostgreSQL down: rc $rc"
for want in 'cannot connect to PostgreSQL' 'records.dsn' 'dbname=espstation' 'pg_hba.conf'; do
    grep -qF "$want" "$WORK/down.log" || fail "PostgreSQL down: '$want' not in: $(cat "$WORK/down.log")"
done
! grep -q 'sekret' "$WORK/down.log" || fail "the DSN's password was printed: $(cat "$WORK/down.log")"
[ ! -e "$WORK/fresh/records.db" ] || fail "PostgreSQL down: the daemon fell back to a records.db"
log "ok: records on PostgreSQL; second daemon refused; server down reported: $(grep -m1 -o 'records: cannot connect[^;]*' "$WORK/down.log")"

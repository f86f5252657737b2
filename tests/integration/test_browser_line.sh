#!/usr/bin/env bash
# test_browser_line: the status page's Line tab in a real browser. Three stations (st1,
# st2, st3, one virtual board each) share a private PostgreSQL 15 (pg_lib.sh); st3 is
# killed with -9 and, once st1 or st2 has marked it gone, tests/browser/line.spec.mjs
# opens st1's page at #/line with Debian's chromium through playwright-core: a card per
# station, st1 and st2 "up" (st1 "this station" with its slot), st3 greyed "gone" with
# how long ago and who took over its jobs, and the ages moving without a reload.
# Screenshot: <build>/screenshots/line/line.png.
#
# Needs node and chromium (prints SKIP and exits 77 only when one of them is not
# installed); PostgreSQL that cannot be started is a FAILURE, never a skip.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/browser_lib.sh"
browser_need test_browser_line

source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$HERE/daemon_lib.sh"
source "$HERE/api_lib.sh"
source "$HERE/pg_lib.sh"
trap 'pg_stop_then _daemon_cleanup' EXIT

browser_npm
SHOTS=$(cd "$TEST_TMPDIR/.." && pwd)/screenshots/line
mkdir -p "$SHOTS"

pg_test_db line

declare -A APIS PIDS
for n in 1 2 3; do
    DATA_DIR=$WORK/data$n
    mkdir -p "$DATA_DIR"
    import_esp32_app 7
    start_sim esp32 --mac "24:6f:28:00:0$n:01"
    cat >"$WORK/st$n.json" <<JSON
{"station": "st$n",
 "ports": [{"uri": "$SIM_DIR/tty", "label": "L${n}A"}],
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}}},
 "records": {"backend": "postgresql", "dsn": "$DSN"},
 "line": {"heartbeat_s": 1, "gone_after_s": 3}}
JSON
    start_api_daemon "$WORK/st$n.json" --web-root "$SRC/web/static"
    APIS[$n]=$API
    PIDS[$n]=$DAEMON_PID
done
deadline=$((SECONDS + 90))
until [ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'passed'")" = 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "the stations did not flash: $(pgq 'SELECT id, station, state, error_message FROM jobs')"
    sleep 0.2
done
# st3's last heartbeat shows its slot (the line view shows a gone station as last reported)
deadline=$((SECONDS + 30))
until [ "$(pgq "SELECT count(*) FROM stations WHERE name = 'st3' AND status LIKE '%\"L3A\"%'")" = 1 ]; do
    [ $SECONDS -lt $deadline ] || fail "st3 never reported its slot: $(pgq "SELECT status FROM stations WHERE name = 'st3'")"
    sleep 0.2
done
kill -KILL "${PIDS[3]}"
wait "${PIDS[3]}" 2>/dev/null || true
deadline=$((SECONDS + 60))
until [ "$(pgq "SELECT count(*) FROM events WHERE kind = 'station.gone'")" = 1 ]; do
    [ $SECONDS -lt $deadline ] || fail "st3 was not found gone: $(pgq 'SELECT name, heartbeat_at FROM stations')"
    sleep 0.2
done

rc=0
TEST_TMPDIR=$WORK timeout 300 node "$BROWSER_DIR/line.spec.mjs" --url "${APIS[1]}" --up st1,st2 \
    --gone st3 --self st1 --slot L1A --shots "$SHOTS" >"$WORK/spec.out" 2>&1 || rc=$?
cat "$WORK/spec.out" >&2
[ "$rc" -eq 0 ] || fail "line.spec.mjs failed (rc=$rc); screenshot in $SHOTS"
grep -Eq '^[0-9]+ passed, 0 failed$' "$WORK/spec.out" || fail "line.spec.mjs printed no summary"
for n in 1 2; do
    DAEMON_PID=${PIDS[$n]}
    DAEMON_LOG=$WORK/daemon.$n.log
    stop_daemon 0
done
done_ok

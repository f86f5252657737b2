#!/usr/bin/env bash
# test_line_db_faults: a station keeps flashing while its PostgreSQL goes away,
# and nothing is lost or written twice (issue 12, faults). The daemon reaches a
# private PostgreSQL 15 (pg_lib.sh) through a small TCP proxy the test controls,
# so a network partition can be made without a reset: SIGSTOP on the proxy and
# packets go nowhere (connects still complete in the kernel's backlog, nothing
# answers), SIGCONT heals it. Three virtual boards (esp_sim, link paced so the
# jobs are mid-write when the fault comes):
#  1. PostgreSQL stops (pg_ctl stop -m fast) while the boards flash and starts
#     again after the jobs ended: every job passes, and its row, result and
#     events are in PostgreSQL once.
#  2. A partition while the boards are flashed again: the jobs pass, the daemon
#     journals, GET /api/v1/slots answers (curl --max-time) during the outage,
#     and after the heal everything is written once.
#  3. kill -9 of the daemon while its journal holds writes the database has not
#     seen, then a restart: the journal is written first, nothing lost, nothing
#     twice, the job not marked interrupted.
#  4. A power cut of the station while the database server is also down: kill -9
#     mid-job, PostgreSQL stopped, the station started again before it: it starts
#     offline (its state file shows it worked with that database), flashes three
#     new boards into its journal, and when PostgreSQL is back the journal is
#     written, every job once, the jobs the killed process left running are
#     interrupted once each, and none of the offline run's jobs.
# When PostgreSQL cannot be started this test FAILS (never skips).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/pg_lib.sh"
PROXY_PID=""
# The proxy and the server first: _daemon_cleanup ends with exit.
_line_cleanup() {
    local rc=$?
    if [ -n "$PROXY_PID" ]; then
        kill -CONT "$PROXY_PID" 2>/dev/null
        kill "$PROXY_PID" 2>/dev/null
    fi
    pg_stop
    if [ "$rc" -eq 0 ]; then
        _daemon_cleanup
    else
        (exit "$rc") || _daemon_cleanup # it reads the status from $?
    fi
}
trap _line_cleanup EXIT

PGD=$(mktemp -d "$TEST_TMPDIR/pg.XXXXXX")
rmdir "$PGD"
pg_start "$PGD" ||
    fail "PostgreSQL 15 could not be started (see above); this test needs it: apt-get install postgresql (scripts/setup.sh)"
psql -X -q -v ON_ERROR_STOP=1 "$PG_DSN" -c "CREATE DATABASE espstation" >/dev/null ||
    fail "cannot create the test database"
# The test reads PostgreSQL directly (not through the proxy).
pgq() { psql -X -At -v ON_ERROR_STOP=1 "host=$PG_HOST port=$PG_PORT user=postgres dbname=espstation" -c "$1"; }

# ---- the proxy: one process, select(); SIGSTOP = a partition, SIGCONT = healed ----------
cat >"$WORK/proxy.py" <<'EOF'
import select, socket, sys
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0))
lst.listen(64)
open(sys.argv[2], "w").write(str(lst.getsockname()[1]))
peer = {}
while True:
    r, _, _ = select.select([lst] + list(peer), [], [])
    for s in r:
        if s is lst:
            c, _ = lst.accept()
            try:
                u = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            except OSError:
                c.close()  # the server is down: refused, as it would be
                continue
            peer[c], peer[u] = u, c
            continue
        if s not in peer:
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        o = peer[s]
        if data:
            try:
                o.sendall(data)
                continue
            except OSError:
                pass
        for x in (s, o):
            peer.pop(x, None)
            x.close()
EOF
python3 "$WORK/proxy.py" "$PG_PORT" "$WORK/proxy.port" 2>"$WORK/proxy.log" &
PROXY_PID=$!
deadline=$((SECONDS + 10))
until [ -s "$WORK/proxy.port" ]; do
    [ $SECONDS -lt $deadline ] || fail "the proxy did not start: $(cat "$WORK/proxy.log")"
    sleep 0.05
done
PROXY_PORT=$(cat "$WORK/proxy.port")
partition() { kill -STOP "$PROXY_PID"; }
heal() { kill -CONT "$PROXY_PID"; }

# ---- three paced boards -------------------------------------------------------------------
FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 300000 "$FW/app.bin" 5
cat >"$FW/manifest.json" <<JSON
{"name": "app", "version": "1.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"
PORTS=""
for n in 1 2 3; do
    start_sim esp32 --mac "24:6f:28:00:00:0$n" --link-speed 1
    PORTS+="${PORTS:+, }{\"uri\": \"$SIM_DIR/tty\", \"label\": \"A$n\"}"
done
TOKEN=t0k3n-for-tests
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"station": "st1",
 "ports": [$PORTS],
 "api": {"token": "$TOKEN"},
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}}},
 "records": {"backend": "postgresql",
             "dsn": "host=127.0.0.1 port=$PROXY_PORT user=postgres dbname=espstation connect_timeout=3"}}
JSON

# slots_answer: GET /api/v1/slots answers within 8 s (the loop is not frozen).
slots_answer() {
    local code
    code=$(curl -sS --max-time 8 -o "$WORK/slots.json" -w '%{http_code}' \
        -H "Authorization: Bearer $TOKEN" "$API/api/v1/slots") ||
        fail "GET /api/v1/slots did not answer within 8 s during the outage ($1)"
    [ "$code" = 200 ] || fail "GET /api/v1/slots: HTTP $code during the outage ($1)"
}
all_idle() { wait_api /api/v1/slots '[.slots[] | select(.busy)] | length == 0' "${1:-120}"; }
# Exactly-once checks over the whole database; $1 = jobs expected.
check_once() {
    local want=$1 got
    got=$(pgq "SELECT count(*), count(*) FILTER (WHERE state = 'passed') FROM jobs")
    [ "$got" = "$want|$want" ] ||
        fail "jobs in PostgreSQL (all|passed) = $got, want $want|$want: $(pgq "SELECT id, state, stage, error_message FROM jobs ORDER BY id")"
    for k in job.started job.finished; do
        got=$(pgq "SELECT count(*), count(DISTINCT job_id) FROM events WHERE kind = '$k'")
        [ "$got" = "$want|$want" ] || fail "'$k' events (all|distinct jobs) = $got, want $want|$want"
    done
    got=$(pgq "SELECT count(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.id AND e.kind = 'job.finished')")
    [ "$got" = 0 ] || fail "$got jobs have no job.finished event"
    got=$(pgq "SELECT count(*) FROM (SELECT job_id, ts, line FROM job_log GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
    [ "$got" = 0 ] || fail "$got job log lines written twice"
    got=$(pgq "SELECT count(*) FROM jobs WHERE bytes <= 0 OR ended_at IS NULL OR seconds IS NULL OR board_mac IS NULL")
    [ "$got" = 0 ] || fail "jobs without their result: $(pgq "SELECT id, bytes, ended_at, seconds, board_mac FROM jobs")"
    got=$(pgq "SELECT count(*) FROM events WHERE kind = 'job.interrupted'")
    [ "$got" = 0 ] || fail "$got jobs were marked interrupted"
}
reflash_all() {
    local n
    for n in 1 2 3; do
        apij POST "/api/v1/slots/A$n/reflash" '{"force": true}'
        [ "$HTTP_STATUS" = 202 ] || [ "$HTTP_STATUS" = 200 ] || fail "reflash A$n: HTTP $HTTP_STATUS $RESP"
    done
}
wait_writing() { # until some job's progress shows bytes written (read from the database directly)
    local deadline=$((SECONDS + 60))
    until [ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'running' AND bytes > 0" 2>/dev/null)" -ge 1 ] 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "no job got to writing within 60 s"
        sleep 0.1
    done
}

# ---- 1. PostgreSQL restarts mid-job --------------------------------------------------------
start_api_daemon "$CFG"
wait_writing
_pg_as "$PG_BINDIR/pg_ctl" -D "$PGD/data" -m fast -w -t 30 stop >/dev/null || fail "pg_ctl stop failed"
log "PostgreSQL stopped while jobs write"
wait_log 'records database unreachable' 30
slots_answer "server stopped"
all_idle 120 # the jobs end while the server is down: their results wait in the journal
[ "$(($(wc -l <"$DATA_DIR/records.journal") - 1))" -gt 0 ] || fail "the journal is empty while the server is down"
# The technician's view while the database is away: the line view says so with the journal's
# state (200), a records read is 503 "unavailable" naming it (not a 500).
apit GET /api/v1/line
expect_status 200
[ "$(jq -r '.database.connected' <<<"$RESP")" = false ] || fail "line view during the outage: $RESP"
[ "$(jq -r '.database.journal.pending > 0' <<<"$RESP")" = true ] || fail "line view journal: $RESP"
jq -r '.database.error' <<<"$RESP" | grepq 'unreachable' || fail "line view error: $RESP"
apit GET /api/v1/jobs
expect_status 503
[ "$(jq -r '.error.code' <<<"$RESP")" = unavailable ] || fail "jobs during the outage: $RESP"
jq -r '.error.message' <<<"$RESP" | grepq 'keeps flashing' || fail "jobs during the outage: $RESP"
_pg_as "$PG_BINDIR/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 30 \
    -o "-k $PGD -p $PG_PORT -h 127.0.0.1 -c fsync=off -c full_page_writes=off" start >/dev/null ||
    fail "pg_ctl start failed"
log "PostgreSQL started again"
wait_log 'records database reachable again' 60
grep -Eq 'reachable again: the journal is written \(([1-9][0-9]*) writes journaled' "$DAEMON_LOG" ||
    fail "nothing was journaled across the restart: $(grep 'reachable again' "$DAEMON_LOG")"
check_once 3
log "ok 1: PostgreSQL restart mid-job: 3 jobs passed, each written once"

# ---- 2. a partition (no reset) while the boards flash again ------------------------------------
reflash_all
wait_writing
partition
log "partition: the proxy forwards nothing"
wait_log 'records database unreachable \(no answer' 30
for i in 1 2 3 4 5; do
    slots_answer "partition, probe $i"
    sleep 0.5
done
all_idle 120
pend=$(($(wc -l <"$DATA_DIR/records.journal") - 1))
[ "$pend" -gt 0 ] || fail "the journal is empty during the partition"
log "partition: jobs done, $pend journal entries waiting"
[ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'passed'")" = 3 ] ||
    fail "the database saw the partition's jobs finish although it was cut off"
heal
deadline=$((SECONDS + 60))
until [ "$(grep -c 'records database reachable again' "$DAEMON_LOG")" -ge 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "the journal was not written within 60 s of the heal"
    sleep 0.2
done
check_once 6
[ "$(wc -l <"$DATA_DIR/records.journal")" = 1 ] || fail "the journal was not emptied after catching up"
log "ok 2: partition: 3 jobs passed while cut off, written once after the heal"

# ---- 3. kill -9 with the journal holding writes ------------------------------------------------
partition
apij POST /api/v1/slots/A2/reflash '{"force": true}'
wait_log 'records database unreachable \(no answer' 30
all_idle 120
pend=$(($(wc -l <"$DATA_DIR/records.journal") - 1))
[ "$pend" -gt 0 ] || fail "nothing in the journal before kill -9"
grep -Eq '^[0-9a-f]{8} F	' "$DATA_DIR/records.journal" ||
    fail "the job's result is not in the journal before kill -9"
kill9_daemon
heal
# The boards go (a restarted station would flash boards it finds: not this test's jobs).
for pid in "${SIM_PIDS[@]}"; do
    stop_sim "$pid"
done
log "killed with $pend journal entries waiting; restarting"
start_api_daemon "$CFG"
wait_log 'writes an earlier run left in the journal .* are written' 10
check_once 7
[ "$(wc -l <"$DATA_DIR/records.journal")" = 1 ] || fail "the journal was not emptied at open"
stop_daemon
log "ok 3: kill -9 with $pend journaled writes: replayed at restart, nothing lost or twice"

# ---- 4. restarted while the database is down (power cut of the station and the server) -------
PORTS=""
for n in 1 2 3; do
    start_sim esp32 --mac "24:6f:28:00:00:1$n" --link-speed 1
    PORTS+="${PORTS:+, }{\"uri\": \"$SIM_DIR/tty\", \"label\": \"B$n\"}"
done
jq --argjson p "[$PORTS]" '.ports = $p' "$CFG" >"$WORK/station4.json"
start_api_daemon "$WORK/station4.json"
[ -s "$DATA_DIR/records.journal.state" ] || fail "no journal state file after a start with the database reachable"
wait_writing
kill9_daemon
OLD_RUNNING=$(pgq "SELECT string_agg(id::text, ',' ORDER BY id) FROM jobs WHERE state IN ('queued', 'running')")
[ -n "$OLD_RUNNING" ] || fail "no job left running by the killed station"
log "killed -9 with jobs $OLD_RUNNING running; PostgreSQL stops too"
_pg_as "$PG_BINDIR/pg_ctl" -D "$PGD/data" -m fast -w -t 30 stop >/dev/null || fail "pg_ctl stop failed"
start_api_daemon "$WORK/station4.json"
grepq 'starting offline' "$DAEMON_LOG" ||
    fail "the station did not say it starts offline: $(grep records "$DAEMON_LOG" | head -n 5)"
# Its three boards are flashed while the database is down: three results in the journal.
passed_in_journal() { grep -Ec "^[0-9a-f]{8} F	[0-9]+	[0-9]+	[0-9]+	passed	" "$DATA_DIR/records.journal" || true; }
deadline=$((SECONDS + 120))
until [ "$(passed_in_journal)" -ge 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "3 jobs did not pass offline within 120 s ($(passed_in_journal) in the journal): $(grep -E 'job|records' "$DAEMON_LOG" | tail -n 8)"
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "the station died offline: $(tail -n 5 "$DAEMON_LOG")"
    sleep 0.2
done
apit GET /api/v1/jobs
expect_status 503
all_idle 60
log "offline start: 3 jobs passed into the journal"
_pg_as "$PG_BINDIR/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 30 \
    -o "-k $PGD -p $PG_PORT -h 127.0.0.1 -c fsync=off -c full_page_writes=off" start >/dev/null ||
    fail "pg_ctl start failed"
wait_log 'the start made offline is finished' 60
got=$(pgq "SELECT count(*), count(*) FILTER (WHERE state = 'passed') FROM jobs WHERE id NOT IN ($OLD_RUNNING) AND board_mac LIKE '24:6f:28:00:00:1%' AND started_at > (SELECT max(started_at) FROM jobs WHERE id IN ($OLD_RUNNING))")
[ "$got" = "3|3" ] || fail "offline run's jobs (all|passed) = $got, want 3|3: $(pgq "SELECT id, state, board_mac, error_message FROM jobs ORDER BY id")"
got=$(pgq "SELECT string_agg(id::text, ',' ORDER BY id) FROM jobs WHERE state = 'interrupted'")
[ "$got" = "$OLD_RUNNING" ] || fail "interrupted jobs = '$got', want the killed run's '$OLD_RUNNING'"
got=$(pgq "SELECT count(*), count(DISTINCT job_id), string_agg(DISTINCT job_id::text, ',') FROM events WHERE kind = 'job.interrupted'")
n_old=$(tr ',' '\n' <<<"$OLD_RUNNING" | wc -l)
[ "$got" = "$n_old|$n_old|$OLD_RUNNING" ] || fail "job.interrupted events (all|jobs|ids) = $got, want $n_old|$n_old|$OLD_RUNNING"
got=$(pgq "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
[ "$got" = 0 ] || fail "$got jobs still queued/running after the offline start finished"
for k in job.started job.finished; do
    got=$(pgq "SELECT count(*) - count(DISTINCT job_id) FROM events WHERE kind = '$k'")
    [ "$got" = 0 ] || fail "$got '$k' events written twice"
done
got=$(pgq "SELECT count(*) FROM (SELECT job_id, ts, line FROM job_log GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
[ "$got" = 0 ] || fail "$got job log lines written twice"
[ "$(wc -l <"$DATA_DIR/records.journal")" = 1 ] || fail "the journal was not emptied"
apit GET /api/v1/jobs
expect_status 200
stop_daemon
log "ok 4: started offline after a power cut: 3 jobs passed and written once, the killed run's $n_old jobs interrupted once, none of this run's"

#!/usr/bin/env bash
# test_line_stations: a line of three stations on one private PostgreSQL 15 (pg_lib.sh).
#  - three espstationd (stations st1, st2, st3: own data directories, own virtual
#    boards) flash at the same time; their jobs and events in the database carry
#    their station; GET /api/v1/line on each shows all three "up" with their
#    address, slots and counters, and names itself;
#  - st3's board is slow (esp_sim link pacing, 1 MiB at 115200): st3 is killed with
#    -9 mid-write; after line.gone_after_s another station marks that job
#    'interrupted' ("station st3 stopped while write"), with exactly one
#    job.interrupted event (naming the station that did it) and one station.gone
#    event, still one each after more heartbeats; the line view shows st3 "gone";
#  - st3 restarted finds nothing more to recover, and is "up" again;
#  - a second daemon with st1's name is refused with a message naming the station.
# When PostgreSQL cannot be started this test FAILS (never skips).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/pg_lib.sh"
trap 'pg_stop_then _daemon_cleanup' EXIT

pg_test_db line

# Firmware: a small app (st1, st2) and a 1 MiB incompressible region (st3's slow board).
SMALL=$WORK/fw-small
BIG=$WORK/fw-big
mkdir -p "$SMALL" "$BIG"
make_image_esp esp32 40000 "$SMALL/app.bin" 7
cat >"$SMALL/manifest.json" <<JSON
{"name": "app", "version": "1.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
make_random $((1024 * 1024)) "$BIG/app.bin" 11
cat >"$BIG/manifest.json" <<JSON
{"name": "big", "version": "1", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
JSON

# station_config N FW BAUD PORTS_JSON: the config file of station stN.
station_config() {
    cat >"$WORK/st$1.json" <<JSON
{"station": "st$1",
 "ports": $4,
 "profiles": {"line": {"firmware": {"esp32": "$2"}, "baud": $3, "retries": 0}},
 "records": {"backend": "postgresql", "dsn": "$DSN"},
 "line": {"heartbeat_s": 1, "gone_after_s": 3}}
JSON
}

declare -A APIS PIDS
start_station() { # N
    DATA_DIR=$WORK/data$1
    start_api_daemon "$WORK/st$1.json"
    APIS[$1]=$API
    PIDS[$1]=$DAEMON_PID
}

for n in 1 2 3; do
    DATA_DIR=$WORK/data$n
    mkdir -p "$DATA_DIR"
    if [ $n = 3 ]; then import_fw "$BIG"; else import_fw "$SMALL"; fi
done
start_sim esp32
S1A=$SIM_DIR
start_sim esp32
S1B=$SIM_DIR
start_sim esp32
S2A=$SIM_DIR
start_sim esp32
S2B=$SIM_DIR
start_sim esp32 --link-speed 1
S3A=$SIM_DIR
station_config 1 app@1.0 921600 "[{\"uri\": \"$S1A/tty\", \"label\": \"L1A\"}, {\"uri\": \"$S1B/tty\", \"label\": \"L1B\"}]"
station_config 2 app@1.0 921600 "[{\"uri\": \"$S2A/tty\", \"label\": \"L2A\"}, {\"uri\": \"$S2B/tty\", \"label\": \"L2B\"}]"
station_config 3 big@1 115200 "[{\"uri\": \"$S3A/tty\", \"label\": \"L3A\"}]"
start_station 1
start_station 2
start_station 3

# --- all three flash at the same time ---------------------------------------------------
deadline=$((SECONDS + 120))
until [ "$(pgq "SELECT count(*) FROM jobs WHERE state = 'passed'")" = 4 ] &&
    [ "$(pgq "SELECT count(*) FROM jobs WHERE station = 'st3' AND stage = 'write' AND bytes > 0 AND state = 'running'")" = 1 ]; do
    [ $SECONDS -lt $deadline ] ||
        fail "the stations did not flash: $(pgq 'SELECT id, station, slot, state, stage, bytes, error_message FROM jobs' 2>&1)"
    sleep 0.2
done
# Jobs and events carry their station (the slot labels say which station has which port).
bad=$(pgq "SELECT id || ' ' || coalesce(station, '-') || ' ' || slot FROM jobs WHERE station IS NULL OR substr(slot, 2, 1) <> substr(station, 3, 1)")
[ -z "$bad" ] || fail "jobs with the wrong station: $bad"
[ "$(pgq "SELECT string_agg(station || ':' || n, ',' ORDER BY station) FROM (SELECT station, count(*) n FROM jobs GROUP BY station) x")" = "st1:2,st2:2,st3:1" ] ||
    fail "jobs per station: $(pgq 'SELECT station, count(*) FROM jobs GROUP BY station')"
bad=$(pgq "SELECT e.id FROM events e JOIN jobs j ON j.id = e.job_id WHERE e.kind IN ('job.started', 'job.finished') AND e.station IS DISTINCT FROM j.station")
[ -z "$bad" ] || fail "job events written under another station: $bad"

# The line view, from each station: three stations up, itself named.
for n in 1 2 3; do
    API=${APIS[$n]}
    deadline=$((SECONDS + 30))
    while :; do
        api GET /api/v1/line
        expect_status 200
        # every station has written a heartbeat that shows its slots
        [ "$(jq -r '[.stations[] | select(.state == "up" and (.slots | length) > 0)] | length' <<<"$RESP")" = 3 ] && break
        [ $SECONDS -lt $deadline ] || fail "st$n's line view: $RESP"
        sleep 0.3
    done
    [ "$(jq -r '.this' <<<"$RESP")" = "st$n" ] || fail "line view of st$n names itself $(jq -r .this <<<"$RESP")"
    [ "$(jq -r '[.stations[].name] | join(",")' <<<"$RESP")" = st1,st2,st3 ] || fail "stations: $RESP"
    [ "$(jq -r '.backend' <<<"$RESP")" = postgresql ] || fail "backend: $RESP"
    [ "$(jq -r '[.stations[] | select(.this)] | .[0].name' <<<"$RESP")" = "st$n" ] || fail "this flag: $RESP"
done
for n in 1 2 3; do
    [ "$(jq -r --arg s "st$n" '.stations[] | select(.name == $s) | .address' <<<"$RESP")" = "${APIS[$n]}" ] ||
        fail "st$n's address in the line view is not its API ${APIS[$n]}: $RESP"
done
[ "$(jq -r '.stations[] | select(.name == "st1") | [.slots[].slot] | sort | join(",")' <<<"$RESP")" = L1A,L1B ] ||
    fail "st1's slots: $RESP"
[ "$(jq -r '.stations[] | select(.name == "st3") | .slots[0].state' <<<"$RESP")" = flashing ] ||
    fail "st3's slot should be flashing: $RESP"
api GET /api/v1/line
[ "$(jq -r '.stations[] | select(.name == "st1") | .counters.passed' <<<"$RESP")" = 2 ] ||
    fail "st1's counters: $RESP"
# A station's own counters count its jobs; scope=line counts the line's; job rows and
# events name their station, and the job list filters by it.
API=${APIS[1]}
api GET /api/v1/counters
[ "$(jq -r '[.passed, .station, .scope] | join(",")' <<<"$RESP")" = "2,st1,station" ] ||
    fail "st1's own counters: $RESP"
api GET "/api/v1/counters?scope=line"
[ "$(jq -r '[.passed, .by_state.running] | join(",")' <<<"$RESP")" = "4,1" ] || fail "the line's counters: $RESP"
api GET "/api/v1/counters?scope=everything"
expect_status 400
api GET "/api/v1/jobs?station=st2"
[ "$(jq -r '[.jobs[].station] | unique | join(",")' <<<"$RESP")" = st2 ] || fail "jobs of st2: $RESP"
[ "$(jq -r '.jobs | length' <<<"$RESP")" = 2 ] || fail "jobs of st2: $RESP"

# --- st3 dies mid-write ------------------------------------------------------------------
JOB3=$(pgq "SELECT id FROM jobs WHERE station = 'st3'")
kill -KILL "${PIDS[3]}"
wait "${PIDS[3]}" 2>/dev/null || true
[ "$(pgq "SELECT state FROM jobs WHERE id = $JOB3")" = running ] || fail "st3's job should still read 'running'"
deadline=$((SECONDS + 60))
until [ "$(pgq "SELECT state FROM jobs WHERE id = $JOB3")" = interrupted ]; do
    [ $SECONDS -lt $deadline ] || fail "st3's job was not taken over: $(pgq "SELECT * FROM stations")"
    sleep 0.2
done
row=$(pgq "SELECT error_stage || '|' || error_message FROM jobs WHERE id = $JOB3")
[ "$row" = "write|station st3 stopped while write" ] || fail "st3's job: $row"
ev=$(pgq "SELECT station || '|' || (data::json->>'by') || '|' || (data::json->>'station') FROM events WHERE kind = 'job.interrupted' AND job_id = $JOB3")
case $ev in
st1\|st1\|st3 | st2\|st2\|st3) ;;
*) fail "job.interrupted event of st3's job: '$ev'" ;;
esac
# More heartbeats of st1 and st2 (each looks again): still one of each.
hb=$(pgq "SELECT max(heartbeat_at) FROM stations WHERE name IN ('st1', 'st2')")
deadline=$((SECONDS + 30))
until [ "$(pgq "SELECT count(*) FROM stations WHERE name IN ('st1', 'st2') AND heartbeat_at > $hb + 2000")" = 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "st1/st2 stopped heartbeating"
    sleep 0.2
done
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'job.interrupted' AND job_id = $JOB3")" = 1 ] ||
    fail "st3's job interrupted more than once: $(pgq "SELECT id, station, data FROM events WHERE kind = 'job.interrupted'")"
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'station.gone'")" = 1 ] ||
    fail "station.gone events: $(pgq "SELECT id, station, data FROM events WHERE kind = 'station.gone'")"
[ "$(pgq "SELECT data::json->>'station' FROM events WHERE kind = 'station.gone'")" = st3 ] || fail "station.gone names another station"
API=${APIS[1]}
api GET /api/v1/line
[ "$(jq -r '.stations[] | select(.name == "st3") | .state' <<<"$RESP")" = gone ] || fail "st3 not shown gone: $RESP"
[ "$(jq -r '.stations[] | select(.name == "st3") | .gone_mark.jobs' <<<"$RESP")" = 1 ] || fail "st3's gone mark: $RESP"
[ "$(jq -r '[.stations[] | select(.state == "up")] | length' <<<"$RESP")" = 2 ] || fail "st1, st2 should be up: $RESP"

# --- st3 comes back: nothing more to recover ---------------------------------------------
station_config 3 big@1 115200 "[]"
start_station 3
! grep -q 'were interrupted by a crash' "$DAEMON_LOG" ||
    fail "st3's restart recovered jobs that st1/st2 had taken over: $(grep interrupted "$DAEMON_LOG")"
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'job.interrupted'")" = 1 ] || fail "restart wrote another job.interrupted"
API=${APIS[1]}
deadline=$((SECONDS + 30))
while :; do
    api GET /api/v1/line
    [ "$(jq -r '[.stations[] | select(.state == "up")] | length' <<<"$RESP")" = 3 ] &&
        [ "$(jq -r '.stations[] | select(.name == "st3") | has("gone_mark")' <<<"$RESP")" = false ] && break
    [ $SECONDS -lt $deadline ] || fail "st3 not up again: $RESP"
    sleep 0.3
done

# --- the same name twice is refused ---------------------------------------------------------
rc=0
timeout 60 "$ESPSTATIOND" --config "$WORK/st1.json" --data-dir "$WORK/data-dup" --stub-dir "$STUB_DIR" \
    --no-udev --listen 127.0.0.1:0 >"$WORK/dup.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a second st1: rc $rc ($(tail -n 3 "$WORK/dup.log"))"
grep -q 'in use by another process as station "st1"' "$WORK/dup.log" ||
    fail "a second st1: no clear message: $(tail -n 3 "$WORK/dup.log")"
[ "$(pgq "SELECT count(*) FROM stations")" = 3 ] || fail "stations rows: $(pgq 'SELECT name FROM stations')"

for n in 1 2 3; do
    DAEMON_PID=${PIDS[$n]}
    DAEMON_LOG=$WORK/daemon.$([ $n = 3 ] && echo 4 || echo $n).log
    stop_daemon 0
done
log "ok: three stations on one PostgreSQL; st3 killed mid-write, its job interrupted once by $(cut -d'|' -f1 <<<"$ev"); restart recovered nothing; duplicate name refused"

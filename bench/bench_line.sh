#!/usr/bin/env bash
# bench_line: a line of stations on one PostgreSQL (issue 12). Not part of CTest.
#
# A private PostgreSQL 15 (tests/integration/pg_lib.sh) and S stations (default 4), each an
# espstationd with its own data directory and B virtual ESP32 boards (default 16; esp_sim
# on ptys, manual ports, distinct MACs), all flashing at once: the boards flash when the
# stations start, then R-1 more rounds are asked for through POST /slots/{id}/reflash
# (force) as each slot goes idle. Then the same with one station on SQLite (the reference).
#
# Figures (per run):
#   jobs/min    passed jobs / (last job's end - first job's start)
#   rt/job      database round trips per job: the stations' own counters (GET /api/v1/line
#               "db": statements run + BEGIN/COMMIT, records_line.c), all calls of the
#               window (heartbeats included; their share printed) / jobs;
#               PostgreSQL: also xact_commit delta of pg_stat_database / jobs
#   ms/job      time inside the database per job (the stations' db.total_ms / jobs)
#   op p50/p99/max  one database op (a statement outside a transaction, or a
#               transaction), over each station's last 16384 ops; the worst station
#   rows        jobs vs boards x rounds, passed jobs per MAC (each board exactly R),
#               boards rows vs boards, job.finished events vs jobs: lost / duplicated
#
# Usage: bench/bench_line.sh [--build DIR] [--stations S] [--boards B] [--rounds R]
#                            [--app-size BYTES] [--link-speed F] [--keep]
# Needs PostgreSQL 15 (Debian postgresql), sqlite3, jq, curl, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
STATIONS=4
BOARDS=16
ROUNDS=3
APP_SIZE=262144
LINK=0
KEEP=${KEEP_TMP:-}
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --stations) STATIONS=$2; shift 2 ;;
    --boards) BOARDS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --app-size) APP_SIZE=$2; shift 2 ;;
    --link-speed) LINK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--stations S] [--boards B] [--rounds R] [--app-size N] [--link-speed F] [--keep]" >&2; exit 2 ;;
    esac
done
if [ -z "$BUILD" ]; then
    for d in "$ROOT"/build/normal "$ROOT"/build/*/; do
        [ -x "$d/daemon/espstationd" ] && [ -x "$d/tests/esp_sim" ] && { BUILD=$d; break; }
    done
fi
[ -n "$BUILD" ] && [ -x "$BUILD/daemon/espstationd" ] || { echo "bench_line: no build tree (--build DIR)" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
D=$BUILD/daemon/espstationd
SIM=$BUILD/tests/esp_sim
STUB_DIR=${ESPSTATION_STUB_DIR:-$(sed -n 's/^ESPSTATION_STUB_DIR:[A-Z]*=//p' "$BUILD/CMakeCache.txt")}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_line.XXXXXX")
PIDS=()
fail() { echo "bench_line: FAIL: $*" >&2; exit 1; }
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    pg_stop 2>/dev/null || true
    [ -n "$KEEP" ] && echo "work dir kept: $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
source "$ROOT/tests/integration/pg_lib.sh"

# the firmware set: one ESP32 app, half compressible
mkdir -p "$WORK/fw"
python3 "$ROOT/tests/integration/mkespimage.py" --chip esp32 --size "$APP_SIZE" --out "$WORK/fw/app.bin" --seed 5
cat >"$WORK/fw/manifest.json" <<JSON
{"name": "app", "version": "1.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON

# run NAME BACKEND NSTATIONS: one run; prints its figures.
run() {
    local name=$1 backend=$2 ns=$3 s b dir records total=$(($3 * BOARDS * ROUNDS))
    local R=$WORK/$name
    mkdir -p "$R"
    declare -gA API
    local apis=()
    for s in $(seq 1 "$ns"); do
        local dd=$R/data$s ports=""
        mkdir -p "$dd"
        "$D" --data-dir "$dd" --import "$WORK/fw" >"$R/import$s.log" 2>&1 || fail "import: $(tail -3 "$R/import$s.log")"
        for b in $(seq 1 "$BOARDS"); do
            dir=$R/sim-$s-$b
            mkdir -p "$dir"
            "$SIM" --chip esp32 --dir "$dir" --link-speed "$LINK" --stub-dir "$STUB_DIR" \
                --mac "$(printf '24:6f:28:%02x:%02x:%02x' "$((ns))" "$s" "$b")" >"$dir/out" 2>&1 &
            PIDS+=($!)
            ports="$ports${ports:+, }{\"uri\": \"$dir/tty\", \"label\": \"S${s}B$b\"}"
        done
        for b in $(seq 1 "$BOARDS"); do
            local t=0
            until [ -e "$R/sim-$s-$b/tty" ]; do t=$((t + 1)); [ $t -lt 200 ] || fail "sim not ready"; sleep 0.05; done
        done
        if [ "$backend" = postgresql ]; then
            records="\"records\": {\"backend\": \"postgresql\", \"dsn\": \"$DSN\"},"
        else
            records=""
        fi
        cat >"$R/st$s.json" <<JSON
{"station": "st$s", $records
 "max_parallel": $BOARDS,
 "ports": [$ports],
 "profiles": {"p": {"firmware": {"esp32": "app@1.0"}, "baud": 921600, "retries": 0}},
 "active_profile": "p",
 "line": {"heartbeat_s": 1, "gone_after_s": 30}}
JSON
    done
    local x0
    [ "$backend" = postgresql ] && x0=$(psql -X -At "$DSN" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'line'")
    for s in $(seq 1 "$ns"); do
        "$D" --config "$R/st$s.json" --data-dir "$R/data$s" --stub-dir "$STUB_DIR" --no-udev \
            --listen 127.0.0.1:0 --port-file "$R/port$s" >"$R/daemon$s.log" 2>&1 &
        PIDS+=($!)
        # the first one alone: it creates the schema (several at once on an empty
        # database collide in the migration, see the README)
        [ "$s" = 1 ] && { local t=0; until [ -s "$R/port1" ]; do t=$((t + 1)); [ $t -lt 300 ] || fail "station 1 did not start: $(tail -3 "$R/daemon1.log")"; sleep 0.05; done; }
    done
    for s in $(seq 1 "$ns"); do
        local t=0
        until [ -s "$R/port$s" ]; do t=$((t + 1)); [ $t -lt 300 ] || fail "station $s did not start: $(tail -3 "$R/daemon$s.log")"; sleep 0.05; done
        API[$s]="http://127.0.0.1:$(cat "$R/port$s")"
    done
    # count jobs through the first station's view of the records
    q() { # SQL -> one value
        if [ "$backend" = postgresql ]; then echo >>"$R/q.count"; psql -X -At "$DSN" -c "$1"; else sqlite3 -cmd '.timeout 5000' "$R/data1/records.db" "$1"; fi
    }
    local round=1 deadline=$((SECONDS + 900)) passed bad
    while :; do
        passed=$(q "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed'")
        bad=$(q "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state NOT IN ('passed', 'running', 'queued')")
        [ "$bad" = 0 ] || fail "$name: failed jobs: $(q "SELECT id, station, slot, state, error_message FROM jobs WHERE state NOT IN ('passed', 'running', 'queued') LIMIT 5")"
        [ "$passed" -ge "$total" ] && break
        [ $SECONDS -lt $deadline ] || fail "$name: timeout, $passed of $total jobs passed"
        # next round for every slot whose board has passed `round` jobs and is idle
        if [ "$passed" -ge $((ns * BOARDS * round)) ] && [ $round -lt "$ROUNDS" ]; then
            round=$((round + 1))
            for s in $(seq 1 "$ns"); do
                for b in $(seq 1 "$BOARDS"); do
                    local code=""
                    for t in $(seq 1 100); do
                        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
                            -d '{"force": true}' "${API[$s]}/api/v1/slots/S${s}B$b/reflash")
                        [ "$code" = 202 ] && break
                        sleep 0.1
                    done
                    [ "$code" = 202 ] || fail "reflash S${s}B$b: HTTP $code"
                done
            done
        fi
        sleep 0.2
    done
    sleep 1.5 # one more heartbeat: the counters in the stations' rows are current
    # figures
    local t0 t1 jobs
    t0=$(q "SELECT min(started_at) FROM jobs WHERE kind = 'flash'")
    t1=$(q "SELECT max(ended_at) FROM jobs WHERE kind = 'flash'")
    jobs=$(q "SELECT count(*) FROM jobs WHERE kind = 'flash'")
    local line
    line=$(curl -s "${API[1]}/api/v1/line")
    echo "$line" >"$R/line.json"
    local xacts=""
    if [ "$backend" = postgresql ]; then
        local x1
        x1=$(psql -X -At "$DSN" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'line'")
        xacts=$((x1 - x0 - $(wc -l <"$R/q.count") - 1)) # less the bench's own queries
    fi
    local per_mac dup_boards events uptime_s
    per_mac=$(q "SELECT count(*) FROM (SELECT board_mac, count(*) n FROM jobs WHERE kind = 'flash' AND state = 'passed' GROUP BY board_mac) x WHERE n <> $ROUNDS")
    dup_boards=$(q "SELECT count(*) FROM boards")
    events=$(q "SELECT count(*) FROM events WHERE kind = 'job.finished'")
    python3 - "$name" "$R/line.json" "$jobs" "$total" "$t0" "$t1" "$per_mac" "$dup_boards" "$((ns * BOARDS))" "$events" "$xacts" <<'PY'
import json, sys
name, path, jobs, total, t0, t1, per_mac, nboards, want_boards, events, xacts = sys.argv[1:]
jobs, total, t0, t1 = int(jobs), int(total), int(t0), int(t1)
d = json.load(open(path))
st = [s for s in d["stations"] if s["state"] == "up"]
rt = sum(s["db"]["round_trips"] for s in st)
ms = sum(s["db"]["total_ms"] for s in st)
# heartbeat share: 3 statements a heartbeat (heartbeat, counts, gone check), one a second
hb = 0
import datetime
def t(x): return datetime.datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()
now = t(d["now"])
for s in st:
    hb += 3 * int(now - t(s["started_at"]))
wall = (t1 - t0) / 1000.0
print(f"== {name}: {len(st)} station(s) x {want_boards and int(want_boards)//max(len(st),1)} boards, {jobs} jobs ({total} expected), wall {wall:.1f} s")
print(f"   jobs/min            {jobs / wall * 60:.0f}")
print(f"   round trips/job     {rt / jobs:.1f}  (all calls {rt}; heartbeats ~{hb}, {(rt - hb) / jobs:.1f}/job without them)")
if xacts:
    print(f"   xact_commit/job     {int(xacts) / jobs:.1f}  (pg_stat_database delta, less the bench\'s own queries: {xacts})")
print(f"   db ms/job           {ms / jobs:.2f}  (all stations' time inside the database {ms:.0f} ms)")
p50 = max(s['db']['p50_ms'] for s in st); p99 = max(s['db']['p99_ms'] for s in st); mx = max(s['db']['max_ms'] for s in st)
print(f"   op p50/p99/max      {p50:.2f} / {p99:.2f} / {mx:.1f} ms (worst station; op = statement or transaction)")
lost = total - jobs
print(f"   rows                jobs {jobs} of {total} (lost {max(lost,0)}, extra {max(-lost,0)}); boards {nboards} of {want_boards}; "
      f"boards without exactly the rounds' passed jobs: {per_mac}; job.finished events {events}")
PY
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

PGD=$(mktemp -d "${TMPDIR:-/tmp}/bench_line_pg.XXXXXX") # pg_lib runs the server as an unprivileged user
rmdir "$PGD"
pg_start "$PGD" || fail "PostgreSQL 15 could not be started"
psql -X -q -v ON_ERROR_STOP=1 "$PG_DSN" -c "CREATE DATABASE line" >/dev/null
DSN="host=$PG_HOST port=$PG_PORT user=postgres dbname=line"
echo "bench_line: build $BUILD, $STATIONS stations x $BOARDS boards x $ROUNDS rounds, app $APP_SIZE bytes, link-speed $LINK, $(nproc) CPUs"
run "postgresql" postgresql "$STATIONS"
run "sqlite-1-station" sqlite 1

#!/usr/bin/env bash
# bench_replay: the records journal's replay after an outage, on a private PostgreSQL 15
# (tests/integration/pg_lib.sh). Not part of CTest; figures, never pass/fail.
#
# For each binary given (default: BUILD/bench/bench_replay) and each fsync setting, a fresh
# database "replay_N" is made and `bench_replay DSN JOBS` run on it (bench_replay.c says what
# it does and prints). fsync=off is the test servers' setting; fsync=on (the server
# restarted without it, as a production server runs) makes every commit wait for the disk.
#
# Usage: bench/bench_replay.sh [--build DIR] [--jobs 2000] [--fsync on,off] [--long-ms 150]
#        [BINARY...]   (--long-ms: the tick budget while far behind, 0 = always 50 ms)
#   (a BINARY built against another records_journal.c compares the two: bench/README.md)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
JOBS=2000
FSYNC=off,on
LONG_MS=150
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --fsync) FSYNC=$2; shift 2 ;;
    --long-ms) LONG_MS=$2; shift 2 ;;
    -*) echo "usage: $0 [--build DIR] [--jobs N] [--fsync on,off] [--long-ms MS] [BINARY...]" >&2; exit 2 ;;
    *) break ;;
    esac
done
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
    if [ -z "$BUILD" ]; then
        for d in "$ROOT"/build/normal "$ROOT"/build/*/; do
            [ -x "$d/bench/bench_replay" ] && { BUILD=$d; break; }
        done
    fi
    [ -n "$BUILD" ] && [ -x "$BUILD/bench/bench_replay" ] ||
        { echo "bench_replay: no build with bench/bench_replay (--build DIR)" >&2; exit 1; }
    bins=("$BUILD/bench/bench_replay")
fi
source "$ROOT/tests/integration/pg_lib.sh"
root=${TMPDIR:-/tmp}
dir=$(mktemp -d "$root/bench_replay_pg.XXXXXX")
rmdir "$dir"
trap pg_stop EXIT
pg_start "$dir" || { echo "bench_replay: FAIL: cannot start PostgreSQL" >&2; exit 1; }
n=0
for fs in ${FSYNC//,/ }; do
    # pg_lib starts the server with -c fsync=off on its command line (which ALTER SYSTEM cannot
    # override): restarted with or without it
    extra="-c full_page_writes=off"
    [ "$fs" = off ] && extra="$extra -c fsync=off"
    _pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-k $PG_DIR -p $PG_PORT -h 127.0.0.1 $extra" restart >/dev/null
    for bin in "${bins[@]}"; do
        n=$((n + 1))
        psql "$PG_DSN" -qAtc "CREATE DATABASE replay_$n" >/dev/null
        echo "== $bin  fsync=$(psql "$PG_DSN" -qAtc 'SHOW fsync')  jobs=$JOBS"
        "$bin" "host=$PG_HOST port=$PG_PORT user=postgres dbname=replay_$n" "$JOBS" "$LONG_MS"
    done
done

#!/usr/bin/env bash
# bench_api: the REST API and the event stream under load, with virtual boards
# flashing at realistic serial speed. Prints figures; never passes or fails on
# time. Not part of CTest.
#
#   1. wrk against GET /api/v1/boards on an idle station (reference);
#   2. 16 boards re-flashed at once with no HTTP load: flash throughput;
#   3. the same 16 re-flashed while wrk hammers GET /api/v1/boards:
#      requests/s, p99 latency, and the flash throughput again;
#   4. 100 concurrent event-stream clients (curl -N) while the 16 boards are
#      re-flashed: how many received every journal event of the round.
#
# Usage: bench/bench_api.sh [--build DIR] [--boards N] [--size BYTES]
#                           [--wrk-threads N] [--wrk-conns N] [--sse N]
# Needs wrk, curl, jq, python3 (apt-get install wrk curl jq).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
BOARDS=16
SIZE=393216
WRK_THREADS=2
WRK_CONNS=32
SSE_CLIENTS=100
BAUD=921600
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --boards) BOARDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --wrk-threads) WRK_THREADS=$2; shift 2 ;;
    --wrk-conns) WRK_CONNS=$2; shift 2 ;;
    --sse) SSE_CLIENTS=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench_api: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BUILD" ]; then
    for d in "$ROOT/build/normal" $(ls -dt "$ROOT"/build/*/ 2>/dev/null); do
        d=${d%/}
        if [ -x "$d/daemon/espstationd" ] && [ -x "$d/tests/esp_sim" ]; then
            BUILD=$d
            break
        fi
    done
fi
[ -n "$BUILD" ] && [ -x "$BUILD/daemon/espstationd" ] || {
    echo "bench_api: espstationd not built (cmake --build build/normal)" >&2
    exit 1
}
for t in wrk curl jq python3; do
    command -v $t >/dev/null || { echo "bench_api: $t is needed (apt-get install $t)" >&2; exit 1; }
done
ESPSTATIOND=$BUILD/daemon/espstationd
ESP_SIM=$BUILD/tests/esp_sim
STUB_DIR=${STUB_DIR:-$(sed -n 's/^ESPSTATION_STUB_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)}
[ -n "$STUB_DIR" ] || STUB_DIR=$ROOT/build/stubs

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_api.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

# --- firmware, boards, daemon --------------------------------------------------------------
mkdir -p "$WORK/fw"
python3 "$ROOT/tests/integration/mkespimage.py" --chip esp32 --size "$SIZE" --out "$WORK/fw/app.bin" --seed 7
cat >"$WORK/fw/manifest.json" <<JSON
{"name": "bench", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
timeout 60 "$ESPSTATIOND" --data-dir "$WORK/data" --import-firmware "$WORK/fw" 2>"$WORK/import.log"

ports=""
for i in $(seq 1 "$BOARDS"); do
    d=$WORK/sim$i
    mkdir -p "$d"
    "$ESP_SIM" --chip esp32 --dir "$d" --link-speed 1 --no-boot-noise --stub-dir "$STUB_DIR" \
        --mac "$(printf '24:6f:28:00:01:%02x' "$i")" >"$d/out" 2>"$d/err" &
    PIDS+=($!)
    ports="$ports${ports:+, }{\"uri\": \"$d/tty\", \"label\": \"S$i\"}"
done
for i in $(seq 1 "$BOARDS"); do
    timeout 10 bash -c "until [ -s '$WORK/sim$i/ready' ]; do sleep 0.05; done"
done
TOKEN=bench
cat >"$WORK/station.json" <<JSON
{"ports": [$ports], "max_parallel": $BOARDS, "api": {"token": "$TOKEN"},
 "profiles": {"bench": {"firmware": {"esp32": "bench@1.0.0"}, "baud": $BAUD, "retries": 0}}}
JSON
"$ESPSTATIOND" --config "$WORK/station.json" --data-dir "$WORK/data" --stub-dir "$STUB_DIR" \
    --no-udev --listen 127.0.0.1:0 --port-file "$WORK/port" --log-level notice >"$WORK/daemon.log" 2>&1 &
DPID=$!
PIDS+=($DPID)
timeout 10 bash -c "until [ -s '$WORK/port' ]; do sleep 0.05; done"
API="http://127.0.0.1:$(cat "$WORK/port")"
AUTH=(-H "Authorization: Bearer $TOKEN")

get() { timeout 30 curl -sS "${AUTH[@]}" "$API$1"; }
passed_count() { # JOB_ID_MIN: passed flash jobs with id >= JOB_ID_MIN
    get "/api/v1/jobs?kind=flash&state=passed&limit=1000" | jq --argjson m "$1" '[.jobs[] | select(.id >= $m)] | length'
}
wait_round() { # JOB_ID_MIN
    local deadline=$((SECONDS + 600))
    until [ "$(passed_count "$1")" -ge "$BOARDS" ]; do
        [ $SECONDS -lt $deadline ] || { say "bench_api: round did not finish (see $WORK/daemon.log)"; KEEP_TMP=1; exit 1; }
        kill -0 "$DPID" || { say "bench_api: espstationd died"; KEEP_TMP=1; exit 1; }
        sleep 0.2
    done
}
last_job() { get "/api/v1/jobs?limit=1" | jq '.jobs[0].id // 0'; }
# reflash_all: one forced reflash per slot; prints the first job id of the round.
reflash_all() {
    local first=0 i id
    for i in $(seq 1 "$BOARDS"); do
        id=$(timeout 30 curl -sS "${AUTH[@]}" -H 'Content-Type: application/json' -X POST \
            --data '{"force": true}' "$API/api/v1/slots/S$i/reflash" | jq '.id')
        [ "$first" != 0 ] || first=$id
    done
    echo "$first"
}
# stats JOB_ID_MIN: "mean_kbps min_kbps max_kbps mean_seconds" of the round's flash jobs
stats() {
    get "/api/v1/jobs?kind=flash&state=passed&limit=1000" | jq -r --argjson m "$1" \
        '[.jobs[] | select(.id >= $m)] | [([.[].kbps] | add / length), ([.[].kbps] | min), ([.[].kbps] | max), ([.[].seconds] | add / length)] | map(. * 10 | round / 10) | @tsv'
}
wrk_run() { # SECONDS OUT
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$1s" --latency -H "Authorization: Bearer $TOKEN" \
        "$API/api/v1/boards" >"$2" 2>&1
}
wrk_fig() { # OUT: "req/s p50 p99"
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print r, p50, p99}' "$1"
}

say "bench_api: $BOARDS boards (esp_sim --link-speed 1, $BAUD baud), image $SIZE bytes, build $BUILD"
wait_round 1
say "first flash of every board done"

# 1. idle reference
wrk_run 5 "$WORK/wrk.idle"
read -r IDLE_RPS IDLE_P50 IDLE_P99 <<<"$(wrk_fig "$WORK/wrk.idle")"

# 2. flashing, no HTTP load
T0=$SECONDS
R1=$(reflash_all)
wait_round "$R1"
ROUND_S=$((SECONDS - T0))
read -r NL_MEAN NL_MIN NL_MAX NL_SEC <<<"$(stats "$R1")"

# 3. flashing under wrk
R2_START=$(($(last_job) + 1))
wrk_run $((ROUND_S + 2)) "$WORK/wrk.load" &
WPID=$!
PIDS+=($WPID)
sleep 0.5
R2=$(reflash_all)
wait_round "$R2"
wait "$WPID" || true
read -r L_MEAN L_MIN L_MAX L_SEC <<<"$(stats "$R2")"
read -r LOAD_RPS LOAD_P50 LOAD_P99 <<<"$(wrk_fig "$WORK/wrk.load")"
: "$R2_START"

# 4. event-stream clients during a round
E0=$(timeout 10 curl -sS -N -m 1 "$API/api/v1/events" 2>/dev/null | sed -n 's/^data: {"last_event_id":\([0-9]*\)}/\1/p' | head -n1 || true)
SSE_PIDS=()
for i in $(seq 1 "$SSE_CLIENTS"); do
    timeout 600 curl -sS -N "$API/api/v1/events" >"$WORK/sse.$i" 2>/dev/null &
    SSE_PIDS+=($!)
    PIDS+=($!)
done
deadline=$((SECONDS + 30))
for i in $(seq 1 "$SSE_CLIENTS"); do
    until grep -q '^event: hello' "$WORK/sse.$i" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || break
        sleep 0.05
    done
done
R3=$(reflash_all)
wait_round "$R3"
sleep 1
END_ID=$(python3 - "$WORK/data/records.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select max(id) from events").fetchone()[0])
PY
)
for p in "${SSE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${SSE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
START_ID=$(sed -n 's/^data: {"last_event_id":\([0-9]*\)}/\1/p' "$WORK/sse.1" | head -n1)
WANT=$((END_ID - START_ID))
complete=0
for i in $(seq 1 "$SSE_CLIENTS"); do
    s=$(sed -n 's/^data: {"last_event_id":\([0-9]*\)}/\1/p' "$WORK/sse.$i" | head -n1)
    got=$(awk -v s="${s:-0}" -v e="$END_ID" '/^id: / && $2 > s && $2 <= e {n++} END {print n+0}' "$WORK/sse.$i")
    uniq=$(awk -v s="${s:-0}" -v e="$END_ID" '/^id: / && $2 > s && $2 <= e {print $2}' "$WORK/sse.$i" | sort -u | wc -l)
    [ "$got" = $((END_ID - ${s:-0})) ] && [ "$uniq" = "$got" ] && complete=$((complete + 1))
done
PROGRESS=$(grep -c '^event: slot.progress' "$WORK/sse.1" || true)
: "$E0"

# --- figures -------------------------------------------------------------------------------------------
SLOWER=$(awk -v a="$NL_MEAN" -v b="$L_MEAN" 'BEGIN {printf "%.1f", (a - b) / a * 100}')
cat <<EOF
bench_api ($(nproc) CPUs, $BOARDS virtual boards at $BAUD baud, image $SIZE bytes)

GET /api/v1/boards ($BOARDS boards), wrk -t$WRK_THREADS -c$WRK_CONNS:
  idle station            $IDLE_RPS req/s   p50 $IDLE_P50   p99 $IDLE_P99
  while $BOARDS boards flash  $LOAD_RPS req/s   p50 $LOAD_P50   p99 $LOAD_P99   (targets: >= 5000 req/s, p99 < 20 ms)

flash throughput per board (effective kbit/s over the write; mean / min / max, mean job seconds):
  no HTTP load            $NL_MEAN / $NL_MIN / $NL_MAX kbit/s   $NL_SEC s
  under wrk               $L_MEAN / $L_MIN / $L_MAX kbit/s   $L_SEC s
  slowdown                $SLOWER %   (target < 5 %)

event stream: $SSE_CLIENTS concurrent clients during a round of $BOARDS flashes:
  journal events in the round  $WANT
  clients with every event     $complete / $SSE_CLIENTS   (slot.progress pushes seen by one client: $PROGRESS)
EOF

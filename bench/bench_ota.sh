#!/usr/bin/env bash
# bench_ota: network OTA from the station to many virtual boards (esp_netdev on
# 127.0.0.x). Prints figures; never passes or fails on time. Not part of CTest.
#
#   1. pull: N boards (default 50) enrolled by check-in get a new 1 MiB release
#      (the profile's ota_firmware is changed over REST); then all N are told
#      to check in at the same moment (SIGUSR1 to every esp_netdev), so the N
#      downloads really overlap. Aggregate MB/s = N x size / (last transfer end -
#      first transfer start, from the ota-pull job records) and the station's
#      CPU time (utime+stime from /proc) over that window.
#   2. push: one ArduinoOTA push of the 1 MiB image, then P boards (default 16)
#      pushed in parallel (a bulk with concurrency P): total wall time of each.
#   3. fleet: "update all" - one bulk over every board (select by chip), ArduinoOTA
#      push at concurrency P; the 1 + P boards from step 2 already run the
#      release and must be skipped. Wall time, boards/minute, counts, and the
#      station's CPU time and peak RSS (VmHWM) after it.
#
# Usage: bench/bench_ota.sh [--build DIR] [--daemon PATH] [--boards N]
#                           [--pushes P] [--size BYTES] [--erase-ms MS]
# --erase-ms: the virtual boards' flash sector erase time (esp_netdev; default 0,
# so the figures bound the station; 45 is a typical real chip). Their receive
# window is always lwIP's (esp_netdev's default).
# Needs curl, jq, sqlite3, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
DAEMON=""
BOARDS=50
PUSHES=16
SIZE=1048000
ERASE_MS=0
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --daemon) DAEMON=$2; shift 2 ;;
    --boards) BOARDS=$2; shift 2 ;;
    --pushes) PUSHES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --erase-ms) ERASE_MS=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench_ota: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BUILD" ]; then
    for d in "$ROOT/build/normal" $(ls -dt "$ROOT"/build/*/ 2>/dev/null); do
        d=${d%/}
        if [ -x "$d/daemon/espstationd" ] && [ -x "$d/tests/netdev/esp_netdev" ]; then
            BUILD=$d
            break
        fi
    done
fi
[ -n "$BUILD" ] || { echo "bench_ota: no build with espstationd and esp_netdev" >&2; exit 1; }
DAEMON=${DAEMON:-$BUILD/daemon/espstationd}
NETDEV=$BUILD/tests/netdev/esp_netdev
MKIMAGE=$ROOT/tests/integration/mkespimage.py
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_ota.XXXXXX")
PIDS=()
DPID=""
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
TOKEN=bench
DATA=$WORK/data
db() { sqlite3 -batch -noheader -cmd '.timeout 5000' "$DATA/records.db" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_for() { # SQL WANT TIMEOUT
    local deadline=$((SECONDS + $3))
    until [ "$(db "$1" 2>/dev/null || true)" = "$2" ]; do
        [ $SECONDS -lt $deadline ] || { echo "bench_ota: timeout waiting for $1 = $2 (got $(db "$1"))" >&2; exit 1; }
        sleep 0.2
    done
}
fw() { # DIR VERSION SEED
    mkdir -p "$1"
    python3 "$MKIMAGE" --chip esp32 --size "$SIZE" --out "$1/app.bin" --seed "$3" --version "$2"
    printf '{"name":"big","version":"%s","chip":"esp32","regions":[{"offset":"0x10000","file":"app.bin","kind":"app"}]}\n' "$2" >"$1/manifest.json"
    "$DAEMON" --data-dir "$DATA" --import-firmware "$1" >/dev/null
}
fw "$WORK/f2" 2.0.0 1
fw "$WORK/f3" 3.0.0 2
IMG=$(stat -c %s "$WORK/f2/app.bin")
OTA_PORT=$(free_port)
# The boards send the profile's checkin_auth (the sketch's setAuthorization): their check-ins
# confirm their addresses (pushes go only there) and are not held by the enrolment rate limit.
AUTH='"checkin_auth": {"user": "bench", "password": "bench-checkin"}'
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT", "max_connections": 1024},
 "profiles": {"fleet": {"ota_firmware": {"esp32": "big@1.0.0"}, $AUTH}}}
JSON
"$DAEMON" --config "$WORK/station.json" --data-dir "$DATA" --no-udev --listen 127.0.0.1:0 \
    --port-file "$WORK/port" --log-level warn >"$WORK/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
API="http://127.0.0.1:$(cat "$WORK/port")"
NB=$((BOARDS > PUSHES ? BOARDS : PUSHES))
for i in $(seq 1 "$NB"); do
    mkdir -p "$WORK/nd$i"
    "$NETDEV" --chip esp32 --mac "$(printf '24:6f:28:01:%02x:%02x' $((i / 256)) $((i % 256)))" \
        --bind "127.0.$((1 + i / 250)).$((2 + i % 250))" --dir "$WORK/nd$i" --version 1.0.0 \
        --ota-port 3232 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 600000 \
        --checkin-auth bench:bench-checkin --erase-ms "$ERASE_MS" >/dev/null 2>&1 &
    PIDS+=($!)
done
wait_for "SELECT count(*) FROM boards WHERE online_state = 'online';" "$NB" 60

echo "== pull: $NB boards, image $IMG bytes =="
c0=$(cpu_ticks "$DPID")
t0=$(now_ms)
curl -sS -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "{\"ota_firmware\": {\"esp32\": \"big@2.0.0\"}, $AUTH}" "$API/api/v1/profiles/fleet"
kill -USR1 "${PIDS[@]:0:$BOARDS}"
wait_for "SELECT count(*) >= $BOARDS FROM jobs WHERE kind = 'ota-pull' AND state = 'passed';" 1 300
t1=$(now_ms)
c1=$(cpu_ticks "$DPID")
read -r n first last bytes <<<"$(db "SELECT count(*), min(started_at), max(ended_at), sum(bytes) FROM jobs WHERE kind = 'ota-pull' AND state = 'passed';" | tr '|' ' ')"
hz=$(getconf CLK_TCK)
python3 - "$n" "$first" "$last" "$bytes" "$t0" "$t1" "$c0" "$c1" "$hz" <<'PY'
import sys
n, first, last, b, t0, t1, c0, c1, hz = map(int, sys.argv[1:])
win = max(last - first, 1) / 1000.0
print(f"boards served        {n}")
print(f"transfer window      {win:.2f} s (first pull start -> last pull end)")
print(f"aggregate throughput {b / win / 1e6:.1f} MB/s ({b} bytes)")
print(f"release -> all done  {(t1 - t0) / 1000.0:.2f} s (REST change, then all boards check in at once)")
cpu = (c1 - c0) / hz
print(f"station CPU          {cpu:.2f} s over {(t1 - t0) / 1000.0:.2f} s = {100 * cpu / max((t1 - t0) / 1000.0, 0.001):.0f} % of one core")
PY
kill -USR1 "${PIDS[@]:0:$BOARDS}" # check in again: report the new version
wait_for "SELECT count(*) FROM boards WHERE running_version = '2.0.0';" "$BOARDS" 60

echo "== push: ArduinoOTA, image $IMG bytes =="
MAC1=$(printf '24:6f:28:01:%02x:%02x' 0 1)
t0=$(now_ms)
id=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data '{"method": "espota", "firmware": "big@3.0.0"}' "$API/api/v1/boards/$MAC1/ota" | jq -r .job_id)
wait_for "SELECT state FROM jobs WHERE id = $id;" passed 120
t1=$(now_ms)
one=$((t1 - t0))
echo "one push             $(python3 -c "print(f'{$one/1000:.2f} s')") (job: $(db "SELECT printf('%.2f s', seconds) FROM jobs WHERE id = $id;"))"
macs=$(for i in $(seq 2 $((PUSHES + 1))); do printf '"24:6f:28:01:%02x:%02x",' $((i / 256)) $((i % 256)); done)
t0=$(now_ms)
bid=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "{\"select\": {\"macs\": [${macs%,}]}, \"firmware\": \"big@3.0.0\", \"method\": \"espota\", \"concurrency\": $PUSHES, \"retries\": 0}" \
    "$API/api/v1/bulk" | jq -r .id)
deadline=$((SECONDS + 300))
until curl -sS "$API/api/v1/bulk/$bid" | jq -e '.state != "running"' >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "bench_ota: bulk did not end" >&2; exit 1; }
    sleep 0.1
done
t1=$(now_ms)
counts=$(curl -sS "$API/api/v1/bulk/$bid" | jq -c .counts)
one_rec=$(db "SELECT ended_at - started_at FROM jobs WHERE id = $id;")
par_rec=$(db "SELECT max(ended_at) - min(started_at) FROM jobs WHERE kind = 'ota-push' AND id > $id;")
echo "$PUSHES parallel pushes  $(python3 -c "print(f'{($t1-$t0)/1000:.2f} s wall (REST polling, 0.1 s steps)')") $counts"
echo "from the job records one push $one_rec ms, $PUSHES parallel $par_rec ms (first start -> last end): $(python3 -c "print(f'{$par_rec/max($one_rec,1):.1f}x')")"

echo "== fleet: update all $NB boards to big@3.0.0 (espota, concurrency $PUSHES) =="
c0=$(cpu_ticks "$DPID")
t0=$(now_ms)
bid=$(curl -sS -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "{\"select\": {\"chip\": \"ESP32\"}, \"firmware\": \"big@3.0.0\", \"method\": \"espota\", \"concurrency\": $PUSHES, \"retries\": 1}" \
    "$API/api/v1/bulk" | jq -r .id)
[ "$bid" != null ] || { echo "bench_ota: the fleet bulk was refused" >&2; exit 1; }
deadline=$((SECONDS + 900))
until curl -sS "$API/api/v1/bulk/$bid" | jq -e '.state != "running"' >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "bench_ota: fleet bulk did not end" >&2; exit 1; }
    sleep 0.2
done
t1=$(now_ms)
c1=$(cpu_ticks "$DPID")
b=$(curl -sS "$API/api/v1/bulk/$bid")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DPID/status")
python3 - "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)" "$hwm" "$(jq -c .counts <<<"$b")" "$(jq -r .state <<<"$b")" <<'PY'
import json, sys
t0, t1, c0, c1, hz, hwm = map(int, sys.argv[1:7])
counts, state = json.loads(sys.argv[7]), sys.argv[8]
wall = (t1 - t0) / 1000.0
pushed = counts.get("passed", 0)
print(f"bulk state           {state} {sys.argv[7]}")
print(f"wall                 {wall:.2f} s, {pushed / wall * 60:.0f} boards/minute pushed "
      f"({counts.get('skipped', 0)} already on the release were skipped)")
print(f"station CPU          {(c1 - c0) / hz:.2f} s ({100 * (c1 - c0) / hz / max(wall, 0.001):.0f} % of one core)")
print(f"station peak RSS     {hwm / 1024:.1f} MiB (VmHWM, whole run)")
PY

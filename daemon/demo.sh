#!/usr/bin/env bash
# demo.sh: espstationd with a handful of virtual boards of mixed chips
# "plugged in" one after another, flashed with a demo firmware set.
# Builds nothing. No root, no hardware, no udev: the boards are esp_sim
# instances whose ptys are listed as manual ports; the daemon polls manual
# ports that do not exist yet and starts a job when one appears.
#
# Environment:
#   ESPSTATIOND   path of espstationd            (required)
#   ESP_SIM       path of esp_sim                (required)
#   STUB_DIR      flasher stub JSON directory    (optional: ROM-only without)
#   DEMO_DIR      work directory                 (default: a new mktemp -d)
#   DEMO_BOARDS   number of boards, 1..8         (default 5)
#   DEMO_GAP      seconds between two plug-ins   (default 2)
#   DEMO_SPEED    esp_sim --link-speed           (default 1: real serial timing)
set -euo pipefail

: "${ESPSTATIOND:?set ESPSTATIOND to the espstationd binary}"
: "${ESP_SIM:?set ESP_SIM to the esp_sim binary}"
STUB_DIR=${STUB_DIR:-}
DEMO_BOARDS=${DEMO_BOARDS:-5}
DEMO_GAP=${DEMO_GAP:-2}
DEMO_SPEED=${DEMO_SPEED:-1}
DEMO_DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/espstation-demo.XXXXXX")}
# Absolute paths: the script works inside DEMO_DIR.
ESPSTATIOND=$(realpath "$ESPSTATIOND")
ESP_SIM=$(realpath "$ESP_SIM")
[ -n "$STUB_DIR" ] && STUB_DIR=$(realpath "$STUB_DIR")
DEMO_DIR=$(realpath -m "$DEMO_DIR")
MKIMAGE="$(cd "$(dirname "$0")/.." && pwd)/tests/integration/mkespimage.py"
mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"

PIDS=()
DAEMON_PID=""
cleanup() {
    local p
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the demo firmware sets (valid ESP images, one per chip family) ------------------
make_set() { # chip name offset
    local chip=$1 dir="fw-$1"
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip "$chip" --size $((256 * 1024)) --seed 42 --out "$dir/app.bin"
    cat >"$dir/manifest.json" <<JSON
{"name": "demo-$chip", "version": "1.0.0", "chip": "$chip",
 "description": "espstation demo application",
 "regions": [{"offset": "$3", "file": "app.bin", "kind": "app"}]}
JSON
    "$ESPSTATIOND" --data-dir "$DEMO_DIR/data" --import-firmware "$dir" --replace 2>>import.log
}
make_set esp32 demo 0x10000
make_set esp32c3 demo 0x10000
make_set esp32s3 demo 0x10000
make_set esp8266 demo 0x0

CHIPS=(esp32 esp8266 esp32c3 esp32s3 esp32 esp8266 esp32c3 esp32s3)
MACS=(24:6f:28:00:00:01 18:fe:34:00:00:02 58:cf:79:00:00:03 48:27:e2:00:00:04
    24:6f:28:00:00:05 18:fe:34:00:00:06 58:cf:79:00:00:07 48:27:e2:00:00:08)

# --- config: every board's future pty, a profile for every family ------------------
{
    printf '{"data_dir": "%s/data", "max_parallel": 4,\n "ports": [' "$DEMO_DIR"
    for i in $(seq 0 $((DEMO_BOARDS - 1))); do
        [ "$i" -gt 0 ] && printf ', '
        printf '{"uri": "%s/board%d/tty", "label": "A%d"}' "$DEMO_DIR" "$i" $((i + 1))
    done
    cat <<'JSON'
],
 "profiles": {"demo": {
   "firmware": {"esp32": "demo-esp32@1.0.0", "esp32c3": "demo-esp32c3@1.0.0",
                "esp32s3": "demo-esp32s3@1.0.0", "esp8266": "demo-esp8266@1.0.0"},
   "boot_check": {"pattern": "esp_sim ([a-z0-9]+) app running", "timeout_ms": 8000,
                  "capture": ["version"]}}}}
JSON
} >station.json

# The status page: port 8080 (DEMO_PORT) unless it is taken, then any free port.
DEMO_PORT=${DEMO_PORT:-8080}
if (exec 3<>"/dev/tcp/127.0.0.1/$DEMO_PORT") 2>/dev/null; then DEMO_PORT=0; fi
ARGS=(--config "$DEMO_DIR/station.json" --no-udev --listen "127.0.0.1:$DEMO_PORT"
      --port-file "$DEMO_DIR/http.port")
[ -n "$STUB_DIR" ] && ARGS+=(--stub-dir "$STUB_DIR")
"$ESPSTATIOND" "${ARGS[@]}" 2>daemon.log &
DAEMON_PID=$!
for _ in $(seq 50); do [ -s "$DEMO_DIR/http.port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$DEMO_DIR/http.port" 2>/dev/null || echo "$DEMO_PORT")/"
echo "espstationd running (pid $DAEMON_PID); log: $DEMO_DIR/daemon.log"
echo
echo "  >>> Status page: $URL  (open it now to watch the boards flash live)"
echo "  >>> REST API:    ${URL}api/v1/slots   events: ${URL}api/v1/events"
echo

# --- plug the boards in, one after another ------------------------------------------------
for i in $(seq 0 $((DEMO_BOARDS - 1))); do
    chip=${CHIPS[$i]}
    echo "plugging in board A$((i + 1)): $chip (MAC ${MACS[$i]})"
    SARGS=(--chip "$chip" --dir "board$i" --link-speed "$DEMO_SPEED" --mac "${MACS[$i]}")
    [ -n "$STUB_DIR" ] && SARGS+=(--stub-dir "$STUB_DIR")
    "$ESP_SIM" "${SARGS[@]}" >"sim$i.log" 2>&1 &
    PIDS+=($!)
    sleep "$DEMO_GAP"
done

# --- wait for every board to end its job -----------------------------------------------
echo "waiting for the jobs to finish..."
deadline=$((SECONDS + 180))
while :; do
    done_n=$(sqlite3 -cmd '.timeout 2000' data/records.db \
        "SELECT count(*) FROM jobs WHERE state IN ('passed','failed','skipped')" 2>/dev/null || echo 0)
    [ "$done_n" -ge "$DEMO_BOARDS" ] && break
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for the jobs"; break; }
    sleep 1
done

echo
echo "=== daemon log ==="
cat daemon.log
echo
echo "=== jobs (records: $DEMO_DIR/data/records.db) ==="
sqlite3 -header -column -cmd '.timeout 2000' data/records.db \
    "SELECT id, slot, board_mac, firmware, state, round(seconds, 1) AS s, round(kbps) AS kbit_s,
            coalesce(error_message, '') AS error FROM jobs ORDER BY id"
echo
echo "=== boards ==="
sqlite3 -header -column -cmd '.timeout 2000' data/records.db \
    "SELECT mac, chip, slot, current_firmware, current_md5, running_version, online_state FROM boards"
echo
echo "Look at: the status page $URL, the log above (journald form), and the records:"
echo "  sqlite3 $DEMO_DIR/data/records.db 'SELECT * FROM events'"
if [ -t 0 ] && [ "${DEMO_HOLD:-1}" != 0 ]; then
    echo
    read -r -p "The daemon keeps running for the status page; press Enter to stop the demo. " _ || true
fi

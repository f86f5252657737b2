#!/usr/bin/env bash
# demo.sh: espstationd with a handful of virtual boards of mixed chips
# "plugged in" one after another, flashed with a demo firmware set; then the
# hand-over to the network: each board boots the firmware, checks in at the
# station's OTA endpoint and goes online; a new release (1.1.0) is uploaded over
# the REST API and every board pulls it over the network at its next check-in.
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
write_set() { # chip offset version seed -> fw-CHIP-VERSION/
    local chip=$1 dir="fw-$1-$3"
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip "$chip" --size $((256 * 1024)) --seed "$4" --version "$3" \
        --out "$dir/app.bin"
    cat >"$dir/manifest.json" <<JSON
{"name": "demo-$chip", "version": "$3", "chip": "$chip",
 "description": "espstation demo application",
 "regions": [{"offset": "$2", "file": "app.bin", "kind": "app"}]}
JSON
}
FAMILIES=(esp32 esp32c3 esp32s3 esp8266)
offset_of() { [ "$1" = esp8266 ] && echo 0x0 || echo 0x10000; }
for chip in "${FAMILIES[@]}"; do
    write_set "$chip" "$(offset_of "$chip")" 1.0.0 42
    "$ESPSTATIOND" --data-dir "$DEMO_DIR/data" --import-firmware "fw-$chip-1.0.0" --replace 2>>import.log
    write_set "$chip" "$(offset_of "$chip")" 1.1.0 43 # the network release, uploaded over REST later
done

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
 "ota": {"listen": "127.0.0.1:0", "unknown_boards": "enrol"},
 "profiles": {"demo": {
   "firmware": {"esp32": "demo-esp32@1.0.0", "esp32c3": "demo-esp32c3@1.0.0",
                "esp32s3": "demo-esp32s3@1.0.0", "esp8266": "demo-esp8266@1.0.0"},
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "timeout_ms": 8000,
                  "capture": ["version", "ip"]}}}}
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
for _ in $(seq 50); do [ -s "$DEMO_DIR/data/ota.port" ] && break; sleep 0.1; done
OTA_PORT=$(cat "$DEMO_DIR/data/ota.port" 2>/dev/null || true)
[ -n "$OTA_PORT" ] || { echo "the station's OTA endpoint did not come up: see $DEMO_DIR/daemon.log"; exit 1; }
echo "espstationd running (pid $DAEMON_PID); log: $DEMO_DIR/daemon.log"
echo "OTA update endpoint for the boards: http://127.0.0.1:$OTA_PORT/ota/update"
echo
echo "  >>> Status page: $URL  (open it now to watch the boards flash live)"
echo "  >>> REST API:    ${URL}api/v1/slots   events: ${URL}api/v1/events"
echo

# --- plug the boards in, one after another ------------------------------------------------
for i in $(seq 0 $((DEMO_BOARDS - 1))); do
    chip=${CHIPS[$i]}
    echo "plugging in board A$((i + 1)): $chip (MAC ${MACS[$i]})"
    # after its serial flash the board boots, gets 127.0.0.(20+i) and checks in every 3 s
    SARGS=(--chip "$chip" --dir "board$i" --link-speed "$DEMO_SPEED" --mac "${MACS[$i]}"
        --net-bind "127.0.0.$((20 + i))" --checkin "http://127.0.0.1:$OTA_PORT/ota/update"
        --checkin-interval 3000)
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
        "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state IN ('passed','failed','skipped')" 2>/dev/null || echo 0)
    [ "$done_n" -ge "$DEMO_BOARDS" ] && break
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for the jobs"; break; }
    sleep 1
done

board_table() {
    sqlite3 -header -column -cmd '.timeout 2000' data/records.db \
        "SELECT mac, chip, slot, current_firmware, running_version, ip, online_state FROM boards ORDER BY slot"
}
wait_boards() { # SQL-condition what seconds
    local deadline=$((SECONDS + $3)) n
    while :; do
        n=$(sqlite3 -cmd '.timeout 2000' data/records.db "SELECT count(*) FROM boards WHERE $1" 2>/dev/null || echo 0)
        [ "$n" -ge "$DEMO_BOARDS" ] && return 0
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $2 ($n of $DEMO_BOARDS)"; return 1; }
        sleep 1
    done
}

echo
echo "=== hand-over: the boards boot, check in over the network and go online ==="
wait_boards "online_state = 'online'" "the boards to come online" 60 || true
board_table

echo
echo "=== network OTA: release 1.1.0 uploaded over the REST API, pulled by every board ==="
for chip in "${FAMILIES[@]}"; do
    d="fw-$chip-1.1.0"
    code=$(curl -s -o "upload-$chip.json" -w '%{http_code}' -F "manifest=@$d/manifest.json" \
        -F "app.bin=@$d/app.bin" "${URL}api/v1/firmware")
    echo "POST /api/v1/firmware demo-$chip@1.1.0 -> $code"
done
curl -s -o profile.json -w 'PUT /api/v1/profiles/demo (ota_firmware -> 1.1.0) -> %{http_code}\n' \
    -X PUT -H 'Content-Type: application/json' --data @- "${URL}api/v1/profiles/demo" <<'JSON'
{"firmware": {"esp32": "demo-esp32@1.0.0", "esp32c3": "demo-esp32c3@1.0.0",
              "esp32s3": "demo-esp32s3@1.0.0", "esp8266": "demo-esp8266@1.0.0"},
 "ota_firmware": {"esp32": "demo-esp32@1.1.0", "esp32c3": "demo-esp32c3@1.1.0",
                  "esp32s3": "demo-esp32s3@1.1.0", "esp8266": "demo-esp8266@1.1.0"},
 "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "timeout_ms": 8000,
                "capture": ["version", "ip"]}}
JSON
echo "waiting for the boards' next check-ins..."
wait_boards "running_version = '1.1.0'" "the boards to report 1.1.0" 60 || true
board_table

echo
echo "=== daemon log ==="
cat daemon.log
echo
echo "=== jobs (records: $DEMO_DIR/data/records.db): serial first flash, then OTA pulls ==="
sqlite3 -header -column -cmd '.timeout 2000' data/records.db \
    "SELECT id, kind, slot, board_mac, firmware, state, round(seconds, 1) AS s, round(kbps) AS kbit_s,
            coalesce(error_message, '') AS error FROM jobs ORDER BY id"
echo
echo "Look at: the status page $URL, the log above (journald form), and the records:"
echo "  sqlite3 $DEMO_DIR/data/records.db 'SELECT * FROM events'"
if [ -t 0 ] && [ "${DEMO_HOLD:-1}" != 0 ]; then
    echo
    read -r -p "The daemon keeps running for the status page; press Enter to stop the demo. " _ || true
fi

#!/usr/bin/env bash
# demo.sh: espstationd with a handful of virtual boards of mixed chips
# "plugged in" one after another, flashed with a demo firmware set; then the
# hand-over to the network: each board boots the firmware, checks in at the
# station's OTA endpoint and goes online; a new release (1.1.0) is uploaded over
# the REST API and every board pulls it over the network at its next check-in.
# Builds nothing (scripts/demo.sh does): needs espstationd, esp_sim and, next
# to esp_sim, esp_netdev (the boards' network persona). No root, no hardware,
# no udev: the boards are esp_sim instances whose ptys are listed as manual
# ports; the daemon polls manual ports that do not exist yet and starts a job
# when one appears.
#
# Every stage is checked: firmware import, daemon start, boards flashed (every
# serial job wrote and verified), boards online (every board's boot check saw
# its IP and the board checked in over the network), update to 1.1.0. The first
# that fails is named ("demo FAILED at stage '...'", with the jobs' errors and
# the boards' DIR/net/failed reasons) and the exit status is 1.
#
# Environment:
#   ESPSTATIOND     path of espstationd            (required)
#   ESP_SIM         path of esp_sim                (required)
#   STUB_DIR        flasher stub JSON directory    (optional: ROM-only without)
#   DEMO_DIR        work directory                 (default: a new mktemp -d)
#   DEMO_BOARDS     number of boards, 1..8         (default 5)
#   DEMO_GAP        seconds between two plug-ins   (default 2)
#   DEMO_SPEED      esp_sim --link-speed           (default 1: real serial timing)
#   DEMO_PORT       status page port               (default 8080, any free one if taken; 0 = any)
#   DEMO_NET        the boards' loopback /24       (default 127.0.0: boards at .20, .21, ...)
#   DEMO_CHECKIN_MS the boards' check-in interval  (default 3000)
#   DEMO_TIMEOUT    seconds each waiting stage may take (default 180 flash, 60 online, 60 update)
#   DEMO_NETDEV     esp_sim --netdev: the persona program (default esp_sim's own lookup)
#   DEMO_HOLD=0     never wait for Enter at the end (default: wait when stdin is a terminal)
set -euo pipefail

: "${ESPSTATIOND:?set ESPSTATIOND to the espstationd binary}"
: "${ESP_SIM:?set ESP_SIM to the esp_sim binary}"
STUB_DIR=${STUB_DIR:-}
DEMO_BOARDS=${DEMO_BOARDS:-5}
DEMO_GAP=${DEMO_GAP:-2}
DEMO_SPEED=${DEMO_SPEED:-1}
DEMO_NET=${DEMO_NET:-127.0.0}
DEMO_CHECKIN_MS=${DEMO_CHECKIN_MS:-3000}
DEMO_NETDEV=${DEMO_NETDEV:-}
case $DEMO_BOARDS in [1-8]) ;; *) echo "DEMO_BOARDS must be 1..8" >&2; exit 2 ;; esac
DEMO_DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/espstation-demo.XXXXXX")}
# Absolute paths: the script works inside DEMO_DIR.
ESPSTATIOND=$(realpath "$ESPSTATIOND")
ESP_SIM=$(realpath "$ESP_SIM")
[ -n "$STUB_DIR" ] && STUB_DIR=$(realpath "$STUB_DIR")
DEMO_DIR=$(realpath -m "$DEMO_DIR")
[ -n "$DEMO_NETDEV" ] && DEMO_NETDEV=$(realpath -m "$DEMO_NETDEV")
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

# failed STAGE MESSAGE...: name the stage that failed, say where to look, exit 1.
failed() {
    local stage=$1
    shift
    printf '\ndemo FAILED at stage %s: %s\n' "'$stage'" "$*" >&2
    printf '(work directory: %s; daemon log: %s/daemon.log; boards: %s/board*/sim.log)\n' \
        "$DEMO_DIR" "$DEMO_DIR" "$DEMO_DIR" >&2
    exit 1
}

# --- the demo firmware sets (valid ESP images, one per chip family) ------------------
write_set() { # chip offset version seed -> fw-CHIP-VERSION/
    local chip=$1 dir="fw-$1-$3"
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip "$chip" --size $((256 * 1024)) --seed "$4" --version "$3" \
        --out "$dir/app.bin" || return 1
    cat >"$dir/manifest.json" <<JSON
{"name": "demo-$chip", "version": "$3", "chip": "$chip",
 "description": "espstation demo application",
 "regions": [{"offset": "$2", "file": "app.bin", "kind": "app"}]}
JSON
}
FAMILIES=(esp32 esp32c3 esp32s3 esp8266)
offset_of() { [ "$1" = esp8266 ] && echo 0x0 || echo 0x10000; }
for chip in "${FAMILIES[@]}"; do
    write_set "$chip" "$(offset_of "$chip")" 1.0.0 42 ||
        failed "firmware import" "could not write the demo image for $chip (python3 $MKIMAGE)"
    "$ESPSTATIOND" --data-dir "$DEMO_DIR/data" --import-firmware "fw-$chip-1.0.0" --replace 2>>import.log ||
        failed "firmware import" "espstationd --import-firmware fw-$chip-1.0.0 failed: $(tail -n 3 import.log)"
    # the network release, uploaded over REST later
    write_set "$chip" "$(offset_of "$chip")" 1.1.0 43 ||
        failed "firmware import" "could not write the demo image for $chip (python3 $MKIMAGE)"
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
   "retries": 1,
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
for _ in $(seq 100); do
    [ -s "$DEMO_DIR/http.port" ] && [ -s "$DEMO_DIR/data/ota.port" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
    tail -n 20 daemon.log >&2
    DAEMON_PID=""
    failed "daemon start" "espstationd exited at start (log above: $DEMO_DIR/daemon.log)"
fi
[ -s "$DEMO_DIR/http.port" ] ||
    failed "daemon start" "the status page / REST API did not come up within 10 s (see $DEMO_DIR/daemon.log)"
URL="http://127.0.0.1:$(cat "$DEMO_DIR/http.port")/"
OTA_PORT=$(cat "$DEMO_DIR/data/ota.port" 2>/dev/null || true)
[ -n "$OTA_PORT" ] ||
    failed "daemon start" "the station's OTA endpoint did not come up within 10 s (see $DEMO_DIR/daemon.log)"
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
    # after its serial flash the board boots, gets $DEMO_NET.(20+i) and checks in every
    # DEMO_CHECKIN_MS
    SARGS=(--chip "$chip" --dir "board$i" --link-speed "$DEMO_SPEED" --mac "${MACS[$i]}"
        --net-bind "$DEMO_NET.$((20 + i))" --checkin "http://127.0.0.1:$OTA_PORT/ota/update"
        --checkin-interval "$DEMO_CHECKIN_MS")
    [ -n "$STUB_DIR" ] && SARGS+=(--stub-dir "$STUB_DIR")
    [ -n "$DEMO_NETDEV" ] && SARGS+=(--netdev "$DEMO_NETDEV")
    "$ESP_SIM" "${SARGS[@]}" >"sim$i.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -f "board$i/ready" ] && break; sleep 0.1; done
    [ -f "board$i/ready" ] ||
        failed "boards flashed" "board A$((i + 1))'s esp_sim did not start: $(tail -n 3 "sim$i.log")"
    sleep "$DEMO_GAP"
done

q() { sqlite3 -cmd '.timeout 2000' data/records.db "$1" 2>/dev/null; }
board_table() {
    sqlite3 -header -column -cmd '.timeout 2000' data/records.db \
        "SELECT mac, chip, slot, current_firmware, running_version, ip, online_state FROM boards ORDER BY slot"
}
# What went wrong, for a failed stage: the jobs that did not pass, what the
# boards' network personas said (esp_sim writes DIR/net/failed when esp_netdev
# cannot start), and the board table.
why() {
    local i
    q "SELECT printf('  job %d on %s: %s in %s: %s', id, slot, state, coalesce(stage, error_stage, '?'),
              coalesce(error_message, '')) FROM jobs WHERE state != 'passed' ORDER BY id" >&2 || true
    for i in $(seq 0 $((DEMO_BOARDS - 1))); do
        [ -s "board$i/net/failed" ] &&
            echo "  board A$((i + 1)) network persona failed: $(cat "board$i/net/failed")" >&2
    done
    board_table >&2 || true
}
wait_count() { # SQL-count-query seconds: until it reaches DEMO_BOARDS; prints the last count
    local deadline=$((SECONDS + $2)) n
    while :; do
        n=$(q "$1" || echo 0)
        [ "${n:-0}" -ge "$DEMO_BOARDS" ] && { echo "$n"; return 0; }
        [ $SECONDS -lt "$deadline" ] || { echo "${n:-0}"; return 1; }
        sleep 1
    done
}

# --- wait for every board to end its job -----------------------------------------------
# A failed job is tried again as a new job (the profile's "retries": 1 above; not after a
# failure at stage prepare): a slot is settled when its latest flash job ended and no
# retry is due.
RETRIES=1
echo "waiting for the jobs to finish..."
if ! n=$(wait_count "SELECT count(*) FROM jobs j WHERE kind = 'flash'
                     AND id = (SELECT max(id) FROM jobs WHERE kind = 'flash' AND slot = j.slot)
                     AND (state IN ('passed','skipped','cancelled','interrupted')
                          OR (state = 'failed' AND (retries >= $RETRIES
                                                    OR coalesce(error_stage, '') = 'prepare')))" \
    "${DEMO_TIMEOUT:-180}"); then
    why
    failed "boards flashed" "timed out waiting for the serial jobs to end ($n of $DEMO_BOARDS boards done)"
fi
# Written and verified: a job passed, found the set already there (skipped), or failed
# only in its boot check (after the verify; that is the next stage's failure).
n=$(q "SELECT count(*) FROM (SELECT slot FROM jobs WHERE kind = 'flash' GROUP BY slot
       HAVING sum(state IN ('passed','skipped') OR (state = 'failed' AND stage = 'boot_check')) = 0)")
if [ "${n:-1}" -ne 0 ]; then
    why
    failed "boards flashed" "$n board(s) could not be written and verified over serial (above)"
fi

echo
echo "=== hand-over: the boards boot, check in over the network and go online ==="
n=$(q "SELECT count(*) FROM (SELECT slot FROM jobs WHERE kind = 'flash' GROUP BY slot
       HAVING sum(state = 'passed') = 0 AND sum(state = 'failed' AND stage = 'boot_check') > 0)")
if [ "${n:-1}" -ne 0 ]; then
    why
    failed "boards online" "$n board(s) were flashed but their firmware did not come up on the network (boot check, above)"
fi
# Online for real: the board's firmware checked in at the OTA endpoint (not only the IP
# its boot check printed).
if ! n=$(wait_count "SELECT count(*) FROM boards JOIN board_ota USING (mac)
                     WHERE online_state = 'online' AND checkins > 0" "${DEMO_TIMEOUT:-60}"); then
    why
    failed "boards online" "timed out waiting for the boards to check in over the network ($n of $DEMO_BOARDS)"
fi
board_table

echo
echo "=== network OTA: release 1.1.0 uploaded over the REST API, pulled by every board ==="
for chip in "${FAMILIES[@]}"; do
    d="fw-$chip-1.1.0"
    code=$(curl -s -o "upload-$chip.json" -w '%{http_code}' -F "manifest=@$d/manifest.json" \
        -F "app.bin=@$d/app.bin" "${URL}api/v1/firmware" || true)
    echo "POST /api/v1/firmware demo-$chip@1.1.0 -> $code"
    [ "$code" = 201 ] ||
        failed "update to 1.1.0" "uploading demo-$chip@1.1.0 answered $code: $(cat "upload-$chip.json" 2>/dev/null)"
done
code=$(curl -s -o profile.json -w '%{http_code}' \
    -X PUT -H 'Content-Type: application/json' --data @- "${URL}api/v1/profiles/demo" <<'JSON' || true
{"firmware": {"esp32": "demo-esp32@1.0.0", "esp32c3": "demo-esp32c3@1.0.0",
              "esp32s3": "demo-esp32s3@1.0.0", "esp8266": "demo-esp8266@1.0.0"},
 "retries": 1,
 "ota_firmware": {"esp32": "demo-esp32@1.1.0", "esp32c3": "demo-esp32c3@1.1.0",
                  "esp32s3": "demo-esp32s3@1.1.0", "esp8266": "demo-esp8266@1.1.0"},
 "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "timeout_ms": 8000,
                "capture": ["version", "ip"]}}
JSON
)
echo "PUT /api/v1/profiles/demo (ota_firmware -> 1.1.0) -> $code"
[ "$code" = 200 ] ||
    failed "update to 1.1.0" "setting the profile's ota_firmware answered $code: $(cat profile.json 2>/dev/null)"
echo "waiting for the boards' next check-ins..."
if ! n=$(wait_count "SELECT count(*) FROM boards WHERE running_version = '1.1.0'" "${DEMO_TIMEOUT:-60}"); then
    why
    failed "update to 1.1.0" "timed out waiting for the boards to report 1.1.0 ($n of $DEMO_BOARDS)"
fi
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
echo "station demo passed: firmware import, daemon start, boards flashed, boards online, update to 1.1.0"
if [ -t 0 ] && [ "${DEMO_HOLD:-1}" != 0 ]; then
    echo
    read -r -p "The daemon keeps running for the status page; press Enter to stop the demo. " _ || true
fi

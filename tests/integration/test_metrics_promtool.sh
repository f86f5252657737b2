#!/usr/bin/env bash
# test_metrics_promtool: /metrics is what Prometheus accepts. A station that has done a bit
# of everything -- a board flashed over serial with a per-board pool file, its check-ins at
# the OTA endpoint, an espota push, a pull, a bulk update, a refused request, a plain GET of
# a missing image, an event-stream client connected -- so that every metric family has
# samples; then `promtool check metrics` (Debian's prometheus package) must exit 0 and print
# nothing (no parse error, no lint problem: names, units, counters ending in _total, HELP and
# TYPE for every family, no duplicate series). The families listed below must all have samples
# (a family that loses its samples no longer proves anything to promtool).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
[ -n "$PROMTOOL" ] || fail "promtool not found (Debian package prometheus; scripts/setup.sh installs it)"

MAC=24:6f:28:00:7e:01
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 21 boot
import_fw "$WORK/fw1"
fw_set "$WORK/fw2" demo 2.0.0 esp32 64000 22
POOL=$WORK/pool
mkdir -p "$POOL"
head -c 3000 /dev/urandom >"$POOL/0001.bin"
head -c 3000 /dev/urandom >"$POOL/0002.bin"

OTA_PORT=$(free_port)
start_sim esp32 --mac "$MAC" --net-bind "$TNET.2" \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --checkin-interval 300
S1=$SIM_DIR
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}],
 "api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0"}, "retries": 0,
   "per_board": [{"name": "nvs", "offset": "0x9000", "dir": "$POOL"}],
   "boot_check": {"pattern": "app: version ([^ ]+) ip ([0-9.]+)", "capture": ["version", "ip"],
                  "timeout_ms": 5000}}}}
JSON
start_api_daemon "$WORK/station.json"

# serial flash (with a pool file), boot check (it confirms the board's address), check-ins
wait_sql "SELECT state FROM jobs WHERE kind = 'flash';" passed 120
wait_sql "SELECT online_state FROM boards WHERE mac = '$MAC';" online 30
wait_sql "SELECT checkins >= 2 FROM board_ota WHERE mac = '$MAC';" 1 20

# an espota push of 2.0.0; the next check-in gets the profile's 1.0.0 back (a pull)
upload_fw "$WORK/fw2"
apij POST "/api/v1/boards/$MAC/ota" '{"method": "espota", "firmware": "demo@2.0.0"}'
expect_status 202
JP=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $JP;" passed 60
wait_sql "SELECT state FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$MAC';" passed 60
wait_sql "SELECT running_version FROM boards WHERE mac = '$MAC';" 1.0.0 30

# a bulk update to the release the board runs: the board is skipped
apij POST /api/v1/bulk "{\"select\": {\"macs\": [\"$MAC\"]}, \"firmware\": \"demo@1.0.0\", \"method\": \"espota\"}"
expect_status 202
BID=$(jqr .id)
wait_api "/api/v1/bulk/$BID" '.state != "running" and .state != "pending"' 60

# a 404 from the update endpoint, a 4xx from the REST API, an event-stream client
[ "$(timeout 30 curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OTA_PORT/ota/fw/nope/1.bin")" = 404 ] ||
    fail "a plain GET of an unknown image was not a 404"
api GET /api/v1/nope
timeout 60 curl -sS -N -o "$WORK/sse.out" "$API/api/v1/events" &
SSE_PID=$!
deadline=$((SECONDS + 20))
until api GET /metrics && awk '$1 == "espstation_sse_clients" && $2 >= 1 { ok = 1 } END { exit !ok }' <<<"$RESP"; do
    [ $SECONDS -lt $deadline ] || fail "the event-stream client is not counted in /metrics"
    sleep 0.1
done
printf '%s\n' "$RESP" >"$WORK/metrics"
kill "$SSE_PID" 2>/dev/null || true
wait "$SSE_PID" 2>/dev/null || true

# every family below has samples
for fam in espstation_jobs_total espstation_ota_checkins_total espstation_ota_pulls_total \
    espstation_ota_pushes_total espstation_ota_bytes_total espstation_ota_bulk_boards_total \
    espstation_flash_bytes_total \
    espstation_flash_duration_seconds espstation_slots espstation_slots_present \
    espstation_slots_busy espstation_boards_seen espstation_events_last_id \
    espstation_sse_clients espstation_http_requests_total espstation_pool_free; do
    grep -Eq "^${fam}(_bucket|_sum|_count)?(\{| )" "$WORK/metrics" ||
        fail "metric family $fam has no samples: $(cat "$WORK/metrics")"
done

# the bulk's board, skipped (it already ran the release), is counted like any board that ended
grep -qx 'espstation_ota_bulk_boards_total{result="skipped"} 1' "$WORK/metrics" ||
    fail "the skipped bulk board is not counted: $(grep bulk "$WORK/metrics")"

# no series twice (promtool 2.42 does not check it; a scrape with two samples of one series
# is refused by Prometheus)
dups=$(grep -v '^#' "$WORK/metrics" | awk '{ print $1 }' | sort | uniq -d)
[ -z "$dups" ] || fail "series given twice in /metrics: $dups"

# promtool: exit 0, nothing said
rc=0
"$PROMTOOL" check metrics <"$WORK/metrics" >"$WORK/promtool.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$WORK/promtool.out" ]; then
    fail "promtool check metrics (exit $rc): $(cat "$WORK/promtool.out")
--- /metrics:
$(cat "$WORK/metrics")"
fi
log "promtool check metrics: ok ($(grep -c '^# TYPE' "$WORK/metrics") families, $(grep -vc '^#' "$WORK/metrics") samples)"

stop_daemon
integrity_ok
done_ok

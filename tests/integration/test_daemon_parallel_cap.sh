#!/usr/bin/env bash
# test_daemon_parallel_cap: the daemon's max_parallel cap. Four virtual ESP32
# boards on manual pty ports, paced serial links (each flash takes a few
# seconds), max_parallel 2: while they are flashed, never more than two flash
# jobs run at once (sampled from the jobs table and the slots' phases while it
# runs, and checked afterwards from the recorded start/end times, which must
# show two overlapping jobs: the cap is reached, not merely respected by a
# sequential run), the waiting slots show "queued", and all four pass with the
# image on their flash.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 150000 "$FW/app.bin" 31
cat >"$FW/manifest.json" <<JSON
{"name": "cap", "version": "1.0.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"

PORTS=""
SIMS=()
for i in 1 2 3 4; do
    start_sim esp32 --mac "24:6f:28:00:0d:0$i" --link-speed 2
    SIMS+=("$SIM_DIR")
    PORTS+="${PORTS:+, }{\"uri\": \"$SIM_DIR/tty\", \"label\": \"P$i\"}"
done
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [$PORTS], "max_parallel": 2, "api": {"token": "$TOKEN"},
 "profiles": {"line": {"firmware": {"esp32": "cap@1.0.0"}, "baud": 460800, "retries": 0}}}
JSON
start_api_daemon "$WORK/station.json"

# sample while the four jobs run
max_running=0
max_busy=0
saw_queued=0
deadline=$((SECONDS + 120))
while :; do
    running=$(db "SELECT count(*) FROM jobs WHERE kind = 'flash' AND ended_at IS NULL;")
    [ "$running" -gt "$max_running" ] && max_running=$running
    api GET /api/v1/slots -H "Authorization: Bearer $TOKEN"
    if [ "$HTTP_STATUS" = 200 ]; then
        busy=$(jq '[.slots[].phase | select(. == "connecting" or . == "identifying" or . == "flashing"
            or . == "verifying" or . == "resetting" or . == "boot_check")] | length' <<<"$RESP")
        [ "$busy" -gt "$max_busy" ] && max_busy=$busy
        jq -e '[.slots[].phase] | any(. == "queued")' >/dev/null <<<"$RESP" && saw_queued=1
    fi
    [ "$(db "SELECT count(*) FROM jobs WHERE kind = 'flash' AND ended_at IS NOT NULL;")" = 4 ] && break
    [ $SECONDS -lt $deadline ] || fail "the four flash jobs did not end within 120 s: $(db 'SELECT id, slot, state FROM jobs;')"
    sleep 0.1
done
log "sampled: at most $max_running running jobs, $max_busy busy slots; queued seen: $saw_queued"
[ "$max_running" -le 2 ] || fail "max_parallel 2, but $max_running jobs ran at once"
[ "$max_busy" -le 2 ] || fail "max_parallel 2, but $max_busy slots were busy at once"
[ "$saw_queued" = 1 ] || fail "no slot was ever shown as queued behind the cap"

# from the records: the largest number of jobs running at any job's start time
overlap=$(db "SELECT max((SELECT count(*) FROM jobs b WHERE b.kind = 'flash' AND b.started_at <= a.started_at
                          AND b.ended_at > a.started_at)) FROM jobs a WHERE a.kind = 'flash';")
[ "$overlap" = 2 ] || fail "recorded overlap of flash jobs is $overlap, expected exactly 2: $(db 'SELECT id, slot, started_at, ended_at FROM jobs;')"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed';")" = 4 ] ||
    fail "not all four passed: $(db 'SELECT id, slot, state, error_message FROM jobs;')"
[ "$(db "SELECT count(*) FROM jobs;")" = 4 ] || fail "expected exactly 4 jobs: $(db 'SELECT id, slot, kind, state FROM jobs;')"
for s in "${SIMS[@]}"; do
    flash_region_equals "$s" 0x10000 "$FW/app.bin"
done

stop_daemon
integrity_ok
done_ok

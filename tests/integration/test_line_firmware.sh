#!/usr/bin/env bash
# test_line_firmware: firmware shared across a line of three stations on one private
# PostgreSQL 15 (pg_lib.sh), each daemon with its own name and data directory.
#  1. Sets imported on st1 only are described in the shared `firmware` table and their
#     files registered in `blobs` (st1 the holder); GET /api/v1/blobs/<sha> serves them.
#  2. st2 flashes a virtual ESP32 (esp_sim) with a set it does not hold: its profile's
#     set is fetched from st1, hash-checked and cached; a REST job naming another set of
#     st1's waits for its fetch and passes; the second job of the set fetches nothing
#     (one firmware.fetched event per set); st2 is a holder afterwards.
#  3. A blob corrupted on st1's disk is refused by hash at st2: the job fails naming the
#     set, the file and the station.
#  4. OTA: a board checking in at st2 whose target (pinned at st1) is a set only st1
#     holds gets 503 while st2 fetches it, then the image (esp_netdev applies it).
#  5. A pull bulk created on st1, killed with -9, is taken over by another station
#     once its lease runs out (ESPSTATION_BULK_LEASE_MS) and finishes: every board
#     updated once.
#  6. The same for a push bulk (ArduinoOTA to three esp_netdev boards, concurrency 1):
#     st1 (restarted) is killed -9 while its first push is mid-transfer (the board
#     stalls); another station takes the bulk over, requeues the interrupted board and
#     pushes every board: each ends on 2.0 with exactly one passed push job, none of
#     them at st1.
# The `stations` rows (address, heartbeat) are written here too, in case the
# station's own heartbeat is not there yet. When PostgreSQL cannot be started this
# test FAILS (never skips).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
source "$(dirname "$0")/pg_lib.sh"
trap 'pg_stop_then _ota_cleanup' EXIT

pg_test_db espline
pg_wait() { # SQL WANT TIMEOUT_S
    local deadline=$((SECONDS + ${3:-60})) got=""
    while :; do
        got=$(pgq "$1" 2>/dev/null || true)
        [ "$got" = "$2" ] && return 0
        [ $SECONDS -lt $deadline ] || fail "waited ${3:-60} s for [$1] = [$2], got [$got]"
        sleep 0.2
    done
}
export ESPSTATION_BULK_LEASE_MS=1500
TOKEN=line-t0k3n

declare -A API_OF PID_OF LOG_OF
# start_station NAME EXTRA_JSON: espstationd as station NAME (data dir $WORK/NAME), REST
# on an ephemeral port; its stations row says where it is.
start_station() {
    local name=$1 extra=$2 cfg=$WORK/$1.json
    cat >"$cfg" <<JSON
{"station": "$name", "api": {"token": "$TOKEN"},
 "records": {"backend": "postgresql", "dsn": "$DSN"}$extra}
JSON
    DATA_DIR=$WORK/$name
    start_api_daemon "$cfg"
    API_OF[$name]=$API
    PID_OF[$name]=$DAEMON_PID
    LOG_OF[$name]=$DAEMON_LOG
    pgq "INSERT INTO stations (name, address, heartbeat_at) VALUES ('$name', '$API',
         (extract(epoch from now()) * 1000)::bigint + 3600000)
         ON CONFLICT (name) DO UPDATE SET address = excluded.address" >/dev/null
}
on() { API=${API_OF[$1]}; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---- firmware sets, all imported on st1 only
fw_set "$WORK/fa" app 1.0 esp32 60000 21
fw_set "$WORK/fb" app 2.0 esp32 64000 22
fw_set "$WORK/fbad" bad 1.0 esp32 50000 23
fw_set "$WORK/fo1" ota 1.0 esp32 40000 24
fw_set "$WORK/fo2" ota 2.0 esp32 45000 25
DATA_DIR=$WORK/st1
for d in fa fb fbad fo1 fo2; do import_fw "$WORK/$d"; done

OTA2=$(free_port)
start_sim esp32 --mac 24:6f:28:00:0c:01
S1=$SIM_DIR
start_station st1 ""
pg_wait "SELECT count(*) FROM firmware" 5 20
pg_wait "SELECT count(DISTINCT sha256) FROM blobs WHERE station = 'st1'" 5 20
on st1
api GET "/api/v1/blobs/$(sha_of "$WORK/fa/app.bin")"
expect_status 200
cmp -s "$WORK/resp" "$WORK/fa/app.bin" || fail "GET /api/v1/blobs/<sha> did not serve app.bin as imported"
api GET "/api/v1/blobs/$(printf '%064d' 0)"
expect_status 404
api GET /api/v1/blobs/xyz
expect_status 400

# ---- 2. st2 flashes with st1's sets
start_station st2 ",
 \"ports\": [{\"uri\": \"$S1/tty\", \"label\": \"A1\"}],
 \"ota\": {\"listen\": \"127.0.0.1:$OTA2\", \"unknown_boards\": \"enrol\"},
 \"profiles\": {\"line\": {\"firmware\": {\"esp32\": \"app@1.0\"}, \"baud\": 460800, \"retries\": 0}}"
ST2_LOG=$DAEMON_LOG
pg_wait "SELECT count(*) FROM jobs WHERE station = 'st2' AND kind = 'flash' AND state = 'passed'" 1 120
flash_region_equals "$S1" 0x10000 "$WORK/fa/app.bin"
[ -f "$WORK/st2/firmware/app/1.0/index.json" ] || fail "app@1.0 was not cached in st2's catalog"
pg_wait "SELECT count(*) FROM blobs WHERE station = 'st2' AND sha256 = '$(sha_of "$WORK/fa/app.bin")'" 1 10
[ "$(pgq "SELECT count(*) FROM events WHERE station = 'st2' AND kind = 'firmware.fetched' AND data LIKE '%\"version\":\"1.0\"%' AND data LIKE '%\"station\":\"st1\"%'")" = 1 ] ||
    fail "st2: no firmware.fetched event naming st1 for app@1.0: $(pgq "SELECT kind, data FROM events WHERE station = 'st2' AND kind LIKE 'firmware.%'")"

# a REST job naming app@2.0 (only st1 holds it): the job waits for the fetch, then flashes
on st2
apij POST /api/v1/jobs '{"slot": "A1", "firmware": "app@2.0"}'
[ "$HTTP_STATUS" = 202 ] || [ "$HTTP_STATUS" = 201 ] || fail "job with app@2.0: $HTTP_STATUS $RESP"
pg_wait "SELECT state FROM jobs WHERE station = 'st2' AND firmware = 'app@2.0' ORDER BY id DESC LIMIT 1" passed 120
flash_region_equals "$S1" 0x10000 "$WORK/fb/app.bin"
jid=$(pgq "SELECT id FROM jobs WHERE station = 'st2' AND firmware = 'app@2.0' ORDER BY id DESC LIMIT 1")
[ "$(pgq "SELECT count(*) FROM job_log WHERE job_id = $jid AND line LIKE 'firmware app@2.0 fetched from station st1%'")" = 1 ] ||
    fail "job $jid's log does not say where app@2.0 came from"
# the second job of app@2.0: no second fetch
apij POST /api/v1/jobs '{"slot": "A1", "firmware": "app@2.0", "options": {"force": true}}'
pg_wait "SELECT count(*) FROM jobs WHERE station = 'st2' AND firmware = 'app@2.0' AND state = 'passed'" 2 120
[ "$(pgq "SELECT count(*) FROM events WHERE station = 'st2' AND kind = 'firmware.fetched'")" = 2 ] ||
    fail "expected one fetch per set (2) at st2: $(pgq "SELECT data FROM events WHERE station = 'st2' AND kind = 'firmware.fetched'")"

# ---- 3. a blob corrupted on st1's disk is refused by hash
printf '\xff\xff\xff\xff' | dd of="$WORK/st1/firmware/bad/1.0/app.bin" bs=1 seek=3000 conv=notrunc 2>/dev/null
apij POST /api/v1/jobs '{"slot": "A1", "firmware": "bad@1.0"}'
pg_wait "SELECT state FROM jobs WHERE station = 'st2' ORDER BY id DESC LIMIT 1" failed 120
msg=$(pgq "SELECT error_message FROM jobs WHERE station = 'st2' ORDER BY id DESC LIMIT 1")
for want in 'bad@1.0' 'app.bin' 'station st1' 'SHA-256'; do
    grepq "$want" <<<"$msg" || fail "corrupted blob: '$want' not in the job's error: $msg"
done
[ ! -e "$WORK/st2/firmware/bad" ] || fail "the refused set got into st2's catalog"
flash_region_equals "$S1" 0x10000 "$WORK/fb/app.bin" # nothing written

# ---- 4. OTA at st2 for a target only st1 holds: 503 while fetching, then the image
M1=24:6f:28:00:0c:11
start_netdev "$WORK/n1" --chip esp32 --mac $M1 --bind 127.0.0.1 --version 1.0 \
    --checkin "http://127.0.0.1:$OTA2/ota/update" --interval 300 --checkin-auth none
pg_wait "SELECT count(*) FROM boards WHERE mac = '$M1'" 1 20
on st1
apij PUT "/api/v1/boards/$M1/target" '{"firmware": "ota@2.0"}'
expect_status 200
wait_file_log 'pull: applied .* version now 2.0' "$WORK/n1/netdev.log" 60
grepq 'status=503' "$WORK/n1/netdev.log" || fail "no 503 while st2 fetched the target"
grepq 'being fetched from station st1' "$WORK/n1/netdev.log" || fail "the 503 does not say what is fetched"
[ "$(pgq "SELECT count(*) FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M1' AND state = 'passed' AND station = 'st2'")" = 1 ] ||
    fail "no passed ota-pull job of st2 for $M1"

# ---- 5. a pull bulk whose owner dies is taken over and finishes
start_station st3 ""
M2=24:6f:28:00:0c:12
M3=24:6f:28:00:0c:13
for m in $M2 $M3; do
    pgq "INSERT INTO boards (mac, chip, first_seen, last_seen) VALUES ('$m', 'ESP32',
         (extract(epoch from now()) * 1000)::bigint, (extract(epoch from now()) * 1000)::bigint)" >/dev/null ||
        fail "cannot insert board $m"
done
on st1
apij POST /api/v1/bulk "{\"select\": {\"macs\": [\"$M2\", \"$M3\"]}, \"firmware\": \"ota@2.0\", \"method\": \"pull\", \"concurrency\": 1, \"timeout_s\": 120}"
[ "$HTTP_STATUS" = 202 ] || fail "bulk: $HTTP_STATUS $RESP"
BID=$(jq -r .id <<<"$RESP")
[ "$(pgq "SELECT owner FROM bulks WHERE id = $BID")" = st1 ] || fail "bulk $BID: owner $(pgq "SELECT owner FROM bulks WHERE id = $BID")"
kill -KILL "${PID_OF[st1]}"
log "st1 killed with -9 while bulk $BID runs"
pg_wait "SELECT owner <> 'st1' FROM bulks WHERE id = $BID" t 60
NEW=$(pgq "SELECT owner FROM bulks WHERE id = $BID")
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'bulk.taken_over' AND station = '$NEW'")" = 1 ] ||
    fail "no bulk.taken_over event of $NEW"
for m in $M2 $M3; do
    start_netdev "$WORK/n-$m" --chip esp32 --mac "$m" --bind 127.0.0.1 --version 1.0 \
        --checkin "http://127.0.0.1:$OTA2/ota/update" --interval 500 --checkin-auth none
done
pg_wait "SELECT state FROM bulks WHERE id = $BID" passed 120
for m in $M2 $M3; do
    [ "$(pgq "SELECT count(*) FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$m' AND state = 'passed'")" = 1 ] ||
        fail "$m: expected one passed pull: $(pgq "SELECT id, state, station FROM jobs WHERE board_mac = '$m'")"
    [ "$(pgq "SELECT state FROM bulk_boards WHERE bulk_id = $BID AND mac = '$m'")" = passed ] ||
        fail "$m: bulk board state $(pgq "SELECT state, error FROM bulk_boards WHERE bulk_id = $BID AND mac = '$m'")"
done

# ---- 6. a push bulk whose owner dies mid-push is taken over; every board updated once
start_station st1 ""
declare -A PUSH_ND
push_netdev() { # push_netdev I [FAULT...]: board I of the push bulk (ArduinoOTA on 3232)
    local i=$1
    shift
    start_netdev "$WORK/np$i" --chip esp32 --mac "24:6f:28:00:0c:2$i" --bind "$TNET.4$i" \
        --ota-port 3232 --version 1.0 "$@"
    PUSH_ND[$i]=$NETDEV_PID
}
PUSH_MACS=()
for i in 1 2 3; do
    m=24:6f:28:00:0c:2$i
    PUSH_MACS+=("$m")
    # a confirmed address, as a check-in with the profile's credentials leaves it
    pgq "INSERT INTO boards (mac, chip, first_seen, last_seen, ip, ip_confirmed, ip_source)
         VALUES ('$m', 'ESP32', (extract(epoch from now()) * 1000)::bigint,
                 (extract(epoch from now()) * 1000)::bigint, '$TNET.4$i', 1, 'checkin-auth')" >/dev/null ||
        fail "cannot insert board $m"
    push_netdev "$i" --fault stall:20000 # every transfer stalls until the board restarts
done
on st1
apij POST /api/v1/bulk "{\"select\": {\"macs\": [\"${PUSH_MACS[0]}\", \"${PUSH_MACS[1]}\", \"${PUSH_MACS[2]}\"]},
  \"firmware\": \"ota@2.0\", \"method\": \"espota\", \"concurrency\": 1, \"retries\": 2}"
[ "$HTTP_STATUS" = 202 ] || fail "push bulk: $HTTP_STATUS $RESP"
PBID=$(jq -r .id <<<"$RESP")
[ "$(pgq "SELECT owner FROM bulks WHERE id = $PBID")" = st1 ] || fail "push bulk $PBID: owner $(pgq "SELECT owner FROM bulks WHERE id = $PBID")"
deadline=$((SECONDS + 60))
until grep -l 'stalling at' "$WORK"/np[123]/netdev.log >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "no push of bulk $PBID reached a board: $(pgq "SELECT mac, state, error FROM bulk_boards WHERE bulk_id = $PBID")"
    sleep 0.05
done
[ "$(pgq "SELECT count(*) FROM bulk_boards WHERE bulk_id = $PBID AND state = 'running'")" = 1 ] ||
    fail "expected one running push at st1: $(pgq "SELECT mac, state FROM bulk_boards WHERE bulk_id = $PBID")"
kill -KILL "${PID_OF[st1]}"
log "st1 killed with -9 while push bulk $PBID is mid-transfer"
for i in 1 2 3; do # the boards come back without the stall (a reset board)
    kill -TERM "${PUSH_ND[$i]}"
    wait "${PUSH_ND[$i]}" 2>/dev/null || true
    rm -f "$WORK/np$i/ready"
    push_netdev "$i"
done
pg_wait "SELECT state FROM bulks WHERE id = $PBID" passed 120
PNEW=$(pgq "SELECT owner FROM bulks WHERE id = $PBID")
[ "$PNEW" != st1 ] || fail "push bulk $PBID finished with st1, which was killed, as its owner"
[ "$(pgq "SELECT count(*) FROM events WHERE kind = 'bulk.taken_over' AND station = '$PNEW' AND data LIKE '%\"bulk_id\":$PBID,%'")" = 1 ] ||
    fail "no single bulk.taken_over event of $PNEW for bulk $PBID"
for i in 1 2 3; do
    m=24:6f:28:00:0c:2$i
    [ "$(pgq "SELECT count(*) FROM jobs WHERE kind = 'ota-push' AND board_mac = '$m' AND state = 'passed'")" = 1 ] ||
        fail "$m: expected exactly one passed push: $(pgq "SELECT id, state, station FROM jobs WHERE board_mac = '$m'")"
    [ "$(pgq "SELECT station FROM jobs WHERE kind = 'ota-push' AND board_mac = '$m' AND state = 'passed'")" = "$PNEW" ] ||
        fail "$m: its passed push is not $PNEW's"
    [ "$(pgq "SELECT state FROM bulk_boards WHERE bulk_id = $PBID AND mac = '$m'")" = passed ] ||
        fail "$m: bulk board state $(pgq "SELECT state, error FROM bulk_boards WHERE bulk_id = $PBID AND mac = '$m'")"
    [ "$(cat "$WORK/np$i/version")" = 2.0 ] || fail "$m runs $(cat "$WORK/np$i/version"), not 2.0"
done
# the live stations stop cleanly (under ASan: no leak, no error at exit)
for n in st2 st3; do
    kill -TERM "${PID_OF[$n]}"
    rc=0
    wait "${PID_OF[$n]}" || rc=$?
    [ "$rc" = 0 ] || fail "station $n exited with status $rc on SIGTERM: $(tail -n 20 "${LOG_OF[$n]}")"
done
for n in "${!LOG_OF[@]}"; do
    ! grep -Eq 'Sanitizer|runtime error' "${LOG_OF[$n]}" || fail "station $n reported a sanitizer error (${LOG_OF[$n]})"
done
log "ok: sets fetched by hash and cached, corrupted blob refused, OTA 503 then served, pull bulk $BID taken over by $NEW, push bulk $PBID by $PNEW"

#!/usr/bin/env bash
# test_daemon_tcp_port: ser2net-style serial servers (tcp://host:port) as daemon ports.
# Two virtual ESP32s served over TCP (esp_sim --tcp 0: no modem lines, the board waits
# in download mode): one is a manual port from the config, one is attached through
# POST /api/v1/ports. Both are flashed by profile (flash contents compared), the job
# log and record say the daemon could not reset the board over TCP and what it did
# instead, and the board records carry MAC and chip. A third TCP board whose server
# goes away during the write (the sim is killed) ends its job failed with a clear
# error while the daemon keeps running and serving; DELETE /api/v1/ports detaches.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_image_esp esp32 300000 "$FW/app.bin" 31
make_random 3072 "$FW/part.bin" 32
cat >"$FW/manifest.json" <<JSON
{"name": "tcpfw", "version": "1.0.0", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
import_fw "$FW"

M1=24:6f:28:00:71:01
M2=24:6f:28:00:71:02
M3=24:6f:28:00:71:03
start_sim esp32 --tcp 0 --mac "$M1"
S1=$SIM_DIR U1=$SIM_PORT
start_sim esp32 --tcp 0 --mac "$M2"
S2=$SIM_DIR U2=$SIM_PORT
[[ $U1 == tcp://127.0.0.1:* && $U2 == tcp://127.0.0.1:* ]] || fail "sim ready files: '$U1' '$U2'"

TOKEN=tcp-t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ports": [{"uri": "$U1", "label": "T1"}],
 "profiles": {"line": {"firmware": {"esp32": "tcpfw@1.0.0"}, "retries": 0}}}
JSON
# retries 0: T3's server is killed below; a retry would connect to its old port, which by
# then may belong to another test's virtual board.
start_api_daemon "$CFG"

# --- the config's tcp:// port, then one attached through the API -----------------------
wait_sql "SELECT state FROM jobs WHERE slot = 'T1';" passed 60
apij POST /api/v1/ports "{\"uri\": \"$U2\", \"label\": \"T2\"}"
expect_status 201 "attach $U2"
expect_jq ".label == \"T2\" and .present == true and .uri == \"$U2\""
grep -qi '^location: /api/v1/slots/' "$WORK/resp.headers" || fail "attach without a Location header"
wait_sql "SELECT state FROM jobs WHERE slot = 'T2';" passed 60

for s in "$S1" "$S2"; do
    flash_region_equals "$s" 0x8000 "$FW/part.bin"
    flash_region_equals "$s" 0x10000 "$FW/app.bin"
done
for m in "$M1:T1" "$M2:T2"; do
    mac=${m%:*} slot=${m##*:}
    row=$(db "SELECT chip || '|' || current_firmware || '|' || current_md5 || '|' || slot FROM boards WHERE mac = '$mac';")
    [ "$row" = "ESP32|tcpfw@1.0.0|$(md5_of "$FW/app.bin")|$slot" ] || fail "board record of $mac: '$row'"
    row=$(db "SELECT board_mac || '|' || firmware || '|' || (bytes > 0) FROM jobs WHERE slot = '$slot';")
    [ "$row" = "$mac|tcpfw@1.0.0|1" ] || fail "job record of $slot: '$row'"
    J=$(db "SELECT id FROM jobs WHERE slot = '$slot';")
    # No modem lines over TCP: no reset into the loader (the board must already be in
    # download mode, and was: it synced), and no hard reset afterwards (power-cycle it).
    db "SELECT line FROM job_log WHERE job_id = $J ORDER BY id;" >"$WORK/joblog.$slot"
    grep -q 'transport has no modem lines: cannot reset the board (it must already be in download mode)' \
        "$WORK/joblog.$slot" || fail "job $J ($slot) log does not say it could not reset into the loader: $(cat "$WORK/joblog.$slot")"
    grep -q '^sync ok' "$WORK/joblog.$slot" || fail "job $J ($slot) log has no sync line"
    grep -q 'staying at 115200 baud: the tcp transport cannot change its baud rate' "$WORK/joblog.$slot" ||
        fail "job $J ($slot) log does not say it kept the baud rate"
    grep -q 'cannot reset: transport has no modem lines; power-cycle the board' "$WORK/joblog.$slot" ||
        fail "job $J ($slot) log does not say it could not reset the board after flashing: $(cat "$WORK/joblog.$slot")"
    api GET "/api/v1/jobs/$J" -H "Authorization: Bearer $TOKEN"
    expect_status 200
    expect_jq '.state == "passed" and ([.log[].line | select(test("no modem lines"))] | length) == 2'
    # and it does not contradict itself by claiming a reset it could not do
    expect_jq '[.log[].line | select(test("left the loader"))] | length == 0'
done
# The boards never saw a modem line (there is none over TCP).
for s in "$S1" "$S2"; do
    sim_log_has 'modem|EN low' "$s" && fail "a TCP board logged modem-line activity: $(grep -Ei 'modem|EN low' "$s/sim.log" | head -n 3)"
    sim_log_has 'cmd FLASH_(DEFL_)?DATA' "$s" || fail "board $s was not written"
done
api GET /api/v1/slots -H "Authorization: Bearer $TOKEN"
expect_jq "[.slots[] | select(.label == \"T1\" or .label == \"T2\") | .present] == [true, true]"

# --- a tcp:// server that goes away during the write ------------------------------------
# Paced link (115200 Bd: no baud control over TCP), so the write is observably running
# when the sim is killed.
start_sim esp32 --tcp 0 --mac "$M3" --link-speed 1
S3=$SIM_DIR U3=$SIM_PORT P3=$SIM_PID
apij POST /api/v1/ports "{\"uri\": \"$U3\", \"label\": \"T3\"}"
expect_status 201 "attach $U3"
deadline=$((SECONDS + 60))
until sim_log_has 'cmd FLASH_(DEFL_)?DATA' "$S3"; do
    [ $SECONDS -lt $deadline ] || fail "T3 never started writing"
    sleep 0.05
done
[ "$(db "SELECT state FROM jobs WHERE slot = 'T3';")" = running ] || fail "T3's job is not running during the write"
kill -KILL "$P3"
wait "$P3" 2>/dev/null || true
wait_sql "SELECT state FROM jobs WHERE slot = 'T3';" failed 60
row=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE slot = 'T3';")
log "T3 (server killed mid-write): $row"
# killed after its first data block: the small first region may already be written and
# verified, so the job ends in the write or the verify of a region
[[ $row == write\|* || $row == verify\|* ]] || fail "T3 failed outside the write/verify stages: $row"
[[ $row == *"serial server tcp://"*"closed the connection during "* ]] ||
    fail "T3's error does not say the serial server closed the connection: $row"
adv=$(db "SELECT error_advice FROM jobs WHERE slot = 'T3';")
[[ $adv == *"serial server"*"ser2net"* ]] || fail "T3's advice is about USB, not the serial server: $adv"
kill -0 "$DAEMON_PID" || fail "espstationd died when a tcp:// server went away"
api GET /api/v1/slots -H "Authorization: Bearer $TOKEN"
expect_status 200 "API after the lost tcp:// server"
# The other boards' records are untouched by T3's failure.
[ "$(db "SELECT count(*) FROM jobs WHERE state = 'passed' AND slot IN ('T1', 'T2');")" = 2 ] ||
    fail "passed jobs changed: $(db 'SELECT id, slot, state FROM jobs;')"

# --- DELETE /api/v1/ports detaches ----------------------------------------------------------
for slot in T2 T3; do
    apit DELETE "/api/v1/ports/$slot"
    expect_status 200 "detach $slot"
    expect_jq ".label == \"$slot\" and .present == false"
    apit DELETE "/api/v1/ports/$slot"
    expect_error 409 slot_empty
done
api GET /api/v1/slots -H "Authorization: Bearer $TOKEN"
expect_jq '[.slots[] | select(.label == "T1") | .present] == [true]'
expect_jq '[.slots[] | select(.label == "T2" or .label == "T3") | .present] | all(. == false)'
# A detached server is left alone: no new connection to S2.
sim_log_mark "$S2"
sleep 1
sim_log_new_has 'cmd ' "$S2" && fail "the daemon talked to T2 after it was detached"
[ "$(db "SELECT count(*) FROM jobs;")" = 3 ] || fail "jobs after detach: $(db 'SELECT id, slot, state FROM jobs;')"

stop_daemon
check_daemon_log
integrity_ok
done_ok

#!/usr/bin/env bash
# test_daemon_manual_boot: a firmware set whose esptool_args say "before": "no-reset" (a build
# whose board must not be reset through DTR/RTS). The board runs its app when plugged
# (esp_sim --manual-boot-after signal); the job leaves the lines alone and keeps sending SYNC
# while the slot (and the job) in the API carry the hand-reset notice; more SYNCs than the
# normal connect attempts send go unanswered, then the technician holds BOOT and taps EN
# (SIGUSR1 to the sim) and the job syncs and passes, with no modem line from the station
# before its first answered SYNC.
#  1. before no-reset: passes, boot-checked (the app is started by the hard reset after);
#  2. before no-reset + after no-reset: passes, the board stays in its loader (no EN pulse at
#     all from the station);
#  3. a waiting job cancelled through the API ends 'cancelled', the slot is free;
#  4. a waiting job whose board is unplugged (sim killed) ends 'failed: board removed'.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

# The station's normal connect: 7 attempts of 5 SYNCs (esp_loader.c defaults). A job that
# got this many unanswered SYNCs would have given up without the no-reset rule.
NORMAL_SYNCS=35

mkset() { # NAME ESPTOOL_ARGS_JSON SEED
    local d=$WORK/fw-$1
    mkdir -p "$d"
    make_image_esp esp32 40000 "$d/app.bin" "$3"
    cat >"$d/manifest.json" <<JSON
{"name": "$1", "version": "1", "chip": "esp32", "flash_size": "4MB", "esptool_args": $2,
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
    import_fw "$d"
}
mkset nr '{"before": "no-reset"}' 31
mkset nrnr '{"before": "no-reset", "after": "no-reset"}' 32

TOKEN=manual-boot-token
config() { # SET DIR...
    local set=$1 ports="" d i=0
    shift
    for d in "$@"; do
        i=$((i + 1))
        ports="$ports${ports:+, }{\"uri\": \"$d/tty\", \"label\": \"M$i\"}"
    done
    cat >"$WORK/station.json" <<JSON
{"ports": [$ports], "api": {"token": "$TOKEN"},
 "profiles": {"line": {"firmware": {"esp32": "$set@1"}, "retries": 0,
                       "boot_check": {"pattern": "app running", "timeout_ms": 5000}}}}
JSON
}

# app_syncs DIR: how many SYNCs the board's app has ignored so far.
app_syncs() { grep -c 'app: SYNC ignored' "$1/sim.log" || true; }
# wait_app_syncs DIR N: the station kept syncing past N unanswered SYNCs.
wait_app_syncs() {
    local deadline=$((SECONDS + 120))
    until [ "$(app_syncs "$1")" -gt "$2" ]; do
        kill -0 "$DAEMON_PID" || fail "espstationd died"
        [ $SECONDS -lt $deadline ] || fail "the station stopped syncing after $(app_syncs "$1") SYNCs"
        sleep 0.2
    done
}
# waiting_job SLOT: the slot waits for the technician; sets JOB (its job id).
waiting_job() {
    wait_api "/api/v1/slots/$1" '.phase == "connecting" and (.notice // "" | test("hold BOOT, tap EN"))' 60
    apit GET "/api/v1/slots/$1"
    expect_jq '.notice | test("by hand") and test("before no-reset")'
    JOB=$(jqr '.job_id')
    apit GET "/api/v1/jobs/$JOB"
    expect_jq '.state == "running" and (.notice | test("hold BOOT, tap EN"))'
}
# no_lines_before_sync DIR: no modem line change from the station before the loader answered.
no_lines_before_sync() {
    awk '/manual boot: BOOT held/ { exit } { print }' "$1/sim.log" >"$WORK/before.log"
    ! grep -Eq 'modem DTR|EN low' "$WORK/before.log" ||
        fail "the station toggled DTR/RTS while waiting: $(grep -E 'modem DTR|EN low' "$WORK/before.log" | head -n 3)"
    grep -q 'manual boot: BOOT held, EN tapped (by hand' "$1/sim.log" || fail "no manual boot in sim.log"
}

# --- 1. before no-reset --------------------------------------------------------------------
start_sim esp32 --manual-boot-after signal
A=$SIM_DIR
APID=$SIM_PID
sim_log_has 'reset -> boot 0x13' "$A" || fail "the sim did not boot its app at plug-in"
config nr "$A"
start_api_daemon "$WORK/station.json"
waiting_job M1
wait_app_syncs "$A" $NORMAL_SYNCS
apit GET /api/v1/slots/M1
expect_jq '.phase == "connecting" and (.notice | test("hold BOOT"))'
grep -q 'waiting for the board to be put in it by hand (hold BOOT, tap EN)' "$DAEMON_LOG" ||
    fail "the job log does not say it waits for the technician"
kill -USR1 "$APID"
wait_api "/api/v1/jobs/$JOB" '.state == "passed"' 60
no_lines_before_sync "$A"
flash_region_equals "$A" 0x10000 "$WORK/fw-nr/app.bin"
sim_log_has 'reset -> boot 0x13' "$A" || fail "no hard reset into the app after the write"
apit GET /api/v1/slots/M1
expect_jq '.notice == null'
stop_daemon
stop_sim "$APID"
log "before no-reset: waited past $NORMAL_SYNCS SYNCs without touching the lines, passed after the manual boot"

# --- 2. before no-reset + after no-reset ------------------------------------------------------
start_sim esp32 --manual-boot-after signal
B=$SIM_DIR
BPID=$SIM_PID
config nrnr "$B"
start_api_daemon "$WORK/station.json"
waiting_job M1
wait_app_syncs "$B" $NORMAL_SYNCS
kill -USR1 "$BPID"
wait_api "/api/v1/jobs/$JOB" '.state == "passed"' 60
no_lines_before_sync "$B"
flash_region_equals "$B" 0x10000 "$WORK/fw-nrnr/app.bin"
! grep -Eq 'EN low|reset -> boot 0x13.*' <(awk '/manual boot: BOOT held/ { on = 1 } on' "$B/sim.log") ||
    fail "after no-reset: the station reset the board: $(grep -E 'EN low|reset -> boot' "$B/sim.log" | tail -n 3)"
grep -q 'no boot check: the board was left in its loader (no-reset)' "$DAEMON_LOG" ||
    fail "after no-reset: the job does not say it skipped the boot check"
stop_daemon
stop_sim "$BPID"
log "before + after no-reset: passed, the board left in its loader"

# --- 3. cancel a waiting job; 4. unplug a waiting board ----------------------------------------
start_sim esp32 --manual-boot-after signal
C=$SIM_DIR
start_sim esp32 --manual-boot-after signal
D=$SIM_DIR
DPID=$SIM_PID
config nr "$C" "$D"
start_api_daemon "$WORK/station.json"
waiting_job M1
JC=$JOB
waiting_job M2
JD=$JOB
wait_app_syncs "$C" 8
apij POST "/api/v1/jobs/$JC/cancel" '{}'
expect_status 202
wait_api "/api/v1/jobs/$JC" '.state == "cancelled"' 30
apit GET /api/v1/slots/M1
expect_jq '(.busy | not) and .notice == null and .phase != "connecting"'
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null || true
wait_sql "SELECT state || '|' || error_message FROM jobs WHERE id = $JD" "failed|board removed during sync" 30
apit GET /api/v1/slots/M2
expect_jq '(.busy | not) and .notice == null and (.present | not)'
! grep -q 'manual boot' "$C/sim.log" || fail "nobody pressed a button on M1"
stop_daemon
log "a waiting job: cancelled at once; unplugged -> failed (board removed)"
done_ok

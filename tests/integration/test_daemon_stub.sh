#!/usr/bin/env bash
# test_daemon_stub: where espstationd takes the flasher stubs from, and what a job
# records when the stub does not start (issue 8).
# - Stub directory order, as --help and CONFIG.md state: --stub-dir, then the config's
#   stub_dir, then $ESPSTATION_STUB_DIR, then the build's default. Observed in the job
#   log: an empty stub directory makes the engine name it ("no flasher stub for ESP32
#   in DIR"); the build's default (the real stubs) makes the stub run.
# - A stub that never says OHAI (esp_sim --fault stub-no-ohai) on a port with DTR/RTS:
#   the job passes through the ROM loader and records the warning in its log and in
#   the job.finished event. Over tcp:// (no reset possible) the job fails at stage stub
#   with advice that names the profile setting.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

W1="stub did not start; flashed through the ROM loader, slower"
import_esp32_app 41
mkdir -p "$WORK/cfg-stubs" "$WORK/env-stubs" "$WORK/opt-stubs"

start_sim esp32
S1=$SIM_DIR

# run_job ENV_DIR CONFIG_EXTRA [espstationd args...]: one daemon run with the board of
# S1 as a manual port, $ESPSTATION_STUB_DIR = ENV_DIR (unset when ""), no --stub-dir
# unless given; waits for its job to end and stops it. The job's log goes to $WORK/joblog.
JOBS=0
run_job() {
    local envdir=$1 extra=$2 envargs
    shift 2
    local cfg=$WORK/station.$JOBS.json
    cat >"$cfg" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}], $extra
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}}}}
JSON
    if [ -n "$envdir" ]; then envargs=(ESPSTATION_STUB_DIR="$envdir"); else envargs=(-u ESPSTATION_STUB_DIR); fi
    DAEMON_N=$((DAEMON_N + 1))
    DAEMON_LOG="$WORK/daemon.$DAEMON_N.log"
    env "${envargs[@]}" "$ESPSTATIOND" --config "$cfg" --data-dir "$DATA_DIR" --no-udev "$@" \
        >"$DAEMON_LOG" 2>&1 &
    DAEMON_PID=$!
    DAEMON_PIDS+=("$DAEMON_PID")
    wait_log 'station running' 30
    JOBS=$((JOBS + 1))
    wait_sql "SELECT count(*) FROM jobs WHERE state IN ('passed', 'skipped', 'failed')" "$JOBS" 60
    stop_daemon
    db "SELECT level || ' ' || line FROM job_log WHERE job_id = (SELECT max(id) FROM jobs)" \
        >"$WORK/joblog"
    [ "$(db "SELECT state FROM jobs WHERE id = (SELECT max(id) FROM jobs)")" != failed ] ||
        fail "job failed: $(db "SELECT error_message FROM jobs ORDER BY id DESC LIMIT 1")"
}
used_dir() { grep -q "no flasher stub for ESP32 in $1" "$WORK/joblog"; }
stub_ran() { grep -q '^info stub running' "$WORK/joblog"; }

# The config's stub_dir beats the environment and the build's default.
run_job "$WORK/env-stubs" "\"stub_dir\": \"$WORK/cfg-stubs\","
used_dir "$WORK/cfg-stubs" || fail "config stub_dir not used (with \$ESPSTATION_STUB_DIR set): $(cat "$WORK/joblog")"
grep -q "flasher stubs from $WORK/cfg-stubs (config stub_dir)" "$DAEMON_LOG" ||
    fail "the daemon log does not say where the stubs come from"
run_job "" "\"stub_dir\": \"$WORK/cfg-stubs\","
used_dir "$WORK/cfg-stubs" || fail "config stub_dir not used (build default present): $(cat "$WORK/joblog")"
# Without a config stub_dir, the environment beats the build's default.
run_job "$WORK/env-stubs" ""
used_dir "$WORK/env-stubs" || fail "\$ESPSTATION_STUB_DIR not used: $(cat "$WORK/joblog")"
# --stub-dir beats the config.
run_job "$WORK/env-stubs" "\"stub_dir\": \"$WORK/cfg-stubs\"," --stub-dir "$WORK/opt-stubs"
used_dir "$WORK/opt-stubs" || fail "--stub-dir did not win over the config: $(cat "$WORK/joblog")"
# Nothing named: the build's default (the test's STUB_DIR is the build's).
run_job "" ""
stub_ran || fail "the build's default stub directory was not used: $(cat "$WORK/joblog")"
grep -q "flasher stubs from $STUB_DIR (the build's default)" "$DAEMON_LOG" ||
    fail "the daemon log does not name the build's default"
stop_sim

# --- a stub that never starts ------------------------------------------------------------
start_sim esp32 --fault stub-no-ohai --mac 24:6f:28:00:08:01
S2=$SIM_DIR
start_sim esp32 --tcp 0 --fault stub-no-ohai --mac 24:6f:28:00:08:02
U3=$SIM_PORT
CFG=$WORK/station-noohai.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S2/tty", "label": "B1"}, {"uri": "$U3", "label": "B2"}],
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}, "retries": 0}}}
JSON
start_daemon "$CFG"
wait_sql "SELECT state FROM jobs WHERE slot = 'B1'" passed 60
wait_sql "SELECT state FROM jobs WHERE slot = 'B2'" failed 60
stop_daemon
flash_region_equals "$S2" 0x10000 "$FW/app.bin"
J=$(db "SELECT id FROM jobs WHERE slot = 'B1'")
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = $J AND level = 'warn' AND line = '$W1'")" = 1 ] ||
    fail "job $J: no warning '$W1' in its log: $(db "SELECT level, line FROM job_log WHERE job_id = $J")"
ev=$(db "SELECT data FROM events WHERE kind = 'job.finished' AND job_id = $J")
[ "$(jq -r '.state + "|" + (.warnings | join(","))' <<<"$ev")" = "passed|$W1" ] ||
    fail "job.finished of job $J: $ev"
row=$(db "SELECT error_stage FROM jobs WHERE slot = 'B2'")
[ "$row" = stub ] || fail "tcp:// job: error stage '$row', expected stub"
adv=$(db "SELECT error_advice FROM jobs WHERE slot = 'B2'")
[[ $adv == *"no reset can bring back the ROM loader"* && $adv == *'"stub": false'* ]] ||
    fail "tcp:// job advice: $adv"
ev=$(db "SELECT data FROM events WHERE kind = 'job.finished' AND slot = 'B2'")
jq -e 'has("warnings") | not' <<<"$ev" >/dev/null || fail "a failed job carries the fallback warning: $ev"
done_ok

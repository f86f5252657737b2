#!/usr/bin/env bash
# test_daemon_interrupt: the ways a flash job ends early, on a slow link
# (--link-speed 1 at 115200 baud, a 1 MiB incompressible region):
#  - kill -9 of the daemon mid-write: the restart marks the job 'interrupted',
#    flashes the board again (its flash MD5 no longer matches) and the database
#    passes PRAGMA integrity_check;
#  - SIGTERM mid-write: the job is recorded 'cancelled' ("daemon stopping"), exit 0;
#  - the board vanishes mid-write (its sim is killed, the pty disappears): the job
#    fails "board removed during write", once, and the slot is emptied;
#  - a manual port whose pty does not exist is polled: when the board comes
#    back, it is flashed.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

FW=$WORK/fw
mkdir -p "$FW"
make_random $((1024 * 1024)) "$FW/app.bin" 11
cat >"$FW/manifest.json" <<JSON
{"name": "big", "version": "1", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "data"}]}
JSON
import_fw "$FW"

start_sim esp32 --link-speed 1
A=$SIM_DIR
APID=$SIM_PID
write_config() { # FILE BAUD
    cat >"$1" <<JSON
{"ports": [{"uri": "$A/tty", "label": "K1"}],
 "profiles": {"line": {"firmware": {"esp32": "big@1"}, "baud": $2, "retries": 0}}}
JSON
}
SLOW=$WORK/slow.json
FAST=$WORK/fast.json
write_config "$SLOW" 115200
write_config "$FAST" 921600
LAST_JOB="(SELECT max(id) FROM jobs)"
wait_writing() {
    wait_sql "SELECT stage = 'write' AND bytes > 0 FROM jobs WHERE id = $LAST_JOB" 1 60
}

# --- kill -9 mid-write, restart -----------------------------------------------
start_daemon "$SLOW"
wait_writing
kill9_daemon
[ "$(db "SELECT state FROM jobs WHERE id = 1")" = running ] || fail "job 1 should still read 'running'"
start_daemon "$FAST"
wait_log 'records: 1 job\(s\) were interrupted' 10
[ "$(db "SELECT state || '|' || error_message FROM jobs WHERE id = 1")" = "interrupted|daemon stopped while write" ] ||
    fail "job 1 after restart: $(db "SELECT state, error_message FROM jobs WHERE id = 1")"
wait_sql "SELECT state FROM jobs WHERE id = 2" passed 90
flash_region_equals "$A" 0x10000 "$FW/app.bin"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'job.interrupted' AND job_id = 1")" = 1 ] ||
    fail "no job.interrupted event"
integrity_ok

# --- SIGTERM mid-write ------------------------------------------------------------
stop_daemon 0
dd if=/dev/zero of="$A/flash.bin" bs=4096 seek=$((0x10000 / 4096)) count=16 conv=notrunc status=none
start_daemon "$SLOW"
wait_writing
stop_daemon 0
row=$(db "SELECT state, error_stage, error_message FROM jobs WHERE id = $LAST_JOB")
[ "$row" = "cancelled|write|daemon stopping (during write)" ] || fail "job after SIGTERM: $row"
grep -q 'stopping: cancelling 1 running job' "$DAEMON_LOG" || fail "stop not logged"
integrity_ok

# --- the board vanishes mid-write ------------------------------------------------
start_daemon "$SLOW"
wait_writing
kill -KILL "$APID"
wait "$APID" 2>/dev/null || true
wait_sql "SELECT state || '|' || error_stage || '|' || error_message FROM jobs WHERE id = $LAST_JOB" \
    "failed|write|board removed during write" 30
wait_sql "SELECT count(*) FROM events WHERE kind = 'port.removed'" 1 10
[ "$(grep -c 'failed: board removed during write' "$DAEMON_LOG")" = 1 ] || fail "removal must be logged once"
kill -0 "$DAEMON_PID" || fail "daemon died when a board vanished"
njobs=$(db "SELECT count(*) FROM jobs")

# --- the port comes back (a new board on the same pty path) -----------------------
cp "$FAST" "$SLOW" # same path, fast baud: the reload applies to the next job
kill -HUP "$DAEMON_PID"
wait_log 'configuration reloaded' 10
sleep 1.5
[ "$(db "SELECT count(*) FROM jobs")" = "$njobs" ] || fail "a job started on an absent port"
rm -f "$A/ready"
"$ESP_SIM" --chip esp32 --dir "$A" --link-speed 1 --stub-dir "$STUB_DIR" >"$A/sim2.stdout" 2>"$A/sim2.stderr" &
SIM_PIDS+=($!)
SIM_DIRS+=("$A")
wait_sql "SELECT state FROM jobs WHERE id = $LAST_JOB AND id > $njobs" passed 90
flash_region_equals "$A" 0x10000 "$FW/app.bin"
stop_daemon 0
integrity_ok
done_ok

#!/usr/bin/env bash
# bench_daemon: the daemon benchmark of issues 3 and 11. Not part of CTest.
#
# espstationd runs inside a umockdev testbed (tests/umock/umock_station) with
# its real libudev monitor; virtual ESP32 boards (esp_sim --link-speed 1, the
# flasher stub from the build's ESPSTATION_STUB_DIR) are plugged through the
# harness's control FIFO. Per run, two sessions, each a fresh harness and
# daemon on the same data dir (the catalog is imported once, up front):
#   single  one board plugged alone
#   burst   N boards (default 32) plugged at once: the N "add" commands go
#           to the FIFO in one write, the harness sends the uevents back to back
# Every board flashes the same 3-region set (bench/mkbenchset.py: 24 KiB
# bootloader, 3 KiB partition table, 1 MiB app, about half compressible) at
# the profile baud (default 921600).
#
# Figures (bench/bench_daemon_report.py computes and prints them):
#   wall     first add uevent -> last job ended (jobs.ended_at), ratio burst/single;
#            slowest: the longest own add -> own job end of any board, ratio too
#   cpu      daemon utime+stime (/proc/PID/stat) from just before the first add to
#            when all jobs are seen done, / wall / boards: % of one core per board
#   rss      VmHWM of the daemon (/proc/PID/status), read before it is stopped
#   limit    per board: the job's physical limit, SYNC exchange and the commands
#            before CHANGE_BAUDRATE at 115200 (sim.log) + the rest of the job's
#            wire bytes (jobs.wire_bytes) at the profile baud; limit% = limit / job
#   sims     CPU of the esp_sims and of the harness, and of the whole machine
#            (/proc/stat) over the same window, to judge the daemon's figure
#   deflate  compressions counted by bench/libcount_deflate.so (LD_PRELOAD) in
#            the import process and in the daemon
#   add->SYNC per board: the add uevent (umock.log, harness clock) to the first
#            byte of the first SYNC frame at the board (sim.log with --log-mono),
#            both on CLOCK_MONOTONIC; raw, and net of the reset sequence's sleeps
#            (see the README section "bench_daemon")
#
# Usage: bench/bench_daemon.sh [--build DIR] [--runs N] [--boards N] [--baud B]
#                              [--app-size BYTES] [--timeout S] [--idle-load L [--idle-wait S]]
#                              [--keep]
#   --build DIR   build tree with daemon/espstationd, tests/esp_sim,
#                 tests/umock/umock_station, bench/libcount_deflate.so
#                 (default $BUILD_DIR, else build/normal, else the newest build/*/ with all)
#   --runs N      single+burst pairs to run (default 2)
#   --idle-load L before each session, wait (up to --idle-wait S, default 600)
#                 until the 1-minute load average is below L; noted in the figures
#   --keep        keep the work directory (also KEEP_TMP=1)
# Needs umockdev (umockdev-wrapper), sqlite3, python3. Use an optimised,
# non-sanitizer build for representative figures.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
RUNS=2
BOARDS=32
BAUD=921600
APP_SIZE=1048576
TIMEOUT=300
IDLE_LOAD=""
IDLE_WAIT=600
KEEP=${KEEP_TMP:-}

while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --boards) BOARDS=$2; shift 2 ;;
    --baud) BAUD=$2; shift 2 ;;
    --app-size) APP_SIZE=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --idle-load) IDLE_LOAD=$2; shift 2 ;;
    --idle-wait) IDLE_WAIT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "bench_daemon: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ "$BOARDS" -lt 1 ] || [ "$BOARDS" -gt 99 ]; then
    echo "bench_daemon: --boards must be 1..99" >&2
    exit 2
fi

have_all() {
    [ -x "$1/daemon/espstationd" ] && [ -x "$1/tests/esp_sim" ] &&
        [ -x "$1/tests/umock/umock_station" ] && [ -f "$1/bench/libcount_deflate.so" ]
}
if [ -z "$BUILD" ]; then
    if have_all "$ROOT/build/normal"; then
        BUILD=$ROOT/build/normal
    else
        BUILD=$(for d in "$ROOT"/build/*/; do have_all "$d" && echo "${d%/}"; done |
            xargs -r ls -dt 2>/dev/null | head -1 || true)
    fi
fi
if [ -z "$BUILD" ] || ! have_all "$BUILD"; then
    echo "bench_daemon: no build tree with espstationd, esp_sim, umock_station and libcount_deflate.so (--build DIR)" >&2
    exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
for t in umockdev-wrapper sqlite3 python3; do
    command -v "$t" >/dev/null || { echo "bench_daemon: $t not found" >&2; exit 1; }
done
DAEMON=$BUILD/daemon/espstationd
ESP_SIM=$BUILD/tests/esp_sim
UMOCK=$BUILD/tests/umock/umock_station
SHIM=$BUILD/bench/libcount_deflate.so
STUB_DIR=${STUB_DIR:-$(sed -n 's/^ESPSTATION_STUB_DIR:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)}
if [ -z "$STUB_DIR" ] || [ ! -f "$STUB_DIR/esp32.json" ]; then
    echo "bench_daemon: no flasher stubs (ESPSTATION_STUB_DIR of $BUILD, or \$STUB_DIR)" >&2
    exit 1
fi

# Short path: the sims' DIR/<board>/tty.modem sockets must fit in sun_path.
WORK=$(mktemp -d /tmp/bench_daemon.XXXXXX)
UMOCK_PID=""
DAEMON_PID=""
SESSION=""
FAILED=0

log() { printf '[bench_daemon] %s\n' "$*" >&2; }

# Stops what this script started: the harness (it stops the daemon and the
# sims), then any daemon or sim of the session still alive (by pid, from the
# harness log), then the harness's testbed directory if it was left behind.
stop_session() {
    if [ -n "$UMOCK_PID" ] && kill -0 "$UMOCK_PID" 2>/dev/null; then
        kill -TERM "$UMOCK_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$UMOCK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$UMOCK_PID" 2>/dev/null || true
        wait "$UMOCK_PID" 2>/dev/null || true
    fi
    UMOCK_PID=""
    exec 9>&- 2>/dev/null || true
    if [ -n "$SESSION" ] && [ -f "$SESSION/umock.log" ]; then
        local p
        for p in $DAEMON_PID $(sed -n 's/.* ok add .* sim_pid=\([0-9]*\)$/\1/p' "$SESSION/umock.log"); do
            if [ -n "$p" ] && [ -d "/proc/$p" ]; then kill -KILL "$p" 2>/dev/null || true; fi
        done
        local short
        short=$(readlink "$SESSION/tmp" 2>/dev/null || true)
        case $short in /tmp/umock.?*) rm -rf "$short" ;; esac
    fi
    DAEMON_PID=""
}

cleanup() {
    local rc=$?
    stop_session
    if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
        log "failed (status $rc)"
    fi
    if [ -n "$KEEP" ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    FAILED=1
    log "FAIL: $*"
    if [ -n "$SESSION" ]; then
        log "--- umock.log (tail)"
        tail -n 20 "$SESSION/umock.log" >&2 2>/dev/null || true
        log "--- program.log (tail)"
        tail -n 40 "$SESSION/program.log" >&2 2>/dev/null || true
    fi
    exit 1
}

# ---- firmware set, config, one import --------------------------------------

python3 "$ROOT/bench/mkbenchset.py" --out "$WORK/fw" --app-size "$APP_SIZE"
slots=""
for n in $(seq "$BOARDS"); do
    slots="$slots${slots:+, }{\"id_path\": \"pci-0000:00:14.0-usb-0:1.$n:1.0\", \"label\": \"A$n\"}"
done
cat >"$WORK/station.json" <<EOJ
{"data_dir": "$WORK/data", "stub_dir": "$STUB_DIR", "listen": "127.0.0.1:0",
 "slots": [$slots],
 "profiles": {"line": {"firmware": {"esp32": "benchfw@1.0.0"}, "baud": $BAUD}},
 "active_profile": "line", "max_parallel": $BOARDS}
EOJ
mkdir -p "$WORK/import"
COUNT_DEFLATE_DIR=$WORK/import LD_PRELOAD=$SHIM \
    "$DAEMON" --config "$WORK/station.json" --import-firmware "$WORK/fw" >"$WORK/import.log" 2>&1 ||
    fail "firmware import failed: $(cat "$WORK/import.log")"
DB=$WORK/data/records.db
sql() { sqlite3 -batch -noheader "$DB" "$@"; }
# the records DB may not exist before the first daemon start
base_job() { sql "select coalesce(max(id), 0) from jobs" 2>/dev/null || echo 0; }

mono_real() { python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC), time.time_ns())'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# whole machine: "busy total" jiffies (busy = all but idle and iowait)
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# sum of utime+stime over the session's sims (pids from the harness log), still running
sims_ticks() {
    local p t=0 n=0
    while read -r p; do
        if [ -r "/proc/$p/stat" ]; then
            t=$((t + $(cpu_ticks "$p")))
            n=$((n + 1))
        fi
    done < <(sed -n 's/.* ok add .* sim_pid=\([0-9]*\)$/\1/p' "$1/umock.log")
    echo "$t $n"
}

# session NAME BOARDS RUN: one harness + daemon, BOARDS boards plugged at once.
session() {
    local name=$1 nb=$2 run=$3
    SESSION=$WORK/$name
    mkdir -p "$SESSION/cnt"
    if [ -n "$IDLE_LOAD" ]; then
        local until=$((SECONDS + IDLE_WAIT))
        while awk -v l="$IDLE_LOAD" '{ exit !($1 >= l) }' /proc/loadavg && [ "$SECONDS" -lt "$until" ]; do
            sleep 5
        done
        log "$name: load average $(cut -d' ' -f1-3 /proc/loadavg) (wanted < $IDLE_LOAD)"
    fi
    LOADAVG0=$(cut -d' ' -f1-3 /proc/loadavg)
    local base
    base=$(base_job)
    COUNT_DEFLATE_DIR=$SESSION/cnt LD_PRELOAD=$SHIM \
        umockdev-wrapper "$UMOCK" --sim "$ESP_SIM" --workdir "$SESSION" -- \
        "$DAEMON" --config "$WORK/station.json" --port-file "$SESSION/port" \
        >"$SESSION/harness.out" 2>&1 &
    UMOCK_PID=$!
    for _ in $(seq 200); do
        [ -p "$SESSION/ctl" ] && grep -q '^[0-9.]* ready' "$SESSION/umock.log" 2>/dev/null && break
        kill -0 "$UMOCK_PID" 2>/dev/null || fail "umock_station exited: $(cat "$SESSION/harness.out")"
        sleep 0.05
    done
    exec 9>"$SESSION/ctl"
    printf 'start\n' >&9
    for _ in $(seq 200); do
        [ -s "$SESSION/port" ] && break
        sleep 0.05
    done
    [ -s "$SESSION/port" ] || fail "espstationd did not start listening"
    DAEMON_PID=$(sed -n 's/.* ok start pid=\([0-9]*\)$/\1/p' "$SESSION/umock.log" | tail -1)
    if [ -z "$DAEMON_PID" ] || [ ! -d "/proc/$DAEMON_PID" ]; then fail "no daemon pid"; fi
    sleep 1 # the station starts its udev monitor right after listening; let it settle

    local cmds="" n mac
    for n in $(seq "$nb"); do
        mac=$(printf '24:6f:28:%02x:%02x:%02x' "$run" "$nb" "$n")
        cmds="${cmds}add b$n esp32 10c4:ea60 pci-0000:00:14.0-usb-0:1.$n:1.0 --strict-reset --link-speed 1 --stub-dir $STUB_DIR --log-mono --mac $mac
"
    done
    local clk0 cpu0 hcpu0 mach0
    clk0=$(mono_real)
    cpu0=$(cpu_ticks "$DAEMON_PID")
    hcpu0=$(cpu_ticks "$UMOCK_PID")
    mach0=$(machine_ticks)
    printf '%s' "$cmds" >&9 # one write: the whole burst

    local done_n=0 bad=0 deadline=$((SECONDS + TIMEOUT))
    while :; do
        done_n=$(sql "select count(*) from jobs where id > $base and state = 'passed'" 2>/dev/null || echo 0)
        bad=$(sql "select count(*) from jobs where id > $base and state in ('failed', 'cancelled', 'interrupted', 'skipped')" 2>/dev/null || echo 0)
        [ "$done_n" -ge "$nb" ] && break
        [ "$bad" -gt 0 ] && fail "$name: a job failed: $(sql "select id, slot, state, stage, error_message from jobs where id > $base and state <> 'passed'" 2>/dev/null)"
        [ "$SECONDS" -lt "$deadline" ] || fail "$name: timeout: $done_n of $nb jobs passed after ${TIMEOUT}s"
        grep -q ' error ' "$SESSION/umock.log" && fail "$name: the harness reported an error"
        sleep 0.1
    done
    local cpu1 clk1 hwm rss hcpu1 mach1 sims1
    cpu1=$(cpu_ticks "$DAEMON_PID")
    clk1=$(mono_real)
    hcpu1=$(cpu_ticks "$UMOCK_PID")
    mach1=$(machine_ticks)
    sims1=$(sims_ticks "$SESSION")
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")
    sql "select id, slot, state, started_at, ended_at, kbps, seconds, bytes, wire_bytes from jobs where id > $base order by id" \
        >"$SESSION/jobs.txt"
    cat >"$SESSION/facts" <<EOF
name=$name
run=$run
boards=$nb
daemon_pid=$DAEMON_PID
clk_hz=$(getconf CLK_TCK)
clk0=$clk0
clk1=$clk1
cpu0=$cpu0
cpu1=$cpu1
vmhwm_kib=$hwm
vmrss_kib=$rss
baud=$BAUD
harness_cpu0=$hcpu0
harness_cpu1=$hcpu1
machine0=$mach0
machine1=$mach1
sims_cpu1=$sims1
loadavg0=$LOADAVG0
EOF
    printf 'quit\n' >&9
    local rc=0
    wait "$UMOCK_PID" || rc=$?
    UMOCK_PID=""
    exec 9>&-
    [ "$rc" = 0 ] || fail "$name: espstationd exited with status $rc"
    python3 "$ROOT/bench/bench_daemon_report.py" session "$SESSION" >&2
    SESSION=""
    DAEMON_PID=""
}

log "build $BUILD, $RUNS run(s), $BOARDS boards, baud $BAUD, app $APP_SIZE bytes, work $WORK"
sessions=()
for r in $(seq "$RUNS"); do
    session "r$r-single" 1 "$r"
    sessions+=("$WORK/r$r-single")
    session "r$r-burst" "$BOARDS" "$r"
    sessions+=("$WORK/r$r-burst")
done
python3 "$ROOT/bench/bench_daemon_report.py" table "$WORK/import" "${sessions[@]}"

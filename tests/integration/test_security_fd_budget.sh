#!/usr/bin/env bash
# test_security_fd_budget: idle connections from anyone on the network must not take
# the station down (issue 9, finding 1). The daemon runs with a small open-file limit
# (soft 256, hard 512: it raises the soft one and derives small connection caps from
# what is left after the reserve for its jobs). A client holds far more idle
# connections than both caps -- and than the whole limit -- on the REST API and the
# OTA endpoint. Then:
#   - the daemon holds no more sockets than its two caps allow, and does not spin
#     (the old OTA listener polled accept() -> EMFILE at 81-99 % of a core);
#   - a board plugged (attached) now is flashed: its job passes (the old daemon
#     failed it with "cannot start a worker thread: Cannot allocate memory");
#   - GET /api/v1/slots and the OTA endpoint answer within 1 s (a newcomer takes
#     the place of the longest-idle connection);
#   - after the idle timeouts (api/ota.idle_timeout_s, 10 s here) the station has
#     closed every held connection;
#   - when accept() finds no descriptor at all (the soft limit lowered under the
#     running daemon) while clients connect to both servers, neither spins, and both
#     serve again once descriptors are back.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

N_API=600 # the API cap derived below is ~150, the whole limit 512
N_OTA=300 # the OTA cap ~40
# Long enough for the checks below to run while the connections are held (they take
# about 4 s), short enough to wait for.
IDLE_S=10

import_esp32_app 41

# The daemon under a small open-file limit: soft 256 (it raises it), hard 512. exec
# keeps the pid, so the helpers stop and watch the daemon itself.
REAL_DAEMON=$ESPSTATIOND
ESPSTATIOND=$WORK/espstationd-limited
cat >"$ESPSTATIOND" <<SH
#!/bin/sh
ulimit -S -n 256 && ulimit -H -n 512 && exec "$REAL_DAEMON" "\$@"
SH
chmod +x "$ESPSTATIOND"

OTA_PORT=$(python3 "$(dirname "$0")/free_port.py")
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"max_parallel": 2,
 "api": {"idle_timeout_s": $IDLE_S},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "idle_timeout_s": $IDLE_S},
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}, "retries": 0}}}
JSON
start_api_daemon "$CFG"
PID=$DAEMON_PID
wait_log 'open files: limit' 10
line=$(grep -E 'open files: limit' "$DAEMON_LOG" | head -n 1)
log "$line"
[[ $line =~ limit\ 512\ \(raised\ from\ 256,\ hard\ 512\) ]] || fail "soft limit not raised to the hard one: $line"
[[ $line =~ REST\ API\ ([0-9]+)\ connections ]] || fail "no REST API cap in: $line"
API_CAP=${BASH_REMATCH[1]}
[[ $line =~ OTA\ endpoint\ ([0-9]+)\ connections ]] || fail "no OTA cap in: $line"
OTA_CAP=${BASH_REMATCH[1]}
[ "$API_CAP" -lt 1000 ] && [ "$OTA_CAP" -lt 256 ] || fail "caps not lowered to the budget: $line"
[ $((2 * API_CAP + OTA_CAP)) -lt 512 ] || fail "caps exceed the limit: $line"

# --- hold idle connections ----------------------------------------------------------------
# hold_conns.py: opens them, writes DIR/ready, then DIR/state "open N closed M failed K"
HOLD_PY=$(dirname "$0")/hold_conns.py
HOLD=$WORK/hold
mkdir -p "$HOLD"
API_PORT=${API##*:}
python3 "$HOLD_PY" "$API_PORT" "$OTA_PORT" $N_API $N_OTA "$HOLD" 2>"$WORK/hold.err" &
HOLD_PID=$!
deadline=$((SECONDS + 30))
until [ -s "$HOLD/ready" ]; do
    kill -0 $HOLD_PID 2>/dev/null || fail "hold.py exited: $(cat "$WORK/hold.err")"
    [ $SECONDS -lt $deadline ] || fail "hold.py did not connect within 30 s"
    sleep 0.1
done
log "holder: $(cat "$HOLD/ready") (API cap $API_CAP, OTA cap $OTA_CAP)"
read -r _ held _ _ <"$HOLD/ready"
[ "$held" -gt $((2 * (API_CAP + OTA_CAP))) ] || fail "the holder got only $held connections: $(cat "$HOLD/ready")"
sleep 1 # the daemon takes what it will take

# --- the station is not spent, and does not spin --------------------------------------------
sockets=$(find /proc/"$PID"/fd -lname 'socket:*' 2>/dev/null | wc -l)
fds=$(find /proc/"$PID"/fd -mindepth 1 2>/dev/null | wc -l)
log "daemon: $fds descriptors, $sockets sockets while held"
[ "$sockets" -le $((API_CAP + OTA_CAP + 8)) ] ||
    fail "the daemon holds $sockets sockets, more than its caps ($API_CAP + $OTA_CAP) allow"
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
c0=$(cpu)
sleep 2
c1=$(cpu)
pct=$(((c1 - c0) * 100 / (2 * tck)))
log "daemon CPU while held: $pct % of a core"
[ "$pct" -lt 20 ] || fail "the daemon used $pct % of a core over 2 s while connections were held (a busy loop?)"

# --- both servers answer a newcomer within 1 s ----------------------------------------------
code=$(curl -sS --max-time 1 -o "$WORK/slots.json" -w '%{http_code}' "$API/api/v1/slots") ||
    fail "GET /api/v1/slots: no answer within 1 s while connections are held"
[ "$code" = 200 ] || fail "GET /api/v1/slots: HTTP $code"
# Whatever the serving policy answers (image, 403, 404): an answer, at once.
code=$(curl -sS --max-time 1 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$OTA_PORT/ota/fw/app/1.0.bin") ||
    fail "the OTA endpoint did not answer within 1 s while connections are held"
[[ $code =~ ^[2-5][0-9][0-9]$ ]] || fail "OTA endpoint: no HTTP answer ($code)"

# --- a board plugged now is flashed ---------------------------------------------------------
start_sim esp32
code=$(curl -sS --max-time 5 -o "$WORK/attach.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data "{\"uri\": \"$SIM_DIR/tty\", \"label\": \"A1\"}" \
    "$API/api/v1/ports") || fail "attach: no answer within 5 s while connections are held"
[ "$code" = 201 ] || [ "$code" = 200 ] || fail "attach: HTTP $code $(cat "$WORK/attach.json")"
# The job started while the caps were still full of held connections.
state=$(cat "$HOLD/state")
read -r _ still _ <<<"$state"
log "holder when the board was attached: $state"
[ "$still" -ge $((API_CAP + OTA_CAP - 8)) ] ||
    fail "only $still held connections left when the board was attached (test too slow for the idle timeout?)"
wait_sql "SELECT state FROM jobs WHERE kind = 'flash' ORDER BY id DESC LIMIT 1;" passed 90
flash_region_equals "$SIM_DIR" 0x10000 "$FW/app.bin"
code=$(curl -sS --max-time 5 -o "$WORK/slots.json" -w '%{http_code}' "$API/api/v1/slots") ||
    fail "GET /api/v1/slots failed after the job"
jq -e '[.slots[] | select(.label == "A1")] | length == 1' "$WORK/slots.json" >/dev/null ||
    fail "slot A1 not in GET /api/v1/slots: $(head -c 400 "$WORK/slots.json")"

# --- the station closes the held connections after the idle timeout -------------------------
deadline=$((SECONDS + IDLE_S + 12))
while :; do
    state=$(cat "$HOLD/state" 2>/dev/null || true)
    [[ $state =~ ^open\ 0\  ]] && break
    [ $SECONDS -lt $deadline ] || fail "held connections still open $((IDLE_S + 12)) s later (idle timeout $IDLE_S s): $state"
    sleep 0.2
done
log "holder: $state"
wait $HOLD_PID 2>/dev/null || true

! grep -Eq 'Too many open files|Cannot allocate memory|cannot start the job' "$DAEMON_LOG" ||
    fail "the daemon ran out of descriptors: $(grep -E 'Too many open files|Cannot allocate memory|cannot start' "$DAEMON_LOG" | head -n 3)"
grep -q 'REST API: .*its cap' "$DAEMON_LOG" || fail "no warning that the REST API was at its cap"
grep -q 'OTA endpoint: .*its cap' "$DAEMON_LOG" || fail "no warning that the OTA endpoint was at its cap"

# --- no descriptor left at all: neither listener spins -----------------------------------------
# Something outside the budget took the descriptors: here the soft limit is lowered under
# the running daemon to about what it has open, so accept() fails with EMFILE on both
# servers (the OTA listener rests; libmicrohttpd stops accepting until a run finds room).
fds=$(find /proc/"$PID"/fd -mindepth 1 2>/dev/null | wc -l)
prlimit --pid "$PID" --nofile=$((fds + 1)):512 || fail "prlimit --pid failed"
HOLD=$WORK/hold2
mkdir -p "$HOLD"
python3 "$HOLD_PY" "$API_PORT" "$OTA_PORT" 20 40 "$HOLD" 2>"$WORK/hold2.err" &
HOLD_PID=$!
deadline=$((SECONDS + 30))
until [ -s "$HOLD/ready" ]; do
    kill -0 $HOLD_PID 2>/dev/null || fail "hold.py exited: $(cat "$WORK/hold2.err")"
    [ $SECONDS -lt $deadline ] || fail "hold.py did not connect within 30 s"
    sleep 0.1
done
wait_log 'OTA endpoint: cannot accept a connection \(Too many open files\)' 10
c0=$(cpu)
sleep 2
c1=$(cpu)
pct=$(((c1 - c0) * 100 / (2 * tck)))
log "daemon CPU while accept() finds no descriptor: $pct % of a core"
[ "$pct" -lt 20 ] || fail "the daemon used $pct % of a core over 2 s while accept() failed with EMFILE (a busy loop?)"
# Descriptors back: the endpoint serves again on its own.
prlimit --pid "$PID" --nofile=512:512 || fail "prlimit --pid failed"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$OTA_PORT/ota/fw/app/1.0.bin") ||
    fail "the OTA endpoint did not answer within 5 s once descriptors were back"
[[ $code =~ ^[2-5][0-9][0-9]$ ]] || fail "OTA endpoint: no HTTP answer ($code) once descriptors were back"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$API/api/v1/slots") ||
    fail "GET /api/v1/slots: no answer within 5 s once descriptors were back"
[ "$code" = 200 ] || fail "GET /api/v1/slots: HTTP $code once descriptors were back"
touch "$HOLD/stop"
wait $HOLD_PID 2>/dev/null || true

stop_daemon
integrity_ok
done_ok

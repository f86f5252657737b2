#!/usr/bin/env bash
# test_security_push_room: the open-file budget keeps descriptors for FD_BUDGET_PUSHES (8)
# OTA pushes beside the serial jobs (issue 9, finding 1: "a reserve that running and new
# jobs always get"). Pushes past that ran on the descriptors a board plugged meanwhile
# needs when clients hold the servers' caps (a bulk may ask for concurrency 64). So:
#   - 12 boards with confirmed addresses (check-ins with the profile's checkin_auth);
#     their web-form port is a listener that takes each push's connection and never
#     answers, so every push started stays running;
#   - 12 REST pushes: 8 start (202), the 9th..12th are refused with 503 "busy" naming
#     the open files, and no 9th connection reaches the boards;
#   - the listener then ends every connection (the pushes fail at once), and a bulk
#     over the 12 boards with concurrency 12 runs at most 8 pushes at a time, yet every
#     board gets its push (the bulk waits for a place, it does not fail the board).
# On the daemon before the cap the 9th..12th REST pushes started (202) and the bulk ran
# 12 at once.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

N=12
ROOM=8 # FD_BUDGET_PUSHES (daemon/fdbudget.h)
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 81
fw_set "$WORK/fw2" demo 2.0.0 esp32 61000 82
OTA_PORT=$(free_port)
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"ota_firmware": {"esp32": "demo@1.0.0"}, "ota_password": "web-pw-9",
                       $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$CFG"
upload_fw "$WORK/fw1"
upload_fw "$WORK/fw2"

# --- 12 boards, each confirmed at its own address by an authenticated check-in ---------------
for i in $(seq 0 $((N - 1))); do
    ans=$(python3 "$(dirname "$0")/checkin_from.py" "$OTA_PORT" "$TNET.$((100 + i))" \
        "$(printf '24:6f:28:00:9b:%02x' "$i")" 1.0.0 "$CHECKIN_USER:$CHECKIN_PASS")
    [ "$ans" = 304 ] || fail "check-in $i: '$ans'"
done
[ "$(db "SELECT count(*) FROM boards WHERE mac LIKE '24:6f:28:00:9b:%' AND ip_confirmed = 1;")" = $N ] ||
    fail "boards with confirmed addresses: $(db "SELECT mac, ip, ip_confirmed FROM boards;")"

# --- the boards' web-form port: takes connections, answers none until WORK/release ----------
# Writes "now N max M total T" to WORK/listener.state (open connections, most open at once,
# accepted in all). After WORK/release it ends every connection and each new one at once.
cat >"$WORK/listener.py" <<'PY'
import os, select, socket, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port))  # port 0: the kernel's pick (a port chosen ahead could be taken)
ls.listen(64)
with open(os.path.join(d, "listener.port.tmp"), "w") as f:
    f.write("%d\n" % ls.getsockname()[1])
os.rename(os.path.join(d, "listener.port.tmp"), os.path.join(d, "listener.port"))
open(os.path.join(d, "listener.ready"), "w").close()
conns, most, total = [], 0, 0
def put():
    with open(os.path.join(d, "listener.tmp"), "w") as f:
        f.write("now %d max %d total %d\n" % (len(conns), most, total))
    os.rename(os.path.join(d, "listener.tmp"), os.path.join(d, "listener.state"))
put()
end = time.time() + 120
while time.time() < end and not os.path.exists(os.path.join(d, "listener.stop")):
    r, _, _ = select.select([ls] + conns, [], [], 0.1)
    released = os.path.exists(os.path.join(d, "release"))
    for s in r:
        if s is ls:
            c, _ = ls.accept()
            total += 1
            conns.append(c)
            most = max(most, len(conns))
        else:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                conns.remove(s)
                s.close()
    if released:
        for c in conns:
            c.close()
        conns = []
    put()
PY
python3 "$WORK/listener.py" 0 "$WORK" 2>"$WORK/listener.err" &
NETDEV_PIDS+=("$!")
wait_ready "$WORK/listener.ready" 10 "the listener" "$WORK/listener.err"
WPORT=$(cat "$WORK/listener.port") # the boards' web-form port
lstate() { cat "$WORK/listener.state"; }
wait_listener() { # wait_listener REGEX SECONDS
    local deadline=$((SECONDS + $2))
    until [[ $(lstate) =~ $1 ]]; do
        [ $SECONDS -lt $deadline ] || fail "listener: '$(lstate)', want /$1/ within $2 s"
        sleep 0.1
    done
}

# --- 12 REST pushes: 8 start, the rest are refused -------------------------------------------
started=0
for i in $(seq 0 $((N - 1))); do
    mac=$(printf '24:6f:28:00:9b:%02x' "$i")
    apij POST "/api/v1/boards/$mac/ota" "{\"method\": \"webform\", \"firmware\": \"demo@2.0.0\", \"port\": $WPORT}"
    if [ $i -lt $ROOM ]; then
        expect_status 202 "push $((i + 1)) of $N"
        started=$((started + 1))
    else
        expect_error 503 busy
        jqr .error.message | grepq 'pushes are running.*open files' || fail "push $((i + 1)): $RESP"
    fi
done
wait_listener "^now $ROOM " 20
sleep 0.5 # a 9th connection, were there one, would have come by now
[[ $(lstate) =~ ^now\ $ROOM\ max\ $ROOM\ total\ $ROOM$ ]] || fail "listener while 8 pushes run: $(lstate)"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push';")" = $ROOM ] ||
    fail "push jobs recorded: $(db "SELECT count(*) FROM jobs WHERE kind = 'ota-push';")"

# --- release them; a bulk over all 12 with concurrency 12 --------------------------------------
touch "$WORK/release"
wait_sql "SELECT count(*) FROM jobs WHERE kind = 'ota-push' AND ended_at IS NOT NULL;" $ROOM 30
rm -f "$WORK/release"
before=$(lstate)
log "listener after the REST pushes: $before"
MACS=$(for i in $(seq 0 $((N - 1))); do printf '"24:6f:28:00:9b:%02x",' "$i"; done)
apij POST /api/v1/bulk "{\"select\": {\"macs\": [${MACS%,}]}, \"firmware\": \"demo@2.0.0\",
  \"method\": \"webform\", \"port\": $WPORT, \"concurrency\": $N, \"retries\": 0,
  \"max_failure_rate\": 1}"
expect_status 202
BULK=$(jqr .id)
wait_listener "^now $ROOM max $ROOM total $((2 * ROOM))$" 20
sleep 0.5
[[ $(lstate) =~ ^now\ $ROOM\ max\ $ROOM\ total\ $((2 * ROOM))$ ]] ||
    fail "the bulk ran more than $ROOM pushes at once: $(lstate)"
api GET "/api/v1/bulk/$BULK"
expect_jq ".state == \"running\" and .counts.running == $ROOM and .counts.pending == $((N - ROOM)) and .counts.failed == 0"
# the pushes end: the waiting boards start in the places they leave
touch "$WORK/release"
wait_api "/api/v1/bulk/$BULK" ".state != \"running\"" 60
api GET "/api/v1/bulk/$BULK"
expect_jq ".counts.total == $N and .counts.pending == 0 and .counts.failed == $N and ([.boards[] | select(.job_id == null)] | length) == 0"
[[ $(lstate) =~ total\ $((ROOM + N))$ ]] || fail "every board of the bulk got its push: $(lstate)"
[[ $(lstate) =~ max\ $ROOM\  ]] || fail "more than $ROOM pushes at once: $(lstate)"
touch "$WORK/listener.stop"

stop_daemon
integrity_ok
done_ok

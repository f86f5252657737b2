#!/usr/bin/env bash
# test_ota_daemon_relisten: ota.listen changes on SIGHUP, over real sockets.
#  - the config file's ota.listen moves from port P1 to P2 and the daemon gets
#    SIGHUP: a check-in on P2 is answered, P1 refuses connections, ota.port
#    says P2, and a connection accepted on P1 before the reload is still
#    answered afterwards (in-flight requests finish on their own sockets);
#  - a new address that cannot be bound (the REST API's own port) keeps the old
#    listener, logs an error saying what to do, and leaves ota.port alone;
#  - ota.listen removed: the endpoint closes and ota.port is removed; put back:
#    it listens again.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

MAC=24:6F:28:00:10:01
# checkin PORT: one ESP32 updater check-in; prints the HTTP status (000: no connection).
checkin() {
    timeout 10 curl -sS -o /dev/null -w '%{http_code}' -H 'User-Agent: ESP32-http-Update' \
        -H "x-ESP32-STA-MAC: $MAC" -H 'x-ESP32-mode: sketch' -H 'x-ESP32-version: 0.1' \
        "http://127.0.0.1:$1/ota/update" 2>/dev/null || true
}
# config PORT|null: writes the config file with that ota.listen.
config() {
    local listen=null
    [ "$1" = null ] || listen="\"127.0.0.1:$1\""
    cat >"$CFG.tmp" <<JSON
{"api": {"token": "t0k3n"}, "ota": {"listen": $listen, "unknown_boards": "enrol"}}
JSON
    mv "$CFG.tmp" "$CFG"
}
# reload PATTERN: SIGHUP, then waits for PATTERN in the daemon log after this point.
reload() {
    local mark
    mark=$(wc -l <"$DAEMON_LOG")
    kill -HUP "$DAEMON_PID"
    local deadline=$((SECONDS + 10))
    until tail -n +"$((mark + 1))" "$DAEMON_LOG" | grepq -E -- "$1"; do
        [ $SECONDS -lt $deadline ] || fail "no /$1/ in the daemon log after SIGHUP"
        sleep 0.05
    done
}

CFG=$WORK/station.json
P1=$(free_port)
P2=$(free_port)
[ "$P1" != "$P2" ] || P2=$(free_port)
config "$P1"
start_api_daemon "$CFG"
[ "$(ota_port_of_daemon)" = "$P1" ] || fail "ota.port is not $P1"
[ "$(checkin "$P1")" = 304 ] || fail "check-in on $P1 before the reload"

# A connection accepted on P1 before the reload, its request sent after it.
exec 3<>"/dev/tcp/127.0.0.1/$P1" || fail "cannot connect to $P1"

config "$P2"
reload "OTA update endpoint now on 127.0.0.1:$P2 \(was 127.0.0.1:$P1"
[ "$(ota_port_of_daemon)" = "$P2" ] || fail "ota.port is $(cat "$DATA_DIR/ota.port"), not $P2"
[ "$(checkin "$P2")" = 304 ] || fail "check-in on the new port $P2"
[ "$(checkin "$P1")" = 000 ] || fail "the old port $P1 still answers"
wait_sql "SELECT checkins FROM board_ota WHERE mac = '${MAC,,}';" 2 5

printf 'GET /ota/update HTTP/1.0\r\nUser-Agent: ESP32-http-Update\r\nx-ESP32-STA-MAC: %s\r\nx-ESP32-mode: sketch\r\n\r\n' "$MAC" >&3
answer=$(timeout 10 head -n1 <&3 | tr -d '\r') || true
exec 3<&-
[ "$answer" = "HTTP/1.0 304 Not Modified" ] || fail "the in-flight connection got '$answer'"

# An address that cannot be bound: the old listener stays.
APIPORT=${API##*:}
config "$APIPORT"
reload "cannot listen on 127.0.0.1:$APIPORT: Address already in use: keeping the OTA update endpoint on 127.0.0.1:$P2 \(choose a free address"
grep -q '<3>' <(grep "cannot listen on 127.0.0.1:$APIPORT" "$DAEMON_LOG") || fail "the bind failure is not logged as an error"
[ "$(ota_port_of_daemon)" = "$P2" ] || fail "ota.port changed after a failed bind"
[ "$(checkin "$P2")" = 304 ] || fail "the old listener is gone after a failed bind"
api GET /api/v1/boards
expect_status 200 "the REST API must keep its port"

# Removed: closed; put back: listening again.
config null
reload "ota.listen removed: the OTA update endpoint on 127.0.0.1:$P2 is closed"
[ ! -e "$DATA_DIR/ota.port" ] || fail "ota.port left behind"
[ "$(checkin "$P2")" = 000 ] || fail "the endpoint still answers without ota.listen"
config "$P1"
reload "OTA update endpoint now on 127.0.0.1:$P1"
[ "$(ota_port_of_daemon)" = "$P1" ] || fail "ota.port after re-enabling"
[ "$(checkin "$P1")" = 304 ] || fail "check-in after re-enabling"

stop_daemon
integrity_ok
done_ok

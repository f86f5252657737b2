#!/usr/bin/env bash
# test_daemon_mdns_avahi: ArduinoOTA discovery against a REAL avahi-daemon
# (test_daemon_mdns.sh uses a fake avahi-browse).
#
# Two private network namespaces joined by a veth pair (avahi ignores
# loopback): "board" holds an avahi-daemon whose host name is the ESP32's
# ArduinoOTA default (esp32-<mac hex>) and which advertises _arduino._tcp the
# way the Arduino cores do (TXT board, auth_upload, tcp_check, ssh_upload),
# plus an ESP8266 (host esp8266-<last 3 MAC bytes>, service name "Kitchen
# esp8266", TXT board="ESP8266_GENERIC" with its quotes), an unknown ESP32 and
# a service whose name needs every avahi escape (; . \ " UTF-8). These come
# from static service/host files: each avahi-daemon runs in its own mount
# namespace with a private /run (pid file) and /etc/avahi (config, services,
# hosts) bind-mounted from the work dir. "station" holds a second
# avahi-daemon on a private dbus system bus (dbus-daemon with a permissive
# policy, DBUS_SYSTEM_BUS_ADDRESS) and espstationd itself, which runs the real
# avahi-browse. The system's avahi/dbus (if any) are never touched.
#
# The daemon flashes both boards over serial (so they are known records), then
# discovery maps the advertisements: the records get the advertised IPv4
# addresses and go online (one board.online event each, source mdns); the
# unknown board is not enrolled.
#
# Needs root (ip netns, veth, mount namespaces) and avahi-daemon, avahi-utils,
# dbus, iproute2, util-linux (scripts/setup.sh). When a capability is missing
# it prints "SKIP: <why>" and exits 77 (CTest SKIP_RETURN_CODE).

skip() {
    echo "SKIP: $*"
    exit 77
}

for c in ip:iproute2 unshare:util-linux mount:util-linux avahi-daemon:avahi-daemon \
    avahi-browse:avahi-utils dbus-daemon:dbus; do
    command -v "${c%%:*}" >/dev/null 2>&1 ||
        skip "${c%%:*} not found (apt-get install ${c#*:}; scripts/setup.sh installs it)"
done
[ "$(id -u)" = 0 ] || skip "needs root for network and mount namespaces (running as uid $(id -u))"

source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

NS_STA=espst-sta-$$
NS_BRD=espst-brd-$$
VETH_S=es$$s
VETH_B=es$$b
NS_MADE=()
AV_PIDS=()

_avahi_cleanup() {
    local rc=$? pid ns
    # the daemon first (it may be running avahi-browse against the bus)
    if [ -n "${DAEMON_PID:-}" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    for pid in "${AV_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${AV_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${NS_MADE[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        local f
        for f in "$WORK"/avahi/*.log; do
            [ -f "$f" ] || continue
            printf -- '--- %s:\n' "$f" >&2
            tail -n 30 "$f" >&2 || true
        done
    fi
    if [ "$rc" -eq 0 ]; then
        _ota_cleanup
    else
        (exit "$rc") || _ota_cleanup # _ota_cleanup reads the status from $?
    fi
}
trap _avahi_cleanup EXIT

# ---- the two namespaces ---------------------------------------------------------------
# namespaces left by an earlier run that was killed (its pid is gone)
for ns in $(ip netns list 2>/dev/null | grep -oE '^espst-(sta|brd)-[0-9]+' || true); do
    kill -0 "${ns##*-}" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
done
err=$(ip netns add "$NS_STA" 2>&1) || skip "cannot create a network namespace (ip netns add: $err)"
NS_MADE+=("$NS_STA")
err=$(ip netns add "$NS_BRD" 2>&1) || skip "cannot create a network namespace (ip netns add: $err)"
NS_MADE+=("$NS_BRD")
err=$(ip link add "$VETH_S" type veth peer name "$VETH_B" 2>&1) ||
    skip "cannot create a veth pair (ip link add type veth: $err)"
err=$( {
    ip link set "$VETH_S" netns "$NS_STA" &&
        ip link set "$VETH_B" netns "$NS_BRD" &&
        ip -n "$NS_STA" addr add 10.77.0.1/24 dev "$VETH_S" &&
        ip -n "$NS_BRD" addr add 10.77.0.2/24 dev "$VETH_B" &&
        ip -n "$NS_STA" link set lo up && ip -n "$NS_BRD" link set lo up &&
        ip -n "$NS_STA" link set "$VETH_S" up && ip -n "$NS_BRD" link set "$VETH_B" up
} 2>&1) || skip "cannot configure the veth pair in the namespaces: $err"
ip -n "$NS_STA" link show "$VETH_S" | grepq MULTICAST ||
    skip "the veth interface has no MULTICAST flag: $(ip -n "$NS_STA" link show "$VETH_S")"

AV=$WORK/avahi
mkdir -p "$AV/sta/etc/services" "$AV/brd/etc/services"
: >"$AV/sta/etc/hosts"
# a private system bus for the station side (avahi-daemon, avahi-browse)
cat >"$AV/dbus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$AV/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
XML
BUS="unix:path=$AV/bus"

# avahi_conf HOSTNAME IFACE DBUS(yes|no)
avahi_conf() {
    cat <<INI
[server]
host-name=$1
domain-name=local
use-ipv4=yes
use-ipv6=no
allow-interfaces=$2
enable-dbus=$3
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes
INI
}
avahi_conf station "$VETH_S" yes >"$AV/sta/etc/avahi-daemon.conf"
avahi_conf esp32-246f28005d01 "$VETH_B" no >"$AV/brd/etc/avahi-daemon.conf"

# service_file NAME PORT [HOST] TXT...
service_file() {
    local name=$1 port=$2 host=$3 t
    shift 3
    printf '<?xml version="1.0" standalone="no"?>\n<!DOCTYPE service-group SYSTEM "avahi-service.dtd">\n'
    printf '<service-group>\n  <name>%s</name>\n  <service protocol="ipv4">\n' "$name"
    printf '    <type>_arduino._tcp</type>\n    <port>%s</port>\n' "$port"
    [ -z "$host" ] || printf '    <host-name>%s</host-name>\n' "$host"
    for t in "$@"; do
        printf '    <txt-record>%s</txt-record>\n' "$t"
    done
    printf '  </service>\n</service-group>\n'
}
# the ESP32 itself (the daemon's host name, address 10.77.0.2)
service_file esp32-246f28005d01 3232 "" board=esp32 tcp_check=no ssh_upload=no auth_upload=no \
    >"$AV/brd/etc/services/esp32.service"
# an ESP8266 at 10.77.0.8 (static host record), custom service name
service_file 'Kitchen esp8266' 8266 esp8266-005d08.local tcp_check=no ssh_upload=no \
    'board=&quot;ESP8266_GENERIC&quot;' auth_upload=no >"$AV/brd/etc/services/esp8266.service"
# a board the station does not know
service_file esp32-aaaaaaaaaaaa 3232 esp32-aaaaaaaaaaaa.local board=esp32 auth_upload=no \
    >"$AV/brd/etc/services/unknown.service"
# every escape avahi-browse applies, on the known ESP32's host
service_file 'a;b.c\d &quot;q&quot; é' 3232 "" 'board=a\b &quot;x&quot;;y&#9;z é' novalue \
    >"$AV/brd/etc/services/odd.service"
printf '10.77.0.8 esp8266-005d08.local\n10.77.0.9 esp32-aaaaaaaaaaaa.local\n' >"$AV/brd/etc/hosts"

# start_avahi NS SIDE [ENV...]: avahi-daemon in NS with a private /run and
# /etc/avahi (its own mount namespace); log in $AV/SIDE.log.
start_avahi() {
    local ns=$1 side=$2
    shift 2
    # shellcheck disable=SC2016 # $1 is expanded by the inner sh
    ip netns exec "$ns" unshare -m --propagation private env "$@" sh -c '
        mount -t tmpfs tmpfs /run && mkdir -p /run/avahi-daemon &&
        mount --bind "$1" /etc/avahi || exit 99
        exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f /etc/avahi/avahi-daemon.conf
    ' sh "$AV/$side/etc" >"$AV/$side.log" 2>&1 &
    AV_PIDS+=($!)
    local pid=$! deadline=$((SECONDS + 15)) rc
    until grep -q 'Server startup complete' "$AV/$side.log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && rc=0 || rc=$?
            [ "$rc" = 99 ] && skip "cannot set up a private mount namespace for avahi-daemon: $(cat "$AV/$side.log")"
            fail "avahi-daemon ($side) exited with $rc: $(cat "$AV/$side.log")"
        fi
        [ $SECONDS -lt $deadline ] || fail "avahi-daemon ($side) did not start: $(cat "$AV/$side.log")"
        sleep 0.1
    done
}

dbus-daemon --config-file="$AV/dbus.conf" --nofork --nopidfile >"$AV/dbus.log" 2>&1 &
AV_PIDS+=($!)
deadline=$((SECONDS + 10))
until [ -S "$AV/bus" ]; do
    [ $SECONDS -lt $deadline ] || fail "private dbus-daemon did not start: $(cat "$AV/dbus.log")"
    sleep 0.05
done
start_avahi "$NS_BRD" brd
start_avahi "$NS_STA" sta DBUS_SYSTEM_BUS_ADDRESS="$BUS"

# preflight: avahi-browse alone must see the boards across the veth (else the
# environment drops multicast between namespaces: skip, with the evidence)
browse() {
    ip netns exec "$NS_STA" env DBUS_SYSTEM_BUS_ADDRESS="$BUS" \
        timeout 20 avahi-browse --parsable --resolve --terminate _arduino._tcp 2>>"$AV/browse.err"
}
deadline=$((SECONDS + 15))
until browse >"$AV/browse.out" && [ "$(grep -c '^=' "$AV/browse.out")" -ge 4 ]; do
    if [ $SECONDS -ge $deadline ]; then
        skip "avahi-browse in one namespace did not resolve the 4 services advertised by avahi-daemon" \
            "in the other over a veth pair within 15 s (multicast between namespaces blocked?);" \
            "got: $(tr '\n' '|' <"$AV/browse.out"); stderr: $(tail -n 3 "$AV/browse.err" | tr '\n' '|')"
    fi
    sleep 0.5
done
log "avahi-browse sees: $(grep -c '^=' "$AV/browse.out") resolved services"
grep -qx '=;'"$VETH_S"';IPv4;esp32-246f28005d01;_arduino._tcp;local;esp32-246f28005d01.local;10.77.0.2;3232;.*"board=esp32".*' \
    "$AV/browse.out" || fail "real avahi-browse output differs: $(cat "$AV/browse.out")"
grep -qF '"board=\"ESP8266_GENERIC\""' "$AV/browse.out" || fail "TXT quoting: $(cat "$AV/browse.out")"

# ---- the station: flash two boards, then discovery ------------------------------------
M1=24:6f:28:00:5d:01
M8=18:fe:34:00:5d:08
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 41
import_fw "$WORK/fw1"
fw_set "$WORK/e1" e8266 1.0.0 esp8266 50000 43
import_fw "$WORK/e1"
start_sim esp32 --mac "$M1"
S1=$SIM_DIR
start_sim esp8266 --mac "$M8"
S8=$SIM_DIR
cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S8/tty", "label": "A8"}],
 "listen": "127.0.0.1:0",
 "ota": {"listen": "127.0.0.1:0", "mdns_interval_s": 1},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"},
   "baud": 460800, "retries": 0}}}
JSON

DAEMON_N=$((DAEMON_N + 1))
DAEMON_LOG="$WORK/daemon.$DAEMON_N.log"
ip netns exec "$NS_STA" env DBUS_SYSTEM_BUS_ADDRESS="$BUS" "$ESPSTATIOND" --config "$WORK/station.json" \
    --data-dir "$DATA_DIR" --stub-dir "$STUB_DIR" --no-udev >"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
DAEMON_PIDS+=("$DAEMON_PID")
wait_log 'station running' 30
wait_log 'mDNS discovery of ArduinoOTA boards via .*avahi-browse every 1 s' 10

wait_sql "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed';" 2 120
wait_sql "SELECT online_state || ' ' || ip FROM boards WHERE mac = '$M1';" "online 10.77.0.2" 30
wait_sql "SELECT online_state || ' ' || ip FROM boards WHERE mac = '$M8';" "online 10.77.0.8" 30
wait_log "seen via mDNS at 10.77.0.2 \\(ArduinoOTA port 3232\\)" 10
wait_log "seen via mDNS at 10.77.0.8 \\(ArduinoOTA port 8266\\)" 10
[ "$(db "SELECT count(*) FROM boards WHERE ip = '10.77.0.9' OR mac LIKE '%aa:aa:aa';")" = 0 ] ||
    fail "the unknown board was recorded"
[ "$(db "SELECT count(*) FROM boards;")" = 2 ] || fail "expected exactly the 2 flashed boards"
ev=$(db "SELECT board_mac || ' ' || json_extract(data, '$.source') || ' ' || json_extract(data, '$.ip') FROM events WHERE kind = 'board.online' ORDER BY board_mac;")
# (the two boards may be resolved in either order: sorted by MAC, the ESP8266 comes first)
[ "$ev" = "$M8 mdns 10.77.0.8
$M1 mdns 10.77.0.2" ] || fail "board.online events: $ev"
# it keeps browsing; an unchanged address is neither logged nor evented again
sleep 3
[ "$(grep -c 'seen via mDNS at 10.77.0.2' "$DAEMON_LOG")" = 1 ] || fail "repeated mDNS log lines"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'board.online';")" = 2 ] || fail "repeated board.online"
if grep -q 'avahi-browse failed' "$DAEMON_LOG"; then
    fail "avahi-browse failed under the daemon: $(grep 'mDNS' "$DAEMON_LOG")"
fi
stop_daemon
integrity_ok
done_ok

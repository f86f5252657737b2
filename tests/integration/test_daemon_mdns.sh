#!/usr/bin/env bash
# test_daemon_mdns: optional ArduinoOTA discovery through avahi. A FAKE
# avahi-browse (first on PATH) prints canned --parsable lines: the ESP32 the
# daemon flashed advertises as "esp32-<its MAC>", the ESP8266 as
# "esp8266-<last 3 MAC bytes>", plus an IPv6 line, an unknown board and a
# malformed line. The records get the advertised IPv4 addresses and go online.
# Without avahi-browse on PATH the daemon logs one INFO line and runs on.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

M1=24:6f:28:00:5d:01
M8=18:fe:34:00:5d:08
fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 31 boot
import_fw "$WORK/fw1"
fw_set "$WORK/e1" e8266 1.0.0 esp8266 50000 33
import_fw "$WORK/e1"

start_sim esp32 --mac "$M1"
S1=$SIM_DIR
start_sim esp8266 --mac "$M8"
S8=$SIM_DIR

FAKEBIN=$WORK/fakebin
mkdir -p "$FAKEBIN"
cat >"$FAKEBIN/avahi-browse" <<'SH'
#!/bin/sh
echo "$*" >>"${0%/*}/calls.log"
cat <<'OUT'
+;lo;IPv4;esp32-246f28005d01;_arduino._tcp;local
=;lo;IPv6;esp32-246f28005d01;_arduino._tcp;local;esp32-246f28005d01.local;fe80::1;3232;"board=esp32"
=;lo;IPv4;esp32-246f28005d01;_arduino._tcp;local;esp32-246f28005d01.local;192.0.2.51;3232;"board=esp32" "ssh_upload=no" "tcp_check=no" "auth_upload=yes"
=;lo;IPv4;Kitchen\032esp8266;_arduino._tcp;local;esp8266-005d08.local;192.0.2.58;8266;"tcp_check=no" "ssh_upload=no" "board=\"ESP8266_GENERIC\"" "auth_upload=no"
=;lo;IPv4;esp32-aaaaaaaaaaaa;_arduino._tcp;local;esp32-aaaaaaaaaaaa.local;192.0.2.99;3232;"board=esp32"
=;lo;IPv4;broken
OUT
exit 0
SH
chmod +x "$FAKEBIN/avahi-browse"

cat >"$WORK/station.json" <<JSON
{"ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S8/tty", "label": "A8"}],
 "ota": {"mdns_interval_s": 1},
 "profiles": {"line": {"firmware": {"esp32": "demo@1.0.0", "esp8266": "e8266@1.0.0"},
   "baud": 460800, "retries": 0}}}
JSON

# --- without avahi-browse: one INFO line, nothing else --------------------------------
mkdir -p "$WORK/emptybin"
# like start_daemon, but only the daemon gets the reduced PATH
start_daemon_path() {
    local path=$1
    shift
    DAEMON_N=$((DAEMON_N + 1))
    DAEMON_LOG="$WORK/daemon.$DAEMON_N.log"
    env PATH="$path" "$ESPSTATIOND" --config "$1" --data-dir "$DATA_DIR" --stub-dir "$STUB_DIR" \
        --no-udev >"$DAEMON_LOG" 2>&1 &
    DAEMON_PID=$!
    DAEMON_PIDS+=("$DAEMON_PID")
    wait_log 'station running' 30
}
start_daemon_path "$WORK/emptybin" "$WORK/station.json"
wait_log 'mDNS discovery off: avahi-browse not found' 10
grep -qF 'mDNS discovery off: avahi-browse not found (install avahi-utils and run avahi-daemon to find ArduinoOTA boards)' \
    "$DAEMON_LOG" || fail "the mDNS off line"

wait_sql "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed';" 2 120
stop_daemon
[ "$(grep -c 'mDNS' "$DAEMON_LOG")" = 1 ] || fail "more than one mDNS line without avahi-browse"
[ -z "$(board_col "$M1" ip)" ] || fail "ip without mDNS: $(board_col "$M1" ip)"

# --- with the fake avahi-browse -------------------------------------------------------
start_daemon_path "$FAKEBIN:$PATH" "$WORK/station.json"
wait_sql "SELECT ip FROM boards WHERE mac = '$M1';" 192.0.2.51 30
wait_sql "SELECT ip FROM boards WHERE mac = '$M8';" 192.0.2.58 30
[ "$(board_col "$M1" online_state)" = online ] || fail "esp32 not online"
[ "$(board_col "$M8" online_state)" = online ] || fail "esp8266 not online"
grep -q -- '--parsable --resolve --terminate _arduino._tcp' "$FAKEBIN/calls.log" || fail "avahi-browse args"
wait_log 'seen via mDNS at 192.0.2.51' 10
[ "$(db "SELECT count(*) FROM boards WHERE ip = '192.0.2.99';")" = 0 ] || fail "unknown board recorded"
# periodic: it runs again, and an unchanged address is not logged again
sleep 2.5
[ "$(wc -l <"$FAKEBIN/calls.log")" -ge 3 ] || fail "avahi-browse not run periodically"
[ "$(grep -c 'seen via mDNS at 192.0.2.51' "$DAEMON_LOG")" = 1 ] || fail "repeated mDNS log lines"
stop_daemon
integrity_ok
done_ok

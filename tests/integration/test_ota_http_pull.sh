#!/usr/bin/env bash
# test_ota_http_pull: esp_netdev checks in (exact ESP8266httpUpdate / ESP32
# HTTPUpdate request) at a tiny server built on ota_http (parse, decide,
# serialize): the first check-in gets 200 + image + x-MD5, the board applies
# it and the next check-in gets 304 (ESP8266 by version header; ESP32 too).
# A strict server refuses a browser with 403.
# shellcheck source=lib.sh
source "$INTEG_LIB"

NETDEV_DIR=$(dirname "$ESP_SIM")/netdev
NETDEV=$NETDEV_DIR/esp_netdev
DRV=$NETDEV_DIR/ota_driver
[ -x "$NETDEV" ] && [ -x "$DRV" ] || fail "esp_netdev/ota_driver not built in $NETDEV_DIR"

{ printf '\xe9\x03\x02\x20'; head -c 120000 /dev/urandom; printf 'ESPVER:7.0.0\n'; } >"$WORK/fw.bin"

# pull CHIP MAC IP: one server for 3 requests, one board checking in every 300 ms.
pull() {
    local chip=$1 mac=$2 ip=$3 dir i port
    dir=$WORK/$chip
    mkdir -p "$dir"
    timeout -k 5 60 "$DRV" serve --bind 127.0.0.1 --port-file "$dir/port" --image "$WORK/fw.bin" \
        --version 7.0.0 --mac "$mac" --strict --requests 3 >"$dir/serve.out" 2>"$dir/serve.err" &
    local spid=$!
    SIM_PIDS+=("$spid")
    for i in $(seq 1 100); do
        [ -s "$dir/port" ] && break
        sleep 0.05
    done
    port=$(cat "$dir/port")
    "$NETDEV" --chip "$chip" --mac "$mac" --bind "$ip" --dir "$dir" --ota-port -1 \
        --checkin "http://127.0.0.1:$port/fw" --interval 300 2>"$dir/stderr" &
    local npid=$!
    SIM_PIDS+=("$npid")
    SIM_DIRS+=("$dir")
    wait "$spid" || fail "$chip: pull server failed: $(cat "$dir/serve.err")"
    kill "$npid" 2>/dev/null || true
    log "$chip server: $(tr '\n' '|' <"$dir/serve.out")"
    sed -n 1p "$dir/serve.out" | grepq -- '-> 200 serve' || fail "$chip: first check-in not 200"
    sed -n 2p "$dir/serve.out" | grepq -- "version=7.0.0 -> 304" ||
        fail "$chip: second check-in not 304 by version"
    sed -n 3p "$dir/serve.out" | grepq -- '-> 304' || fail "$chip: third check-in not 304"
    grep -q 'pull: applied' "$dir/netdev.log" || fail "$chip: image not applied"
    cmp "$WORK/fw.bin" "$dir/ota-1.bin" || fail "$chip: pulled image differs"
    [ "$(cat "$dir/version")" = 7.0.0 ] || fail "$chip: version not reported"
    grep -q 'status=304 version=7.0.0' "$dir/netdev.log" || fail "$chip: no 304 seen by board"
}

pull esp8266 24:6F:28:00:04:01 $TNET.51
pull esp32 24:6F:28:00:04:02 $TNET.52

# Strict server: a browser is refused with 403.
dir=$WORK/strict
mkdir -p "$dir"
timeout -k 5 30 "$DRV" serve --bind 127.0.0.1 --port-file "$dir/port" --image "$WORK/fw.bin" \
    --version 7.0.0 --mac 24:6F:28:00:04:03 --strict --requests 1 >"$dir/serve.out" &
spid=$!
for i in $(seq 1 100); do
    [ -s "$dir/port" ] && break
    sleep 0.05
done
exec 3<>"/dev/tcp/127.0.0.1/$(cat "$dir/port")"
printf 'GET /fw HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\n\r\n' >&3
resp=$(timeout 10 cat <&3 || true)
exec 3>&-
wait "$spid"
[[ $resp == "HTTP/1.0 403 Forbidden"* ]] || fail "browser not refused: $resp"

log "PASS"

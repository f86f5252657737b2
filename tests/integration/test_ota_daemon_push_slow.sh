#!/usr/bin/env bash
# test_ota_daemon_push_slow: an ArduinoOTA push job through the daemon (POST
# /api/v1/boards/{mac}/ota) to an ESP8266 that writes flash slowly (issue 8
# part 1, the field failure): esp_netdev with lwIP's 5840-byte receive window and
# a 400 ms erase per 4 KiB sector takes about 10 KB/s and writes one count for
# the whole image when Update.write(client) returns. The daemon's own defaults
# (10 s stall timeout) are used. The job must pass (the daemon once declared
# "stalled" after 10 s without a count, with the image queued in the kernel),
# the board must hold the image and run the new version, and the job's progress
# (jobs.bytes, sampled while it runs) must move during the transfer, never go
# back and never pass the image. Takes about 25 s (the 10 KB/s push by design).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

M=18:fe:34:00:08:0a
fw_set "$WORK/e1" e8266 1.0.0 esp8266 60000 81
fw_set "$WORK/e2" e8266 2.0.0 esp8266 160000 82
import_fw "$WORK/e1"
import_fw "$WORK/e2"
SIZE=$(stat -c %s "$WORK/e2/app.bin")

OTA_PORT=$(free_port)
TOKEN=t0k3n
cat >"$WORK/station.json" <<JSON
{"ports": [], "api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"},
 "profiles": {"line": {"firmware": {"esp8266": "e8266@1.0.0"}, $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$WORK/station.json"

# One check-in at boot (with the profile's credentials: the address is confirmed) makes the
# board known and push-able; it runs the profile's version, so it pulls nothing.
ND=$WORK/nd
start_netdev "$ND" --chip esp8266 --mac "$M" --bind $TNET.91 --ota-port 8266 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval once \
    --rcvbuf 5840 --erase-ms 400
wait_file_log 'checkin: status=304 version=1.0.0' "$ND/netdev.log" 20
wait_sql "SELECT online_state || ' ' || ip FROM boards WHERE mac = '$M';" "online $TNET.91" 10

apij POST "/api/v1/boards/$M/ota" '{"method": "espota", "firmware": "e8266@2.0.0"}'
expect_status 202
J=$(jqr .job_id)
# Sample the job's progress until it ends.
: >"$WORK/samples"
deadline=$((SECONDS + 120))
while :; do
    row=$(db "SELECT state || ' ' || coalesce(bytes, 0) FROM jobs WHERE id = $J;" 2>/dev/null || true)
    [ -n "$row" ] && echo "$row" >>"$WORK/samples"
    case "$row" in passed* | failed* | cancelled* | interrupted*) break ;; esac
    [ $SECONDS -lt $deadline ] || fail "push job $J did not end in 120 s (last: $row)"
    sleep 0.3
done
state=$(db "SELECT state || ' ' || bytes FROM jobs WHERE id = $J;")
[ "$state" = "passed $SIZE" ] || {
    tail -n 20 "$ND/netdev.log" >&2
    fail "push to the slow ESP8266: job $J is '$state' ($(db "SELECT error_stage || ': ' || error_message FROM jobs WHERE id = $J;")), not passed $SIZE"
}
cmp "$WORK/e2/app.bin" "$ND/ota-1.bin" || fail "the board received another image"
wait_sql "SELECT running_version FROM boards WHERE mac = '$M';" 2.0.0 20
# The model behaved like the device: one count, the whole image, at the slow pace.
grep -q "window 5840, erase 400 ms/sector" "$ND/netdev.log" || fail "the board did not run slow"
counts=$(grep -c 'Update.write returned' "$ND/netdev.log")
grep -q "Update.write returned $SIZE ($SIZE of $SIZE)" "$ND/netdev.log" && [ "$counts" -eq 1 ] ||
    fail "expected one count of $SIZE from the board, it wrote $counts"
# Progress: never back, never past the image, seen strictly between 0 and the image while
# the job ran (the device's TCP took it piece by piece).
awk -v total="$SIZE" '
    $2 > total { print "sample " NR ": " $2 " is past the image"; bad = 1 }
    NR > 1 && $2 < last { print "sample " NR ": " $2 " after " last; bad = 1 }
    $1 == "running" && $2 > 0 && $2 < total { mid++ }
    { last = $2 }
    END {
        if (mid < 3) { print "only " mid " samples of a running job between 0 and " total; bad = 1 }
        exit bad
    }' "$WORK/samples" || fail "job progress is wrong (see above; samples in $WORK/samples)"
log "slow ESP8266 push: $SIZE bytes, $(wc -l <"$WORK/samples") samples," \
    "$(awk '$1 == "running" && $2 > 0' "$WORK/samples" | sort -u | wc -l) distinct running figures"

stop_daemon
integrity_ok
done_ok

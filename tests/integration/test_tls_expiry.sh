#!/usr/bin/env bash
# test_tls_expiry: a coming certificate expiry is shown where a technician looks.
# 1. Plain HTTP: GET /api/v1/line's "tls" is null; no expiry line in the log.
# 2. api.tls with a certificate made here that ends in 2 days, ota.tls with one that ends in
#    400 days: "tls" gives each server's not_after (the certificate's, to the second),
#    subject and days_left (a started day counted: 2 and 400); the start-up check logs
#    "tls: api certificate (...) expires on DATE, in 2 day(s): renew ... systemctl reload
#    espstationd" and appends a tls.expiring event (server api), nothing for ota.
# 3. The certificates swapped (api 400 days, ota 2 days), SIGHUP: "tls" follows (400 and 2)
#    and the reload's check logs and journals ota's, not api's.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
source "$(dirname "$0")/tls_lib.sh"

C=$WORK/certs
tls_ca "$C" "espstation expiry CA" 500
leaf() { tls_leaf "$C" "$C" "$1" "$2"; } # leaf NAME DAYS: $C/NAME.pem and .key
leaf soon 2
leaf far 400
iso_end() {
    date -u -d "$(openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//')" +%Y-%m-%dT%H:%M:%S.000Z
}
END_SOON=$(iso_end "$C/soon.pem")
END_FAR=$(iso_end "$C/far.pem")
# use SERVER NAME: SERVER's files (api.pem/.key or ota.pem/.key) become certificate NAME
use() { install -m 600 "$C/$2.pem" "$C/$1.pem" && install -m 600 "$C/$2.key" "$C/$1.key"; }
# expect_tls SERVER NAME DAYS: "tls".SERVER of the last body is certificate NAME, DAYS left
expect_tls() {
    local end
    [ "$2" = soon ] && end=$END_SOON || end=$END_FAR
    jq -e --arg s "$1" --arg na "$end" --arg subj "/CN=station-$2" --argjson d "$3" \
        '.tls[$s].not_after == $na and .tls[$s].subject == $subj and .tls[$s].days_left == $d' \
        >/dev/null <<<"$RESP" || fail "tls.$1 is not $2 ($end, $3 days left): $(jq -c .tls <<<"$RESP")"
}
# journal_expiring: the servers of the tls.expiring events in the journal, one a line
journal_expiring() {
    timeout 3 curl -sN --cacert "$C/ca.pem" "$API/api/v1/events?last_event_id=0" 2>/dev/null |
        sed -n 's/^data: //p' | jq -r 'select(.kind == "tls.expiring") | .data.server' || true
}

# --- 1. plain HTTP -------------------------------------------------------------------------
cat >"$WORK/plain.json" <<JSON
{"ports": [], "profiles": {"line": {"firmware": {}}}}
JSON
start_api_daemon "$WORK/plain.json"
api GET /api/v1/line
expect_status 200
expect_jq '.tls == null'
grep -q 'tls: .* certificate .* expire' "$DAEMON_LOG" && fail "plain HTTP logged an expiry"
stop_daemon
log "plain HTTP: tls null"

# --- 2. api 2 days, ota 400 days -----------------------------------------------------------
use api soon
use ota far
OTA_PORT=$(free_port)
cat >"$WORK/tls.json" <<JSON
{"ports": [],
 "api": {"tls": {"cert": "$C/api.pem", "key": "$C/api.key"}},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "tls": {"cert": "$C/ota.pem", "key": "$C/ota.key"}},
 "profiles": {"line": {"firmware": {}}}}
JSON
export CURL_CA_BUNDLE=$C/ca.pem
start_api_daemon "$WORK/tls.json"
API=${API/http:/https:}
api GET /api/v1/line
expect_status 200
expect_tls api soon 2
expect_tls ota far 400
wait_log "tls: api certificate \(/CN=station-soon\) expires on $END_SOON, in 2 day\(s\): renew the certificate \(api.tls\) and reload: systemctl reload espstationd" 20
grep -q 'tls: ota certificate .* expires' "$DAEMON_LOG" && fail "the 400-day ota certificate was logged as expiring"
[ "$(journal_expiring | sort | tr '\n' ' ')" = "api " ] ||
    fail "tls.expiring events: expected api only, got '$(journal_expiring | tr '\n' ' ')'"
log "api 2 days: days_left 2, logged and journaled; ota 400 days: days_left 400, quiet"

# --- 3. swapped, SIGHUP ----------------------------------------------------------------------
use api far
use ota soon
kill -HUP "$DAEMON_PID"
wait_log "tls: ota certificate \(/CN=station-soon\) expires on $END_SOON, in 2 day\(s\): renew the certificate \(ota.tls\) and reload: systemctl reload espstationd" 20
api GET /api/v1/line
expect_status 200
expect_tls api far 400
expect_tls ota soon 2
[ "$(grep -c 'tls: api certificate (/CN=station-soon) expires' "$DAEMON_LOG")" = 1 ] ||
    fail "the renewed api certificate was logged as expiring again"
[ "$(journal_expiring | sort | tr '\n' ' ')" = "api ota " ] ||
    fail "tls.expiring events after the reload: expected api and ota, got '$(journal_expiring | tr '\n' ' ')'"
log "after renewal + SIGHUP: api 400 days, ota 2 days logged and journaled"

stop_daemon
done_ok

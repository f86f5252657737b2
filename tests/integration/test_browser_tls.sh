#!/usr/bin/env bash
# test_browser_tls: the status page's header badge for a coming certificate expiry, in a real
# browser (tests/browser/tls.spec.mjs: Debian's chromium through playwright-core). The REST
# API speaks HTTPS (api.tls) with certificates made here:
# 1. one that ends in 2 days: a red badge in the header with its date and "renew the
#    certificate and reload: systemctl reload espstationd";
# 2. renewed to one of 400 days, SIGHUP: no badge;
# 3. renewed to one of 10 days, SIGHUP: the badge, not red (a warning);
# each also at a phone's width (390 px) without horizontal overflow.
# Screenshots: <build>/screenshots/tls/.
#
# Needs node and chromium (prints SKIP and exits 77 only when one of them is not installed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/browser_lib.sh"
browser_need test_browser_tls

source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$HERE/daemon_lib.sh"
source "$HERE/api_lib.sh"
source "$(dirname "$0")/tls_lib.sh"

browser_npm
SHOTS=$(cd "$TEST_TMPDIR/.." && pwd)/screenshots/tls
mkdir -p "$SHOTS"

C=$WORK/certs
tls_ca "$C" "espstation badge CA" 500
leaf() { tls_leaf "$C" "$C" "$1" "$2"; } # leaf NAME DAYS: $C/NAME.pem and .key
leaf soon 2
leaf far 400
leaf mid 10
day_of() { date -u -d "$(openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//')" +%Y-%m-%d; }
use() { install -m 600 "$C/$1.pem" "$C/api.pem" && install -m 600 "$C/$1.key" "$C/api.key"; }

use soon
cat >"$WORK/station.json" <<JSON
{"ports": [], "api": {"tls": {"cert": "$C/api.pem", "key": "$C/api.key"}},
 "profiles": {"line": {"firmware": {}}}}
JSON
start_api_daemon "$WORK/station.json" --web-root "$SRC/web/static"
API=${API/http:/https:}

# spec EXPECT NAME [DATE]: tls.spec.mjs against the station
spec() {
    local rc=0
    TEST_TMPDIR=$WORK timeout 300 node "$BROWSER_DIR/tls.spec.mjs" --url "$API" --expect "$1" \
        --name "$2" ${3:+--date "$3"} --shots "$SHOTS" >"$WORK/spec.$2.out" 2>&1 || rc=$?
    cat "$WORK/spec.$2.out" >&2
    [ "$rc" -eq 0 ] || fail "tls.spec.mjs --expect $1 ($2) failed (rc=$rc); screenshots in $SHOTS"
    grep -Eq '^[0-9]+ passed, 0 failed$' "$WORK/spec.$2.out" || fail "tls.spec.mjs printed no summary"
}
# renew NAME: api.pem/.key become certificate NAME, SIGHUP, wait for the reload
renew() {
    local n
    n=$(grep -c 'tls: api certificate reloaded' "$DAEMON_LOG" || true)
    use "$1"
    kill -HUP "$DAEMON_PID"
    local deadline=$((SECONDS + 20))
    until [ "$(grep -c 'tls: api certificate reloaded' "$DAEMON_LOG" || true)" -gt "$n" ]; do
        [ $SECONDS -lt $deadline ] || fail "the renewal to $1 was not reloaded: $(tail -n 5 "$DAEMON_LOG")"
        sleep 0.05
    done
}

spec alert soon-2d "$(day_of "$C/soon.pem")"
log "2-day certificate: red badge with its date"
renew far
spec none far-400d
log "400-day certificate: no badge"
renew mid
spec warn mid-10d "$(day_of "$C/mid.pem")"
log "10-day certificate: warning badge"

stop_daemon
done_ok

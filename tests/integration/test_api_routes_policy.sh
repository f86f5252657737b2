#!/usr/bin/env bash
# test_api_routes_policy: walks the REST API's route table (GET /api/v1/routes,
# generated from web/routes.c) over real HTTP and proves that every changing
# route refuses, before doing anything:
#   with api.token set: no token (401), a wrong token (401), and -- with the
#   right token -- a cross-origin request (Origin: http://evil.example, 403), a
#   foreign Host (Host: evil.example, DNS rebinding, 403) and Sec-Fetch-Site:
#   cross-site (403);
#   with no token (the default, loopback clients trusted): the same
#   cross-origin, foreign-Host and cross-site requests (403), and a POST that is
#   not JSON (text/plain, as a form or a no-cors fetch sends it; 415).
# Upload routes get a multipart body (what a cross-origin form can post), the
# others JSON. Afterwards nothing changed: the records database, the catalog and
# the data directory are byte for byte as before. The table must list at least
# the known changing routes (so an empty listing cannot pass), and reads stay
# open to a request with another Origin (it cannot read the answer anyway).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 31 # app@1.0 in the catalog
# A real board on slot A1; the profile has nothing for ESP32, so its job ends "skipped"
# and nothing moves until a request changes something (an erase would start a job).
MAC=24:6f:28:00:00:31
start_sim esp32 --mac "$MAC"
A1=$SIM_PORT
EVIL=http://evil.example

# settle N: the board's Nth job has ended and the slot is not busy.
settle() {
    wait_sql "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;" "$1" 60
    wait_api /api/v1/slots/A1 '.busy == false and .phase != "queued"' 60
}

# snapshot FILE: everything a change could touch (records, catalog, profiles file); not the
# station's own heartbeat row (the line view), which its timer rewrites every few seconds.
snapshot() {
    {
        db .dump | grep -v '^INSERT INTO stations VALUES' 
        (cd "$DATA_DIR" && find . -type f ! -name 'records.db*' ! -name '*.port' -print0 |
            sort -z | xargs -0 md5sum)
    } >"$1"
}

# route_path PATTERN: a concrete path naming things that exist (slot A1, profile p1,
# firmware app@1.0, a MAC, id 1).
route_path() {
    local p=$1
    p=${p//\{name\}\/\{version\*\}/app/1.0}
    p=${p//\{id\*\}/A1}
    p=${p//\{name\}/p1}
    p=${p//\{mac\}/$MAC}
    p=${p//\{id\}/1}
    p=${p//\{sha256\}/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
    case $p in *'{'*) fail "route $1: a capture without a test value" ;; esac
    printf '%s' "$p"
}

# send METHOD PATH UPLOAD [curl args...]: the request a page or a client would send:
# multipart for an upload route, JSON for other POSTs and PUTs, no body for DELETE.
send() {
    local m=$1 p=$2 up=$3
    shift 3
    local body=()
    if [ "$up" = true ]; then
        # A refused upload is answered before its body is read, and the daemon may close
        # while curl still sends (then curl sees a reset, 55/56, perhaps before the
        # answer): with Expect: 100-continue curl waits for the answer first.
        body=(-H 'Expect: 100-continue' -F "manifest=@$FW/manifest.json" -F "app.bin=@$FW/app.bin")
    elif [ "$m" != DELETE ]; then
        body=(-H 'Content-Type: application/json' --data-binary '{}')
    fi
    api "$m" "$p" "${body[@]}" "$@"
}

# expect_refused STATUS FIELD WHAT: the last answer is that JSON error (field may be "").
expect_refused() {
    local want=$1 field=$2 what=$3
    [ "$HTTP_STATUS" = "$want" ] || fail "$ROUTE $what: expected $want, got $HTTP_STATUS: $RESP"
    jq -e '.error.code and .error.message' >/dev/null <<<"$RESP" || fail "$ROUTE $what: $RESP"
    if [ -n "$field" ]; then
        [ "$(jqr .error.field)" = "$field" ] || fail "$ROUTE $what: field is not $field: $RESP"
    fi
}

# load_routes: METHOD PATTERN UPLOAD lines of the changing routes into $WORK/change.
load_routes() {
    api GET /api/v1/routes
    expect_status 200 "GET /api/v1/routes"
    jqr '.routes[] | select(.policy == "change") | "\(.method) \(.path) \(.upload)"' >"$WORK/change"
    jqr '.routes[] | select(.policy == "read") | "\(.method) \(.path)"' >"$WORK/read"
    local n
    n=$(wc -l <"$WORK/change")
    log "$n changing routes, $(wc -l <"$WORK/read") reads"
    # the table's changing routes include at least these (an empty or partial table fails)
    for want in "POST /api/v1/slots/{id*}/erase" "POST /api/v1/slots/{id*}/reflash" \
        "POST /api/v1/firmware" "DELETE /api/v1/firmware/{name}/{version*}" \
        "PUT /api/v1/profiles/active" "POST /api/v1/ports" "DELETE /api/v1/ports/{id*}" \
        "POST /api/v1/jobs" "PUT /api/v1/boards/{mac}/target" "POST /api/v1/bulk"; do
        grep -qF "$want " "$WORK/change" || fail "route table lacks $want: $(cat "$WORK/change")"
    done
    [ "$n" -ge 20 ] || fail "only $n changing routes listed"
    grep -q '^GET ' "$WORK/change" && fail "a GET route is listed as changing"
    # the OTA endpoint's device-facing rows are in the same listing, on their own listener
    jqr '.routes[] | select(.policy == "device") | "\(.listener) \(.method) \(.path)"' >"$WORK/device"
    grepq -F 'ota GET {path*}' <"$WORK/device" || fail "no device-facing check-in row: $(cat "$WORK/device")"
    grepq -F 'ota GET /ota/fw/{name}/{version}.bin' <"$WORK/device" ||
        fail "no device-facing plain GET row: $(cat "$WORK/device")"
    [ "$(jqr '[.routes[] | select(.policy == "device" and .listener != "ota")] | length')" = 0 ] ||
        fail "a device-facing row is not on the OTA listener"
    [ "$(jqr '[.routes[] | select(.policy != "device" and .listener != "api")] | length')" = 0 ] ||
        fail "an operator row is not on the API listener"
    true
}

CFG_T=$WORK/token.json
cat >"$CFG_T" <<JSON
{"api": {"token": "tok-$$"}, "ports": [{"uri": "$A1", "label": "A1"}],
 "profiles": {"p1": {"firmware": {"esp8266": "app@1.0"}}}}
JSON
CFG_N=$WORK/none.json
cat >"$CFG_N" <<JSON
{"ports": [{"uri": "$A1", "label": "A1"}],
 "profiles": {"p1": {"firmware": {"esp8266": "app@1.0"}}}}
JSON

# --- with a token -----------------------------------------------------------------------
TOKEN=tok-$$
start_api_daemon "$CFG_T"
HOSTPORT=${API#http://}
load_routes
settle 1
snapshot "$WORK/before"
while read -r m pat up; do
    p=$(route_path "$pat")
    ROUTE="$m $p"
    send "$m" "$p" "$up"
    expect_refused 401 "" "without a token"
    send "$m" "$p" "$up" -H "Authorization: Bearer wrong-$$"
    expect_refused 401 "" "with a wrong token"
    send "$m" "$p" "$up" -H "Authorization: Bearer $TOKEN" -H "Origin: $EVIL"
    expect_refused 403 Origin "with the token and Origin: $EVIL"
    send "$m" "$p" "$up" -H "Authorization: Bearer $TOKEN" -H "Origin: http://127.0.0.1:1"
    expect_refused 403 Origin "with the token and another port's Origin"
    send "$m" "$p" "$up" -H "Authorization: Bearer $TOKEN" -H 'Host: evil.example'
    expect_refused 403 Host "with the token and Host: evil.example"
    send "$m" "$p" "$up" -H "Authorization: Bearer $TOKEN" -H "Host: evil.example:${HOSTPORT##*:}" \
        -H "Origin: http://evil.example:${HOSTPORT##*:}"
    expect_refused 403 Host "rebound: Host and Origin evil.example"
    send "$m" "$p" "$up" -H "Authorization: Bearer $TOKEN" -H 'Sec-Fetch-Site: cross-site'
    expect_refused 403 Sec-Fetch-Site "with the token and Sec-Fetch-Site: cross-site"
done <"$WORK/change"
snapshot "$WORK/after"
diff -u "$WORK/before" "$WORK/after" >&2 || fail "a refused request changed something (token set)"
# reads: open to another Origin (the browser keeps the answer from that page), not to a
# foreign Host
while read -r m pat; do
    p=$(route_path "$pat")
    [ "$p" = /api/v1/events ] && continue # a stream: checked below with a bound
    api "$m" "$p" -H "Origin: $EVIL"
    case $HTTP_STATUS in 401 | 403 | 405) fail "GET $p with another Origin: $HTTP_STATUS $RESP" ;; esac
    api "$m" "$p" -H 'Host: evil.example'
    ROUTE="GET $p"
    expect_refused 403 Host "read with a foreign Host"
done <"$WORK/read"
api GET / -H 'Host: evil.example'
ROUTE="GET /"
expect_refused 403 Host "the status page with a foreign Host"
api GET /api/v1/events -H 'Host: evil.example' --max-time 5
expect_refused 403 Host "the event stream with a foreign Host"
stop_daemon

# --- no token: loopback clients are trusted, pages of other origins are not ----------------
TOKEN=""
start_api_daemon "$CFG_N"
HOSTPORT=${API#http://}
load_routes
settle 2
snapshot "$WORK/before"
while read -r m pat up; do
    p=$(route_path "$pat")
    ROUTE="$m $p (no token)"
    send "$m" "$p" "$up" -H "Origin: $EVIL"
    expect_refused 403 Origin "with Origin: $EVIL"
    send "$m" "$p" "$up" -H 'Origin: null'
    expect_refused 403 Origin "with Origin: null"
    send "$m" "$p" "$up" -H 'Host: evil.example'
    expect_refused 403 Host "with Host: evil.example"
    send "$m" "$p" "$up" -H 'Sec-Fetch-Site: same-site'
    expect_refused 403 Sec-Fetch-Site "with Sec-Fetch-Site: same-site"
    if [ "$m" = POST ]; then
        # what a form or a no-cors fetch sends without a preflight: text/plain, no Origin
        api POST "$p" -H 'Content-Type: text/plain;charset=UTF-8' --data-binary '{}'
        expect_refused 415 "" "with a text/plain body"
        api POST "$p"
        expect_refused 415 "" "with an empty body and no Content-Type"
        api POST "$p" -H 'Content-Type: application/x-www-form-urlencoded' --data 'a=b'
        expect_refused 415 "" "as a urlencoded form"
    fi
done <"$WORK/change"
snapshot "$WORK/after"
diff -u "$WORK/before" "$WORK/after" >&2 || fail "a refused request changed something (no token)"

# The same requests from the station's own origin, or from curl (no Origin), still work.
apij POST /api/v1/slots/A1/info '{}' -H "Origin: $API" -H 'Sec-Fetch-Site: same-origin'
expect_status 202 "info from the station's own origin"
settle 3
apit PUT /api/v1/profiles/active -H 'Content-Type: application/json' --data '{"name": "p1"}'
expect_status 200 "PUT /profiles/active from curl"
api GET / -H "Host: localhost:${HOSTPORT##*:}"
expect_status 200 "the status page as localhost"
stop_daemon
done_ok

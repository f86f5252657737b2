#!/usr/bin/env bash
# test_api_input: request input the REST API refuses, over real HTTP (each case
# was accepted or unanswered before):
#   - %00 or another control byte in the path: 400 (DELETE
#     /api/v1/firmware/app/1.0%00.json deleted app@1.0: MHD's decoding cut the
#     path at the NUL), and app@1.0 is still there; a %00 in a query value reaches
#     the parameter's own check (400 naming it);
#   - more than 64 query parameters: a JSON 400 (about 500 got no answer at all:
#     MHD ran out of connection memory), also 800; 64 are fine;
#   - a request target over 8 KiB: a JSON 414 (a head over 24 KiB: the JSON 431,
#     test_api_malformed.sh);
#   - POST /api/v1/ports with URIs that can never open (tcp:// without host:port
#     or with port 0, pty: without a path, an unknown scheme, a relative path, fd:N
#     naming the daemon's own descriptor): 422 naming uri, no slot attached;
#   - options.baud as a string ("921600") in reflash and POST /jobs: 422 naming
#     options.baud (an erase offset may still be "0x1000", as in manifests).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 71 # app@1.0
start_sim esp32 --mac 24:6f:28:00:00:71
TOKEN=input-token
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ports": [{"uri": "$SIM_PORT", "label": "A1"}],
 "profiles": {"p1": {"firmware": {"esp8266": "app@1.0"}}}}
JSON
start_api_daemon "$WORK/station.json"
wait_sql "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;" 1 60

# --- NUL and control bytes in the path ----------------------------------------------------
apit DELETE '/api/v1/firmware/app/1.0%00.json' --path-as-is
expect_error 400 bad_request
api GET /api/v1/firmware/app/1.0
expect_status 200 "app@1.0 after the %00 DELETE"
for p in '/api/v1/slots/A%001' '/api/v1/slots/A1%0a' '/api/v1/slots/A1%7F' '/api/v1/firmware/app/1.0%0d%0aX:%20y' \
    '/index.html%00.js' '/%01'; do
    api GET "$p" --path-as-is
    expect_error 400 bad_request "" "GET $p"
done
apit POST '/api/v1/slots/A1%00/erase' --path-as-is -H 'Content-Type: application/json'
expect_error 400 bad_request
api GET '/api/v1/boards?limit=5%00'
expect_error 400 bad_request limit

# --- many query parameters ----------------------------------------------------------------
q() { # N: a=0&a1=1&...
    local i s="p0=0"
    for ((i = 1; i < $1; i++)); do s+="&p$i=$i"; done
    printf '%s' "$s"
}
api GET "/api/v1/slots?$(q 64)"
expect_status 200 "64 query parameters"
for n in 65 500 800; do
    api GET "/api/v1/slots?$(q "$n")" --max-time 10
    expect_error 400 bad_request "" "$n query parameters"
    jq -e --arg n "$n" '.error.message | test("^" + $n + " query parameters")' >/dev/null <<<"$RESP" ||
        fail "$n parameters: $RESP"
done

# --- long request targets -----------------------------------------------------------------
api GET "/api/v1/slots?x=$(head -c 9000 /dev/zero | tr '\0' a)" --max-time 10
expect_error 414 uri_too_long
api GET "/api/v1/$(head -c 20000 /dev/zero | tr '\0' a)" --max-time 10
expect_error 414 uri_too_long
api GET "/api/v1/slots?x=$(head -c 8000 /dev/zero | tr '\0' a)"
expect_status 200 "an 8 kB target"

# --- port URIs that can never open ------------------------------------------------------------
for uri in 'tcp://' 'tcp://host' 'tcp://:4000' 'tcp://h:0' 'tcp://h:99999' 'socket://' 'pty:' \
    'serial:' 'rfc2217://h' 'telnet://h:23' 'ttyUSB0' 'pty:relative/tty' 'fd:3' 'fd:x'; do
    apij POST /api/v1/ports "{\"uri\": \"$uri\", \"label\": \"X1\"}"
    expect_error 422 validation_failed uri "uri $uri"
done
api GET /api/v1/slots
expect_jq '[.slots[] | select(.id == "X1")] | length == 0'

# --- integers are integers ------------------------------------------------------------------
apij POST /api/v1/slots/A1/reflash '{"options": {"baud": "921600"}}'
expect_error 422 validation_failed options.baud
apij POST /api/v1/jobs '{"slot": "A1", "options": {"baud": "921600"}}'
expect_error 422 validation_failed options.baud
apij POST /api/v1/jobs '{"slot": "A1", "options": {"baud": 921600.5}}'
expect_error 422 validation_failed options.baud
[ "$(db "SELECT count(*) FROM jobs")" = 1 ] || fail "a job started: $(db 'SELECT id, kind FROM jobs')"
# offsets keep their manifest spelling
apij POST /api/v1/slots/A1/erase '{"offset": "0x3F0000", "size": "0x1000"}'
expect_status 202 "erase with hex string offset and size"
wait_sql "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;" 2 60
stop_daemon
done_ok

#!/usr/bin/env bash
# test_api_basic: the REST API's rules over real HTTP: errors are JSON with a
# stable code (404 unknown paths and ids, 405 with Allow, 400 malformed JSON,
# 415 wrong content type, 422 naming the field, 413 oversized bodies by
# Content-Length and chunked), authentication (401 without/with a wrong token,
# WWW-Authenticate; reads open; read_requires_token; ?access_token for GET;
# no token configured: loopback may mutate), profiles (list, active, update
# validated like the config, switch, one by name; kept over SIGHUP), the status page files
# (index at /, content types, caching, 304, no traversal), HEAD, metrics.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

TOKEN=basic-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN", "max_body_bytes": 1024},
 "profiles": {"p1": {"baud": 460800}, "p2": {"baud": 115200, "skip_if_same": false}},
 "active_profile": "p1"}
JSON
start_api_daemon "$CFG"

# --- errors -------------------------------------------------------------------------------------
api GET /api/v1/nothing
expect_error 404 not_found
api GET /api/v2/slots
expect_error 404 not_found
api GET /api/v1/jobs/12345
expect_error 404 not_found job
api GET /api/v1/profiles/nope
expect_error 404 not_found profile
apit DELETE /api/v1/slots
expect_error 405 method_not_allowed
grep -qi '^allow: GET' "$WORK/resp.headers" || fail "405 without Allow"
apit PATCH /api/v1/jobs
expect_error 405 method_not_allowed
api GET "/api/v1/boards?limit=0"
expect_error 400 bad_request limit
api GET "/api/v1/boards?limit=abc"
expect_error 400 bad_request limit
api GET "/api/v1/slots?phase=sleeping"
expect_error 400 bad_request phase
apij PUT /api/v1/profiles/active '{"name": '
expect_error 400 invalid_json
apij PUT /api/v1/profiles/active '{"name": "p1"} trailing'
expect_error 400 invalid_json
apij PUT /api/v1/profiles/active '"p1"'
expect_error 422 validation_failed
apij PUT /api/v1/profiles/active '{"nom": "p1"}'
expect_error 422 validation_failed nom
apij PUT /api/v1/profiles/active '{"name": 3}'
expect_error 422 validation_failed name
apit PUT /api/v1/profiles/active -H 'Content-Type: text/xml' --data '<name/>'
expect_error 415 unsupported_media_type
apit PUT /api/v1/profiles/active
expect_error 400 invalid_json

# --- body limits (max_body_bytes 1024) -------------------------------------------------------------
BIG=$(printf '{"name": "%02000d"}' 0)
apij PUT /api/v1/profiles/active "$BIG"
expect_error 413 payload_too_large
apit PUT /api/v1/profiles/active -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary "$BIG"
expect_error 413 payload_too_large
apit POST /api/v1/jobs -H 'Content-Type: application/json' -H 'Expect: 100-continue' --data-binary "$BIG"
expect_error 413 payload_too_large

# --- authentication ---------------------------------------------------------------------------------
api PUT /api/v1/profiles/active -H 'Content-Type: application/json' --data '{"name": "p2"}'
expect_error 401 unauthorized
grep -qi '^www-authenticate: bearer' "$WORK/resp.headers" || fail "401 without WWW-Authenticate"
api PUT /api/v1/profiles/active -H 'Authorization: Bearer wrong' -H 'Content-Type: application/json' --data '{"name": "p2"}'
expect_error 401 unauthorized
api PUT /api/v1/profiles/active -H "Authorization: Basic $TOKEN" -H 'Content-Type: application/json' --data '{"name": "p2"}'
expect_error 401 unauthorized
api POST /api/v1/ports -H 'Content-Type: application/json' --data '{"uri": "/dev/null"}'
expect_error 401 unauthorized
api DELETE /api/v1/firmware/a/b
expect_error 401 unauthorized
api GET /api/v1/profiles/active
expect_status 200 "reads are open"

# --- profiles -----------------------------------------------------------------------------------------
api GET /api/v1/profiles
expect_status 200
expect_jq '.active == "p1" and .persistence == "data_dir" and (.profiles | length == 2)'
expect_jq '.profiles[] | select(.name == "p1") | .active and .baud == 460800 and .after == "hard-reset" and .boot_check == null'
api GET /api/v1/profiles/active
expect_jq '.name == "p1" and .active'
# one profile by name: the inactive p2 with its own values (and defaults filled in)
api GET /api/v1/profiles/p2
expect_status 200
expect_jq '.name == "p2" and (.active | not) and .baud == 115200 and .skip_if_same == false and .verify == true and .boot_check == null'
api GET /api/v1/profiles/p1
expect_status 200
expect_jq '.name == "p1" and .active and .baud == 460800 and .skip_if_same == true'
apij PUT /api/v1/profiles/p1 '{"firmware": {"esp32": "demo@1.0.0"}, "baud": "fast"}'
expect_error 422 validation_failed baud
jqr .error.message | grepq 'profiles.p1.baud' || fail "message does not name the key: $RESP"
apij PUT /api/v1/profiles/p1 '{"firmware": {"esp33": "demo@1.0.0"}}'
expect_error 422 validation_failed
apij PUT /api/v1/profiles/bad%20name '{}'
expect_error 400 bad_request name
apij PUT /api/v1/profiles/p1 '{"name": "p1", "active": true, "firmware": {"esp32": "demo@1.0.0", "ESP32-C3": "c3@2"}, "baud": 230400, "boot_check": {"pattern": "ready ([0-9.]+)", "capture": ["ip"]}}'
expect_status 200
expect_jq '.baud == 230400 and .firmware.esp32 == "demo@1.0.0" and .firmware.esp32c3 == "c3@2" and .boot_check.capture == ["ip"] and .boot_check.timeout_ms == 10000'
api GET /api/v1/profiles/p1
expect_status 200
expect_jq '.baud == 230400 and .firmware == {"esp32": "demo@1.0.0", "esp32c3": "c3@2"} and .boot_check.pattern == "ready ([0-9.]+)"'
apij PUT /api/v1/profiles/p3 '{"erase_all": true}'
expect_status 200
expect_jq '.name == "p3" and .erase_all and (.active | not)'
apij PUT /api/v1/profiles/active '{"name": "p3"}'
expect_status 200
expect_jq '.name == "p3" and .active'
apij PUT /api/v1/profiles/active '{"name": "p9"}'
expect_error 404 not_found name
# a SIGHUP re-reads the file and keeps the API's changes
kill -HUP "$DAEMON_PID"
wait_log 'configuration reloaded' 10
api GET /api/v1/profiles
expect_jq '.active == "p3" and (.profiles | length == 3)'
expect_jq '.profiles[] | select(.name == "p1") | .baud == 230400'
apij PUT /api/v1/profiles/active '{"name": null}'
expect_status 200
expect_jq '.active == null'
api GET /api/v1/profiles/active
expect_error 404 not_found profile

# --- status page -----------------------------------------------------------------------------------------
api GET /
expect_status 200
grep -qi '^content-type: text/html' "$WORK/resp.headers" || fail "/ is not text/html"
grep -qi '^cache-control: no-cache' "$WORK/resp.headers" || fail "index without no-cache"
grep -qi '<html' "$WORK/resp" || fail "/ is not the index page"
LM=$(sed -n 's/^[Ll]ast-[Mm]odified: //p' "$WORK/resp.headers" | tr -d '\r')
[ -n "$LM" ] || fail "no Last-Modified"
api GET / -H "If-Modified-Since: $LM"
expect_status 304
api GET /static/index.html
expect_status 200
for f in "$(dirname "$0")"/../../web/static/*; do
    n=$(basename "$f")
    api GET "/$n"
    expect_status 200 "$n"
    case $n in
    *.css) grep -qi '^content-type: text/css' "$WORK/resp.headers" || fail "$n content type" ;;
    *.js) grep -qi '^content-type: text/javascript' "$WORK/resp.headers" || fail "$n content type" ;;
    esac
done
api GET /../../../../etc/passwd --path-as-is
expect_error 404 not_found
api GET /static/..%2F..%2FCMakeLists.txt --path-as-is
expect_error 404 not_found
api GET /.hidden
expect_error 404 not_found
api GET /nonexistent.js
expect_error 404 not_found
api POST / --data x
expect_error 405 method_not_allowed
timeout 10 curl -sS -I "$API/api/v1/slots" >"$WORK/head" || fail "HEAD failed"
grep -q '^HTTP/1.1 200' "$WORK/head" || fail "HEAD /api/v1/slots: $(cat "$WORK/head")"

# --- keep-alive: several requests on one connection ----------------------------------------------------------
timeout 10 curl -sS -o /dev/null -o /dev/null -w '%{num_connects}\n' "$API/api/v1/slots" "$API/api/v1/boards" >"$WORK/conns"
[ "$(awk '{s += $1} END {print s}' "$WORK/conns")" = 1 ] || fail "no keep-alive: connects $(cat "$WORK/conns")"

api GET /metrics
expect_status 200
grep -qi '^content-type: text/plain; version=0.0.4' "$WORK/resp.headers" || fail "metrics content type"
grep -q '^espstation_http_requests_total{code="4xx"} [1-9]' "$WORK/resp" || fail "metrics: $RESP"
stop_daemon

# --- read_requires_token --------------------------------------------------------------------------------------
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN", "read_requires_token": true}}
JSON
start_api_daemon "$CFG"
api GET /api/v1/slots
expect_error 401 unauthorized
apit GET /api/v1/slots
expect_status 200
api GET "/api/v1/slots?access_token=$TOKEN"
expect_status 200
api GET /metrics
expect_error 401 unauthorized
api GET /
expect_status 200 "the page itself is always served"
stop_daemon

# --- no token: loopback may change things --------------------------------------------------------------------
cat >"$CFG" <<JSON
{"profiles": {"p1": {}, "p2": {}}}
JSON
start_api_daemon "$CFG"
wait_log 'no api.token configured' 5
api PUT /api/v1/profiles/active -H 'Content-Type: application/json' --data '{"name": "p2"}'
expect_status 200
expect_jq '.name == "p2"'
stop_daemon
done_ok

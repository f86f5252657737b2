#!/usr/bin/env bash
# test_api_cross_origin: the requests a web page of another origin (or a rebound
# DNS name) can make a browser on the station send, with no api.token (the
# default: loopback clients are trusted), over real HTTP. A board sits on A1.
#   - a no-cors fetch POST .../slots/A1/erase (text/plain, Origin of the page,
#     Sec-Fetch-Site: cross-site): 403, no job;
#   - the same without Origin / Sec-Fetch-Site (an old browser): 415, no job;
#   - a multipart form POST /api/v1/firmware?replace=true from the page: 403,
#     the catalog set is unchanged;
#   - DNS rebinding (Host and Origin evil.example:PORT, a JSON POST): 403, and
#     the status page itself is refused under that name;
# and what must keep working: curl (no Origin) and the station's own origin
# change things with JSON (202 jobs, a 201 upload), a name from api.allowed_hosts
# and localhost are accepted. On the code before the checks every attack above
# succeeded (202 erase job, 201 replaced set, 200 page).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 41 # app@1.0
MAC=24:6f:28:00:00:41
start_sim esp32 --mac "$MAC"
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"allowed_hosts": ["station.test"]}, "ports": [{"uri": "$SIM_PORT", "label": "A1"}],
 "profiles": {"p1": {"firmware": {"esp8266": "app@1.0"}}}}
JSON
start_api_daemon "$CFG"
PORT=${API##*:}
EVIL=http://evil.example:8000

jobs_ended() { db "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;"; }
settle() {
    wait_sql "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;" "$1" 60
    wait_api /api/v1/slots/A1 '.busy == false and .phase != "queued"' 60
}
state() {
    printf 'jobs %s events %s\n' "$(db 'SELECT count(*) FROM jobs;')" \
        "$(db "SELECT count(*) FROM events WHERE kind NOT LIKE 'slot.%';")"
    md5sum "$DATA_DIR/firmware/app/1.0/app.bin" | cut -d' ' -f1
}
settle 1
state >"$WORK/before"

# --- the attacks ---------------------------------------------------------------------------
# a no-cors fetch('.../erase', {method: 'POST', mode: 'no-cors', body: ''}) from the page
api POST /api/v1/slots/A1/erase -H 'Content-Type: text/plain;charset=UTF-8' \
    -H "Origin: $EVIL" -H 'Sec-Fetch-Site: cross-site' --data-binary ''
expect_error 403 forbidden Origin
# the same from a browser that sends neither header
api POST /api/v1/slots/A1/erase -H 'Content-Type: text/plain;charset=UTF-8' --data-binary ''
expect_error 415 unsupported_media_type
api POST /api/v1/slots/A1/erase
expect_error 415 unsupported_media_type
# a <form enctype="multipart/form-data"> posted to the catalog, replacing app@1.0
EVILFW=$WORK/evilfw
mkdir -p "$EVILFW"
make_image_esp esp32 40000 "$EVILFW/app.bin" 99
cp "$FW/manifest.json" "$EVILFW/manifest.json"
# (Expect: 100-continue: a refused upload is answered before its body is read; without it
# curl may see the connection reset while it still sends, before reading the answer.)
api POST '/api/v1/firmware?replace=true' -H "Origin: $EVIL" -H 'Expect: 100-continue' \
    -F "manifest=@$EVILFW/manifest.json" -F "app.bin=@$EVILFW/app.bin"
expect_error 403 forbidden Origin
api POST '/api/v1/firmware?replace=true' -H 'Origin: null' -H 'Expect: 100-continue' \
    -F "manifest=@$EVILFW/manifest.json" -F "app.bin=@$EVILFW/app.bin"
expect_error 403 forbidden Origin
# DNS rebinding: evil.example resolves to the station; the page is then same-origin
api POST /api/v1/slots/A1/erase -H "Host: evil.example:$PORT" -H "Origin: http://evil.example:$PORT" \
    -H 'Content-Type: application/json' --data '{}'
expect_error 403 forbidden Host
api GET / -H "Host: evil.example:$PORT"
expect_error 403 forbidden Host
api GET /api/v1/records -H "Host: evil.example:$PORT"
expect_error 403 forbidden Host
state >"$WORK/after"
diff -u "$WORK/before" "$WORK/after" >&2 || fail "a cross-origin request changed the station"
[ "$(jobs_ended)" = 1 ] || fail "a job ran: $(db 'SELECT id, kind FROM jobs;')"

# --- what keeps working --------------------------------------------------------------------
api POST /api/v1/slots/A1/info -H 'Content-Type: application/json'
expect_status 202 "info from curl (no Origin, empty JSON body)"
settle 2
api POST /api/v1/slots/A1/info -H 'Content-Type: application/json' -H "Origin: $API" \
    -H 'Sec-Fetch-Site: same-origin' --data '{}'
expect_status 202 "info from the station's own page"
settle 3
api POST /api/v1/slots/A1/info -H 'Content-Type: application/json' \
    -H "Host: localhost:$PORT" -H "Origin: http://localhost:$PORT"
expect_status 202 "info from the page opened as localhost"
settle 4
GOOD=$WORK/good
mkdir -p "$GOOD"
make_image_esp esp32 30000 "$GOOD/app.bin" 42
cat >"$GOOD/manifest.json" <<JSON
{"name": "page", "version": "1.0", "chip": "esp32",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
api POST /api/v1/firmware -H "Origin: $API" -F "manifest=@$GOOD/manifest.json" -F "app.bin=@$GOOD/app.bin"
expect_status 201 "upload from the station's own page"
api GET /api/v1/slots -H "Host: station.test:$PORT"
expect_status 200 "a name from api.allowed_hosts"
api GET / -H "Host: STATION.test"
expect_status 200 "the status page under an allowed name"
api GET / -H "Host: $(hostname):$PORT"
expect_status 200 "the status page under the machine's host name"
stop_daemon
done_ok
